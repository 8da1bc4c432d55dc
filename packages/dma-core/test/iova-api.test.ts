import { describe, expect, it, vi } from "vitest";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIDIRECTIONAL,
  DMA_DEBUG_CLASS,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaError,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaUseIova,
} from "../src/index.ts";
import {
  G4,
  KiB,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
  codeOf,
} from "../src/testing/index.ts";

describe("iova-api", () => {
  describe("worked example A: one unaligned buffer", () => {
    it("allocates a 4-page block aligned to 16 KiB below 4 GiB and keeps the sub-granule offset", () => {
      const m = machine("strict");
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, 0x1234_5678, 0x3000)).toBe(true);
      expect(state.addr).toBe(0xffff_c678);
      expect(dmaIovaSize(state)).toBe(0x3000);
      expect(dmaUseIova(state)).toBe(true);
      const iovad = m.dev.cookie!.iovad;
      expect(iovad.findIova(0xffffc)).toEqual({ pfnLo: 0xffffc, pfnHi: 0xfffff });
    });

    it("links the granule-rounded window, syncs it once and destroys it (phys above 4 GiB)", () => {
      const m = machine("strict");
      const phys = 3 * G4 + 0x1234_5678;
      const data = fillRandom(m.memory, phys, 0x3000, 1);
      const b = baseline(m);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, phys, 0x3000)).toBe(true);
      const B = state.addr - 0x678;
      expect(B % 0x4000).toBe(0);
      const dc = m.domain!.counters.c;
      const mapped0 = dc.bytesMapped;
      const syncs0 = dc.syncMapCalls;
      expect(dmaIovaLink(m.dev, state, phys, 0, 0x3000, DMA_TO_DEVICE)).toBe(state.addr);
      expect(dc.bytesMapped - mapped0).toBe(0x4000);
      expect(dc.syncMapCalls).toBe(syncs0); // link maps without syncing
      for (let k = 0; k < 0x4000; k += 0x1000)
        expect(m.domain!.iovaToPhys(B + k)).toBe(phys - 0x678 + k);
      const spy = vi.spyOn(m.domain!, "syncMap");
      dmaIovaSync(m.dev, state, 0, 0x3000);
      expect(spy).toHaveBeenCalledWith(B, 0x4000);
      expect(dc.syncMapCalls).toBe(syncs0 + 1);
      const got = new Uint8Array(0x3000);
      expect(m.dma.read(state.addr, got).ok).toBe(true);
      expect(got).toEqual(data);
      // Byte k of the buffer is at state.addr + k.
      const one = new Uint8Array(1);
      m.dma.read(state.addr + 0x2abc, one);
      expect(one[0]).toBe(data[0x2abc]);
      const unmapped0 = dc.bytesUnmapped;
      dmaIovaDestroy(m.dev, state, 0x3000, DMA_TO_DEVICE);
      expect(dc.bytesUnmapped - unmapped0).toBe(0x4000);
      expect(m.domain!.iovaToPhys(B)).toBe(0);
      // The 4 pages went to the rcache: the same size comes back at the same base.
      const again = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, again, phys, 0x3000)).toBe(true);
      expect(again.addr).toBe(state.addr);
      dmaIovaFree(m.dev, again);
      expect(leaks(m, b).liveIova).toBe(0);
      expect(m.debug!.reports).toEqual([]);
    });
  });

  describe("worked example B: alignment of later links", () => {
    it("fails with EINVAL when a later link's IOVA is not granule-aligned", () => {
      const m = machine("strict");
      const p0 = m.memory.allocPages(1) * 4096;
      const p1 = m.memory.allocPages(1) * 4096;
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, p0, 0x3000)).toBe(true);
      dmaIovaLink(m.dev, state, p0, 0, 0x1800, DMA_TO_DEVICE);
      const e = (() => {
        try {
          dmaIovaLink(m.dev, state, p1, 0x1800, 0x1800, DMA_TO_DEVICE);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(DmaError);
      expect((e as DmaError).code).toBe("EINVAL");
      expect((e as DmaError).message).toMatch(/0x/);
      // Nothing of the failed link stays mapped.
      expect(m.domain!.iovaToPhys(state.addr + 0x2000)).toBe(0);
      dmaIovaDestroy(m.dev, state, 0x1800, DMA_TO_DEVICE);
      expect(m.debug!.errors).toEqual([]);
    });

    it("fails with EIO when a link after the first starts at an unaligned phys", () => {
      const m = machine("strict");
      const p0 = m.memory.allocPages(1) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p0, 0x3000);
      dmaIovaLink(m.dev, state, p0, 0, 0x1000, DMA_TO_DEVICE);
      let err: unknown;
      try {
        dmaIovaLink(m.dev, state, p0 + 0x1200, 0x1000, 0x800, DMA_TO_DEVICE);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DmaError);
      expect((err as DmaError).code).toBe("EIO");
      expect((err as DmaError).message).toContain((p0 + 0x1200).toString(16));
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_TO_DEVICE);
      expect(m.debug!.errors).toEqual([]);
    });

    it("accepts an unaligned phys at offset 0 and a short last link", () => {
      const m = machine("strict");
      const p0 = m.memory.allocPages(0) * 4096;
      const p1 = m.memory.allocPages(0) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p0 + 0x800, 0x1000);
      expect(dmaIovaLink(m.dev, state, p0 + 0x800, 0, 0x800, DMA_TO_DEVICE)).toBe(state.addr);
      expect(dmaIovaLink(m.dev, state, p1, 0x800, 0x800, DMA_TO_DEVICE)).toBe(state.addr + 0x800);
      expect(m.domain!.iovaToPhys(state.addr + 0x800)).toBe(p1);
      dmaIovaSync(m.dev, state, 0, 0x1000);
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_TO_DEVICE);
      expect(m.debug!.errors).toEqual([]);
    });
  });

  describe("worked example C: three discontiguous pages", () => {
    it("links at 0, 4K and 8K, syncs once and frees 3 pages into the 4-page class", () => {
      const m = machine("strict");
      const pages = m.memory.allocScattered(3, 7);
      const data = pages.map((p, i) => fillRandom(m.memory, p * 4096, 4096, 10 + i));
      const b = baseline(m);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, 0, 12 * KiB)).toBe(true);
      expect(state.addr % (16 * KiB)).toBe(0);
      const iovad = m.dev.cookie!.iovad;
      const base = state.addr;
      expect(iovad.findIova(base / 4096)).toEqual({
        pfnLo: base / 4096,
        pfnHi: base / 4096 + 3,
      });
      pages.forEach((p, i) => {
        expect(dmaIovaLink(m.dev, state, p * 4096, i * 4096, 4096, DMA_TO_DEVICE)).toBe(
          base + i * 4096,
        );
      });
      const syncs0 = m.domain!.counters.c.syncMapCalls;
      dmaIovaSync(m.dev, state, 0, 12 * KiB);
      expect(m.domain!.counters.c.syncMapCalls).toBe(syncs0 + 1);
      for (let i = 0; i < 3; i++) {
        const got = new Uint8Array(4096);
        expect(m.dma.read(base + i * 4096, got).ok).toBe(true);
        expect(got).toEqual(data[i]);
      }
      const spy = vi.spyOn(iovad, "freeIovaFast");
      dmaIovaDestroy(m.dev, state, 12 * KiB, DMA_TO_DEVICE);
      expect(spy).toHaveBeenCalledWith(base / 4096, 3, 0);
      const hits = iovad.counters.c.allocRcacheHit;
      const again = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, again, 0, 16 * KiB);
      expect(iovad.counters.c.allocRcacheHit).toBe(hits + 1);
      expect(again.addr).toBe(base);
      dmaIovaFree(m.dev, again);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });
  });

  describe("worked example D: head and tail bouncing for an untrusted device", () => {
    it("bounces the head and the tail, links the aligned middle directly and zeroes the padding", () => {
      const m = machine("untrusted");
      const page = m.memory.allocPages(2) * 4096;
      const phys = page + 0x100;
      // Stale data around the buffer that must not reach the device.
      m.memory.fill(page, 0x4000, 0xee);
      const data = fillRandom(m.memory, phys, 0x2000, 3);
      const b = baseline(m);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, phys, 0x2000)).toBe(true);
      expect(state.addr % 4096).toBe(0x100);
      const sw = m.swiotlb!;
      expect(dmaIovaLink(m.dev, state, phys, 0, 0x2000, DMA_TO_DEVICE)).toBe(state.addr);
      expect(sw.counters.c.maps).toBe(2);
      expect(sw.counters.c.bouncedBytesToDevice).toBe(0xf00 + 0x100);
      const d = m.domain!;
      expect(sw.isSwiotlbBuffer(d.iovaToPhys(state.addr))).toBe(true);
      expect(d.iovaToPhys(state.addr + 0xf00)).toBe(phys + 0xf00);
      expect(sw.isSwiotlbBuffer(d.iovaToPhys(state.addr + 0x1f00))).toBe(true);
      dmaIovaSync(m.dev, state, 0, 0x2000);
      const got = new Uint8Array(0x2000);
      expect(m.dma.read(state.addr, got).ok).toBe(true);
      expect(got).toEqual(data);
      // The padding of the bounce granules reads as zeros, not as the stale 0xee bytes.
      const head = new Uint8Array(0x100);
      const tail = new Uint8Array(0xf00);
      m.debug!.reports.length = 0;
      m.dma.read(state.addr - 0x100, head);
      m.dma.read(state.addr + 0x2000, tail);
      expect(head.every((x) => x === 0)).toBe(true);
      expect(tail.every((x) => x === 0)).toBe(true);
      m.debug!.reports.length = 0;
      const walk = vi.spyOn(d, "iovaToPhys");
      dmaIovaDestroy(m.dev, state, 0x2000, DMA_TO_DEVICE);
      // The sticky bounce flag makes destroy walk granule by granule (3 granules).
      expect(walk).toHaveBeenCalledTimes(3);
      expect(sw.counters.c.slotsInUse).toBe(0);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("copies device writes back to the original through the bounce slots on destroy", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(2) * 4096 + 0x100;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, phys, 0x2000);
      dmaIovaLink(m.dev, state, phys, 0, 0x2000, DMA_FROM_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x2000);
      const pattern = new Uint8Array(0x2000).map((_, i) => (i * 7) % 251);
      expect(m.dma.write(state.addr, pattern).ok).toBe(true);
      // The head and tail are in bounce slots: the original does not see them yet.
      expect(m.memory.readBytes(phys, 1)[0]).not.toBe(pattern[0] === 0 ? 1 : pattern[0]);
      dmaIovaDestroy(m.dev, state, 0x2000, DMA_FROM_DEVICE);
      expect(m.memory.readBytes(phys, 0x2000)).toEqual(pattern);
      expect(m.debug!.errors).toEqual([]);
    });

    it("unwinds a later link whose tail bounce fails at its own offset, not at 0", () => {
      const m = machine("untrusted");
      const p0 = m.memory.allocPages(0) * 4096;
      const p1 = m.memory.allocPages(1) * 4096;
      const b = baseline(m);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p0, 0x2800);
      dmaIovaLink(m.dev, state, p0, 0, 0x1000, DMA_TO_DEVICE);
      m.swiotlb!.faultHook = () => true;
      expect(codeOf(() => dmaIovaLink(m.dev, state, p1, 0x1000, 0x1800, DMA_TO_DEVICE))).toBe(
        "ENOMEM",
      );
      m.swiotlb!.faultHook = undefined;
      // The first link is intact; the failed link's middle page is gone again.
      expect(m.domain!.iovaToPhys(state.addr)).toBe(p0);
      expect(m.domain!.iovaToPhys(state.addr + 0x1000)).toBe(0);
      dmaIovaSync(m.dev, state, 0, 0x1000);
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("refuses MMIO that would need bouncing with EPERM", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(0) * 4096 + 0x40;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, phys, 0x100);
      expect(
        codeOf(() => dmaIovaLink(m.dev, state, phys, 0, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO)),
      ).toBe("EPERM");
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
      dmaIovaFree(m.dev, state);
    });

    it("links a sub-granule buffer that is only a head (no middle, no tail)", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(0) * 4096 + 0x300;
      const data = fillRandom(m.memory, phys, 0x200, 5);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, phys, 0x200);
      dmaIovaLink(m.dev, state, phys, 0, 0x200, DMA_TO_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x200);
      const got = new Uint8Array(0x200);
      m.dma.read(state.addr, got);
      expect(got).toEqual(data);
      expect(m.swiotlb!.counters.c.maps).toBe(1);
      dmaIovaDestroy(m.dev, state, 0x200, DMA_TO_DEVICE);
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    });

    it("bounces head and tail of a buffer that spans two granules with no aligned middle", () => {
      const m = machine("untrusted");
      const page = m.memory.allocPages(1) * 4096;
      const phys = page + 0xc00;
      const data = fillRandom(m.memory, phys, 0x800, 6);
      const b = baseline(m);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, phys, 0x800);
      const mapCalls = m.domain!.counters.c.mapCalls;
      dmaIovaLink(m.dev, state, phys, 0, 0x800, DMA_TO_DEVICE);
      // Head and tail only: no zero-length map of the empty middle.
      expect(m.domain!.counters.c.mapCalls - mapCalls).toBe(2);
      dmaIovaSync(m.dev, state, 0, 0x800);
      const got = new Uint8Array(0x800);
      m.dma.read(state.addr, got);
      expect(got).toEqual(data);
      dmaIovaDestroy(m.dev, state, 0x800, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });
  });

  describe("unlink, free and destroy", () => {
    it("unlinks with a synchronous invalidation even in lazy mode and never frees the IOVA", () => {
      const m = machine("lazy");
      const p = m.memory.allocPages(1) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x2000);
      dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_TO_DEVICE);
      dmaIovaLink(m.dev, state, p + 0x1000, 0x1000, 0x1000, DMA_TO_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x2000);
      const dc = m.domain!.counters.c;
      const syncs = dc.iotlbSyncs;
      const iovad = m.dev.cookie!.iovad;
      const frees = iovad.counters.c.freeFastCalls;
      dmaIovaUnlink(m.dev, state, 0x1000, 0x1000, DMA_TO_DEVICE);
      expect(dc.iotlbSyncs).toBe(syncs + 1);
      expect(m.dev.cookie!.fq!.pending).toBe(0);
      expect(iovad.counters.c.freeFastCalls).toBe(frees);
      expect(m.domain!.iovaToPhys(state.addr + 0x1000)).toBe(0);
      // Re-linking the unlinked range is legal.
      dmaIovaLink(m.dev, state, p + 0x1000, 0x1000, 0x1000, DMA_TO_DEVICE);
      dmaIovaUnlink(m.dev, state, 0, 0x1000, DMA_TO_DEVICE);
      dmaIovaUnlink(m.dev, state, 0x1000, 0x1000, DMA_TO_DEVICE);
      dmaIovaFree(m.dev, state);
      // Free never goes through the flush queue.
      expect(m.dev.cookie!.fq!.pending).toBe(0);
      expect(iovad.counters.c.freeFastCalls).toBe(frees + 1);
      expect(m.debug!.errors).toEqual([]);
    });

    it("destroys lazily in lazy mode: one queued entry, no per-call invalidation", () => {
      const m = machine("lazy");
      const p = m.memory.allocPages(1) * 4096;
      const b = baseline(m);
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x2000);
      dmaIovaLink(m.dev, state, p, 0, 0x2000, DMA_TO_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x2000);
      const syncs = m.domain!.counters.c.iotlbSyncs;
      dmaIovaDestroy(m.dev, state, 0x2000, DMA_TO_DEVICE);
      expect(m.domain!.counters.c.iotlbSyncs).toBe(syncs);
      expect(m.dev.cookie!.fq!.pending).toBe(1);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("frees only the granule-rounded mapped length on a partial destroy (upstream behaviour)", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(3) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x8000);
      dmaIovaLink(m.dev, state, p, 0, 0x3000, DMA_TO_DEVICE);
      dmaIovaSync(m.dev, state, 0, 0x3000);
      const spy = vi.spyOn(m.dev.cookie!.iovad, "freeIovaFast");
      dmaIovaDestroy(m.dev, state, 0x3000, DMA_TO_DEVICE);
      expect(spy).toHaveBeenCalledWith(state.addr / 4096, 3, 0);
    });

    it("treats destroy of length 0 as free", () => {
      const m = machine("lazy");
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, 0, 0x4000);
      const spy = vi.spyOn(m.dev.cookie!.iovad, "freeIovaFast");
      dmaIovaDestroy(m.dev, state, 0, DMA_TO_DEVICE);
      expect(spy).toHaveBeenCalledWith(state.addr / 4096, 4, 0);
      expect(m.dev.cookie!.fq!.pending).toBe(0);
    });

    it("throws EINVAL on use after free and reports it", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(0) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x1000);
      dmaIovaFree(m.dev, state);
      expect(codeOf(() => dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_TO_DEVICE))).toBe("EINVAL");
      expect(m.debug!.errors.map((r) => r.class)).toEqual([DMA_DEBUG_CLASS.IOVA_USE_AFTER_FREE]);
    });
  });

  describe("try-alloc", () => {
    it("returns false for size 0, leaving the state zeroed", () => {
      const m = machine("strict");
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, 0, 0x1000);
      expect(dmaIovaTryAlloc(m.dev, state, 0x1000, 0)).toBe(false);
      expect(state.addr).toBe(0);
      expect(dmaUseIova(state)).toBe(false);
    });

    it("returns false on IOVA exhaustion and the state is zeroed", () => {
      const m = machine("strict", { apertureEnd: 0x3fff });
      const s1 = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, s1, 0, 0x2000)).toBe(true);
      const s2 = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, s2, 0, 0x2000)).toBe(false);
      expect(dmaUseIova(s2)).toBe(false);
      expect(m.dev.counters.c.iovaTryAllocFailures).toBe(1);
      dmaIovaFree(m.dev, s1);
    });

    it("places IOVA near 2^48 once the 32-bit space is exhausted for a 48-bit aperture", () => {
      const m = machine("strict", { dev: { pci: false } });
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, 0, 0x1000);
      expect(state.addr).toBe(2 ** 48 - 0x1000);
      dmaIovaFree(m.dev, state);
    });

    it("reports EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device", () => {
      const m = machine("strict", { dev: { coherent: false } });
      const p = m.memory.allocPages(0) * 4096;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x1000);
      expect(
        codeOf(() =>
          dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT),
        ),
      ).toBe("EOPNOTSUPP");
      dmaIovaFree(m.dev, state);
    });

    it("counts cache maintenance over the granule-rounded range on a non-coherent device", () => {
      const m = machine("strict", { dev: { coherent: false } });
      const p = m.memory.allocPages(1) * 4096 + 0x10;
      const state = new DmaIovaState();
      dmaIovaTryAlloc(m.dev, state, p, 0x1000);
      dmaIovaLink(m.dev, state, p, 0, 0x1000, DMA_FROM_DEVICE);
      expect(m.dev.counters.c.cacheCleanBytes).toBe(0x2000);
      dmaIovaSync(m.dev, state, 0, 0x1000);
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_FROM_DEVICE);
      // for_cpu maintenance per granule chunk of the unlinked range.
      expect(m.dev.counters.c.cacheInvalidateBytes).toBe(0x1000);
    });
  });
});
