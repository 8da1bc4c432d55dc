import { describe, expect, it } from "vitest";
import { DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaMapPhys, dmaUnmapPhys } from "../src/index.ts";
import { G4, MiB, NO_LEAKS, baseline, leaks, machine } from "../src/testing/index.ts";

/**
 * `iommu_dma_unmap_phys` looks the IOVA's physical address up (`iommu_iova_to_phys`) only to
 * sync caches and to find a bounce buffer: for a coherent device whose SWIOTLB pool has no slot
 * mapped the model skips that walk (docs/timing.md), and makes it whenever a slot is mapped.
 */
describe("iommu_dma_unmap_phys and its IOVA lookup", () => {
  const walks = (m: ReturnType<typeof machine>) => m.domain?.pgtable?.counters.c.walks ?? 0;

  it("skips the walk while the SWIOTLB pool is idle, above 4 GiB, and leaks nothing", () => {
    const m = machine("strict", { swiotlbBytes: 4 * MiB });
    const b = baseline(m);
    const phys = m.memory.allocPages(0) * 4096;
    expect(phys).toBeGreaterThanOrEqual(G4);
    const addr = dmaMapPhys(m.dev, phys, 4096, DMA_FROM_DEVICE);
    const before = walks(m);
    dmaUnmapPhys(m.dev, addr, 4096, DMA_FROM_DEVICE);
    expect(walks(m)).toBe(before);
    expect(m.domain?.iovaToPhys(addr)).toBe(0);
    m.memory.freePages(phys / 4096, 0);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("walks while a bounce slot is mapped, and finds it when the unmapped address is one", () => {
    // An untrusted device bounces a sub-granule buffer; its unmap must look the slot up.
    const m = machine("untrusted");
    const b = baseline(m);
    const phys = m.memory.allocPages(0) * 4096 + 512;
    const addr = dmaMapPhys(m.dev, phys, 512, DMA_TO_DEVICE);
    expect(m.swiotlb?.idle).toBe(false);
    const before = walks(m);
    dmaUnmapPhys(m.dev, addr, 512, DMA_TO_DEVICE);
    expect(walks(m)).toBe(before + 1);
    expect(m.swiotlb?.idle).toBe(true);
    m.memory.freePages(Math.floor(phys / 4096), 0);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });
});
