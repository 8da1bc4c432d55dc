import type { KernelVersion } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  ACTIVE_CACHELINE_MAX_OVERLAP,
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_DEBUG_CLASS,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaDebugClass,
  DmaError,
  L1_CACHE_BYTES,
  SgTable,
  blkRqMapSg,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMapSgtable,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
  dmaUnmapSgtable,
} from "../src/index.ts";
import {
  GiB,
  type Machine,
  MiB,
  type MachineOptions,
  machine,
  request,
} from "../src/testing/index.ts";

/** RAM above 4 GiB, cacheline-aligned (the "none" backend: DMA address = phys). */
const RAM = 6 * GiB + 0x1000;
/** A device BAR (MMIO, not RAM) above 4 GiB. */
const BAR = 2 ** 40;

function on(kernel: KernelVersion, o: MachineOptions = {}): Machine {
  return machine("none", {
    ...o,
    regions: [{ start: BAR, size: MiB, kind: "mmio", owner: "bar0" }],
    dev: { kernel, ...o.dev },
  });
}

function classes(m: Machine): DmaDebugClass[] {
  return m.debug!.reports.map((r) => r.class);
}

describe("dma-debug by kernel release", () => {
  describe("active cacheline tracking (debug_dma_map_phys, add_dma_entry)", () => {
    it("reports a second device-writable mapping of the same first cacheline", () => {
      const m = on("7.0");
      const a = dmaMapPhys(m.dev, RAM, 0x100, DMA_FROM_DEVICE);
      // Starts 32 bytes in: the same first cacheline.
      const b = dmaMapPhys(m.dev, RAM + 0x20, 0x20, DMA_BIDIRECTIONAL);
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.CACHELINE_OVERLAP]);
      expect(m.debug!.reports[0]!.message).toContain(
        "cacheline tracking EEXIST, overlapping mappings aren't supported",
      );
      expect(m.debug!.reports[0]!.addr).toBe(b);
      dmaUnmapPhys(m.dev, b, 0x20, DMA_BIDIRECTIONAL);
      dmaUnmapPhys(m.dev, a, 0x100, DMA_FROM_DEVICE);
      expect(m.debug!.activeCachelines).toBe(0);
      // The lines were released: mapping one of them again is no overlap.
      const c = dmaMapPhys(m.dev, RAM + 0x20, 0x20, DMA_FROM_DEVICE);
      dmaUnmapPhys(m.dev, c, 0x20, DMA_FROM_DEVICE);
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.CACHELINE_OVERLAP]);
    });

    it("keys on the first cacheline only, and ignores DMA_TO_DEVICE mappings", () => {
      const m = on("7.0");
      const a = dmaMapPhys(m.dev, RAM, 0x100, DMA_FROM_DEVICE);
      // Inside the first mapping, but its first line is the next one: not tracked as overlap.
      const b = dmaMapPhys(m.dev, RAM + L1_CACHE_BYTES, 0x40, DMA_FROM_DEVICE);
      // The device only reads: no stale-data concern, not inserted.
      const c = dmaMapPhys(m.dev, RAM, 0x40, DMA_TO_DEVICE);
      const d = dmaMapPhys(m.dev, RAM, 0x40, DMA_TO_DEVICE);
      expect(classes(m)).toEqual([]);
      expect(m.debug!.activeCachelines).toBe(2);
      dmaUnmapPhys(m.dev, d, 0x40, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, c, 0x40, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, b, 0x40, DMA_FROM_DEVICE);
      dmaUnmapPhys(m.dev, a, 0x100, DMA_FROM_DEVICE);
      expect(m.debug!.activeCachelines).toBe(0);
      expect(m.debug!.errors).toEqual([]);
    });

    it("is suppressed when the new mapping has DMA_ATTR_SKIP_CPU_SYNC", () => {
      for (const k of ["6.19", "7.0"] as const) {
        const m = on(k);
        dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE);
        dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
        expect(classes(m), k).toEqual([]);
      }
    });

    it("tracks each scatterlist entry's first cacheline", () => {
      const m = on("7.0");
      const single = dmaMapPhys(m.dev, RAM + 0x2000, 0x40, DMA_FROM_DEVICE);
      const sgt = new SgTable(2);
      blkRqMapSg(
        request("read", [
          { phys: RAM, len: 0x1000 },
          { phys: RAM + 0x2000, len: 0x1000 },
        ]),
        sgt,
      );
      dmaMapSgtable(m.dev, sgt, DMA_FROM_DEVICE);
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.CACHELINE_OVERLAP]);
      expect(m.debug!.reports[0]!.call).toBe("dma_map_sg");
      dmaUnmapSgtable(m.dev, sgt, DMA_FROM_DEVICE);
      dmaUnmapPhys(m.dev, single, 0x40, DMA_FROM_DEVICE);
      expect(m.debug!.activeCachelines).toBe(0);
    });

    it("saturates the overlap count at 7 with one warning and still balances unmaps", () => {
      const m = on("7.0");
      const n = ACTIVE_CACHELINE_MAX_OVERLAP + 2;
      const addrs = Array.from({ length: n }, () => dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE));
      const got = classes(m);
      expect(got.filter((c) => c === DMA_DEBUG_CLASS.CACHELINE_OVERLAP)).toHaveLength(n - 1);
      const warns = m.debug!.reports.filter((r) => r.class === DMA_DEBUG_CLASS.WARN);
      expect(warns).toHaveLength(1);
      expect(warns[0]!.message).toContain(
        `exceeded 7 overlapping mappings of cacheline 0x${(RAM / 64).toString(16)}`,
      );
      for (const a of addrs) dmaUnmapPhys(m.dev, a, 0x40, DMA_FROM_DEVICE);
      expect(m.debug!.activeCachelines).toBe(0);
      expect(m.debug!.errors.filter((r) => r.class !== DMA_DEBUG_CLASS.CACHELINE_OVERLAP)).toEqual(
        [],
      );
    });

    it("7.0: DMA_ATTR_DEBUGGING_IGNORE_CACHELINES on both mappings silences the overlap", () => {
      const m = on("7.0");
      dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES);
      dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES);
      // DMA_ATTR_REQUIRE_COHERENT marks a mapping cache-clean too (coherent device).
      dmaMapPhys(m.dev, RAM, 0x40, DMA_FROM_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
      expect(classes(m)).toEqual([]);
      // The first mapping of the line was not cache-clean: the attribute on the second is not enough.
      dmaMapPhys(m.dev, RAM + 0x100, 0x40, DMA_FROM_DEVICE);
      dmaMapPhys(m.dev, RAM + 0x100, 0x40, DMA_FROM_DEVICE, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES);
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.CACHELINE_OVERLAP]);
    });

    it("6.19: the cache-clean attributes do not exist, so the overlap is reported", () => {
      // Through the dma-debug hook: the mapping layer refuses the unknown attribute on 6.19.
      const m = on("6.19");
      const attrs = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES;
      m.debug!.mapPhys(m.dev, RAM, RAM, 0x40, DMA_FROM_DEVICE, attrs, "phy");
      m.debug!.mapPhys(m.dev, RAM + 8, RAM + 8, 0x40, DMA_FROM_DEVICE, attrs, "phy");
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.CACHELINE_OVERLAP]);
    });
  });

  describe('the recorded mapping type (gate "dma-debug-phys")', () => {
    it('6.18 and 7.0: dma_map_phys and dma_map_resource both record "phy"', () => {
      for (const k of ["6.18", "7.0"] as const) {
        const m = on(k);
        const a = dmaMapPhys(m.dev, RAM, 0x100, DMA_TO_DEVICE);
        dmaUnmapResource(m.dev, a, 0x100, DMA_TO_DEVICE);
        const r = dmaMapResource(m.dev, BAR, 0x100, DMA_TO_DEVICE);
        expect(m.debug!.checkLeaks(m.dev), k).toBe(1);
        expect(m.debug!.reports.at(-1)!.message, k).toContain("[mapped as phy]");
        dmaUnmapPhys(m.dev, r, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
        expect(classes(m), k).toEqual([DMA_DEBUG_CLASS.LEAK]);
        expect(m.debug!.outstanding(m.dev), k).toBe(0);
      }
    });

    it('6.17: dma_map_page records "single" and dma_map_resource "resource"', () => {
      const m = on("6.17");
      const a = dmaMapPage(m.dev, RAM / 4096, 0, 0x100, DMA_TO_DEVICE);
      expect(m.debug!.checkLeaks(m.dev)).toBe(1);
      expect(m.debug!.reports.at(-1)!.message).toContain("[mapped as single]");
      dmaUnmapPage(m.dev, a, 0x100, DMA_TO_DEVICE);
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.LEAK]);
      // A page mapping freed as a resource is the wrong function (hooks: dma_unmap_resource of
      // a dma_map_page entry).
      m.debug!.mapPhys(m.dev, RAM, RAM, 0x100, DMA_TO_DEVICE, 0, "phy");
      m.debug!.unmap(m.dev, RAM, 0x100, DMA_TO_DEVICE, "resource", "dma_unmap_resource");
      expect(classes(m)).toEqual([DMA_DEBUG_CLASS.LEAK, DMA_DEBUG_CLASS.UNMAP_TYPE]);
      expect(m.debug!.reports.at(-1)!.message).toContain(
        "[mapped as single] [unmapped as resource]",
      );
    });
  });

  describe("dma_map_resource of RAM", () => {
    it("6.18 and 7.0: a dma-debug report, and the mapping goes ahead", () => {
      for (const k of ["6.18", "7.0"] as const) {
        const m = on(k);
        const a = dmaMapResource(m.dev, RAM, 0x100, DMA_BIDIRECTIONAL);
        expect(a, k).toBe(RAM);
        expect(classes(m), k).toEqual([DMA_DEBUG_CLASS.MAP_RESOURCE_RAM]);
        expect(m.debug!.reports[0]!.message, k).toBe(
          `DMA-API: nvme0: dma_map_resource called for RAM address 0x${RAM.toString(16)}`,
        );
        dmaUnmapResource(m.dev, a, 0x100, DMA_BIDIRECTIONAL);
        // dma_map_phys with DMA_ATTR_MMIO goes through the same check.
        const b = dmaMapPhys(m.dev, RAM, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
        dmaUnmapPhys(m.dev, b, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
        // A BAR is not RAM.
        const r = dmaMapResource(m.dev, BAR, 0x100, DMA_BIDIRECTIONAL);
        dmaUnmapResource(m.dev, r, 0x100, DMA_BIDIRECTIONAL);
        expect(classes(m), k).toEqual([
          DMA_DEBUG_CLASS.MAP_RESOURCE_RAM,
          DMA_DEBUG_CLASS.MAP_RESOURCE_RAM,
        ]);
        expect(m.debug!.outstanding(m.dev), k).toBe(0);
      }
    });

    it("6.19 with dma-debug: refused (DMA_MAPPING_ERROR), with no report", () => {
      const m = on("6.19");
      let err: unknown;
      try {
        dmaMapResource(m.dev, RAM, 0x100, DMA_BIDIRECTIONAL);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DmaError);
      expect((err as DmaError).code).toBe("EINVAL");
      expect((err as DmaError).message).toMatch(/RAM address 0x180001000/);
      expect(m.dev.counters.c.mapFailures).toBe(1);
      expect(m.dev.counters.c.maps).toBe(0);
      expect(classes(m)).toEqual([]);
      const r = dmaMapResource(m.dev, BAR, 0x100, DMA_BIDIRECTIONAL);
      dmaUnmapResource(m.dev, r, 0x100, DMA_BIDIRECTIONAL);
      expect(classes(m)).toEqual([]);
    });

    it("is not checked without dma-debug, nor on 6.17", () => {
      for (const k of ["6.17", "6.18", "6.19", "7.0"] as const) {
        const m = on(k, { debug: false });
        const a = dmaMapResource(m.dev, RAM, 0x100, DMA_BIDIRECTIONAL);
        expect(a, k).toBe(RAM);
        dmaUnmapResource(m.dev, a, 0x100, DMA_BIDIRECTIONAL);
      }
      const m = on("6.17");
      const a = dmaMapResource(m.dev, RAM, 0x100, DMA_BIDIRECTIONAL);
      dmaUnmapResource(m.dev, a, 0x100, DMA_BIDIRECTIONAL);
      expect(classes(m)).toEqual([]);
    });
  });
});
