import { SimClock } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE, IommuError, IovaDomain } from "../src/index.ts";

/**
 * A literal, linear transcription of iova.c's allocator (sorted array, rb_prev as index - 1),
 * used as the reference the balanced tree must agree with address for address.
 */
interface RNode {
  lo: number;
  hi: number;
}
class RefIova {
  readonly nodes: RNode[];
  readonly anchor: RNode = { lo: Number.MAX_SAFE_INTEGER, hi: Number.MAX_SAFE_INTEGER };
  cached: RNode;
  cached32: RNode;
  readonly dma32: number;
  max32: number;
  readonly start: number;
  constructor(granule: number, start: number) {
    this.start = start;
    this.nodes = [this.anchor];
    this.cached = this.anchor;
    this.cached32 = this.anchor;
    this.dma32 = 2 ** 32 / granule;
    this.max32 = this.dma32;
  }
  alloc(size: number, limitPfn: number, aligned = true): number {
    const limit = limitPfn + 1;
    let align = 1;
    while (aligned && align < size) align *= 2;
    if (limit <= this.dma32 && size >= this.max32) return 0;
    const startNode = limit <= this.dma32 ? this.cached32 : this.cached;
    let i = this.nodes.indexOf(startNode);
    const retryPfn = startNode.hi;
    let high = limit;
    let low = this.start;
    let newPfn = 0;
    let prevIdx = i;
    for (;;) {
      do {
        high = Math.min(high, this.nodes[i]!.lo);
        newPfn = high >= size ? high - size - ((high - size) % align) : Infinity;
        prevIdx = i;
        i--;
      } while (i >= 0 && newPfn <= this.nodes[i]!.hi && newPfn >= low);
      if (high < size || newPfn < low) {
        if (low === this.start && retryPfn < limit) {
          high = limit;
          low = retryPfn + 1;
          i =
            limit > this.dma32 ? this.nodes.length - 1 : this.nodes.findIndex((n) => n.lo >= limit);
          continue;
        }
        this.max32 = size;
        return 0;
      }
      break;
    }
    const node = { lo: newPfn, hi: newPfn + size - 1 };
    this.nodes.splice(prevIdx, 0, node);
    if (node.hi < this.dma32) this.cached32 = node;
    else this.cached = node;
    return newPfn;
  }
  free(pfn: number): void {
    const i = this.nodes.findIndex((n) => n.lo <= pfn && pfn <= n.hi);
    if (i < 0 || this.nodes[i] === this.anchor) throw new Error("ref: bad free");
    const n = this.nodes[i]!;
    const next = this.nodes[i + 1]!;
    if (n === this.cached32 || (n.hi < this.dma32 && n.lo >= this.cached32.lo))
      this.cached32 = next;
    if (n.lo < this.dma32) this.max32 = this.dma32;
    if (n.lo >= this.cached.lo) this.cached = next;
    this.nodes.splice(i, 1);
  }
}

/** The rcache on top of the reference tree: magazines of 127, loaded/prev swap, depot LIFO. */
class RefFast {
  readonly mags: { loaded: number[]; prev: number[] }[][] = [];
  readonly depot: number[][][] = [];
  readonly tree: RefIova;
  constructor(tree: RefIova, cpus: number) {
    this.tree = tree;
    for (let o = 0; o < 6; o++) {
      this.mags.push(Array.from({ length: cpus }, () => ({ loaded: [], prev: [] })));
      this.depot.push([]);
    }
  }
  alloc(size: number, limitPfn: number, flush: boolean, cpu: number): number {
    if (size < 32) size = 2 ** Math.ceil(Math.log2(size));
    const order = Math.ceil(Math.log2(size));
    if (order < 6) {
      const m = this.mags[order]![cpu]!;
      let ok = true;
      if (m.loaded.length === 0) {
        if (m.prev.length !== 0) [m.loaded, m.prev] = [m.prev, m.loaded];
        else if (this.depot[order]!.length > 0) m.loaded = this.depot[order]!.pop()!;
        else ok = false;
      }
      if (ok) {
        for (let i = m.loaded.length - 1; i >= 0; i--) {
          if (m.loaded[i]! <= limitPfn + 1 - size) {
            const pfn = m.loaded[i]!;
            m.loaded[i] = m.loaded[m.loaded.length - 1]!;
            m.loaded.pop();
            return pfn;
          }
        }
      }
    }
    const p = this.tree.alloc(size, limitPfn);
    if (p !== 0 || !flush) return p;
    for (let o = 0; o < 6; o++) {
      for (const m of this.mags[o]!) {
        for (const pfn of [...m.loaded, ...m.prev]) this.tree.free(pfn);
        m.loaded = [];
        m.prev = [];
      }
      for (let d = this.depot[o]!.pop(); d !== undefined; d = this.depot[o]!.pop())
        for (const pfn of d) this.tree.free(pfn);
    }
    return this.tree.alloc(size, limitPfn);
  }
  free(pfn: number, size: number, cpu: number): void {
    const order = Math.ceil(Math.log2(size));
    if (order >= 6) {
      this.tree.free(pfn);
      return;
    }
    const m = this.mags[order]![cpu]!;
    if (m.loaded.length === IOVA_MAG_SIZE) {
      if (m.prev.length !== IOVA_MAG_SIZE) [m.loaded, m.prev] = [m.prev, m.loaded];
      else {
        this.depot[order]!.push(m.loaded);
        m.loaded = [];
      }
    }
    m.loaded.push(pfn);
  }
}

const G = 4096;
const PFN32 = 2 ** 32 / G;

describe("IovaDomain", () => {
  it("allocates top-down, size-aligned, below the limit and never pfn 0", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    expect(d.allocIova(1, PFN32 - 1)).toEqual({ pfnLo: PFN32 - 1, pfnHi: PFN32 - 1 });
    expect(d.allocIova(4, PFN32 - 1)!.pfnLo).toBe(PFN32 - 8);
    expect(d.allocIova(3, PFN32 - 1)!.pfnLo).toBe(PFN32 - 12);
    expect(d.allocIova(3, PFN32 - 1, false)!.pfnLo).toBe(PFN32 - 15);
    // 100 pages: a 100-page range aligned to 128 pages.
    const r = d.allocIova(100, 2 ** 36 - 1)!;
    expect(r.pfnLo % 128).toBe(0);
    expect(r.pfnHi).toBeLessThanOrEqual(2 ** 36 - 1);
    const small = new IovaDomain({ granule: G, startPfn: 1 });
    expect(small.allocIova(2, 3)).toEqual({ pfnLo: 2, pfnHi: 3 });
    expect(small.allocIova(1, 3)).toEqual({ pfnLo: 1, pfnHi: 1 });
    expect(small.allocIova(1, 3)).toBeUndefined();
    expect(() => new IovaDomain({ granule: G, startPfn: 0 })).toThrow(IommuError);
  });

  it("allocates near the top of a 48-bit space and above 2^32", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    const top = 2 ** 48 / G - 1;
    expect(d.allocIova(1, top)!.pfnLo).toBe(top);
    expect(d.allocIova(512, top)!.pfnLo).toBe(top + 1 - 1024);
    expect(d.findIova(top - 600)).toEqual({ pfnLo: top + 1 - 1024, pfnHi: top + 1 - 512 - 1 });
    d.freeIova(top - 600);
    expect(d.findIova(top - 600)).toBeUndefined();
    expect(d.allocIova(512, top)!.pfnLo).toBe(top + 1 - 1024);
  });

  it("fails fast for 32-bit requests after a 32-bit failure until a free below 4 GiB", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    d.reserveIova(1, PFN32 - 17);
    expect(d.allocIova(16, PFN32 - 1)!.pfnLo).toBe(PFN32 - 16);
    expect(d.allocIova(8, PFN32 - 1)).toBeUndefined();
    expect(d.max32AllocSize).toBe(8);
    const before = d.counters.c.fail32Fast;
    expect(d.allocIova(8, PFN32 - 1)).toBeUndefined();
    expect(d.counters.c.fail32Fast).toBe(before + 1);
    // A 64-bit request is not affected, and a free below 4 GiB resets the hint.
    expect(d.allocIova(8, 2 ** 40)).toBeDefined();
    d.freeIova(PFN32 - 16);
    expect(d.max32AllocSize).toBe(PFN32);
    expect(d.allocIova(8, PFN32 - 1)!.pfnLo).toBe(PFN32 - 8);
  });

  it("retries once above the cached node when frees opened space there", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    const lim = 1023;
    const a = d.allocIova(512, lim)!; // 512..1023
    const b = d.allocIova(256, lim)!; // 256..511
    expect([a.pfnLo, b.pfnLo]).toEqual([512, 256]);
    d.freeIova(a.pfnLo); // cached32 moves to the anchor... then alloc goes from there
    const c = d.allocIova(128, lim)!;
    expect(c.pfnLo).toBe(896);
    d.freeIova(b.pfnLo);
    expect(d.allocIova(512, lim)).toBeUndefined(); // no 512-aligned space below 896 apart from... pfn 0
    expect(d.allocIova(256, lim)!.pfnLo).toBe(512);
  });

  it("merges reserved ranges the way reserve_iova does", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    d.reserveIova(10, 12);
    d.reserveIova(15, 20);
    const r = d.reserveIova(5, 30);
    expect(d.ranges().map((x) => [x.pfnLo, x.pfnHi])).toEqual([
      [5, 12],
      [13, 20],
      [21, 30],
    ]);
    expect(r).toEqual({ pfnLo: 21, pfnHi: 30 });
    expect(d.reserveIova(14, 16)).toEqual({ pfnLo: 13, pfnHi: 20 });
    expect(d.allocIova(1, 30)!.pfnLo).toBe(4);
  });

  it("returns cached ranges LIFO per CPU and keeps them allocated in the tree", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1, numCpus: 2 });
    const lim = 2 ** 40 - 1;
    const a = d.allocIovaFast(3, lim, true, 0);
    expect(a % 4).toBe(0);
    expect(d.findIova(a)).toEqual({ pfnLo: a, pfnHi: a + 3 });
    d.freeIovaFast(a, 3, 0);
    expect(d.findIova(a)).toBeDefined();
    expect(d.counters.c.cachedRanges).toBe(1);
    // Another CPU misses; this CPU hits.
    const b = d.allocIovaFast(4, lim, true, 1);
    expect(b).not.toBe(a);
    expect(d.allocIovaFast(4, lim, true, 0)).toBe(a);
    expect(d.counters.c.allocRcacheHit).toBe(1);
    // A cached pfn above a device's limit is not handed out.
    d.freeIovaFast(b, 4, 1);
    const low = d.allocIovaFast(4, PFN32 - 1, true, 1);
    expect(low).toBeLessThan(PFN32);
    expect(d.counters.c.cachedRanges).toBe(1);
  });

  it("drains every cache into the tree and retries once when the space is exhausted", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1, numCpus: 2 });
    const lim = 63; // 63 usable pfns: 1..63
    const got: number[] = [];
    for (;;) {
      const p = d.allocIovaFast(1, lim, false, 0);
      if (p === 0) break;
      got.push(p);
    }
    expect(got).toHaveLength(63);
    for (const p of got) d.freeIovaFast(p, 1, 1);
    // CPU 0 has nothing cached; without flushRcache the 2-page request fails, with it it drains.
    expect(d.allocIovaFast(2, lim, false, 0)).toBe(0);
    const before = d.counters.c.drains;
    expect(d.allocIovaFast(2, lim, true, 0)).toBe(62);
    expect(d.counters.c.drains).toBe(before + 1);
    expect(d.counters.c.cachedRanges).toBe(0);
    expect(d.liveRanges).toBe(1);
  });

  it("pushes full magazines to the depot and trims it every 100 ms to one per CPU", () => {
    const clock = new SimClock();
    const d = new IovaDomain({ granule: G, startPfn: 1, numCpus: 1, clock });
    const lim = 2 ** 40 - 1;
    const pfns: number[] = [];
    for (let i = 0; i < IOVA_MAG_SIZE * 5; i++) pfns.push(d.allocIovaFast(1, lim, true, 0));
    for (const p of pfns) d.freeIovaFast(p, 1, 0);
    // loaded + prev hold 254, the other 381 went to the depot as 3 magazines.
    expect(d.counters.c.depotSize).toBe(3);
    expect(d.cacheState()[0]!.perCpu).toEqual([IOVA_MAG_SIZE * 2]);
    expect(d.liveRanges).toBe(IOVA_MAG_SIZE * 5);
    clock.advance(IOVA_DEPOT_DELAY_NS);
    expect(d.counters.c.depotSize).toBe(2);
    clock.advance(IOVA_DEPOT_DELAY_NS);
    expect(d.counters.c.depotSize).toBe(1);
    clock.advance(10 * IOVA_DEPOT_DELAY_NS);
    expect(d.counters.c.depotSize).toBe(1);
    expect(d.counters.c.depotTrims).toBe(2);
    expect(d.liveRanges).toBe(IOVA_MAG_SIZE * 3);
    expect(clock.pending).toBe(0);
  });

  it("frees large ranges straight to the tree", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    const p = d.allocIovaFast(100, 2 ** 40 - 1, true, 0);
    expect(p % 128).toBe(0);
    d.freeIovaFast(p, 100, 0);
    expect(d.findIova(p)).toBeUndefined();
    expect(d.liveRanges).toBe(0);
  });

  it("reports misuse with the values in hex", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1, numCpus: 2 });
    expect(() => d.freeIova(0x12345)).toThrow(/0x12345/);
    expect(() => d.allocIovaFast(1, 100, true, 2)).toThrow(IommuError);
    expect(() => d.allocIovaFast(0, 100, true, 0)).toThrow(IommuError);
    d.freeIovaFast(0x777, 1, 0); // trusted like Linux...
    expect(() => d.freeCpuCachedIovas(0)).toThrow(/0x777/); // ...and caught when drained
  });

  it("agrees address for address with a linear iova.c transcription (tree path)", () => {
    const cmd = fc.oneof(
      fc.record({
        k: fc.constant("alloc" as const),
        size: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(64, 100, 512, 2048)),
        limit: fc.constantFrom(PFN32 - 1, 2 ** 20 - 1, 2 ** 36 - 1, 2 ** 48 / G - 1, 255, 4095),
        aligned: fc.boolean(),
      }),
      fc.record({ k: fc.constant("free" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 300 }), fc.constantFrom(1, 2, 7), (cmds, start) => {
        const d = new IovaDomain({ granule: G, startPfn: start });
        const ref = new RefIova(G, start);
        const live: { lo: number; hi: number; limit: number; size: number }[] = [];
        for (const c of cmds) {
          if (c.k === "alloc") {
            const r = d.allocIova(c.size, c.limit, c.aligned);
            const p = ref.alloc(c.size, c.limit, c.aligned);
            expect(r?.pfnLo ?? 0).toBe(p);
            if (r !== undefined)
              live.push({ lo: r.pfnLo, hi: r.pfnHi, limit: c.limit, size: c.size });
          } else if (live.length > 0) {
            const [x] = live.splice(c.pick % live.length, 1);
            d.freeIova(x!.lo + (c.pick % (x!.hi - x!.lo + 1)));
            ref.free(x!.lo);
          }
          expect(d.max32AllocSize).toBe(ref.max32);
        }
        const sorted = [...live].sort((a, b) => a.lo - b.lo);
        for (let i = 0; i < sorted.length; i++) {
          const r = sorted[i]!;
          expect(r.lo).toBeGreaterThanOrEqual(start);
          expect(r.hi).toBeLessThanOrEqual(r.limit);
          if (i > 0) expect(r.lo).toBeGreaterThan(sorted[i - 1]!.hi);
        }
        expect(d.ranges().map((r) => [r.pfnLo, r.pfnHi])).toEqual(sorted.map((r) => [r.lo, r.hi]));
      }),
      { numRuns: 150 },
    );
  });

  it("agrees with a reference rcache model over random fast-path command sequences", () => {
    const cmd = fc.oneof(
      fc.record({
        k: fc.constant("alloc" as const),
        size: fc.oneof(fc.integer({ min: 1, max: 33 }), fc.constantFrom(64, 100)),
        limit: fc.constantFrom(PFN32 - 1, 1023, 2 ** 48 / G - 1, 2 ** 32),
        flush: fc.boolean(),
        cpu: fc.integer({ min: 0, max: 1 }),
      }),
      fc.record({
        k: fc.constant("free" as const),
        pick: fc.nat(),
        cpu: fc.integer({ min: 0, max: 1 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 400 }), (cmds) => {
        const d = new IovaDomain({ granule: G, startPfn: 1, numCpus: 2 });
        const ref = new RefFast(new RefIova(G, 1), 2);
        const live: { pfn: number; size: number; limit: number }[] = [];
        for (const c of cmds) {
          if (c.k === "alloc") {
            const p = d.allocIovaFast(c.size, c.limit, c.flush, c.cpu);
            expect(p).toBe(ref.alloc(c.size, c.limit, c.flush, c.cpu));
            if (p !== 0) {
              const sz = c.size < 32 ? 2 ** Math.ceil(Math.log2(c.size)) : c.size;
              expect(p).toBeGreaterThan(0);
              expect(p % 2 ** Math.ceil(Math.log2(sz))).toBe(0);
              expect(p + sz - 1).toBeLessThanOrEqual(c.limit);
              for (const o of live) expect(p + sz - 1 < o.pfn || p > o.pfn + o.size - 1).toBe(true);
              live.push({ pfn: p, size: sz, limit: c.limit });
            }
          } else if (live.length > 0) {
            const [x] = live.splice(c.pick % live.length, 1);
            d.freeIovaFast(x!.pfn, x!.size, c.cpu);
            ref.free(x!.pfn, x!.size, c.cpu);
          }
        }
        expect(d.ranges().map((r) => r.pfnLo)).toEqual(
          ref.tree.nodes.slice(0, -1).map((n) => n.lo),
        );
      }),
      { numRuns: 150 },
    );
  });

  it("makes freed space reusable: fill, free everything, fill again gives the same ranges", () => {
    const d = new IovaDomain({ granule: G, startPfn: 1 });
    const first: number[] = [];
    for (let i = 0; i < 600; i++) first.push(d.allocIova(8, 4095)?.pfnLo ?? 0);
    expect(first.filter((p) => p === 0)).toHaveLength(600 - 511);
    for (const p of first) if (p !== 0) d.freeIova(p);
    expect(d.liveRanges).toBe(0);
    const again: number[] = [];
    for (let i = 0; i < 600; i++) again.push(d.allocIova(8, 4095)?.pfnLo ?? 0);
    expect(again).toEqual(first);
  });
});
