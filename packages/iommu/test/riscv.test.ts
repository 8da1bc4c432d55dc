/**
 * The riscv format (Sv39/Sv48/Sv57 with Svnapot): generic_pt's KUnit cases for its
 * configurations (Linux `riscv_64_kunit_fmt_cfgs`), the 64 KiB NAPOT leaf, and the PTE layout
 * in memory.
 */
import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { IOMMU_PROT, IoPageTable } from "../src/index.ts";
import { iommuPtSuite } from "./kunit/iommu-pt.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

for (const ias of [39, 48, 57]) {
  iommuPtSuite({
    name: `riscv Sv${ias}`,
    make: (mem) => new IoPageTable(mem, { format: "riscv", ias }),
    overmap: "EADDRINUSE",
    unmapSplit: true,
  });
}

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

describe("riscv PTEs", () => {
  it("has a leaf at every level and the 64 KiB NAPOT size", () => {
    expect(new IoPageTable(newMem(), { format: "riscv", ias: 39 }).pageSizes).toEqual([
      4096,
      65536,
      2 ** 21,
      2 ** 30,
    ]);
    const sv48 = new IoPageTable(newMem(), { format: "riscv", ias: 48 });
    expect(sv48.pageSizes).toEqual([4096, 65536, 2 ** 21, 2 ** 30, 2 ** 39]);
    expect(sv48.apertureEnd).toBe(2 ** 47 - 1);
    const sv57 = new IoPageTable(newMem(), { format: "riscv", ias: 57 });
    expect(sv57.levels).toBe(5);
    // The lower half (2^56) is cut to the model's 52-bit addresses.
    expect(sv57.apertureEnd).toBe(2 ** 52 - 1);
    expect(() => new IoPageTable(newMem(), { format: "riscv", ias: 44 })).toThrow(/Sv39/);
  });

  it("writes the PPN at bit 10 and R, W, X, U, A, D as the IOMMU reads them", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "riscv", ias: 39 });
    pt.map(0x1000, 0x12345000, 0x1000, RW);
    const w = pt.walk(0x1000);
    // PPN 0x12345 << 10, V | R | W | X | U | A | D.
    expect(mem.readU32(w.pteAddr)).toBe(0x048d14df);
    expect(w.prot).toBe(RW);
    // A table entry: V and the PPN, none of R, W, X.
    expect(w.steps[0]!.pteLo % 1024).toBe(1);
    pt.map(0x2000, 0x3000, 0x1000, IOMMU_PROT.READ + IOMMU_PROT.NOEXEC);
    expect(pt.walk(0x2000).prot).toBe(IOMMU_PROT.READ + IOMMU_PROT.NOEXEC);
    expect(mem.readU32(pt.walk(0x2000).pteAddr) % 256).toBe(0x53);
  });

  it("writes a 64 KiB leaf as 16 NAPOT entries, and unmaps it whole from its first page", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "riscv", ias: 48 });
    pt.map(0x30000, 0x5670000, 0x10000, RW);
    const items = pt.dump(0x30000, 0x40000).filter((e) => e.kind === "page");
    expect(items).toHaveLength(16);
    // N (bit 63) and PPN[3:0] = 1000.
    expect(new Set(items.map((e) => e.pte))).toEqual(new Set(["0x80000000_0159e0df"]));
    expect(pt.walk(0x3abcd)).toMatchObject({ pageSize: 0x10000, phys: 0x567abcd });
    expect(pt.leafCount(0x10000)).toBe(1);
    expect(pt.unmap(0x34000, 0x1000)).toBe(0);
    expect(pt.unmap(0x30000, 0x1000)).toBe(0x10000);
    expect(pt.iovaToPhys(0x3f000)).toBe(0);
  });
});
