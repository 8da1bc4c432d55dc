/**
 * The x86-64 format (VT-d first stage / AMD v2, sign-extended): generic_pt's KUnit cases for
 * its configurations (Linux `x86_64_kunit_fmt_cfgs` with PT_FEAT_SIGN_EXTEND, 4-level, and a
 * 3-level table), the sign-extended halves, and the PTE layout in memory.
 */
import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { IOMMU_PROT, IoPageTable, IotlbGather } from "../src/index.ts";
import { iommuPtSuite } from "./kunit/iommu-pt.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

for (const ias of [48, 39]) {
  iommuPtSuite({
    name: `x86-64 sign-extended, ${ias}-bit VA`,
    make: (mem) => new IoPageTable(mem, { format: "x86-64", ias }),
    overmap: "EADDRINUSE",
    unmapSplit: true,
  });
}

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

describe("x86-64 PTEs and sign-extended halves", () => {
  it("has 4 levels of 4K, 2M and 1G leaves and a 47-bit lower half as the DMA aperture", () => {
    const pt = new IoPageTable(newMem(), { format: "x86-64" });
    expect(pt.levels).toBe(4);
    expect(pt.pageSizes).toEqual([4096, 2 ** 21, 2 ** 30]);
    expect(pt.signExtended).toBe(true);
    expect(pt.apertureEnd).toBe(2 ** 47 - 1);
    expect(pt.vaFirst).toBe(-(2 ** 47));
  });

  it("refuses a non-canonical IOVA and a range crossing the halves with ERANGE", () => {
    const pt = new IoPageTable(newMem(), { format: "x86-64" });
    expect(() => pt.map(2 ** 47, 0x1000, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(() => pt.map(-0x1000, 0x1000, 0x2000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(() => pt.map(-(2 ** 47) - 0x1000, 0x1000, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(pt.iovaToPhys(2 ** 47)).toBe(0);
    expect(pt.unmap(2 ** 47, 0x1000)).toBe(0);
  });

  it("maps the upper half (0xffff_8000_0000_0000 is -2^47) in the top table's second half", () => {
    const pt = new IoPageTable(newMem(), { format: "x86-64" });
    pt.map(-(2 ** 47), 0x200000, 0x200000, RW);
    pt.map(-0x1000, 0x5000, 0x1000, IOMMU_PROT.READ);
    expect(pt.iovaToPhys(-(2 ** 47) + 0x1234)).toBe(0x201234);
    expect(pt.iovaToPhys(-0x1000 + 5)).toBe(0x5005);
    expect(pt.walk(-(2 ** 47)).steps[0]!.index).toBe(256);
    expect(pt.walk(-0x1000).steps[0]!.index).toBe(511);
    const leaves = pt.dump().filter((e) => e.kind !== "table");
    expect(leaves.map((e) => [e.iova, e.size])).toEqual([
      [-(2 ** 47), 0x200000],
      [-0x1000, 0x1000],
    ]);
    expect(pt.unmap(-0x1000, 0x1000)).toBe(0x1000);
    expect(pt.unmap(-(2 ** 47), 0x200000)).toBe(0x200000);
  });

  it("writes P, R/W, U/S, A, D and PS as the IOMMU reads them; reads need no bit", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "x86-64" });
    pt.map(0x40000000, 2 ** 40, 0x40000000, RW);
    const w = pt.walk(0x40000000);
    expect(w.steps.map((s) => s.level)).toEqual([3, 2]);
    // P | R/W | U | A | D | PS, OA 2^40.
    expect(mem.readU32(w.pteAddr)).toBe(0xe7);
    expect(mem.readU32(w.pteAddr + 4)).toBe(0x100);
    // Tables: P | R/W | U | A.
    expect(w.steps[0]!.pteLo % 0x1000).toBe(0x27);
    pt.map(0x1000, 0x3000, 0x1000, IOMMU_PROT.READ);
    const ro = pt.dump(0x1000, 0x2000).find((e) => e.kind === "page")!;
    expect(ro.pte).toBe("0x00000000_00003025");
    expect(ro.prot).toBe(IOMMU_PROT.READ);
    expect(ro.fields.map((f) => f.name)).toEqual(["P", "R/W", "U/S", "A", "D", "OA", "XD"]);
    // Write-only is readable too: x86 paging has no read-permission bit.
    pt.map(0x2000, 0x4000, 0x1000, IOMMU_PROT.WRITE);
    expect(pt.walk(0x2000).prot).toBe(RW);
  });
});

describe("generic_pt table freeing and gathering on x86-64", () => {
  it("frees a table once it empties and prunes what a failed map created, under the eager policy", () => {
    const mem = newMem();
    const start = mem.pagesInUse;
    const pt = new IoPageTable(mem, { format: "x86-64", freeEmptyTables: true });
    for (let i = 0; i < 8; i++) pt.map(0xfff00000 + i * 0x1000, i * 0x1000, 0x1000, RW);
    expect(pt.tablePages).toBe(4);
    expect(pt.unmap(0xfff00000, 0x4000)).toBe(0x4000);
    expect(pt.tablePages).toBe(4);
    expect(pt.unmap(0xfff04000, 0x4000)).toBe(0x4000);
    expect(pt.tablePages).toBe(1);
    // A map that collides after creating tables for its first part leaves none behind.
    pt.map(2 ** 40 + 0x200000, 0x1000, 0x1000, RW);
    const tables = pt.tablePages;
    expect(() => pt.map(2 ** 40 + 0x1ff000, 0, 0x2000, RW)).toThrow(
      expect.objectContaining({ code: "EADDRINUSE" }),
    );
    expect(pt.tablePages).toBe(tables);
    expect(pt.unmap(2 ** 40 + 0x200000, 0x1000)).toBe(0x1000);
    expect(pt.tablePages).toBe(1);
    pt.destroy();
    expect(mem.pagesInUse).toBe(start);
  });

  it("syncs the gather before a disjoint range with PT_FEAT_FLUSH_RANGE_NO_GAPS, and widens it without", () => {
    for (const noGaps of [false, true]) {
      const pt = new IoPageTable(newMem(), { format: "x86-64", flushRangeNoGaps: noGaps });
      const synced: [number, number][] = [];
      pt.tlb = {
        addPage: () => undefined,
        flushWalk: () => undefined,
        sync: (g) => {
          synced.push([g.start, g.end]);
          g.start = Infinity;
          g.end = 0;
        },
      };
      pt.map(0x10000, 0x1000, 0x1000, RW);
      pt.map(0x90000, 0x2000, 0x1000, RW);
      const gather = new IotlbGather();
      pt.unmap(0x10000, 0x1000, gather);
      pt.unmap(0x90000, 0x1000, gather);
      if (noGaps) {
        expect(synced).toEqual([[0x10000, 0x10fff]]);
        expect([gather.start, gather.end]).toEqual([0x90000, 0x90fff]);
      } else {
        expect(synced).toEqual([]);
        expect([gather.start, gather.end]).toEqual([0x10000, 0x90fff]);
      }
    }
  });
});
