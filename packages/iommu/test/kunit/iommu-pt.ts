/**
 * Ports of generic_pt's KUnit `iommu_test` cases (drivers/iommu/generic_pt/kunit_iommu_pt.h)
 * over `IoPageTable`, for every format that supports them, plus a fast-check property that the
 * IOMMU's walk of the bytes written agrees with the CPU-side iova_to_phys.
 *
 * Scaled down for a simulator in JavaScript (each is noted where it applies):
 * `test_map_table_to_oa` uses page sizes below 64 MiB (Linux: 16 GiB), `test_random_map`
 * clamps its ranges to 16 MiB (Linux: 1 GiB) and draws from a seeded generator.
 */
import { PhysMemory, hex } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IOMMU_PROT, type IoPageTable, type LeafLookup } from "../../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;
/** MAPLE_RESERVED_RANGE: the maple tree's reserved low range. */
const MAPLE_RESERVED_RANGE = 4096;

/** One configuration of a format under test (Linux's `kunit_fmt_cfgs[i]`). */
export interface KunitCfg {
  /** "amd-v1 cfg_0 (39-bit start, 52-bit VA)". */
  readonly name: string;
  readonly make: (mem: PhysMemory) => IoPageTable;
  /** The errno an overlapping map gets: EADDRINUSE (generic_pt) or EEXIST (io-pgtable-arm). */
  readonly overmap: "EADDRINUSE" | "EEXIST";
  /** Unmapping the start of a large page removes it whole (generic_pt), rather than 0. */
  readonly unmapSplit: boolean;
  /** Log2 of the top range for each number of levels (DYNAMIC_TOP formats), else undefined. */
  readonly topVaBits?: (levels: number) => number;
}

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

function floorMod(x: number, n: number): number {
  const r = x % n;
  return r < 0 ? r + n : r;
}

/** The test's OA: `oalog2_mod(0x74a71445deadbeef, max_oasz_lg2)`. */
function testOa(oas: number): number {
  return Number(0x74a71445deadbeefn % 2n ** BigInt(oas));
}

/** The state `pt_kunit_priv_init` computes. */
interface Priv {
  readonly mem: PhysMemory;
  readonly pt: IoPageTable;
  readonly pagesAtStart: number;
  readonly smallest: number;
  readonly testOa: number;
  /** Page sizes below 2^(vasz - 1) (Linux `safe_pgsize_bitmap`). */
  readonly safeSizes: readonly number[];
}

function init(cfg: KunitCfg): Priv {
  const mem = newMem();
  const pagesAtStart = mem.pagesInUse;
  const pt = cfg.make(mem);
  const smallest = pt.pageSizes[0]!;
  return {
    mem,
    pt,
    pagesAtStart,
    smallest,
    testOa: testOa(pt.oas),
    safeSizes: pt.pageSizes.filter((s) => s < 2 ** (pt.ias - 1)),
  };
}

/** `pt_kunit_iommu_exit`: the table freed, no page-table page leaked. */
function exit(p: Priv): void {
  p.pt.destroy();
  expect(p.mem.pagesInUse).toBe(p.pagesAtStart);
}

function doMap(p: Priv, va: number, pa: number, len: number): void {
  p.pt.map(va, pa, len, RW);
}

function doUnmap(p: Priv, va: number, len: number): void {
  expect(p.pt.unmap(va, len)).toBe(len);
}

/** `check_iova`: every smallest page of the range translates to its address. */
function checkIova(p: Priv, va: number, pa: number, len: number): void {
  for (let off = 0; off < len; off += p.smallest) {
    const got = p.pt.iovaToPhys(va + off);
    if (got !== pa + off) expect(hex(got)).toBe(hex(pa + off));
  }
}

/**
 * `count_valids`: the leaf entries by size, a contiguous entry counting once, read from the
 * table (each leaf item is walked; the one at the start of its entry is counted).
 */
function countValids(p: Priv): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of p.pt.dump()) {
    if (e.kind === "table") continue;
    const w = p.pt.walk(e.iova);
    if (w.iovaBase !== e.iova) continue;
    out.set(w.pageSize, (out.get(w.pageSize) ?? 0) + 1);
  }
  return out;
}

function total(m: Map<number, number>): number {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
}

/** The current top range `[va, last]` (pt_top_range; the lower half when sign-extended). */
function topRange(cfg: KunitCfg, p: Priv): { va: number; last: number } {
  const bits = cfg.topVaBits?.(p.pt.levels) ?? p.pt.ias;
  return { va: 0, last: Math.min(2 ** bits, p.pt.apertureEnd + 1) - 1 };
}

/** An interval oracle in place of the maple tree: disjoint [start, last] ranges. */
class IntervalMap {
  private readonly ranges: { start: number; last: number }[] = [];

  insert(start: number, last: number): void {
    for (const r of this.ranges)
      if (r.start <= last && start <= r.last) throw new Error("interval oracle overlap");
    this.ranges.push({ start, last });
  }

  /** Removes and returns the ranges overlapping [start, last]. */
  take(start: number, last: number): { start: number; last: number }[] {
    const hit = this.ranges.filter((r) => r.start <= last && start <= r.last);
    for (const h of hit) this.ranges.splice(this.ranges.indexOf(h), 1);
    return hit;
  }
}

/** A seeded 32-bit generator standing in for get_random_u32. */
function rng(seed: number): (below: number) => number {
  let s = seed || 1;
  return (below) => {
    /* eslint-disable no-bitwise -- xorshift32 state is a 32-bit quantity */
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    /* eslint-enable no-bitwise */
    return below <= 1 ? 0 : Math.floor((s / 2 ** 32) * below);
  };
}

/** Registers the KUnit cases for one configuration. */
export function iommuPtSuite(cfg: KunitCfg): void {
  // Which cases apply (Linux skips the others with kunit_skip): decided on a probe table.
  const probe = init(cfg);
  const probeTop = topRange(cfg, probe);
  const mixedStart = 0x3fe400 * 4096;
  const mixedSizes = probe.safeSizes.filter((s) => s >= 2 ** 21 && s <= 2 ** 30);
  const applies = {
    increaseLevel: cfg.topVaBits !== undefined,
    unmapSplit: cfg.unmapSplit && probe.safeSizes.length > 1,
    pgsizeBoundary: probeTop.va === 0 && probeTop.last >= 0xfef9ffff && probe.smallest === 4096,
    mixed: probeTop.last > mixedStart && mixedSizes.join() === `${2 ** 21},${2 ** 30}`,
  };
  exit(probe);
  const itIf = (cond: boolean, name: string, fn: () => void): void => {
    if (cond) it(name, fn);
  };
  describe(`generic_pt KUnit iommu_test: ${cfg.name}`, () => {
    itIf(applies.increaseLevel, "test_increase_level", () => {
      const p = init(cfg);
      const max = p.pt.ias;
      let bits = cfg.topVaBits!(p.pt.levels);
      // "max_vasz_lg2 fits in starting level, no growth possible"
      if (bits >= max) expect(() => p.pt.map(2 ** bits, 0, p.smallest, RW)).toThrow(/beyond/);
      while (bits < max) {
        const levels = p.pt.levels;
        doMap(p, 2 ** bits, 0, p.smallest);
        expect(p.pt.levels).toBe(levels + 1);
        bits = cfg.topVaBits!(p.pt.levels);
        expect(max).toBeGreaterThanOrEqual(bits);
      }
      exit(p);
    });

    it("test_map_simple", () => {
      const p = init(cfg);
      const range = topRange(cfg, p);
      let cur = range.va + p.smallest * 256;
      for (const len of p.safeSizes) {
        const pa = p.testOa - floorMod(p.testOa, len);
        cur = Math.ceil(cur / len) * len;
        doMap(p, cur, pa, len);
        if (len <= 2 ** 31) checkIova(p, cur, pa, len);
        cur += len;
      }
      // The read interface reports that every page size was created.
      const valids = countValids(p);
      for (const len of p.safeSizes) expect(valids.get(len)).toBe(1);
      expect(total(valids)).toBe(p.safeSizes.length);
      cur = range.va + p.smallest * 256;
      for (const len of p.safeSizes) {
        cur = Math.ceil(cur / len) * len;
        doUnmap(p, cur, len);
        cur += len;
      }
      expect(total(countValids(p))).toBe(0);
      exit(p);
    });

    it("test_map_table_to_oa (page sizes below 64 MiB)", () => {
      const p = init(cfg);
      const sizes = p.pt.pageSizes.filter((s) => s < 2 ** 26);
      const maxPg = sizes.at(-1)!;
      const range = topRange(cfg, p);
      for (const len of sizes) {
        const pa = p.testOa - floorMod(p.testOa, maxPg);
        const cur = Math.ceil((range.va + p.smallest * 256) / maxPg) * maxPg;
        for (let off = 0; off !== maxPg; off += len) doMap(p, cur + off, pa + off, len);
        checkIova(p, cur, pa, maxPg);
        const valids = countValids(p);
        expect([...valids.keys()]).toEqual([len]);
        expect(valids.get(len)).toBe(maxPg / len);
        if (len === maxPg) doUnmap(p, cur, maxPg);
        else {
          doUnmap(p, cur, maxPg / 2);
          for (let off = maxPg / 2; off !== maxPg; off += len) doUnmap(p, cur + off, len);
        }
        expect(total(countValids(p))).toBe(0);
      }
      exit(p);
    });

    itIf(applies.unmapSplit, "test_unmap_split", () => {
      const p = init(cfg);
      const va = topRange(cfg, p).va;
      let count = 0;
      for (const base of p.safeSizes) {
        for (const next of p.safeSizes) {
          if (next <= base) continue;
          doMap(p, va, 0, next);
          expect(p.pt.unmap(va, base)).toBe(next);
          // Make sure unmap doesn't keep going.
          doMap(p, va, 0, next);
          doMap(p, va + next, 0, next);
          expect(p.pt.unmap(va, base)).toBe(next);
          expect(p.pt.unmap(va + next, next)).toBe(next);
          count++;
        }
      }
      expect(count).toBeGreaterThan(0);
      exit(p);
    });

    it("test_random_map (1000 operations against an interval oracle, 16 MiB ranges)", () => {
      const p = init(cfg);
      const rand = rng(0x5eed + p.pt.ias);
      const clamp = (r: { va: number; last: number }) => ({
        va: Math.max(r.va, Math.ceil(MAPLE_RESERVED_RANGE / p.smallest) * p.smallest),
        last: Math.min(r.last, r.va + 2 ** 24),
      });
      const lower = clamp(topRange(cfg, p));
      // The upper half, where the model's addresses reach it (not Sv57's, below -2^53).
      const upper =
        p.pt.signExtended && Number.isSafeInteger(p.pt.vaFirst)
          ? { va: p.pt.vaFirst, last: p.pt.vaFirst + 2 ** 24 }
          : undefined;
      const mt = new IntervalMap();
      const oaMod = 2 ** p.pt.oas;
      let overmaps = 0;
      const unmapCollisions = (start: number, last: number): void => {
        for (const r of mt.take(start, last)) {
          const len = r.last - r.start + 1;
          checkIova(p, r.start, floorMod(r.start, oaMod), len);
          doUnmap(p, r.start, len);
        }
      };
      for (let iter = 0; iter !== 1000; iter++) {
        const range = upper !== undefined && rand(2) === 1 ? upper : lower;
        let start = rand(Math.min(2 ** 32 - 1, range.last - range.va));
        let end = rand(Math.min(2 ** 32 - 1, range.last - start));
        start -= floorMod(start, p.smallest);
        end = Math.ceil(end / p.smallest) * p.smallest;
        start += range.va;
        end += start;
        if (start < range.va || end > range.last + 1 || start >= end) continue;
        // Try overmapping to test the failure handling.
        const pa = floorMod(start, oaMod);
        try {
          p.pt.map(start, pa, end - start, RW);
        } catch (e) {
          expect((e as { code?: string }).code).toBe(cfg.overmap);
          overmaps++;
          unmapCollisions(start, end - 1);
          doMap(p, start, pa, end - start);
        }
        mt.insert(start, end - 1);
        checkIova(p, start, pa, end - start);
      }
      expect(overmaps).toBeGreaterThan(0);
      unmapCollisions(-(2 ** 60), 2 ** 60);
      expect(total(countValids(p))).toBe(0);
      exit(p);
    });

    itIf(applies.pgsizeBoundary, "test_pgsize_boundary", () => {
      const p = init(cfg);
      doMap(p, 0xfef80000, 0x208b95d000, 0xfef9ffff - 0xfef80000 + 1);
      checkIova(p, 0xfef80000, 0x208b95d000, 0x20000);
      exit(p);
    });

    itIf(applies.mixed, "test_mixed (14 x 2M, 3 x 1G, 3 x 2M: 20 leaves)", () => {
      const p = init(cfg);
      const start = mixedStart;
      const end = 0x4c0600 * 4096;
      doMap(p, start, start, end - start);
      expect(total(countValids(p))).toBe(20);
      checkIova(p, start, start, end - start);
      exit(p);
    });

    it("the IOMMU's walk of the PTE bytes agrees with iova_to_phys (fast-check)", () => {
      const p = init(cfg);
      const sizes = p.safeSizes.filter((s) => s <= Math.min(2 ** 30, (p.pt.apertureEnd + 1) / 8));
      const slot = Math.min(2 ** 31, (p.pt.apertureEnd + 1) / 8);
      fc.assert(
        fc.property(
          fc.array(
            fc.record({
              slot: fc.integer({ min: 1, max: 6 }),
              size: fc.constantFrom(...sizes),
              pages: fc.integer({ min: 1, max: 3 }),
              pa: fc.integer({ min: 0, max: 255 }),
            }),
            { minLength: 1, maxLength: 6 },
          ),
          fc.array(fc.integer({ min: 0, max: 7 * slot - 1 }), { minLength: 8, maxLength: 24 }),
          (maps, probes) => {
            const live: [number, number][] = [];
            for (const m of maps) {
              const va = m.slot * slot;
              if (live.some(([v]) => v === va)) continue;
              const len = Math.min(m.pages, slot / m.size) * m.size;
              p.pt.map(va, m.pa * m.size, len, RW);
              live.push([va, len]);
            }
            const out: LeafLookup = { pagePhys: 0, pageIova: 0, pageSize: 0, prot: 0 };
            const all = [...probes, ...live.flatMap(([v, l]) => [v, v + l - 1])];
            for (const iova of all) {
              const cpu = p.pt.iovaToPhys(iova);
              const hit = p.pt.lookupLeaf(iova, out, true);
              expect(hit ? out.pagePhys + (iova - out.pageIova) : 0).toBe(cpu);
              if (hit) expect(out.prot).toBe(RW);
            }
            for (const [v, l] of live) expect(p.pt.unmap(v, l)).toBe(l);
          },
        ),
        { numRuns: 40 },
      );
      exit(p);
    });
  });
}
