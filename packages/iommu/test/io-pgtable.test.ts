import { PhysMemory } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IOMMU_PROT,
  IoPageTable,
  type IoPgtableGranule,
  IommuError,
  IotlbGather,
  PTE_LO,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

const FORMATS: { granule: IoPgtableGranule; ias: number; sizes: number[]; levels: number }[] = [
  { granule: 4096, ias: 32, sizes: [4096, 2 ** 21, 2 ** 30], levels: 3 },
  { granule: 4096, ias: 39, sizes: [4096, 2 ** 21, 2 ** 30], levels: 3 },
  { granule: 4096, ias: 48, sizes: [4096, 2 ** 21, 2 ** 30], levels: 4 },
  { granule: 16384, ias: 36, sizes: [16384, 2 ** 25], levels: 2 },
  { granule: 16384, ias: 40, sizes: [16384, 2 ** 25], levels: 3 },
  { granule: 16384, ias: 48, sizes: [16384, 2 ** 25], levels: 4 },
  { granule: 65536, ias: 42, sizes: [65536, 2 ** 29], levels: 2 },
  { granule: 65536, ias: 48, sizes: [65536, 2 ** 29], levels: 3 },
  { granule: 65536, ias: 52, sizes: [65536, 2 ** 29], levels: 3 },
];

function newMem(pageSize: 4096 | 16384 | 65536 = 4096): PhysMemory {
  return new PhysMemory({ pageSize, ramBytes: 8 * 1024 ** 3 });
}

/**
 * Maps six 4K pages across a 512 GiB boundary with the 4th table allocation failing (the leaf
 * table past the boundary needs three new tables); returns the IOVA.
 */
function failMidMap(mem: PhysMemory, pt: IoPageTable): number {
  let calls = 0;
  mem.allocFaultHook = () => ++calls === 4;
  const iova = 2 ** 39 - 0x3000;
  expect(() => pt.map(iova, 0x100000, 0x6000, RW)).toThrow(
    expect.objectContaining({ code: "ENOMEM" }),
  );
  mem.allocFaultHook = undefined;
  return iova;
}

describe("IoPageTable", () => {
  for (const [f, freeEmptyTables] of FORMATS.flatMap((f) => [
    [f, false] as const,
    [f, true] as const,
  ])) {
    const name = `granule ${f.granule / 1024}K, ${f.ias}-bit, ${freeEmptyTables ? "eager table freeing" : "Linux table retention"}`;
    it(`maps and unmaps every page size at the bottom and top of the space (${name})`, () => {
      const mem = newMem();
      const before = mem.pagesInUse;
      const pt = new IoPageTable(mem, {
        granule: f.granule,
        ias: f.ias,
        oas: f.granule === 65536 ? 52 : 48,
        freeEmptyTables,
      });
      expect(pt.levels).toBe(f.levels);
      expect(pt.pageSizes).toEqual(f.sizes);
      const top = 2 ** f.ias;
      const paBase = f.granule === 65536 ? 2 ** 51 : 2 ** 47;
      for (const size of f.sizes) {
        for (const iova of [size, top - size]) {
          const pa = paBase + size * 3;
          pt.map(iova, pa, size, RW);
          expect(pt.leafCount(size)).toBe(1);
          for (const off of [0, f.granule - 1, size / 2, size - 1]) {
            expect(pt.iovaToPhys(iova + off)).toBe(pa + off);
          }
          const w = pt.walk(iova + size - 1);
          expect(w.present).toBe(true);
          expect(w.pageSize).toBe(size);
          expect(w.level).toBe(3 - f.sizes.indexOf(size));
          expect(w.prot).toBe(RW);
          expect(pt.iovaToPhys(iova + size)).not.toBe(pa + size);
          expect(pt.unmap(iova, size)).toBe(size);
          expect(pt.iovaToPhys(iova)).toBe(0);
          // Linux keeps the emptied tables linked; the eager policy frees them at once.
          if (freeEmptyTables) expect(pt.tablePages).toBe(1);
          else expect(pt.tablePages).toBeGreaterThan(size === f.sizes.at(-1) ? 0 : 1);
        }
      }
      pt.destroy();
      expect(mem.pagesInUse).toBe(before);
    });
  }

  it("puts the tables in simulated memory as real little-endian PTEs", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { granule: 4096, ias: 48 });
    const iova = 2 ** 47 + 0x5000;
    const pa = 2 ** 40 + 0x7000;
    pt.map(iova, pa, 0x1000, IOMMU_PROT.READ + IOMMU_PROT.CACHE);
    const w = pt.walk(iova);
    expect(w.steps).toHaveLength(4);
    // The leaf entry read back through the memory API matches the walk.
    expect(mem.readU32(w.pteAddr)).toBe(w.pteLo);
    expect(mem.readU32(w.pteAddr + 4)).toBe(w.pteHi);
    expect(w.pteHi).toBe(Math.floor(pa / 2 ** 32));
    expect(w.pteLo - (w.pteLo % 0x1000)).toBe(0x7000);
    expect(w.pteLo % 0x1000).toBe(
      PTE_LO.VALID +
        PTE_LO.TYPE +
        PTE_LO.ATTR_WB +
        PTE_LO.AP_UNPRIV +
        PTE_LO.AP_RDONLY +
        PTE_LO.SH_INNER +
        PTE_LO.AF,
    );
    expect(w.prot).toBe(IOMMU_PROT.READ + IOMMU_PROT.CACHE);
    // Each table step points at the next table.
    for (let i = 0; i + 1 < w.steps.length; i++) {
      const s = w.steps[i]!;
      expect(s.pteHi * 2 ** 32 + (s.pteLo - (s.pteLo % 0x1000))).toBe(w.steps[i + 1]!.tableAddr);
    }
  });

  it("encodes output addresses up to 2^52 with the 64K granule", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { granule: 65536, ias: 52, oas: 52 });
    const pa = 2 ** 52 - 2 ** 29;
    pt.map(2 ** 52 - 2 ** 29, pa, 2 ** 29, RW);
    expect(pt.iovaToPhys(2 ** 52 - 1)).toBe(2 ** 52 - 1);
    expect(pt.walk(2 ** 52 - 1).phys).toBe(2 ** 52 - 1);
  });

  it("spans several CPU pages when the granule is larger than the CPU page", () => {
    const mem = newMem(4096);
    const pt = new IoPageTable(mem, { granule: 65536, ias: 48 });
    const iova = 2 ** 40 + 8191 * 65536; // last entry of a leaf table
    pt.map(iova, 0x10000, 65536, RW);
    expect(pt.iovaToPhys(iova + 5)).toBe(0x10005);
    expect(mem.pagesInUse).toBe(3 * 16);
  });

  it("refuses an overlapping map with EEXIST and keeps the old mapping (eager table freeing)", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { freeEmptyTables: true });
    const base = 2 ** 32;
    pt.map(base, 0x200000, 0x200000, RW);
    const tables = pt.tablePages;
    expect(() => pt.map(base + 0x1000, 0x1000, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(() => pt.map(base - 0x1000, 0x9000, 0x2000, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(pt.iovaToPhys(base - 0x1000)).toBe(0);
    expect(pt.iovaToPhys(base + 0x1234)).toBe(0x201234);
    expect(pt.tablePages).toBe(tables);
    // A 4K page then a block over its table.
    pt.map(2 ** 33, 0x1000, 0x1000, RW);
    expect(() => pt.map(2 ** 33, 0x200000, 0x200000, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
  });

  it("rejects misaligned or out-of-range maps with clear errors", () => {
    const pt = new IoPageTable(newMem(), { ias: 40 });
    expect(() => pt.map(0x1001, 0, 0x1000, RW)).toThrow(/unaligned: iova 0x1001/);
    expect(() => pt.map(0x1000, 0x10, 0x1000, RW)).toThrow(IommuError);
    expect(() => pt.map(2 ** 40 - 0x1000, 0, 0x2000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(() => pt.map(0, 2 ** 48, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "ERANGE" }),
    );
    expect(() => pt.map(0, 0, 0x1000, 64)).toThrow(expect.objectContaining({ code: "EINVAL" }));
    expect(() => new IoPageTable(newMem(), { granule: 4096, ias: 52 })).toThrow(IommuError);
  });

  it("gives the expected leaves per size for a mixed range (eager table freeing)", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { freeEmptyTables: true });
    const iova = 2 ** 34 + 0x3ff000; // 4K below a 2M boundary, 2M+1G layout after
    const pa = 2 ** 36 + 0x3ff000;
    // 1 x 4K, 511 x 2M up to the 1G boundary, 1 x 1G, 3 x 2M, 5 x 4K
    const size = 0x1000 + 511 * 0x200000 + 2 ** 30 + 3 * 0x200000 + 5 * 0x1000;
    pt.map(iova, pa, size, RW);
    expect(pt.leafCounts()).toEqual([
      { pageSize: 4096, count: 6 },
      { pageSize: 2 ** 21, count: 514 },
      { pageSize: 2 ** 30, count: 1 },
    ]);
    for (const off of [0, 0x1000, 2 ** 29, size - 1])
      expect(pt.iovaToPhys(iova + off)).toBe(pa + off);
    expect(pt.unmap(iova, size)).toBe(size);
    expect(pt.leafCounts().every((l) => l.count === 0)).toBe(true);
    expect(pt.tablePages).toBe(1);
    expect(pt.counters.c.tablePagesFreed).toBe(pt.counters.c.tablePagesAllocated - 1);
  });

  it("refuses to unmap part of a 2M block (returns 0 and keeps it), as current Linux does", () => {
    const pt = new IoPageTable(newMem());
    const iova = 2 ** 40;
    pt.map(iova, 0x40000000, 0x200000, RW);
    expect(pt.unmap(iova + 0x1000, 0x1000)).toBe(0);
    expect(pt.unmap(iova, 0x1000)).toBe(0);
    expect(pt.counters.c.partialBlockUnmaps).toBe(2);
    expect(pt.iovaToPhys(iova + 0x1000)).toBe(0x40001000);
    expect(pt.unmap(iova, 0x200000)).toBe(0x200000);
  });

  it("returns 0 for a hole or a misaligned unmap and stops at the first hole", () => {
    const pt = new IoPageTable(newMem());
    expect(pt.unmap(2 ** 32, 0x1000)).toBe(0);
    pt.map(2 ** 32, 0x1000, 0x2000, RW);
    expect(pt.unmap(2 ** 32 + 0x10, 0x1000)).toBe(0);
    expect(pt.unmap(2 ** 32, 0x4000)).toBe(0x2000);
  });

  it.each([true, false])(
    "tears down a whole table when a block-sized unmap covers 4K pages (eager freeing: %s)",
    (freeEmptyTables) => {
      const mem = newMem();
      const before = mem.pagesInUse;
      const pt = new IoPageTable(mem, { freeEmptyTables });
      const flushed: number[] = [];
      pt.tlb = { addPage: () => undefined, flushWalk: (iova, size) => flushed.push(iova, size) };
      const iova = 2 ** 45;
      pt.map(iova, 0x1000, 0x1000, RW);
      pt.map(iova + 0x5000, 0x9000, 0x2000, RW);
      const gather = new IotlbGather();
      expect(pt.unmap(iova, 0x200000, gather)).toBe(0x200000);
      expect(flushed).toEqual([iova, 0x200000]);
      expect(pt.iovaToPhys(iova + 0x5000)).toBe(0);
      // The leaf table waits in the gather; the now-empty upper tables too under the eager policy,
      // while Linux keeps them linked.
      const freed = freeEmptyTables ? 3 : 1;
      expect(gather.freelist.length).toBe(freed);
      expect(pt.pendingFreeTablePages).toBe(freed);
      expect(pt.tablePages).toBe(4 - freed);
      pt.putPages(gather.freelist);
      pt.destroy();
      expect(mem.pagesInUse).toBe(before);
    },
  );

  it("hands freed tables to the gather and keeps them allocated until released (eager table freeing)", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { freeEmptyTables: true });
    const start = mem.pagesInUse;
    pt.map(2 ** 47 - 0x1000, 0x1000, 0x1000, RW);
    expect(mem.pagesInUse).toBe(start + 3);
    const gather = new IotlbGather();
    gather.queued = true;
    expect(pt.unmap(2 ** 47 - 0x1000, 0x1000, gather)).toBe(0x1000);
    expect(pt.tablePages).toBe(1);
    expect(mem.pagesInUse).toBe(start + 3);
    pt.putPages(gather.freelist);
    expect(mem.pagesInUse).toBe(start);
  });

  it("leaves nothing behind when a table allocation fails mid-map (eager table freeing)", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { freeEmptyTables: true });
    const start = mem.pagesInUse;
    const iova = failMidMap(mem, pt);
    expect(mem.pagesInUse).toBe(start);
    expect(pt.tablePages).toBe(1);
    expect(pt.iovaToPhys(iova)).toBe(0);
    expect(pt.leafCount(4096)).toBe(0);
    // Fails at every allocation point in turn, never leaking.
    for (let k = 1; k <= 6; k++) {
      let n = 0;
      mem.allocFaultHook = () => ++n === k;
      try {
        pt.map(2 ** 48 - 2 ** 31, 2 ** 40, 2 ** 31, RW);
        pt.map(2 ** 47, 0x5000, 0x3000, RW);
        pt.unmap(2 ** 47, 0x3000);
        pt.unmap(2 ** 48 - 2 ** 31, 2 ** 31);
      } catch (e) {
        expect((e as IommuError).code).toBe("ENOMEM");
      }
      mem.allocFaultHook = undefined;
      pt.unmap(2 ** 48 - 2 ** 31, 2 ** 31);
      pt.unmap(2 ** 47, 0x3000);
      expect(mem.pagesInUse).toBe(start);
    }
  });

  it("undoes its partial progress when a later page is already mapped", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem);
    pt.map(2 ** 32 + 0x4000, 0x4000, 0x1000, RW);
    const pages = mem.pagesInUse;
    expect(() => pt.map(2 ** 32, 0, 0x8000, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(pt.iovaToPhys(2 ** 32)).toBe(0);
    expect(pt.iovaToPhys(2 ** 32 + 0x4000)).toBe(0x4000);
    expect(mem.pagesInUse).toBe(pages);
  });

  it("keeps an emptied leaf table and reuses it, as Linux does: a map/unmap stream allocates no tables", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem);
    const iova = 2 ** 40 + 0x7000;
    pt.map(iova, 2 ** 33, 0x20000, RW);
    const tables = pt.tablePages;
    const allocated = pt.counters.c.tablePagesAllocated;
    const pages = mem.pagesInUse;
    expect(pt.unmap(iova, 0x20000)).toBe(0x20000);
    expect(pt.tablePages).toBe(tables);
    expect(mem.pagesInUse).toBe(pages);
    for (let i = 0; i < 50; i++) {
      pt.map(iova + i * 0x1000, 2 ** 34 + i * 0x3000, 0x8000, RW);
      expect(pt.iovaToPhys(iova + i * 0x1000 + 0x7fff)).toBe(2 ** 34 + i * 0x3000 + 0x7fff);
      expect(pt.unmap(iova + i * 0x1000, 0x8000)).toBe(0x8000);
    }
    expect(pt.counters.c.tablePagesAllocated).toBe(allocated);
    expect(pt.counters.c.tablePagesFreed).toBe(0);
    expect(pt.leafCount(4096)).toBe(0);
  });

  it("maps a block over an emptied table, freeing it at once after a walk flush (arm_lpae_init_pte)", () => {
    const mem = newMem();
    const before = mem.pagesInUse;
    const pt = new IoPageTable(mem);
    const flushed: number[] = [];
    pt.tlb = { addPage: () => undefined, flushWalk: (iova, size) => flushed.push(iova, size) };
    const iova = 2 ** 47 + 2 ** 21;
    pt.map(iova + 0x3000, 0x1000, 0x2000, RW);
    expect(pt.unmap(iova + 0x3000, 0x2000)).toBe(0x2000);
    const tables = pt.tablePages;
    const freed = pt.counters.c.tablePagesFreed;
    pt.map(iova, 2 ** 41, 2 ** 21, RW);
    expect(flushed).toEqual([iova, 2 ** 21]);
    expect(pt.tablePages).toBe(tables - 1);
    expect(pt.counters.c.tablePagesFreed).toBe(freed + 1);
    expect(pt.pendingFreeTablePages).toBe(0);
    expect(pt.walk(iova + 0x3000)).toMatchObject({
      present: true,
      pageSize: 2 ** 21,
      phys: 2 ** 41 + 0x3000,
    });
    expect(pt.unmap(iova, 2 ** 21)).toBe(2 ** 21);
    // A table still holding a leaf is refused instead (Linux would drop the leaf silently).
    pt.map(iova + 0x1000, 0x1000, 0x1000, RW);
    expect(() => pt.map(iova, 2 ** 41, 2 ** 21, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(pt.iovaToPhys(iova + 0x1000)).toBe(0x1000);
    pt.destroy();
    expect(mem.pagesInUse).toBe(before);
  });

  it("maps a 1G block over emptied nested tables, freeing the level-2 table and its leaf tables", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem);
    const base = 2 ** 44;
    pt.map(base + 0x1000, 0x1000, 0x1000, RW);
    pt.map(base + 2 ** 29, 0x2000, 0x1000, RW);
    const tables = pt.tablePages; // root, L1, one L2, two leaf tables
    expect(tables).toBe(5);
    // A leaf anywhere below refuses the block.
    expect(pt.unmap(base + 0x1000, 0x1000)).toBe(0x1000);
    expect(() => pt.map(base, 2 ** 40, 2 ** 30, RW)).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(pt.tablePages).toBe(tables);
    expect(pt.unmap(base + 2 ** 29, 0x1000)).toBe(0x1000);
    const pages = mem.pagesInUse;
    pt.map(base, 2 ** 40, 2 ** 30, RW);
    expect(pt.tablePages).toBe(2);
    expect(mem.pagesInUse).toBe(pages - 3);
    expect(pt.iovaToPhys(base + 2 ** 29 + 5)).toBe(2 ** 40 + 2 ** 29 + 5);
    expect(pt.leafCounts()).toEqual([
      { pageSize: 4096, count: 0 },
      { pageSize: 2 ** 21, count: 0 },
      { pageSize: 2 ** 30, count: 1 },
    ]);
  });

  it("keeps the tables a failed map created (Linux's unwind), and frees them with the table", () => {
    const mem = newMem();
    const start = mem.pagesInUse;
    const pt = new IoPageTable(mem);
    const iova = failMidMap(mem, pt);
    expect(pt.iovaToPhys(iova)).toBe(0);
    expect(pt.leafCount(4096)).toBe(0);
    expect(pt.tablePages).toBe(4); // the root, L1, L2 and the first leaf table
    expect(mem.pagesInUse - start).toBe(4);
    pt.map(iova, 0x100000, 0x6000, RW); // succeeds now, reusing them
    expect(pt.iovaToPhys(iova + 0x5000)).toBe(0x105000);
    expect(pt.tablePages).toBe(7); // the range crosses a 512 GiB boundary: three more tables
    pt.destroy();
    expect(mem.pagesInUse).toBe(start);
  });

  it("dumps the entries in IOVA order", () => {
    const pt = new IoPageTable(newMem());
    pt.map(2 ** 33, 2 ** 33, 0x200000, RW);
    pt.map(0x1000, 0x2000, 0x1000, IOMMU_PROT.READ);
    const d = pt.dump();
    expect(d.filter((e) => e.kind === "page").map((e) => e.iova)).toEqual([0x1000]);
    expect(d.filter((e) => e.kind === "block").map((e) => [e.iova, e.size, e.addr])).toEqual([
      [2 ** 33, 0x200000, 2 ** 33],
    ]);
    expect(d.filter((e) => e.kind === "table")).toHaveLength(4);
  });

  it("agrees with an interval-map model over random map/unmap sequences", () => {
    const G = 0x1000;
    const M2 = 0x200000;
    // Slots of 4 MiB at bases across the 48-bit space, each holding one mapping at a time.
    const bases = [0, 2 ** 32 - 4 * M2, 2 ** 32, 2 ** 40 + 2 ** 30 - 2 * M2, 2 ** 48 - 4 * M2];
    const op = fc.record({
      slot: fc.integer({ min: 0, max: bases.length - 1 }),
      offPages: fc.integer({ min: 0, max: 1023 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constantFrom(512, 513, 1024, 1023)),
      paShift: fc.constantFrom(0, 0x1000, 0x5000, M2, 3 * M2),
      pa: fc.constantFrom(0, 2 ** 32 - 2 ** 23, 2 ** 32, 2 ** 40, 2 ** 47 - 2 ** 23),
      unmap: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        (ops, freeEmptyTables) => {
          const mem = newMem();
          const start = mem.pagesInUse;
          const pt = new IoPageTable(mem, { freeEmptyTables });
          const live = new Map<number, { iova: number; pa: number; size: number }>();
          for (const o of ops) {
            const base = bases[o.slot]!;
            const cur = live.get(o.slot);
            if (o.unmap && cur !== undefined) {
              expect(pt.unmap(cur.iova, cur.size)).toBe(cur.size);
              live.delete(o.slot);
            } else if (cur === undefined) {
              const size = Math.min(o.pages, 1024 - o.offPages) * G;
              if (size === 0) continue;
              const iova = base + o.offPages * G;
              const pa = o.pa + o.paShift + (o.offPages % 512) * G;
              pt.map(iova, pa, size, RW);
              live.set(o.slot, { iova, pa, size });
            }
            for (const [s, b] of bases.entries()) {
              const m = live.get(s);
              for (const probe of [b, b + M2 - G, b + M2, b + 2 * M2 + 0x123, b + 4 * M2 - 1]) {
                const want =
                  m !== undefined && probe >= m.iova && probe < m.iova + m.size
                    ? m.pa + (probe - m.iova)
                    : 0;
                const reads = pt.counters.c.pteReads;
                expect(pt.iovaToPhys(probe)).toBe(want);
                // The device-side walk cache counts exactly the levels a full walk reads.
                const counted = pt.counters.c.pteReads - reads;
                expect(counted).toBe(pt.walk(probe).steps.length);
              }
              if (m !== undefined) {
                expect(pt.iovaToPhys(m.iova)).toBe(m.pa);
                expect(pt.iovaToPhys(m.iova + m.size - 1)).toBe(m.pa + m.size - 1);
              }
            }
          }
          for (const m of live.values()) expect(pt.unmap(m.iova, m.size)).toBe(m.size);
          expect(pt.leafCounts().every((l) => l.count === 0)).toBe(true);
          if (freeEmptyTables) expect(pt.tablePages).toBe(1);
          else expect(mem.pagesInUse - start).toBe(pt.tablePages); // kept, linked, not leaked
          pt.destroy();
          expect(mem.pagesInUse).toBe(start);
        },
      ),
      { numRuns: 60 },
    );
  });
});
