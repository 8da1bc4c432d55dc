import { describe, expect, it, vi } from "vitest";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_DEBUG_CLASS,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  dmaGetMergeBoundary,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMaxMappingSize,
  dmaNeedUnmap,
  dmaOptMappingSize,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
} from "../src/index.ts";
import {
  G4,
  GiB,
  KiB,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
  codeOf,
} from "../src/testing/index.ts";

describe("mapping", () => {
  describe("dmaMapPhys under an IOMMU", () => {
    it("keeps the sub-granule offset of every phys in the returned address", () => {
      const m = machine("strict");
      const page = m.memory.allocPages(2) * 4096;
      expect(page).toBeGreaterThanOrEqual(G4);
      const b = baseline(m);
      for (const [off, size] of [
        [0, 0x1000],
        [1, 1],
        [0x7ff, 0x802],
        [0xfff, 2],
        [0x123, 0x2000],
      ] as const) {
        const mapped0 = m.domain!.counters.c.bytesMapped;
        const addr = dmaMapPhys(m.dev, page + off, size, DMA_TO_DEVICE);
        expect(addr % 4096).toBe(off);
        // The granule-rounded footprint is mapped.
        const foot = Math.ceil((off + size) / 4096) * 4096;
        expect(m.domain!.counters.c.bytesMapped - mapped0).toBe(foot);
        expect(m.domain!.iovaToPhys(addr)).toBe(page + off);
        expect(m.domain!.iovaToPhys(addr + size - 1)).toBe(page + off + size - 1);
        dmaUnmapPhys(m.dev, addr, size, DMA_TO_DEVICE);
      }
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("gives PCI devices IOVA below 4 GiB first, then above once the 32-bit space fails", () => {
      const m = machine("strict");
      expect(m.dev.pci32bitWorkaround).toBe(true);
      const small = dmaMapPhys(m.dev, 4 * GiB + 0x234, 0x100, DMA_TO_DEVICE);
      expect(small).toBeLessThan(G4);
      expect(small % 4096).toBe(0x234);
      // Two 1 GiB mappings take [1 GiB, 3 GiB); [0, 1 GiB) holds pfn 0 and [3, 4 GiB) the MSI window.
      const a = dmaMapPhys(m.dev, 5 * GiB, GiB, DMA_TO_DEVICE);
      const b = dmaMapPhys(m.dev, 6 * GiB, GiB, DMA_TO_DEVICE);
      expect([a, b].sort()).toEqual([GiB, 2 * GiB]);
      expect(m.dev.pci32bitWorkaround).toBe(true);
      const c = dmaMapPhys(m.dev, 7 * GiB, GiB, DMA_TO_DEVICE);
      expect(c).toBeGreaterThanOrEqual(G4);
      expect(c).toBe(2 ** 48 - GiB);
      expect(m.dev.pci32bitWorkaround).toBe(false);
      // The workaround stays off: even a small mapping now goes above 4 GiB.
      const d = dmaMapPhys(m.dev, 4 * GiB + 0x10, 0x10, DMA_TO_DEVICE);
      expect(d).toBeGreaterThanOrEqual(G4);
      expect(d % 4096).toBe(0x10);
      for (const [addr, size] of [
        [small, 0x100],
        [a, GiB],
        [b, GiB],
        [c, GiB],
        [d, 0x10],
      ] as const)
        dmaUnmapPhys(m.dev, addr, size, DMA_TO_DEVICE);
      expect(m.debug!.errors).toEqual([]);
    });

    it("does not try 32-bit IOVA first with forcedac", () => {
      const m = machine("strict", { iommuDma: { forcedac: true } });
      expect(m.dev.pci32bitWorkaround).toBe(false);
      const addr = dmaMapPhys(m.dev, 4 * GiB, 0x1000, DMA_TO_DEVICE);
      expect(addr).toBe(2 ** 48 - 0x1000);
      dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
    });

    it("keeps IOVA under a 32-bit streaming mask", () => {
      const m = machine("strict", { dev: { dmaMaskBits: 32, pci: false } });
      const addr = dmaMapPhys(m.dev, 4 * GiB + 8, 8, DMA_TO_DEVICE);
      expect(addr).toBe(G4 - 0x1000 + 8);
      dmaUnmapPhys(m.dev, addr, 8, DMA_TO_DEVICE);
    });

    it("invalidates the IOTLB before the IOVA is freed in strict mode", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(0) * 4096;
      const addr = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
      m.dma.read(addr, new Uint8Array(8));
      const sync = vi.spyOn(m.domain!, "iotlbSync");
      const free = vi.spyOn(m.dev.cookie!.iovad, "freeIovaFast");
      dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
      expect(sync).toHaveBeenCalledTimes(1);
      expect(free).toHaveBeenCalledTimes(1);
      expect(sync.mock.invocationCallOrder[0]!).toBeLessThan(free.mock.invocationCallOrder[0]!);
      // Strict: no stale translation is possible after unmap.
      m.debug!.reports.length = 0;
      expect(m.dma.read(addr, new Uint8Array(8)).ok).toBe(false);
    });

    it("queues the IOVA in lazy mode and frees it after the flush timeout", () => {
      const m = machine("lazy");
      const p = m.memory.allocPages(0) * 4096;
      const b = baseline(m);
      const addr = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
      expect(m.dev.cookie!.fq!.pending).toBe(1);
      expect(m.domain!.counters.c.iotlbSyncs).toBe(0);
      // The 10 ms timer in jiffies at HZ=250: 3 jiffies, fired at the 4th tick (at most 16 ms).
      m.clock.advance(16_000_000);
      expect(m.dev.cookie!.fq!.pending).toBe(0);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("warns and leaks the mapping when unmapping an IOVA that is not mapped (as Linux)", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(0) * 4096;
      const addr = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, addr + 0x10000, 0x1000, DMA_TO_DEVICE);
      const classes = m.debug!.reports.map((r) => r.class);
      expect(classes).toContain(DMA_DEBUG_CLASS.UNMAP_NOT_MAPPED);
      expect(classes).toContain(DMA_DEBUG_CLASS.WARN);
      expect(m.domain!.iovaToPhys(addr)).toBe(p);
      dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
    });

    it("warns when the unmap removes less than the mapped length, and still frees the IOVA", () => {
      const m = machine("strict");
      const p = m.memory.allocPages(1) * 4096;
      const b = baseline(m);
      const addr = dmaMapPhys(m.dev, p, 0x2000, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, addr, 0x3000, DMA_TO_DEVICE);
      const warn = m.debug!.reports.find((r) => r.call === "__iommu_dma_unmap");
      expect(warn?.message).toContain("0x2000 of 0x3000");
      expect(m.debug!.errors.map((r) => r.class)).toEqual([DMA_DEBUG_CLASS.UNMAP_SIZE]);
      expect(m.domain!.iovaToPhys(addr)).toBe(0);
      m.debug!.reports.length = 0;
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("fails with EINVAL when min_align_mask exceeds the granule", () => {
      const m = machine("strict", { dev: { minAlignMask: 0x1fff } });
      expect(codeOf(() => dmaMapPhys(m.dev, 4 * GiB, 0x1000, DMA_TO_DEVICE))).toBe("EINVAL");
      expect(m.dev.counters.c.mapFailures).toBe(1);
    });

    it("maps MMIO with the MMIO prot and unmaps it without a phys lookup", () => {
      const m = machine("strict", {
        regions: [{ start: 2 ** 40, size: 0x10_0000, kind: "mmio", owner: "bar" }],
      });
      const addr = dmaMapResource(m.dev, 2 ** 40 + 0x40, 0x40, DMA_BIDIRECTIONAL);
      expect(m.domain!.pgtable!.walk(addr).prot).toBeGreaterThan(0);
      dmaUnmapResource(m.dev, addr, 0x40, DMA_BIDIRECTIONAL);
      expect(m.domain!.iovaToPhys(addr)).toBe(0);
      expect(m.debug!.errors).toEqual([]);
    });

    it("bounces a sub-granule buffer of an untrusted device and syncs both ways", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(0) * 4096 + 0x80;
      const data = fillRandom(m.memory, phys, 0x100, 9);
      const b = baseline(m);
      const addr = dmaMapPhys(m.dev, phys, 0x100, DMA_BIDIRECTIONAL);
      expect(addr % 4096).toBe(0x80);
      expect(m.swiotlb!.isSwiotlbBuffer(m.domain!.iovaToPhys(addr))).toBe(true);
      // swiotlb_tbl_map_single -> dma_reset_need_sync: a bounced device always syncs.
      expect(m.dev.dmaSkipSync).toBe(false);
      // The CPU changes the buffer: sync for device copies it in again.
      m.memory.fill(phys, 0x10, 0x42);
      dmaSyncSingleForDevice(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      const got = new Uint8Array(0x100);
      m.dma.read(addr, got);
      expect(got.subarray(0, 0x10).every((x) => x === 0x42)).toBe(true);
      expect(got.subarray(0x10)).toEqual(data.subarray(0x10));
      // The device writes: sync for CPU copies it out.
      m.dma.write(addr, new Uint8Array(0x100).fill(0x99));
      dmaSyncSingleForCpu(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      expect(m.memory.readBytes(phys, 0x100).every((x) => x === 0x99)).toBe(true);
      dmaUnmapPhys(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("maps a granule-aligned buffer of an untrusted device without bouncing", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(1) * 4096;
      const addr = dmaMapPhys(m.dev, phys, 0x2000, DMA_TO_DEVICE);
      expect(m.domain!.iovaToPhys(addr)).toBe(phys);
      expect(m.swiotlb!.counters.c.maps).toBe(0);
      dmaUnmapPhys(m.dev, addr, 0x2000, DMA_TO_DEVICE);
    });

    it("fails with ENOMEM when an untrusted device has no SWIOTLB for a sub-granule buffer", () => {
      const m = machine("untrusted", { swiotlbBytes: 0 });
      expect(codeOf(() => dmaMapPhys(m.dev, 4 * GiB + 4, 4, DMA_TO_DEVICE))).toBe("ENOMEM");
    });

    it("skips the copy-back on unmap with DMA_ATTR_SKIP_CPU_SYNC", () => {
      const m = machine("untrusted");
      const phys = m.memory.allocPages(0) * 4096 + 0x80;
      m.memory.fill(phys, 0x100, 0x11);
      const addr = dmaMapPhys(m.dev, phys, 0x100, DMA_FROM_DEVICE);
      m.dma.write(addr, new Uint8Array(0x100).fill(0x22));
      dmaUnmapPhys(m.dev, addr, 0x100, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
      expect(m.memory.readBytes(phys, 1)[0]).toBe(0x11);
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    });
  });

  describe("the page wrappers and the checks", () => {
    it("maps a page as page * PAGE_SIZE + offset and refuses MMIO", () => {
      const m = machine("strict");
      const pfn = m.memory.allocPages(0);
      const addr = dmaMapPage(m.dev, pfn, 0x10, 0x20, DMA_TO_DEVICE);
      expect(m.domain!.iovaToPhys(addr)).toBe(pfn * 4096 + 0x10);
      dmaUnmapPage(m.dev, addr, 0x20, DMA_TO_DEVICE);
      expect(codeOf(() => dmaMapPage(m.dev, pfn, 0, 0x20, DMA_TO_DEVICE, DMA_ATTR_MMIO))).toBe(
        "EINVAL",
      );
      // Unmap of an MMIO page mapping is silently ignored, as Linux.
      dmaUnmapPage(m.dev, addr, 0x20, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      expect(m.debug!.errors).toEqual([]);
    });

    it("rejects bad directions, attrs, sizes and addresses with EINVAL naming the value", () => {
      const m = machine("none");
      expect(codeOf(() => dmaMapPhys(m.dev, 4 * GiB, 16, 7 as never))).toBe("EINVAL");
      let msg = "";
      try {
        dmaMapPhys(m.dev, 4 * GiB, 16, DMA_TO_DEVICE, 0x8000);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toContain("0x8000");
      expect(() => dmaMapPhys(m.dev, 4 * GiB, 0, DMA_TO_DEVICE)).toThrow();
      expect(() => dmaMapPhys(m.dev, -4096, 16, DMA_TO_DEVICE)).toThrow(/0x|-/);
      expect(() => dmaMapPhys(m.dev, 2 ** 53, 16, DMA_TO_DEVICE)).toThrow();
    });

    it("fails with EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device", () => {
      const m = machine("none", { dev: { coherent: false } });
      expect(
        codeOf(() => dmaMapPhys(m.dev, 4 * GiB, 16, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)),
      ).toBe("EOPNOTSUPP");
    });
  });

  describe("query helpers", () => {
    it("answers the merge boundary: granule - 1 under a DMA domain, else 0", () => {
      expect(dmaGetMergeBoundary(machine("strict").dev)).toBe(4095);
      expect(dmaGetMergeBoundary(machine("lazy").dev)).toBe(4095);
      expect(dmaGetMergeBoundary(machine("granule64k").dev)).toBe(65535);
      expect(dmaGetMergeBoundary(machine("none").dev)).toBe(0);
      expect(dmaGetMergeBoundary(machine("passthrough").dev)).toBe(0);
    });

    it("answers the optimal and maximal mapping sizes", () => {
      expect(dmaOptMappingSize(machine("strict").dev)).toBe(128 * KiB);
      expect(dmaMaxMappingSize(machine("strict").dev)).toBe(Number.MAX_SAFE_INTEGER);
      // Untrusted: the SWIOTLB limit, less the min_align_mask rounding.
      expect(dmaMaxMappingSize(machine("untrusted").dev)).toBe(256 * KiB - 4 * KiB);
      expect(dmaMaxMappingSize(machine("none").dev)).toBe(Number.MAX_SAFE_INTEGER);
      // Direct: the SWIOTLB limit only for an addressing-limited device (32-bit mask, 16 GiB).
      expect(dmaMaxMappingSize(machine("none", { swiotlbBytes: 256 * KiB }).dev)).toBe(
        Number.MAX_SAFE_INTEGER,
      );
      expect(
        dmaMaxMappingSize(
          machine("none", { swiotlbBytes: 256 * KiB, dev: { dmaMaskBits: 32 } }).dev,
        ),
      ).toBe(256 * KiB - 4 * KiB);
      expect(dmaOptMappingSize(machine("none").dev)).toBe(Number.MAX_SAFE_INTEGER);
    });

    it("answers dmaNeedUnmap true under an IOMMU, and with dma-debug on", () => {
      expect(dmaNeedUnmap(machine("strict", { debug: false }).dev)).toBe(true);
      expect(dmaNeedUnmap(machine("none").dev)).toBe(true);
      expect(dmaNeedUnmap(machine("none", { debug: false }).dev)).toBe(false);
      expect(dmaNeedUnmap(machine("passthrough", { debug: false }).dev)).toBe(false);
      expect(dmaNeedUnmap(machine("none", { debug: false, dev: { coherent: false } }).dev)).toBe(
        true,
      );
    });
  });
});
