import { describe, expect, it } from "vitest";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type Device,
  type DeviceDma,
  DmaError,
  type ScatterlistEntry,
  SgTable,
  blkRqMapSg,
  dmaMapSg,
  dmaMapSgtable,
  dmaUnmapSg,
  dmaUnmapSgtable,
} from "../src/index.ts";
import {
  G4,
  KiB,
  MiB,
  NO_LEAKS,
  baseline,
  concat,
  fillRandom,
  leaks,
  machine,
  request,
} from "../src/testing/index.ts";

function segs(sgt: SgTable): { addr: number; len: number }[] {
  return sgt.sgl.slice(0, sgt.nents).map((s: ScatterlistEntry) => ({
    addr: s.dmaAddress,
    len: s.dmaLength,
  }));
}

function readAll(dma: DeviceDma, list: { addr: number; len: number }[]): Uint8Array {
  const parts = list.map((s) => {
    const b = new Uint8Array(s.len);
    expect(dma.read(s.addr, b).ok).toBe(true);
    return b;
  });
  return concat(parts);
}

/** Scattered ranges with data: returns the ranges and the bytes they hold in order. */
function scattered(dev: Device, n: number, off = 0, len = 4096, seed = 1) {
  const pages = dev.memory.allocScattered(n, seed);
  const ranges = pages.map((p, i) => ({
    phys: p * 4096 + (i === 0 ? off : 0),
    len: i === 0 ? len - off : len,
  }));
  const data = concat(ranges.map((r, i) => fillRandom(dev.memory, r.phys, r.len, seed * 100 + i)));
  return { ranges, data };
}

describe("scatterlist", () => {
  it("fills one entry per physical segment with blkRqMapSg", () => {
    const m = machine("none");
    const { ranges } = scattered(m.dev, 5, 0x200);
    const req = request("write", ranges);
    const sgt = new SgTable(req.nrPhysSegments);
    expect(blkRqMapSg(req, sgt)).toBe(5);
    expect(sgt.origNents).toBe(5);
    expect(sgt.sgl.map((s) => ({ phys: s.phys, len: s.length }))).toEqual(
      ranges.map((r) => ({ phys: r.phys, len: r.len })),
    );
    expect(sgt.bytes).toBe(5 * 32);
    expect(() => blkRqMapSg(req, new SgTable(2))).toThrow(DmaError);
  });

  it("maps entry by entry on the direct path, without merging", () => {
    const m = machine("none");
    const { ranges, data } = scattered(m.dev, 6, 0x100);
    const b = baseline(m);
    const req = request("write", ranges);
    const sgt = new SgTable(req.nrPhysSegments);
    blkRqMapSg(req, sgt);
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(6);
    expect(sgt.nents).toBe(6);
    expect(segs(sgt)).toEqual(ranges.map((r) => ({ addr: r.phys, len: r.len })));
    expect(readAll(m.dma, segs(sgt))).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("bounces each unreachable entry separately on the direct path and unwinds on failure", () => {
    const m = machine("none", { swiotlbBytes: 256 * KiB, dev: { dmaMaskBits: 32 } });
    const { ranges, data } = scattered(m.dev, 4, 0, 4096, 3);
    const hi = ranges.filter((r) => r.phys >= G4).length;
    const req = request("write", ranges);
    const sgt = new SgTable(4);
    blkRqMapSg(req, sgt);
    dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(m.swiotlb!.counters.c.maps).toBe(hi);
    expect(readAll(m.dma, segs(sgt))).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    // A pool too small for the list: EIO, nothing left mapped.
    m.swiotlb!.faultHook = () => m.swiotlb!.counters.c.maps >= hi + 1;
    blkRqMapSg(req, sgt);
    let code = "";
    try {
      dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    } catch (e) {
      code = (e as DmaError).code;
    }
    expect(hi).toBeGreaterThan(1);
    expect(code).toBe("EIO");
    expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    expect(m.debug!.outstanding()).toBe(0);
  });

  it("maps the whole list into one IOVA range with one sync under an IOMMU and merges full pages", () => {
    const m = machine("strict");
    const { ranges, data } = scattered(m.dev, 8, 0, 4096, 4);
    const b = baseline(m);
    const req = request("write", ranges);
    const sgt = new SgTable(8);
    blkRqMapSg(req, sgt);
    const iovad = m.dev.cookie!.iovad;
    const allocs = iovad.counters.c.allocFastCalls;
    const syncs = m.domain!.counters.c.syncMapCalls;
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(1);
    expect(iovad.counters.c.allocFastCalls - allocs).toBe(1);
    expect(m.domain!.counters.c.syncMapCalls - syncs).toBe(1);
    expect(segs(sgt)).toEqual([{ addr: sgt.sgl[0]!.dmaAddress, len: 8 * 4096 }]);
    expect(readAll(m.dma, segs(sgt))).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    // The entries got their CPU side back.
    expect(sgt.sgl.map((s) => s.phys)).toEqual(ranges.map((r) => r.phys));
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("starts a new DMA segment at a sub-granule offset and after a short entry", () => {
    const m = machine("strict");
    const pages = m.memory.allocScattered(4, 5);
    const ranges = [
      { phys: pages[0]! * 4096 + 0x100, len: 0xf00 }, // ends on its granule: next may merge
      { phys: pages[1]! * 4096, len: 0x800 }, // short: the next one cannot merge
      { phys: pages[2]! * 4096, len: 0x1000 },
      { phys: pages[3]! * 4096 + 0x40, len: 0x100 }, // offset: new segment
    ];
    const data = concat(ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, i)));
    const req = request("write", ranges);
    const sgt = new SgTable(4);
    blkRqMapSg(req, sgt);
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(3);
    const s = segs(sgt);
    expect(s.map((x) => x.len)).toEqual([0xf00 + 0x800, 0x1000, 0x100]);
    expect(s[0]!.addr % 4096).toBe(0x100);
    expect(s[2]!.addr % 4096).toBe(0x40);
    expect(readAll(m.dma, s)).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(m.debug!.errors).toEqual([]);
  });

  it("never merges past the max segment size or across a segment boundary", () => {
    const m = machine("strict", { dev: { maxSegmentSize: 12 * KiB } });
    const { ranges, data } = scattered(m.dev, 8, 0, 4096, 6);
    const sgt = new SgTable(8);
    blkRqMapSg(request("write", ranges), sgt);
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(3);
    expect(segs(sgt).map((x) => x.len)).toEqual([12 * KiB, 12 * KiB, 8 * KiB]);
    expect(readAll(m.dma, segs(sgt))).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);

    const mb = machine("strict", { dev: { segmentBoundaryMask: 16 * KiB - 1 } });
    const t = scattered(mb.dev, 8, 0, 4096, 7);
    const sg2 = new SgTable(8);
    blkRqMapSg(request("write", t.ranges), sg2);
    expect(dmaMapSgtable(mb.dev, sg2, DMA_TO_DEVICE)).toBe(2);
    for (const x of segs(sg2)) {
      expect(x.len).toBe(16 * KiB);
      expect(x.addr % (16 * KiB)).toBe(0);
    }
    expect(readAll(mb.dma, segs(sg2))).toEqual(t.data);
    dmaUnmapSgtable(mb.dev, sg2, DMA_TO_DEVICE);
    expect(mb.debug!.errors).toEqual([]);
  });

  it("pads to the next segment boundary when an entry would cross it", () => {
    const m = machine("strict", { dev: { segmentBoundaryMask: 8 * KiB - 1 } });
    const pages = m.memory.allocScattered(2, 8);
    const big = m.memory.allocPages(1) * 4096;
    const ranges = [
      { phys: pages[0]! * 4096, len: 0x1000 },
      { phys: big, len: 0x2000 }, // would straddle 8 KiB at IOVA 0x1000: padded to 0x2000
      { phys: pages[1]! * 4096, len: 0x1000 },
    ];
    const data = concat(ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, 20 + i)));
    const sgt = new SgTable(3);
    blkRqMapSg(request("write", ranges), sgt);
    const n = dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    const s = segs(sgt);
    expect(n).toBe(3);
    expect(s[1]!.addr - s[0]!.addr).toBe(0x2000);
    for (const x of s) {
      const first = Math.floor(x.addr / (8 * KiB));
      expect(Math.floor((x.addr + x.len - 1) / (8 * KiB))).toBe(first);
    }
    expect(readAll(m.dma, s)).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(m.debug!.errors).toEqual([]);
  });

  it("maps entry by entry through SWIOTLB for an untrusted device", () => {
    const m = machine("untrusted");
    const { ranges, data } = scattered(m.dev, 4, 0x300, 4096, 9);
    const b = baseline(m);
    const sgt = new SgTable(4);
    blkRqMapSg(request("write", ranges), sgt);
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(4);
    expect(sgt.swiotlb).toBe(true);
    expect(m.swiotlb!.counters.c.maps).toBe(1); // only the sub-granule first entry
    expect(readAll(m.dma, segs(sgt))).toEqual(data);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("copies device writes back into the entries on unmap (read request)", () => {
    for (const backend of ["none", "strict", "lazy", "untrusted"] as const) {
      const m = machine(backend);
      const { ranges } = scattered(m.dev, 3, 0x80, 4096, 10);
      const b = baseline(m);
      const sgt = new SgTable(3);
      blkRqMapSg(request("read", ranges), sgt);
      dmaMapSgtable(m.dev, sgt, DMA_FROM_DEVICE);
      let v = 0;
      for (const s of segs(sgt))
        m.dma.write(
          s.addr,
          new Uint8Array(s.len).map(() => v++ % 256),
        );
      dmaUnmapSgtable(m.dev, sgt, DMA_FROM_DEVICE);
      const got = concat(ranges.map((r) => m.memory.readBytes(r.phys, r.len)));
      expect(got).toEqual(new Uint8Array(got.length).map((_, i) => i % 256));
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    }
  });

  it("fails with ENOMEM on IOVA exhaustion and restores the entries", () => {
    const m = machine("strict", { apertureEnd: 16 * KiB - 1 });
    const { ranges } = scattered(m.dev, 4, 0, 4096, 11);
    const sgt = new SgTable(4);
    blkRqMapSg(request("write", ranges), sgt);
    let code = "";
    try {
      dmaMapSg(m.dev, sgt, 4, DMA_TO_DEVICE);
    } catch (e) {
      code = (e as DmaError).code;
    }
    expect(code).toBe("ENOMEM");
    expect(sgt.sgl.map((s) => ({ phys: s.phys, len: s.length }))).toEqual(
      ranges.map((r) => ({ phys: r.phys, len: r.len })),
    );
    expect(m.debug!.outstanding()).toBe(0);
  });

  it("uses the original entry count for dmaUnmapSg", () => {
    const m = machine("strict");
    const { ranges } = scattered(m.dev, 4, 0, 4096, 12);
    const b = baseline(m);
    const sgt = new SgTable(4);
    blkRqMapSg(request("write", ranges), sgt);
    const n = dmaMapSg(m.dev, sgt, 4, DMA_TO_DEVICE);
    expect(n).toBe(1);
    dmaUnmapSg(m.dev, sgt, 4, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("keeps P2P bus addresses and refuses unreachable P2P memory with EREMOTEIO", () => {
    const bar = 2 ** 40;
    const m = machine("strict", {
      regions: [
        { start: bar, size: MiB, kind: "p2p", owner: "gpu0" },
        { start: bar + MiB, size: MiB, kind: "p2p", owner: "gpu1" },
      ],
      dev: { p2p: { gpu0: { map: "bus-addr", busOffset: bar - 0x8000_0000 } } },
    });
    const ram = m.memory.allocPages(0) * 4096;
    const sgt = new SgTable(2);
    blkRqMapSg(request("write", [{ phys: bar + 0x1000, len: 0x1000 }]), sgt);
    expect(dmaMapSgtable(m.dev, sgt, DMA_TO_DEVICE)).toBe(1);
    expect(sgt.sgl[0]!.dmaAddress).toBe(0x8000_1000);
    expect(sgt.sgl[0]!.busAddr).toBe(true);
    dmaUnmapSgtable(m.dev, sgt, DMA_TO_DEVICE);
    const bad = new SgTable(2);
    blkRqMapSg(
      request("write", [
        { phys: ram, len: 0x1000 },
        { phys: bar + MiB, len: 0x1000 },
      ]),
      bad,
    );
    let code = "";
    try {
      dmaMapSgtable(m.dev, bad, DMA_TO_DEVICE);
    } catch (e) {
      code = (e as DmaError).code;
    }
    expect(code).toBe("EREMOTEIO");
    expect(bad.sgl[0]!.phys).toBe(ram);
    expect(m.debug!.outstanding()).toBe(0);
  });
});
