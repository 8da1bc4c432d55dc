import { BLK_STS, type KernelVersion, type Request, kernelHas, queueLimits } from "@dmasim/bvec";
import { protName } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import {
  DMA_ATTR_MMIO,
  type Device,
  DmaIovaState,
  P2P_MAP,
  blkCanDmaMapIova,
  blkDmaIter,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaUnmapPage,
  dmaUnmapPhys,
  rqDmaDir,
} from "../src/index.ts";
import {
  type Backend,
  LIMITS,
  MiB,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
  request,
} from "../src/testing/index.ts";

/** LIMITS with a virt boundary (what every NVMe queue had before 6.19). */
function withVirtBoundary(mask: number) {
  return queueLimits({
    maxSegments: LIMITS.maxSegments,
    maxHwSectors: LIMITS.maxHwSectors,
    dmaAlignment: LIMITS.dmaAlignment,
    logicalBlockSize: LIMITS.logicalBlockSize,
    virtBoundaryMask: mask,
  });
}

/** Maps and unmaps a whole request; returns the segments and whether the IOVA path was taken. */
function roundTrip(req: Request, dev: Device) {
  const state = new DmaIovaState();
  const iter = blkDmaIter();
  const segs: { addr: number; len: number }[] = [];
  expect(blkRqDmaMapIterStart(req, dev, state, iter)).toBe(true);
  segs.push({ addr: iter.addr, len: iter.len });
  while (blkRqDmaMapIterNext(req, dev, state, iter)) segs.push({ addr: iter.addr, len: iter.len });
  expect(iter.status).toBe(BLK_STS.OK);
  const iova = blkRqDmaMapCoalesce(state);
  return {
    segs,
    iova,
    iter,
    /** blkRqDmaUnmap, then per-segment unmaps with `attrs` if the caller must do them. */
    unmap(attrs = 0): boolean {
      const len = segs.reduce((n, s) => n + s.len, 0);
      const done = blkRqDmaUnmap(req, dev, state, len, iter.p2p);
      // The driver's per-segment unmap: dma_unmap_page on 6.17 (no dma_unmap_phys there).
      const unmap = kernelHas(dev.kernel, "dma-map-phys") ? dmaUnmapPhys : dmaUnmapPage;
      if (!done) for (const s of segs) unmap(dev, s.addr, s.len, rqDmaDir(req), attrs);
      return done;
    },
  };
}

function twoPages(backend: Backend, kernel: KernelVersion) {
  const m = machine(backend, { dev: { kernel } });
  const ps = m.memory.pageSize;
  const pages = m.memory.allocScattered(2, 5);
  const ranges = pages.map((p) => ({ phys: p * ps, len: 0x1000 }));
  return { m, ranges };
}

describe("the request mapper by kernel release", () => {
  describe('blk_can_dma_map_iova (gate "bio-gap-tracking")', () => {
    it("6.19 and 7.0: the request's own gaps against the merge boundary", () => {
      for (const k of ["6.19", "7.0"] as const) {
        const { m, ranges } = twoPages("strict", k);
        // Page-aligned joints under a 4 KiB granule: coalescable, with or without a virt boundary.
        expect(blkCanDmaMapIova(request("write", ranges), m.dev), k).toBe(true);
        expect(blkCanDmaMapIova(request("write", ranges, withVirtBoundary(0xfff)), m.dev), k).toBe(
          true,
        );
        // A joint at 0x200 is finer than the granule.
        const gapped = [ranges[0]!, { phys: ranges[1]!.phys + 0x200, len: 0x200 }];
        expect(blkCanDmaMapIova(request("write", gapped), m.dev), k).toBe(false);
      }
    });

    it("6.17 and 6.18: static on the queue, (virt_boundary + 1) & merge boundary", () => {
      for (const k of ["6.17", "6.18"] as const) {
        const { m, ranges } = twoPages("strict", k);
        // No virt boundary: (0 + 1) & 0xfff != 0, never the IOVA path, even with no gaps.
        expect(blkCanDmaMapIova(request("write", ranges), m.dev), k).toBe(false);
        expect(blkCanDmaMapIova(request("write", ranges, withVirtBoundary(0xfff)), m.dev), k).toBe(
          true,
        );
      }
      // A 64 KiB granule (64 KiB pages): a 4 KiB virt boundary is finer than the merge boundary.
      const big = machine("granule64k", { dev: { kernel: "6.18" } });
      const pages = big.memory.allocScattered(2, 3);
      const req = (mask: number) =>
        request(
          "write",
          pages.map((p) => ({ phys: p * 65536, len: 65536 })),
          withVirtBoundary(mask),
        );
      expect(blkCanDmaMapIova(req(0xfff), big.dev)).toBe(false);
      expect(blkCanDmaMapIova(req(0xffff), big.dev)).toBe(true);
    });

    it("6.18 takes the per-segment path for a queue without a virt boundary; 7.0 coalesces", () => {
      for (const [k, iova] of [
        ["6.18", false],
        ["7.0", true],
      ] as const) {
        const { m, ranges } = twoPages("strict", k);
        const b = baseline(m);
        const req = request("write", ranges);
        const mp = roundTrip(req, m.dev);
        expect(mp.iova, k).toBe(iova);
        expect(mp.segs, k).toHaveLength(iova ? 1 : 2);
        mp.unmap();
        expect(leaks(m, b), k).toEqual(NO_LEAKS);
      }
    });
  });

  describe('P2P memory behind the host bridge (gate "block-dma-mmio")', () => {
    const bar = 2 ** 40;
    const p2p = (backend: Backend, kernel: KernelVersion, coherent = true) =>
      machine(backend, {
        regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
        dev: { kernel, coherent, p2p: { gpu0: { map: "thru-host-bridge" } } },
      });
    const req = () => request("write", [{ phys: bar, len: 0x2000 }], withVirtBoundary(0xfff));

    it("IOVA path: the MMIO prot from 6.19, a cacheable mapping before", () => {
      for (const [k, mmio] of [
        ["6.18", false],
        ["6.19", true],
        ["7.0", true],
      ] as const) {
        const m = p2p("strict", k);
        fillRandom(m.memory, bar, 0x2000, 1);
        const b = baseline(m);
        const mp = roundTrip(req(), m.dev);
        expect(mp.iter.p2p, k).toBe(P2P_MAP.THRU_HOST_BRIDGE);
        expect(mp.iova, k).toBe(true);
        const prot = protName(m.domain!.pgtable!.walk(mp.segs[0]!.addr).prot);
        if (mmio) expect(prot, k).toContain("MMIO");
        else expect(prot, k).not.toContain("MMIO");
        mp.unmap();
        expect(leaks(m, b), k).toEqual(NO_LEAKS);
        expect(m.debug!.errors, k).toEqual([]);
      }
    });

    it("direct path: no cache maintenance from 6.19, cleaned like RAM before", () => {
      for (const [k, cleaned] of [
        ["6.17", 0x2000],
        ["6.18", 0x2000],
        ["6.19", 0],
        ["7.0", 0],
      ] as const) {
        const m = p2p("none", k, false);
        const mp = roundTrip(req(), m.dev);
        expect(mp.iova, k).toBe(false);
        expect(m.dev.counters.c.cacheCleanBytes, k).toBe(cleaned);
        // The driver unmaps each segment with the attrs it mapped with (nvme: IOD_DATA_MMIO).
        expect(mp.unmap(cleaned ? 0 : DMA_ATTR_MMIO), k).toBe(false);
        expect(m.debug!.outstanding(m.dev), k).toBe(0);
        expect(m.debug!.errors, k).toEqual([]);
      }
    });
  });
});
