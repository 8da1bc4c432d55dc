/**
 * Kernel-version gates of the streaming API (mapping.ts `checkAttrs`, `dmaMapPhys`) and of the
 * two-step API's bounce unwind (iova-api.ts `iovaLinkSwiotlb`): each gate on a release that
 * has it and one that does not.
 */
import type { KernelVersion } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIDIRECTIONAL,
  DMA_TO_DEVICE,
  DmaError,
  DmaIovaState,
  SgTable,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaTryAlloc,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMapSg,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
  dmaUnmapSg,
} from "../src/index.ts";
import {
  type Backend,
  MiB,
  NO_LEAKS,
  baseline,
  codeOf,
  leaks,
  machine,
} from "../src/testing/index.ts";

const BAR = 2 ** 40;

function on(kernel: KernelVersion, backend: Backend = "none", coherent = true) {
  return machine(backend, {
    regions: [{ start: BAR, size: MiB, kind: "p2p", owner: "gpu0" }],
    dev: { kernel, coherent },
  });
}

/** The one-line message of the DmaError `fn` throws. */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return "no error";
}

describe("kernel gates of the mapping entry points", () => {
  describe('"dma-map-phys"', () => {
    it("6.17: dma_map_phys and dma_unmap_phys are refused; dma_map_page and dma_map_resource work", () => {
      const m = on("6.17");
      const phys = m.memory.allocPages(0) * 4096;
      expect(phys).toBeGreaterThan(2 ** 32);
      const b = baseline(m);
      expect(messageOf(() => dmaMapPhys(m.dev, phys, 0x100, DMA_TO_DEVICE))).toBe(
        "EOPNOTSUPP: dma_map_phys is not in Linux 6.17",
      );
      expect(m.dev.counters.c.maps).toBe(0);
      const a = dmaMapPage(m.dev, phys / 4096, 0x40, 0x100, DMA_TO_DEVICE);
      expect(a).toBe(phys + 0x40);
      expect(messageOf(() => dmaUnmapPhys(m.dev, a, 0x100, DMA_TO_DEVICE))).toBe(
        "EOPNOTSUPP: dma_unmap_phys is not in Linux 6.17",
      );
      dmaUnmapPage(m.dev, a, 0x100, DMA_TO_DEVICE);
      const r = dmaMapResource(m.dev, BAR, 0x100, DMA_BIDIRECTIONAL);
      expect(r).toBe(BAR);
      dmaUnmapResource(m.dev, r, 0x100, DMA_BIDIRECTIONAL);
      expect(m.dev.counters.c.maps).toBe(2);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("6.18 and later: dma_map_phys maps, dma_map_page too", () => {
      for (const k of ["6.18", "6.19", "7.0"] as const) {
        const m = on(k, "strict");
        const phys = m.memory.allocPages(0) * 4096;
        const b = baseline(m);
        const a = dmaMapPhys(m.dev, phys + 0x10, 0x100, DMA_TO_DEVICE);
        expect(m.domain!.iovaToPhys(a), k).toBe(phys + 0x10);
        dmaUnmapPhys(m.dev, a, 0x100, DMA_TO_DEVICE);
        const p = dmaMapPage(m.dev, phys / 4096, 0, 0x100, DMA_TO_DEVICE);
        dmaUnmapPage(m.dev, p, 0x100, DMA_TO_DEVICE);
        expect(leaks(m, b), k).toEqual(NO_LEAKS);
      }
    });
  });

  describe('"dma-attr-mmio"', () => {
    it("6.17: DMA_ATTR_MMIO is refused by dma_iova_link and dma_map_sg", () => {
      const m = on("6.17", "strict");
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, BAR, 0x1000)).toBe(true);
      expect(
        messageOf(() => dmaIovaLink(m.dev, state, BAR, 0, 0x1000, DMA_TO_DEVICE, DMA_ATTR_MMIO)),
      ).toBe("EINVAL: dma_iova_link: DMA_ATTR_MMIO is not in Linux 6.17");
      expect(m.domain!.iovaToPhys(state.addr)).toBe(0);
      dmaIovaDestroy(m.dev, state, 0, DMA_TO_DEVICE);
      const sgt = new SgTable(1);
      const page = m.memory.allocPages(0) * 4096;
      sgt.sgl[0]!.phys = page;
      sgt.sgl[0]!.length = 0x1000;
      expect(messageOf(() => dmaMapSg(m.dev, sgt, 1, DMA_TO_DEVICE, DMA_ATTR_MMIO))).toBe(
        "EINVAL: dma_map_sg: DMA_ATTR_MMIO is not in Linux 6.17",
      );
      // Without the attribute the same calls go ahead.
      expect(dmaMapSg(m.dev, sgt, 1, DMA_TO_DEVICE)).toBe(1);
      dmaUnmapSg(m.dev, sgt, 1, DMA_TO_DEVICE);
    });

    it("6.18: DMA_ATTR_MMIO maps MMIO (dma_iova_link, dma_map_phys)", () => {
      const m = on("6.18", "strict");
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, BAR, 0x1000)).toBe(true);
      dmaIovaLink(m.dev, state, BAR, 0, 0x1000, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      expect(m.domain!.iovaToPhys(state.addr)).toBe(BAR);
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      const a = dmaMapPhys(m.dev, BAR, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      dmaUnmapPhys(m.dev, a, 0x100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
    });
  });

  describe('"dma-attr-require-coherent" and "dma-attr-ignore-cachelines"', () => {
    it("before 7.0 both attributes are refused, on every entry point", () => {
      for (const k of ["6.17", "6.18", "6.19"] as const) {
        const m = on(k, "strict");
        const phys = m.memory.allocPages(0) * 4096;
        expect(
          messageOf(() =>
            dmaMapPage(m.dev, phys / 4096, 0, 64, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT),
          ),
          k,
        ).toBe(`EINVAL: dma_map_page: DMA_ATTR_REQUIRE_COHERENT is not in Linux ${k}`);
        expect(
          messageOf(() =>
            dmaMapResource(m.dev, BAR, 64, DMA_TO_DEVICE, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES),
          ),
          k,
        ).toBe(
          `EINVAL: dma_map_resource: DMA_ATTR_DEBUGGING_IGNORE_CACHELINES is not in Linux ${k}`,
        );
        const state = new DmaIovaState();
        expect(dmaIovaTryAlloc(m.dev, state, phys, 0x1000), k).toBe(true);
        expect(
          codeOf(() =>
            dmaIovaLink(m.dev, state, phys, 0, 0x1000, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT),
          ),
          k,
        ).toBe("EINVAL");
        dmaIovaDestroy(m.dev, state, 0, DMA_TO_DEVICE);
        expect(m.dev.counters.c.maps, k).toBe(0);
      }
    });

    it("7.0: both are attributes; REQUIRE_COHERENT fails only on a non-coherent device", () => {
      const m = on("7.0", "strict");
      const phys = m.memory.allocPages(0) * 4096;
      const b = baseline(m);
      const a = dmaMapPhys(
        m.dev,
        phys,
        64,
        DMA_TO_DEVICE,
        DMA_ATTR_REQUIRE_COHERENT + DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
      );
      dmaUnmapPhys(m.dev, a, 64, DMA_TO_DEVICE);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
      const nc = on("7.0", "none", false);
      const p = nc.memory.allocPages(0) * 4096;
      expect(
        codeOf(() => dmaMapPhys(nc.dev, p, 64, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)),
      ).toBe("EOPNOTSUPP");
    });
  });
});

describe('"iova-link-unwind-fix": dma_iova_link bounce of an unaligned range', () => {
  const FIXED = ["6.18", "7.0"] as const;
  const UNFIXED = ["6.17", "6.19"] as const;

  /** An untrusted device: sub-granule ranges are bounced by dma_iova_link. */
  function untrusted(kernel: KernelVersion) {
    const m = machine("untrusted", { debug: false, dev: { kernel } });
    const a = m.memory.allocPages(0) * 4096;
    const c = m.memory.allocPages(1) * 4096;
    return { m, a, c };
  }

  it("an empty aligned middle: skipped with the fix, a 0-byte iommu_map before", () => {
    for (const k of [...FIXED, ...UNFIXED]) {
      const { m, c } = untrusted(k);
      const b = baseline(m);
      const state = new DmaIovaState();
      // Head 0x800 and tail 0x800 bounced, nothing aligned in between.
      expect(dmaIovaTryAlloc(m.dev, state, c + 0x800, 0x1000), k).toBe(true);
      const calls = m.domain!.counters.c.mapCalls;
      dmaIovaLink(m.dev, state, c + 0x800, 0, 0x1000, DMA_TO_DEVICE);
      const fixed = (FIXED as readonly string[]).includes(k);
      expect(m.domain!.counters.c.mapCalls - calls, k).toBe(fixed ? 2 : 3);
      expect(m.swiotlb!.counters.c.slotsInUse, k).toBeGreaterThan(0);
      dmaIovaDestroy(m.dev, state, 0x1000, DMA_TO_DEVICE);
      expect(leaks(m, b), k).toEqual(NO_LEAKS);
    }
  });

  it("a failed tail bounce at offset > 0: unwinds its own window with the fix, offset 0 before", () => {
    for (const k of [...FIXED, ...UNFIXED]) {
      const { m, a, c } = untrusted(k);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(m.dev, state, a, 0x2100), k).toBe(true);
      // First link: one aligned page at offset 0 (no bouncing).
      dmaIovaLink(m.dev, state, a, 0, 0x1000, DMA_TO_DEVICE);
      // Second link at 0x1000: an aligned page, then a 0x100 tail whose bounce fails.
      m.swiotlb!.faultHook = () => true;
      expect(
        codeOf(() => dmaIovaLink(m.dev, state, c, 0x1000, 0x1100, DMA_TO_DEVICE)),
        k,
      ).toBe("ENOMEM");
      m.swiotlb!.faultHook = undefined;
      const first = m.domain!.iovaToPhys(state.addr);
      const second = m.domain!.iovaToPhys(state.addr + 0x1000);
      if ((FIXED as readonly string[]).includes(k)) {
        // The first link is intact; the second left nothing mapped.
        expect(first, k).toBe(a);
        expect(second, k).toBe(0);
      } else {
        // The upstream bug: the first link was unmapped, the second's page is still mapped.
        expect(first, k).toBe(0);
        expect(second, k).toBe(c);
      }
    }
  });
});
