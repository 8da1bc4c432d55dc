/**
 * Coherent allocations (Linux `dma_alloc_coherent` / `dma_free_coherent`): zeroed pages the CPU
 * and the device share without syncs, below the coherent mask on the direct path, or mapped
 * through the IOMMU with IOVA below the coherent mask.
 */
import { ZONE, type Zone, checkInt, hex, orderBase2 } from "@dmasim/bvec";
import { IOMMU_PROT } from "@dmasim/iommu";
import type { Device } from "./device.ts";
import { dmaCapable, physToDma } from "./direct.ts";
import { DmaError } from "./errors.ts";
import { asDmaError, iommuDmaAllocIova, iommuDmaUnmapRaw } from "./iommu-dma.ts";

/** A coherent allocation: the CPU (physical) address and the device's DMA address. */
export interface CoherentBuffer {
  readonly cpuAddr: number;
  readonly dmaAddr: number;
  readonly size: number;
}

/** The highest zone whose memory a mask reaches (Linux `dma_direct_optimal_gfp_mask`). */
function zoneFor(mask: number): Zone {
  if (mask <= 0xffffff) return ZONE.DMA;
  if (mask <= 0xffffffff) return ZONE.DMA32;
  return ZONE.NORMAL;
}

/**
 * The page order of a coherent allocation: from the size, and under an IOMMU at least one
 * granule (Linux `iommu_dma_alloc_remap` rounds to the smallest IOMMU page when it is larger
 * than PAGE_SIZE), so that the pages can be mapped whole.
 */
function coherentOrder(dev: Device, size: number): number {
  const ps = dev.memory.pageSize;
  const order = orderBase2(Math.ceil(size / ps));
  const g = dev.dmaIommu && dev.cookie ? dev.cookie.granule : ps;
  return g > ps ? Math.max(order, orderBase2(g / ps)) : order;
}

/**
 * Linux `dma_alloc_coherent`: allocates whole pages (order from the size, at least one IOMMU
 * granule), zeroed, reachable under the coherent mask. Throws ENOMEM when memory or IOVA space
 * is exhausted (Linux returns NULL); nothing stays allocated after a failure. Simpler than
 * Linux on purpose: under an IOMMU the block is contiguous and mapped whole, where a blocking
 * `iommu_dma_alloc` takes the remap path (pages of any IOMMU order, `iova_align(size)`).
 */
export function dmaAllocCoherent(dev: Device, size: number): CoherentBuffer {
  checkInt(size, "coherent allocation size", 1);
  const mem = dev.memory;
  const order = coherentOrder(dev, size);
  const bytes = 2 ** order * mem.pageSize;
  const zone = dev.dmaIommu ? ZONE.NORMAL : zoneFor(dev.coherentDmaMask);
  const pfn = mem.tryAllocPages(order, { zone });
  if (pfn < 0)
    throw new DmaError(
      "ENOMEM",
      `device ${dev.name}: no memory for a ${hex(size)}-byte coherent allocation`,
    );
  const phys = pfn * mem.pageSize;
  mem.fill(phys, bytes, 0);
  let dmaAddr: number;
  if (dev.dmaIommu && dev.cookie) {
    const g = dev.cookie.granule;
    const len = Math.ceil(bytes / g) * g;
    const iova = iommuDmaAllocIova(dev, len, dev.coherentDmaMask);
    if (iova === 0) {
      mem.freePages(pfn, order);
      throw new DmaError(
        "ENOMEM",
        `device ${dev.name}: IOVA space exhausted for a ${hex(size)}-byte coherent allocation`,
      );
    }
    const prot = IOMMU_PROT.READ + IOMMU_PROT.WRITE + (dev.coherent ? IOMMU_PROT.CACHE : 0);
    try {
      dev.cookie.domain.map(iova, phys, len, prot);
    } catch (e) {
      dev.cookie.iovad.freeIovaFast(iova / g, len / g, dev.cpu);
      mem.freePages(pfn, order);
      throw asDmaError(e);
    }
    dmaAddr = iova;
  } else {
    dmaAddr = physToDma(dev, phys);
    if (!dmaCapable(dev, dmaAddr, bytes) || dmaAddr + bytes - 1 > dev.coherentDmaMask) {
      mem.freePages(pfn, order);
      throw new DmaError(
        "ENOMEM",
        `device ${dev.name}: coherent memory at ${hex(phys)} is out of reach of the coherent mask ${hex(dev.coherentDmaMask)}`,
      );
    }
  }
  dev.counters.c.coherentAllocs++;
  dev.counters.c.coherentBytes += bytes;
  dev.debug?.allocCoherent(dev, dmaAddr, phys, size);
  return { cpuAddr: phys, dmaAddr, size };
}

/** Linux `dma_free_coherent`. */
export function dmaFreeCoherent(dev: Device, size: number, cpuAddr: number, dmaAddr: number): void {
  checkInt(size, "coherent allocation size", 1);
  const mem = dev.memory;
  const order = coherentOrder(dev, size);
  const bytes = 2 ** order * mem.pageSize;
  const pfn = cpuAddr / mem.pageSize;
  if (!Number.isInteger(pfn) || mem.allocatedOrder(pfn) !== order) {
    throw new DmaError(
      "EINVAL",
      `dma_free_coherent of ${hex(cpuAddr)} (${hex(size)} bytes), which is not a coherent allocation of that size`,
    );
  }
  dev.debug?.unmap(dev, dmaAddr, size, 0, "coherent", "dma_free_coherent", 0, cpuAddr);
  if (dev.dmaIommu && dev.cookie) {
    const g = dev.cookie.granule;
    iommuDmaUnmapRaw(dev, dmaAddr, Math.ceil(bytes / g) * g);
  }
  mem.freePages(pfn, order);
  dev.counters.c.coherentFrees++;
  dev.counters.c.coherentBytes -= bytes;
}
