import { Rng, bioFromBvecs, blkRqFromBios, bvecFromPhys, queueLimits } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaIovaState,
  blkDmaIter,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaMapPhys,
  dmaUnmapPhys,
} from "../src/index.ts";
import { machine } from "../src/testing/index.ts";

describe("dma-core smoke", () => {
  for (const mode of ["none", "passthrough", "strict", "lazy"] as const) {
    it(`maps, moves bytes and unmaps a scattered request (${mode})`, () => {
      const m = machine(mode);
      const pages = m.memory.allocScattered(8, 3);
      const rng = new Rng(1);
      const data = new Uint8Array(8 * 4096).map(() => rng.nextU32() % 256);
      pages.forEach((p, i) => m.memory.write(p * 4096, data, i * 4096, 4096));
      const lim = queueLimits({ maxSegments: 128, maxHwSectors: 2048, dmaAlignment: 3 });
      const req = blkRqFromBios(lim, [
        bioFromBvecs(
          "write",
          0,
          pages.map((p) => bvecFromPhys(p * 4096, 4096)),
        ),
      ]);
      const state = new DmaIovaState();
      const iter = blkDmaIter();
      const segs: { addr: number; len: number }[] = [];
      expect(blkRqDmaMapIterStart(req, m.dev, state, iter)).toBe(true);
      segs.push({ addr: iter.addr, len: iter.len });
      if (!blkRqDmaMapCoalesce(state)) {
        while (blkRqDmaMapIterNext(req, m.dev, state, iter))
          segs.push({ addr: iter.addr, len: iter.len });
      }
      expect(segs.length).toBe(mode === "strict" || mode === "lazy" ? 1 : 8);
      const got = new Uint8Array(8 * 4096);
      let at = 0;
      for (const s of segs) {
        expect(m.dma.read(s.addr, got, at, s.len).ok).toBe(true);
        at += s.len;
      }
      expect(Buffer.compare(got, data)).toBe(0);
      if (!blkRqDmaUnmap(req, m.dev, state, 8 * 4096, iter.p2p)) {
        for (const s of segs) dmaUnmapPhys(m.dev, s.addr, s.len, DMA_TO_DEVICE);
      }
      m.clock.advance(2e9);
      expect(m.debug!.errors).toEqual([]);
      expect(m.debug!.outstanding()).toBe(0);
    });
  }

  it("bounces a sub-page buffer for an untrusted device and copies back on unmap", () => {
    const m = machine("untrusted");
    const phys = m.memory.allocPages(0) * 4096 + 0x100;
    m.memory.fill(phys, 0x200, 0xaa);
    const addr = dmaMapPhys(m.dev, phys, 0x200, DMA_FROM_DEVICE);
    expect(addr % 4096).toBe(0x100);
    expect(m.dev.swiotlb?.counters.c.slotsInUse).toBeGreaterThan(0);
    expect(m.dma.write(addr, new Uint8Array(0x200).fill(0x55)).ok).toBe(true);
    expect(m.memory.readBytes(phys, 4)).toEqual(new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa]));
    dmaUnmapPhys(m.dev, addr, 0x200, DMA_FROM_DEVICE);
    expect(m.memory.readBytes(phys, 4)).toEqual(new Uint8Array([0x55, 0x55, 0x55, 0x55]));
    expect(m.dev.swiotlb?.counters.c.slotsInUse).toBe(0);
    expect(m.debug!.errors).toEqual([]);
  });
});
