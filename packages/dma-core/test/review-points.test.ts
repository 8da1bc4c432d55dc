/**
 * The review points of the 2024 review of the two-step DMA API (docs/review-points.md), checked
 * on dma-core's side: one test per point, which fails if the point is lost. The iod points
 * (docs/review-points.md#inline-pair-in-iod, #no-single-page-special-case) are mostly NVMe-side;
 * what dma-core contributes to them is tested here.
 */
import { bioFromBvecs, blkRqFromBios, bvec, bvecPhys } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type Device,
  DmaError,
  DmaIovaState,
  type DmaVec,
  SgTable,
  blkDmaIter,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqMapSg,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaMapPage,
  dmaMapPhys,
  dmaNeedUnmap,
  dmaUnmapPhys,
  dmaUnmapRange,
  dmaUseIova,
} from "../src/index.ts";
import {
  LIMITS,
  type Machine,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
} from "../src/testing/index.ts";

/**
 * A driver's map routine written once for every backend (docs/review-points.md#no-iommu-no-op,
 * #one-unmap): try the IOVA path, else map each range with dmaMapPhys into DmaVecs
 * (#common-dma-pair).
 */
function driverMap(
  dev: Device,
  state: DmaIovaState,
  ranges: readonly { phys: number; len: number }[],
  vecs: DmaVec[],
): number {
  const total = ranges.reduce((n, r) => n + r.len, 0);
  if (dmaIovaTryAlloc(dev, state, ranges[0]!.phys, total)) {
    let off = 0;
    for (const r of ranges) {
      dmaIovaLink(dev, state, r.phys, off, r.len, DMA_TO_DEVICE);
      off += r.len;
    }
    dmaIovaSync(dev, state, 0, total);
    vecs.push({ addr: state.addr, len: total });
    return total;
  }
  for (const r of ranges)
    vecs.push({ addr: dmaMapPhys(dev, r.phys, r.len, DMA_TO_DEVICE), len: r.len });
  return total;
}

/**
 * Every object a caller can reach from `root` by reading properties: own and inherited keys
 * (getters included), followed through the values found, functions and prototypes too.
 */
function reachable(root: object): Set<unknown> {
  const seen = new Set<unknown>();
  const todo: unknown[] = [root];
  while (todo.length > 0) {
    const o = todo.pop();
    if ((typeof o !== "object" && typeof o !== "function") || o === null || seen.has(o)) continue;
    seen.add(o);
    for (
      let p: object | null = o;
      p !== null && p !== Object.prototype;
      p = Object.getPrototypeOf(p) as object | null
    ) {
      for (const k of Reflect.ownKeys(p)) {
        try {
          todo.push(Reflect.get(p, k, o));
        } catch {
          // A getter that refuses this receiver exposes nothing.
        }
      }
    }
    todo.push(Object.getPrototypeOf(o));
  }
  return seen;
}

function pageRanges(m: Machine, n: number) {
  return m.memory.allocScattered(n, 42).map((p) => ({ phys: p * 4096, len: 4096 }));
}

describe("review points", () => {
  // docs/review-points.md#one-state-object
  it("the IOVA state is one object: it shows its base and size, and nothing reaches the domain", () => {
    for (const backend of ["strict", "untrusted"] as const) {
      const m = machine(backend);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, 0x345, 0x2000);
      expect(state.addr % 4096).toBe(0x345);
      expect(state.size).toBe(0x2000);
      // Whatever a driver reads through the state, it never gets the device, the domain, the
      // DMA cookie, its IOVA allocator or the SWIOTLB pool.
      const seen = reachable(state);
      for (const backendObject of [m.dev, m.domain, m.dev.cookie, m.dev.cookie?.iovad, m.swiotlb])
        if (backendObject) expect(seen.has(backendObject)).toBe(false);
      // And it cannot rewrite the base: the getters are read-only.
      expect(() => {
        (state as unknown as { addr: number }).addr = 0;
      }).toThrow(TypeError);
      expect(state.addr % 4096).toBe(0x345);
      dmaIovaFree(m.dev, state);
    }
  });

  // docs/review-points.md#attrs-per-call
  it("attrs are passed per call; the state remembers none of them", () => {
    const m = machine("strict", { dev: { coherent: false } });
    const p = m.memory.allocPages(0) * 4096;
    const c = m.dev.counters.c;
    const state = new DmaIovaState();
    dmaIovaTryAlloc(m.dev, state, p, 0x1000);
    // Linked with SKIP_CPU_SYNC: no cache clean at link time.
    dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    expect(c.cacheCleanBytes).toBe(0);
    dmaIovaSync(m.dev, state, 0, 0x1000);
    // Unlinked without it: this call's attrs apply, so the CPU side is invalidated.
    dmaIovaUnlink(m.dev, state, 0, 0x1000, DMA_FROM_DEVICE);
    expect(c.cacheInvalidateBytes).toBe(0x1000);
    // And the reverse: linked without, destroyed with SKIP_CPU_SYNC: no invalidation.
    dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_FROM_DEVICE);
    expect(c.cacheCleanBytes).toBe(0x1000);
    dmaIovaSync(m.dev, state, 0, 0x1000);
    dmaIovaDestroy(m.dev, state, 0x1000, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    expect(c.cacheInvalidateBytes).toBe(0x1000);
    expect(m.debug!.errors).toEqual([]);
  });

  // docs/review-points.md#use-iova-in-state
  it("whether the IOVA path is in use lives in the state (dmaUseIova)", () => {
    const m = machine("strict");
    const state = new DmaIovaState();
    expect(dmaUseIova(state)).toBe(false);
    expect(dmaIovaTryAlloc(m.dev, state, 0, 0x1000)).toBe(true);
    expect(dmaUseIova(state)).toBe(true);
    expect(dmaIovaSize(state)).toBe(0x1000);
    dmaIovaFree(m.dev, state);
    // A failed try-alloc zeroes the state.
    const n = machine("none");
    const s2 = new DmaIovaState();
    expect(dmaIovaTryAlloc(n.dev, s2, 0, 0x1000)).toBe(false);
    expect(dmaUseIova(s2)).toBe(false);
    // The request mapper asks the state, not the caller: iterNext stops on the IOVA path.
    const ranges = pageRanges(m, 3);
    const req = blkRqFromBios(LIMITS, [
      bioFromBvecs(
        "write",
        0,
        ranges.map((r) => bvec(r.phys / 4096, 0, 4096)),
      ),
    ]);
    const st = new DmaIovaState();
    const iter = blkDmaIter();
    expect(blkRqDmaMapIterStart(req, m.dev, st, iter)).toBe(true);
    expect(dmaUseIova(st)).toBe(true);
    expect(blkRqDmaMapIterNext(req, m.dev, st, iter)).toBe(false);
    dmaIovaDestroy(m.dev, st, 3 * 4096, DMA_TO_DEVICE);
  });

  // docs/review-points.md#common-dma-pair
  it("DmaVec is a plain { addr, len } pair shared by the mapper and the teardown", () => {
    const m = machine("none");
    const ranges = pageRanges(m, 2);
    const vecs: DmaVec[] = [];
    const state = new DmaIovaState();
    driverMap(m.dev, state, ranges, vecs);
    expect(vecs).toEqual(ranges.map((r) => ({ addr: r.phys, len: r.len })));
    // Pairs the driver writes itself are as good as the mapper's: the teardown needs nothing else.
    const own: DmaVec[] = vecs.map((v) => ({ addr: v.addr, len: v.len }));
    dmaUnmapRange(m.dev, state, own, own.length, 8192, DMA_TO_DEVICE);
    expect(m.debug!.outstanding()).toBe(0);
  });

  // docs/review-points.md#inline-pair-in-iod
  it("dmaNeedUnmap tells a driver when it may skip storing the pairs", () => {
    expect(dmaNeedUnmap(machine("none", { debug: false }).dev)).toBe(false);
    expect(dmaNeedUnmap(machine("strict", { debug: false }).dev)).toBe(true);
    expect(dmaNeedUnmap(machine("none").dev)).toBe(true);
  });

  // docs/review-points.md#one-unmap
  it("one teardown call unmaps an IOVA range or a list of vecs", () => {
    for (const backend of ["none", "strict", "lazy", "passthrough"] as const) {
      const m = machine(backend);
      const ranges = pageRanges(m, 3);
      const b = baseline(m);
      const vecs: DmaVec[] = [];
      const state = new DmaIovaState();
      const total = driverMap(m.dev, state, ranges, vecs);
      expect(vecs).toHaveLength(backend === "strict" || backend === "lazy" ? 1 : 3);
      dmaUnmapRange(m.dev, state, vecs, vecs.length, total, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    }
  });

  // docs/review-points.md#link-returns-address
  it("dmaIovaLink returns the DMA address of the linked range", () => {
    const m = machine("strict");
    const ranges = pageRanges(m, 3);
    const data = ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, i));
    const state = new DmaIovaState();
    dmaIovaTryAlloc(m.dev, state, 0, 3 * 4096);
    const addrs = ranges.map((r, i) =>
      dmaIovaLink(m.dev, state, r.phys, i * 4096, r.len, DMA_TO_DEVICE),
    );
    expect(addrs).toEqual([0, 1, 2].map((i) => state.addr + i * 4096));
    dmaIovaSync(m.dev, state, 0, 3 * 4096);
    addrs.forEach((a, i) => {
      const got = new Uint8Array(4096);
      m.dma.read(a, got);
      expect(got).toEqual(data[i]);
    });
    dmaIovaDestroy(m.dev, state, 3 * 4096, DMA_TO_DEVICE);
  });

  // docs/review-points.md#no-single-page-special-case
  it("a request of one page or less goes through the same general path", () => {
    const m = machine("strict");
    const phys = m.memory.allocPages(0) * 4096 + 0x200;
    const req = blkRqFromBios(LIMITS, [
      bioFromBvecs("write", 0, [bvec(phys / 4096 - 0x200 / 4096, 0x200, 0x200)]),
    ]);
    const state = new DmaIovaState();
    const iter = blkDmaIter();
    expect(blkRqDmaMapIterStart(req, m.dev, state, iter)).toBe(true);
    expect(dmaUseIova(state)).toBe(true);
    expect(iter.len).toBe(0x200);
    dmaIovaDestroy(m.dev, state, 0x200, DMA_TO_DEVICE);
  });

  // docs/review-points.md#map-by-phys
  it("dmaMapPage is a thin wrapper over dmaMapPhys (same mapping, same debug type)", () => {
    const m = machine("strict");
    const pfn = m.memory.allocPages(0);
    const addr = dmaMapPage(m.dev, pfn, 0x80, 0x100, DMA_TO_DEVICE);
    expect(m.domain!.iovaToPhys(addr)).toBe(pfn * 4096 + 0x80);
    expect(m.dev.counters.c.maps).toBe(1);
    // Unmapped by physical-address API without a type mismatch: it is a "phy" mapping.
    dmaUnmapPhys(m.dev, addr, 0x100, DMA_TO_DEVICE);
    expect(m.debug!.reports).toEqual([]);
  });

  // docs/review-points.md#bvec-phys
  it("a bvec becomes an address through bvecPhys, even with an offset beyond its first page", () => {
    const m = machine("none");
    const first = m.memory.allocPages(1);
    const bv = bvec(first, 0x1010, 0x100);
    expect(bvecPhys(bv)).toBe(first * 4096 + 0x1010);
    const req = blkRqFromBios(LIMITS, [bioFromBvecs("write", 0, [bv])]);
    const sgt = new SgTable(1);
    blkRqMapSg(req, sgt);
    expect(sgt.sgl[0]!.phys).toBe(bvecPhys(bv));
    const state = new DmaIovaState();
    const iter = blkDmaIter();
    blkRqDmaMapIterStart(req, m.dev, state, iter);
    expect(iter.addr).toBe(bvecPhys(bv));
    dmaUnmapPhys(m.dev, iter.addr, iter.len, DMA_TO_DEVICE);
  });

  // docs/review-points.md#no-iommu-no-op
  it("without an IOMMU DMA domain try-alloc returns false and the same code path works", () => {
    for (const backend of ["none", "passthrough"] as const) {
      const m = machine(backend);
      const ranges = pageRanges(m, 2);
      const state = new DmaIovaState();
      const vecs: DmaVec[] = [];
      driverMap(m.dev, state, ranges, vecs);
      expect(dmaUseIova(state)).toBe(false);
      const c = m.dev.counters.c;
      expect(c.iovaLinks + c.iovaSyncs + c.iovaTryAllocs).toBe(0);
      expect(c.maps).toBe(2);
      // Teardown calls are no-ops on the unused state...
      dmaIovaUnlink(m.dev, state, 0, 4096, DMA_TO_DEVICE);
      dmaIovaDestroy(m.dev, state, 8192, DMA_TO_DEVICE);
      dmaIovaFree(m.dev, state);
      // ...while link would be refused: the driver never calls it on this path.
      expect(() => dmaIovaLink(m.dev, state, ranges[0]!.phys, 0, 4096, DMA_TO_DEVICE)).toThrow(
        DmaError,
      );
      dmaUnmapRange(m.dev, state, vecs, vecs.length, 8192, DMA_TO_DEVICE);
      expect(m.debug!.outstanding()).toBe(0);
    }
  });
});
