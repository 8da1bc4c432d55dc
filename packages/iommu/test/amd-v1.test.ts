/**
 * The amd-v1 format (generic_pt's AMD v1): generic_pt's KUnit cases for its configurations
 * (Linux `amdv1_kunit_fmt_cfgs`: starting level 2, with the widest VA the model holds and with
 * a 32-bit VA), and the PTE layout in memory.
 */
import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_ACCESS,
  FAULT_REASON,
  IOMMU_DOMAIN,
  IOMMU_PROT,
  IoPageTable,
  IommuDomain,
  IotlbGather,
  translate,
} from "../src/index.ts";
import { iommuPtSuite } from "./kunit/iommu-pt.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

for (const ias of [52, 48, 32]) {
  iommuPtSuite({
    name: `amd-v1 starting level 2, ${ias}-bit VA`,
    make: (mem) => new IoPageTable(mem, { format: "amd-v1", ias }),
    overmap: "EADDRINUSE",
    unmapSplit: true,
    topVaBits: (levels) => Math.min(ias, 12 + 9 * levels),
  });
}

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

describe("amd-v1 PTEs and semantics", () => {
  it("offers every power of two from 4 KiB except 512 GiB, below the VA size", () => {
    const pt = new IoPageTable(newMem(), { format: "amd-v1", ias: 48 });
    expect(pt.code).toBe("generic_pt");
    const lgs = pt.pageSizes.map((s) => Math.log2(s));
    const want: number[] = [];
    for (let lg = 12; lg <= 47; lg++) if (lg !== 39) want.push(lg);
    expect(lgs).toEqual(want);
    expect(pt.levels).toBe(3);
    expect(pt.apertureEnd).toBe(2 ** 48 - 1);
  });

  it("writes a 4 KiB leaf, a table entry and a 64 KiB contiguous run as the IOMMU reads them", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "amd-v1" });
    pt.map(0x5000, 0x12345000, 0x1000, IOMMU_PROT.READ);
    let w = pt.walk(0x5000);
    expect(w.steps.map((s) => s.level)).toEqual([2, 1, 0]);
    // PR, NEXT_LEVEL 0, OA, FC | IR.
    expect(mem.readU32(w.pteAddr)).toBe(0x12345001);
    expect(mem.readU32(w.pteAddr + 4)).toBe(0x30000000);
    // The top entry: PR, NEXT_LEVEL 2 (the next table's level as AMD counts it), IR | IW.
    const top = w.steps[0]!;
    expect(top.pteLo % 0x1000).toBe(0x401);
    expect(Math.floor(top.pteHi / 2 ** 29)).toBe(3);
    pt.map(0x20000, 0x2000000, 0x10000, RW);
    w = pt.walk(0x2abcd);
    expect(w).toMatchObject({ present: true, pageSize: 0x10000, phys: 0x200abcd });
    // NEXT_LEVEL 7 and OA bits 14:12 set: a 64 KiB page, written in 16 equal entries.
    const entries = pt.dump(0x20000, 0x30000).filter((e) => e.kind === "page");
    expect(entries).toHaveLength(16);
    expect(new Set(entries.map((e) => e.pte))).toEqual(new Set(["0x70000000_02007e01"]));
    expect(entries.map((e) => e.addr)).toEqual(entries.map((_, i) => 0x2000000 + i * 0x1000));
    expect(pt.leafCount(0x10000)).toBe(1);
  });

  it("unmaps a whole large page when asked for its first 4 KiB, and refuses its middle", () => {
    const pt = new IoPageTable(newMem(), { format: "amd-v1" });
    pt.map(0x200000, 0x40000000, 0x200000, RW);
    expect(pt.unmap(0x201000, 0x1000)).toBe(0);
    expect(pt.iovaToPhys(0x201000)).toBe(0x40001000);
    expect(pt.unmap(0x200000, 0x1000)).toBe(0x200000);
    expect(pt.iovaToPhys(0x3ff000)).toBe(0);
  });

  it("refuses an overlapping map with EADDRINUSE, keeping what was there", () => {
    const pt = new IoPageTable(newMem(), { format: "amd-v1" });
    pt.map(0x104000, 0x4000, 0x1000, RW);
    expect(() => pt.map(0x100000, 0, 0x8000, RW)).toThrow(
      expect.objectContaining({ code: "EADDRINUSE" }),
    );
    expect(pt.iovaToPhys(0x100000)).toBe(0);
    expect(pt.iovaToPhys(0x104000)).toBe(0x4000);
    expect(pt.counters.c.mapFailures).toBe(1);
  });

  it("grows its top level for higher IOVAs, up to the VA size, and ERANGE beyond", () => {
    const mem = newMem();
    const start = mem.pagesInUse;
    const pt = new IoPageTable(mem, { format: "amd-v1", ias: 48 });
    const root = pt.rootAddr;
    pt.map(2 ** 39, 0x1000, 0x1000, RW);
    expect(pt.levels).toBe(4);
    expect(pt.rootAddr).not.toBe(root);
    // The old top is entry 0 of the new one: lower mappings still translate.
    expect(pt.walk(0).steps[1]!.tableAddr).toBe(root);
    expect(() => pt.map(2 ** 48, 0x1000, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(pt.levels).toBe(4);
    pt.destroy();
    expect(mem.pagesInUse).toBe(start);
  });

  it("frees a table the unmap covers whole into the gather, and an empty one a leaf replaces", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "amd-v1" });
    pt.map(0x200000, 0x1000, 0x3000, RW);
    const tables = pt.tablePages;
    const gather = new IotlbGather();
    // The unmap covers the leaf table's span, but stops at the hole after the 3 pages: the
    // table is not freed.
    expect(pt.unmap(0x200000, 0x200000, gather)).toBe(0x3000);
    expect(pt.tablePages).toBe(tables);
    expect(gather.freelist).toHaveLength(0);
    expect(gather.start).toBe(0x200000);
    // A 2 MiB leaf over the emptied table frees it (map_pages syncs its own gather).
    pt.map(0x200000, 0x40000000, 0x200000, RW);
    expect(pt.tablePages).toBe(tables - 1);
    expect(pt.pendingFreeTablePages).toBe(0);
    // 512 pages mapped one by one, then unmapped in one call: the leaf table goes too.
    expect(pt.unmap(0x200000, 0x200000)).toBe(0x200000);
    for (let i = 0; i < 512; i++) pt.map(0x400000 + i * 0x1000, i * 0x1000, 0x1000, RW);
    const g2 = new IotlbGather();
    expect(pt.unmap(0x400000, 0x200000, g2)).toBe(0x200000);
    expect(g2.freelist).toHaveLength(1);
    pt.putPages(g2.freelist);
  });
});

describe("amd-v1 behind an IOMMU domain", () => {
  it("maps, lets the device through its IOTLB, and invalidates the gathered range on unmap", () => {
    const d = new IommuDomain({
      type: IOMMU_DOMAIN.DMA,
      mem: newMem(),
      pgtable: { format: "amd-v1" },
    });
    expect(d.geometry.apertureEnd).toBe(2 ** 48 - 1);
    expect(d.pgsizeBitmap).toBe(d.pgtable!.pgsizeBitmap);
    const iova = 0xfff00000;
    d.map(iova, 2 ** 33, 0x40000, RW);
    // iommu_pgsize picks a 256 KiB leaf: 64 equal PTEs at level 0.
    expect(d.pgtable!.leafCount(0x40000)).toBe(1);
    expect(translate(d, iova + 0x10, 0x3000, DMA_ACCESS.WRITE)).toMatchObject({
      ok: true,
      runs: [{ phys: 2 ** 33 + 0x10, len: 0x3000 }],
    });
    const walks = d.pgtable!.counters.c.walks;
    translate(d, iova + 0x3f000, 4, DMA_ACCESS.READ);
    // One IOTLB entry covers the whole contiguous page: no new walk.
    expect(d.pgtable!.counters.c.walks).toBe(walks);
    // Unmapping its first 4 KiB removes the whole 256 KiB page, and the device faults.
    expect(d.unmap(iova, 0x1000)).toBe(0x40000);
    const r = translate(d, iova + 0x3f000, 4, DMA_ACCESS.READ);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault.reason).toBe(FAULT_REASON.NOT_PRESENT);
    expect(d.iotlb.counters.c.staleHits).toBe(0);
  });
});
