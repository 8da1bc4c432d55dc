import { BLK_STS, type Request } from "@dmasim/bvec";
import { protName } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import {
  type BlkDmaIter,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type Device,
  DmaIovaState,
  P2P_MAP,
  blkCanDmaMapIova,
  blkDmaIter,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaUnmapPhys,
  errnoToBlkStatus,
  rqDmaDir,
} from "../src/index.ts";
import {
  G4,
  KiB,
  MiB,
  type Machine,
  NO_LEAKS,
  baseline,
  concat,
  fillRandom,
  leaks,
  machine,
  request,
} from "../src/testing/index.ts";

interface Mapped {
  ok: boolean;
  status: number;
  segs: { addr: number; len: number }[];
  iter: BlkDmaIter;
  state: DmaIovaState;
}

/** Maps a whole request the way a driver does: start, then next until false. */
function mapRequest(req: Request, dev: Device): Mapped {
  const state = new DmaIovaState();
  const iter = blkDmaIter();
  const segs: { addr: number; len: number }[] = [];
  if (!blkRqDmaMapIterStart(req, dev, state, iter))
    return { ok: false, status: iter.status, segs, iter, state };
  segs.push({ addr: iter.addr, len: iter.len });
  while (blkRqDmaMapIterNext(req, dev, state, iter)) segs.push({ addr: iter.addr, len: iter.len });
  return { ok: iter.status === BLK_STS.OK, status: iter.status, segs, iter, state };
}

/** Tears a mapped request down the way a driver does: blkRqDmaUnmap, then per-segment unmaps if asked. */
function unmapRequest(req: Request, dev: Device, mp: Mapped): boolean {
  const len = mp.segs.reduce((n, s) => n + s.len, 0);
  const done = blkRqDmaUnmap(req, dev, mp.state, len, mp.iter.p2p);
  if (!done) for (const s of mp.segs) dmaUnmapPhys(dev, s.addr, s.len, rqDmaDir(req));
  return done;
}

function readSegs(m: Machine, segs: { addr: number; len: number }[]): Uint8Array {
  return concat(
    segs.map((s) => {
      const b = new Uint8Array(s.len);
      expect(m.dma.read(s.addr, b).ok).toBe(true);
      return b;
    }),
  );
}

function pagesReq(m: Machine, n: number, firstOff: number, lastLen: number, seed: number) {
  const pages = m.memory.allocScattered(n, seed);
  const ranges = pages.map((p, i) => ({
    phys: p * m.memory.pageSize + (i === 0 ? firstOff : 0),
    len: (i === n - 1 ? lastLen : 4096) - (i === 0 ? firstOff : 0),
  }));
  const data = concat(ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, seed + i)));
  return { ranges, data };
}

describe("request-map", () => {
  it("takes the IOVA path when no joint is finer than the merge boundary: one segment, one sync", () => {
    const m = machine("strict");
    const { ranges, data } = pagesReq(m, 6, 0x200, 0x800, 1);
    const b = baseline(m);
    const req = request("write", ranges);
    expect(blkCanDmaMapIova(req, m.dev)).toBe(true);
    const syncs = m.domain!.counters.c.syncMapCalls;
    const mp = mapRequest(req, m.dev);
    expect(mp.ok).toBe(true);
    expect(blkRqDmaMapCoalesce(mp.state)).toBe(true);
    expect(mp.segs).toEqual([{ addr: mp.state.addr, len: req.dataLen }]);
    expect(mp.segs[0]!.addr % 4096).toBe(0x200);
    expect(m.domain!.counters.c.syncMapCalls - syncs).toBe(1);
    expect(m.dev.counters.c.iovaLinks).toBe(6);
    expect(readSegs(m, mp.segs)).toEqual(data);
    expect(unmapRequest(req, m.dev, mp)).toBe(true);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("maps segment by segment when a gap is finer than the merge boundary", () => {
    const m = machine("strict");
    const pages = m.memory.allocScattered(3, 2);
    const ranges = [
      { phys: pages[0]! * 4096, len: 0x1000 },
      { phys: pages[1]! * 4096 + 0x200, len: 0x200 }, // gap at 0x200: not page-aligned
      { phys: pages[2]! * 4096, len: 0x1000 },
    ];
    const data = concat(ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, i)));
    const b = baseline(m);
    const req = request("write", ranges);
    expect(blkCanDmaMapIova(req, m.dev)).toBe(false);
    const mp = mapRequest(req, m.dev);
    expect(mp.ok).toBe(true);
    expect(blkRqDmaMapCoalesce(mp.state)).toBe(false);
    expect(mp.segs.map((s) => s.len)).toEqual([0x1000, 0x200, 0x1000]);
    expect(m.dev.counters.c.iovaTryAllocs).toBe(0);
    expect(readSegs(m, mp.segs)).toEqual(data);
    expect(unmapRequest(req, m.dev, mp)).toBe(false);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("maps segment by segment under an IOMMU when the IOVA API what-if is off", () => {
    for (const backend of ["strict", "lazy"] as const) {
      const m = machine(backend, { dev: { iovaApi: false } });
      const { ranges, data } = pagesReq(m, 6, 0x200, 0x800, 1);
      const b = baseline(m);
      const req = request("write", ranges);
      const syncs = m.domain!.counters.c.syncMapCalls;
      const mp = mapRequest(req, m.dev);
      expect(mp.ok).toBe(true);
      expect(blkRqDmaMapCoalesce(mp.state)).toBe(false);
      expect(mp.segs.map((s) => s.len)).toEqual(ranges.map((r) => r.len));
      expect(m.dev.counters.c.iovaTryAllocs).toBe(0);
      expect(m.dev.counters.c.iommuMaps).toBe(6);
      expect(m.domain!.counters.c.syncMapCalls - syncs).toBe(6);
      // Six separate IOVA ranges, one per segment.
      expect(new Set(mp.segs.map((x) => x.addr - (x.addr % 4096))).size).toBe(6);
      expect(readSegs(m, mp.segs)).toEqual(data);
      expect(unmapRequest(req, m.dev, mp)).toBe(false);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    }
  });

  it("maps page-gapped requests segment by segment under a 64 KiB granule", () => {
    const m = machine("granule64k");
    const { ranges, data } = pagesReq(m, 4, 0, 4096, 3);
    const b = baseline(m);
    const req = request("write", ranges);
    expect(blkCanDmaMapIova(req, m.dev)).toBe(false);
    const mp = mapRequest(req, m.dev);
    expect(mp.segs).toHaveLength(4);
    expect(readSegs(m, mp.segs)).toEqual(data);
    unmapRequest(req, m.dev, mp);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("maps per segment on the direct path and tells the caller whether to unmap", () => {
    const on = machine("none");
    const r1 = pagesReq(on, 3, 0, 4096, 4);
    const req1 = request("write", r1.ranges);
    const mp1 = mapRequest(req1, on.dev);
    expect(mp1.segs).toEqual(r1.ranges.map((r) => ({ addr: r.phys, len: r.len })));
    // dma-debug on: the caller must unmap each segment.
    expect(unmapRequest(req1, on.dev, mp1)).toBe(false);
    expect(on.debug!.outstanding()).toBe(0);

    const off = machine("none", { debug: false });
    const r2 = pagesReq(off, 3, 0, 4096, 5);
    const req2 = request("write", r2.ranges);
    const mp2 = mapRequest(req2, off.dev);
    // Coherent, never bounced, debug off: nothing to unmap.
    expect(blkRqDmaUnmap(req2, off.dev, mp2.state, req2.dataLen, mp2.iter.p2p)).toBe(true);
  });

  it("asks for per-segment unmaps after a bounce on the direct path", () => {
    const m = machine("none", { debug: false, swiotlbBytes: MiB, dev: { dmaMaskBits: 32 } });
    const { ranges, data } = pagesReq(m, 3, 0, 4096, 6);
    expect(ranges.some((r) => r.phys >= G4)).toBe(true);
    const req = request("write", ranges);
    const mp = mapRequest(req, m.dev);
    expect(readSegs(m, mp.segs)).toEqual(data);
    expect(blkRqDmaUnmap(req, m.dev, mp.state, req.dataLen, mp.iter.p2p)).toBe(false);
    for (const s of mp.segs) dmaUnmapPhys(m.dev, s.addr, s.len, DMA_TO_DEVICE);
    expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
  });

  it("returns bus addresses for P2P memory behind a switch and needs no unmap", () => {
    const bar = 2 ** 40;
    const m = machine("strict", {
      regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
      dev: { p2p: { gpu0: { map: "bus-addr", busOffset: bar - 0xa000_0000 } } },
    });
    const req = request("read", [
      { phys: bar + 0x1000, len: 0x1000 },
      { phys: bar + 0x3000, len: 0x800 },
    ]);
    const mp = mapRequest(req, m.dev);
    expect(mp.iter.p2p).toBe(P2P_MAP.BUS_ADDR);
    expect(mp.segs).toEqual([
      { addr: 0xa000_1000, len: 0x1000 },
      { addr: 0xa000_3000, len: 0x800 },
    ]);
    expect(m.domain!.counters.c.mapCalls).toBe(0);
    expect(unmapRequest(req, m.dev, mp)).toBe(true);
    expect(m.debug!.outstanding()).toBe(0);
  });

  it("maps P2P memory through the host bridge like RAM, with the MMIO prot", () => {
    const bar = 2 ** 40;
    const m = machine("strict", {
      regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
      dev: { p2p: { gpu0: { map: "thru-host-bridge" } } },
    });
    const data = fillRandom(m.memory, bar, 0x2000, 7);
    const b = baseline(m);
    const req = request("write", [{ phys: bar, len: 0x2000 }]);
    const mp = mapRequest(req, m.dev);
    expect(mp.iter.p2p).toBe(P2P_MAP.THRU_HOST_BRIDGE);
    expect(blkRqDmaMapCoalesce(mp.state)).toBe(true);
    expect(protName(m.domain!.pgtable!.walk(mp.segs[0]!.addr).prot)).toContain("MMIO");
    expect(readSegs(m, mp.segs)).toEqual(data);
    expect(unmapRequest(req, m.dev, mp)).toBe(true);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("reports BLK_STS_INVAL for P2P memory the device cannot reach", () => {
    const bar = 2 ** 40;
    const m = machine("none", { regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu9" }] });
    const req = request("write", [{ phys: bar, len: 0x1000 }]);
    const mp = mapRequest(req, m.dev);
    expect(mp.ok).toBe(false);
    expect(mp.status).toBe(BLK_STS.INVAL);
    expect(mp.iter.p2p).toBe(P2P_MAP.NONE);
  });

  it("reports BLK_STS_RESOURCE when neither the IOVA path nor the fallback can get IOVA", () => {
    const m = machine("strict", { apertureEnd: 8 * KiB - 1 });
    const { ranges } = pagesReq(m, 4, 0, 4096, 8);
    const b = baseline(m);
    const req = request("write", ranges);
    const mp = mapRequest(req, m.dev);
    expect(mp.ok).toBe(false);
    expect(mp.status).toBe(BLK_STS.RESOURCE);
    expect(m.dev.counters.c.iovaTryAllocFailures).toBe(1);
    // The fallback mapped the first segment into the one free page before running out; undoing
    // the segments already handed out is the caller's job (as nvme_unmap_data does).
    expect(mp.segs).toHaveLength(1);
    expect(unmapRequest(req, m.dev, mp)).toBe(false);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("reports BLK_STS_RESOURCE for an unreachable address without SWIOTLB on the direct path", () => {
    const m = machine("none", { dev: { dmaMaskBits: 32 } });
    const req = request("write", [{ phys: 6 * 2 ** 30, len: 0x1000 }]);
    const mp = mapRequest(req, m.dev);
    expect(mp.status).toBe(BLK_STS.RESOURCE);
  });

  it("reports BLK_STS_IOERR when a link fails with EPERM (MMIO that would need bouncing)", () => {
    const bar = 2 ** 40;
    const m = machine("untrusted", {
      regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
      dev: { p2p: { gpu0: { map: "thru-host-bridge" } } },
    });
    const b = baseline(m);
    const req = request("write", [
      { phys: bar, len: 0x1000 },
      { phys: bar + 0x4000, len: 0x200 },
    ]);
    const mp = mapRequest(req, m.dev);
    expect(mp.status).toBe(BLK_STS.IOERR);
    // The first link was destroyed again.
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("maps a one-segment request through the general path, with no special case for one page", () => {
    for (const backend of ["none", "strict"] as const) {
      const m = machine(backend);
      const phys = m.memory.allocPages(0) * 4096 + 0x10;
      const data = fillRandom(m.memory, phys, 0x100, 9);
      const req = request("write", [{ phys, len: 0x100 }]);
      const mp = mapRequest(req, m.dev);
      expect(mp.segs).toHaveLength(1);
      expect(readSegs(m, mp.segs)).toEqual(data);
      unmapRequest(req, m.dev, mp);
      expect(m.debug!.outstanding()).toBe(0);
      expect(blkRqDmaMapCoalesce(mp.state)).toBe(backend === "strict");
    }
  });

  it("maps read requests FROM_DEVICE and write requests TO_DEVICE", () => {
    expect(rqDmaDir(request("read", [{ phys: G4, len: 512 }]))).toBe(DMA_FROM_DEVICE);
    expect(rqDmaDir(request("write", [{ phys: G4, len: 512 }]))).toBe(DMA_TO_DEVICE);
  });

  it("turns errnos into block statuses as Linux does", () => {
    expect(errnoToBlkStatus("ENOMEM")).toBe(BLK_STS.RESOURCE);
    expect(errnoToBlkStatus("EINVAL")).toBe(BLK_STS.INVAL);
    expect(errnoToBlkStatus("EOPNOTSUPP")).toBe(BLK_STS.NOTSUPP);
    expect(errnoToBlkStatus("EREMOTEIO")).toBe(BLK_STS.TARGET);
    expect(errnoToBlkStatus("EIO")).toBe(BLK_STS.IOERR);
    expect(errnoToBlkStatus("EPERM")).toBe(BLK_STS.IOERR);
  });
});
