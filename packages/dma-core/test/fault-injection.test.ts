import { BLK_STS, type Request } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DMA_TO_DEVICE,
  DmaIovaState,
  DmaPool,
  blkDmaIter,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaUnmapPhys,
  rqDmaDir,
} from "../src/index.ts";
import {
  type Backend,
  KiB,
  type Machine,
  NO_LEAKS,
  baseline,
  leaks,
  machine,
  request,
  codeOf,
} from "../src/testing/index.ts";

/** Makes the k-th page allocation from now on fail (k >= 1); returns how many were attempted. */
function failNthPage(m: Machine, k: number): { calls: number } {
  const seen = { calls: 0 };
  m.memory.allocFaultHook = () => ++seen.calls === k;
  return seen;
}

/** Maps a request through the mapper; on failure undoes the segments already handed out. */
function mapAndTeardown(req: Request, m: Machine): number {
  const state = new DmaIovaState();
  const iter = blkDmaIter();
  const segs: { addr: number; len: number }[] = [];
  if (blkRqDmaMapIterStart(req, m.dev, state, iter)) {
    segs.push({ addr: iter.addr, len: iter.len });
    while (blkRqDmaMapIterNext(req, m.dev, state, iter))
      segs.push({ addr: iter.addr, len: iter.len });
  }
  const status = iter.status;
  const len = segs.reduce((n, s) => n + s.len, 0);
  if (segs.length > 0 && !blkRqDmaUnmap(req, m.dev, state, len, iter.p2p)) {
    for (const s of segs) dmaUnmapPhys(m.dev, s.addr, s.len, rqDmaDir(req));
  }
  return status;
}

describe("fault-injection", () => {
  describe("IOVA exhaustion", () => {
    it("fails dmaMapPhys with ENOMEM under a tiny aperture and a tiny DMA mask", () => {
      for (const o of [{ apertureEnd: 8 * KiB - 1 }, { dev: { dmaMaskBits: 13, pci: false } }]) {
        const m = machine("strict", o);
        const p = m.memory.allocPages(1) * m.memory.pageSize;
        const b = baseline(m);
        const a = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
        expect(a).toBe(0x1000);
        expect(codeOf(() => dmaMapPhys(m.dev, p + 0x1000, 0x1000, DMA_TO_DEVICE))).toBe("ENOMEM");
        expect(m.dev.counters.c.mapFailures).toBe(1);
        dmaUnmapPhys(m.dev, a, 0x1000, DMA_TO_DEVICE);
        expect(leaks(m, b)).toEqual(NO_LEAKS);
      }
    });

    it("fails coherent allocations with ENOMEM and frees the pages", () => {
      const m = machine("strict", { dev: { coherentMaskBits: 13, pci: false } });
      const b = baseline(m);
      const ok = dmaAllocCoherent(m.dev, 0x1000);
      expect(codeOf(() => dmaAllocCoherent(m.dev, 0x1000))).toBe("ENOMEM");
      dmaFreeCoherent(m.dev, 0x1000, ok.cpuAddr, ok.dmaAddr);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });
  });

  describe("page-table pages", () => {
    it("fails dmaMapPhys with ENOMEM at every table allocation of a fresh mapping, leaking nothing", () => {
      for (let k = 1; k <= 3; k++) {
        const m = machine("strict");
        const p = m.memory.allocPages(0) * m.memory.pageSize;
        const b = baseline(m);
        const seen = failNthPage(m, k);
        expect(codeOf(() => dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE))).toBe("ENOMEM");
        expect(seen.calls).toBe(k);
        m.memory.allocFaultHook = undefined;
        expect(leaks(m, b)).toEqual(NO_LEAKS);
        // The next attempt works.
        const a = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
        dmaUnmapPhys(m.dev, a, 0x1000, DMA_TO_DEVICE);
        expect(leaks(m, b)).toEqual(NO_LEAKS);
      }
    });

    it("fails dmaIovaLink with ENOMEM and the state can still be destroyed", () => {
      const m = machine("lazy");
      const p = m.memory.allocPages(0) * m.memory.pageSize;
      const b = baseline(m);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x1000);
      failNthPage(m, 1);
      expect(codeOf(() => dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_TO_DEVICE))).toBe("ENOMEM");
      m.memory.allocFaultHook = undefined;
      dmaIovaDestroy(m.dev, state, 0, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("fails coherent allocations when the pages or their tables cannot be had", () => {
      for (let k = 1; k <= 3; k++) {
        const m = machine("strict");
        const b = baseline(m);
        failNthPage(m, k);
        expect(codeOf(() => dmaAllocCoherent(m.dev, 0x2000))).toBe("ENOMEM");
        m.memory.allocFaultHook = undefined;
        expect(leaks(m, b)).toEqual(NO_LEAKS);
      }
      const d = machine("none");
      failNthPage(d, 1);
      expect(codeOf(() => dmaAllocCoherent(d.dev, 0x2000))).toBe("ENOMEM");
    });
  });

  describe("bounce slots", () => {
    it("fails an untrusted sub-granule mapping with ENOMEM when the pool refuses", () => {
      const m = machine("untrusted");
      const p = m.memory.allocPages(0) * m.memory.pageSize + 0x10;
      const b = baseline(m);
      m.swiotlb!.faultHook = () => true;
      expect(codeOf(() => dmaMapPhys(m.dev, p, 0x10, DMA_TO_DEVICE))).toBe("ENOMEM");
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("fails a direct-path bounce with ENOMEM when the pool is full", () => {
      const m = machine("none", { swiotlbBytes: 256 * KiB, dev: { dmaMaskBits: 32 } });
      const p = 6 * 2 ** 30;
      const live: number[] = [];
      for (let i = 0; i < 2; i++) live.push(dmaMapPhys(m.dev, p, 128 * KiB, DMA_TO_DEVICE));
      expect(codeOf(() => dmaMapPhys(m.dev, p, 16, DMA_TO_DEVICE))).toBe("ENOMEM");
      for (const a of live) dmaUnmapPhys(m.dev, a, 128 * KiB, DMA_TO_DEVICE);
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
      expect(m.debug!.outstanding()).toBe(0);
    });
  });

  describe("pool blocks", () => {
    it("fails DmaPool.alloc with ENOMEM when injected or when its page cannot be had", () => {
      const m = machine("strict");
      const b = baseline(m);
      const pool = new DmaPool("prp", m.dev, 256, 256);
      pool.faultHook = () => true;
      expect(codeOf(() => pool.alloc())).toBe("ENOMEM");
      pool.faultHook = undefined;
      failNthPage(m, 1);
      expect(codeOf(() => pool.alloc())).toBe("ENOMEM");
      m.memory.allocFaultHook = undefined;
      expect(pool.counters.c.failures).toBe(2);
      expect(pool.inUse).toBe(0);
      const blk = pool.alloc();
      pool.freeBlock(blk.cpuAddr, blk.dmaAddr);
      pool.destroy();
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });
  });

  describe("the request mapper", () => {
    const backends: Backend[] = ["strict", "lazy", "untrusted", "granule64k"];
    for (const backend of backends) {
      it(`returns RESOURCE or OK at any failing page or bounce allocation and leaks nothing (${backend})`, () => {
        let failed = 0;
        fc.assert(
          fc.property(
            fc.integer({ min: 1, max: 6 }),
            fc.integer({ min: 1, max: 4 }),
            fc.integer({ min: 1, max: 6 }),
            fc.constantFrom(0, 0x200, 0xffc),
            fc.constantFrom(0x1000, 0x400),
            fc.boolean(),
            fc.boolean(),
            (k, kb, n, firstOff, lastLen, gapped, bigTail) => {
              const m = machine(backend);
              const pages = m.memory.allocScattered(n, k * 7 + n);
              const ranges = pages.map((p, i) => {
                const off = i === 0 ? firstOff : gapped ? 0x100 : 0;
                const end = i === n - 1 ? Math.max(off + 4, lastLen) : 0x1000;
                return { phys: p * m.memory.pageSize + off, len: Math.min(end, 0x1000) - off };
              });
              // A last segment of more than a page: a later link with a middle and a tail.
              if (bigTail)
                ranges.push({
                  phys: m.memory.allocPages(1) * m.memory.pageSize,
                  len: 0x1000 + lastLen / 2,
                });
              const req = request("write", ranges);
              const b = baseline(m);
              failNthPage(m, k);
              let bounces = 0;
              if (m.swiotlb) m.swiotlb.faultHook = () => ++bounces === kb;
              const status = mapAndTeardown(req, m);
              expect([BLK_STS.OK, BLK_STS.RESOURCE]).toContain(status);
              if (status !== BLK_STS.OK) failed++;
              m.memory.allocFaultHook = undefined;
              if (m.swiotlb) m.swiotlb.faultHook = undefined;
              expect(leaks(m, b)).toEqual(NO_LEAKS);
            },
          ),
          { numRuns: 40 },
        );
        expect(failed).toBeGreaterThan(5);
      });
    }

    it("reports RESOURCE when the only link fails on a page-table allocation", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(1) * m.memory.pageSize;
      const b = baseline(m);
      failNthPage(m, 1);
      expect(mapAndTeardown(request("write", [{ phys: p, len: 0x2000 }]), m)).toBe(
        BLK_STS.RESOURCE,
      );
      m.memory.allocFaultHook = undefined;
      expect(leaks(m, b)).toEqual(NO_LEAKS);
      // A sync after a successful link is still one call.
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x2000);
      dmaIovaLink(m.dev, state, p, 0, 0x2000, DMA_TO_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x2000);
      dmaIovaDestroy(m.dev, state, 0x2000, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });
  });
});
