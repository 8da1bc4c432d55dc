/**
 * The streaming DMA API entry points (kernel/dma/mapping.c): dispatch between the direct path
 * and the IOMMU path, the dma-debug hooks, and the query helpers.
 */
import { MAX_ADDR, checkAddr, checkInt, hex } from "@dmasim/bvec";
import {
  DMA_ATTR,
  type DmaDirection,
  checkAttrs,
  checkDirection,
  checkPhys,
  hasAttr,
} from "./constants.ts";
import type { Device } from "./device.ts";
import {
  dmaDirectMapPhys,
  dmaDirectSyncSingleForCpu,
  dmaDirectSyncSingleForDevice,
  dmaDirectUnmapPhys,
} from "./direct.ts";
import { DmaError } from "./errors.ts";
import {
  devUseSwiotlb,
  iommuDmaGetMergeBoundary,
  iommuDmaMapPhys,
  iommuDmaSyncSingleForCpu,
  iommuDmaSyncSingleForDevice,
  iommuDmaUnmapPhys,
} from "./iommu-dma.ts";

function checkMapArgs(phys: number, size: number, dir: number, attrs: number): DmaDirection {
  checkPhys(phys);
  checkInt(size, "DMA size", 1);
  checkAttrs(attrs);
  return checkDirection(dir);
}

/**
 * Linux `dma_map_phys` (6.18): maps `size` bytes at `phys` for the device and returns the DMA
 * address. Failures throw a `DmaError` (where Linux returns DMA_MAPPING_ERROR): EIO for an
 * unreachable address without bouncing, ENOMEM for IOVA or bounce exhaustion, EPERM for MMIO
 * that would need bouncing, EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device.
 */
export function dmaMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  const d = checkMapArgs(phys, size, dir, attrs);
  if (hasAttr(attrs, DMA_ATTR.REQUIRE_COHERENT) && !dev.coherent) {
    dev.counters.c.mapFailures++;
    throw new DmaError(
      "EOPNOTSUPP",
      `device ${dev.name} is not coherent: DMA_ATTR_REQUIRE_COHERENT cannot be met`,
    );
  }
  let addr: number;
  try {
    addr = dev.dmaIommu
      ? iommuDmaMapPhys(dev, phys, size, d, attrs)
      : dmaDirectMapPhys(dev, phys, size, d, attrs);
  } catch (e) {
    dev.counters.c.mapFailures++;
    throw e;
  }
  dev.counters.c.maps++;
  dev.debug?.mapPhys(
    dev,
    addr,
    phys,
    size,
    d,
    attrs,
    hasAttr(attrs, DMA_ATTR.MMIO) ? "resource" : "phy",
  );
  return addr;
}

/** Linux `dma_unmap_phys`. */
export function dmaUnmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkAddr(addr, "DMA address", 53);
  checkInt(size, "DMA size", 1);
  checkAttrs(attrs);
  const d = checkDirection(dir);
  dev.debug?.unmap(
    dev,
    addr,
    size,
    d,
    hasAttr(attrs, DMA_ATTR.MMIO) ? "resource" : "phy",
    "dma_unmap_phys",
  );
  if (dev.dmaIommu) iommuDmaUnmapPhys(dev, addr, size, d, attrs);
  else dmaDirectUnmapPhys(dev, addr, size, d, attrs);
  dev.counters.c.unmaps++;
}

/** Linux `dma_map_page_attrs`: a thin wrapper computing phys = page * PAGE_SIZE + offset; refuses MMIO. */
export function dmaMapPage(
  dev: Device,
  page: number,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  if (hasAttr(attrs, DMA_ATTR.MMIO)) {
    throw new DmaError(
      "EINVAL",
      "dma_map_page with DMA_ATTR_MMIO: use dmaMapPhys or dmaMapResource",
    );
  }
  return dmaMapPhys(dev, page * dev.memory.pageSize + offset, size, dir, attrs);
}

/** Linux `dma_unmap_page_attrs` (does nothing for MMIO, as Linux). */
export function dmaUnmapPage(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  if (hasAttr(attrs, DMA_ATTR.MMIO)) return;
  dmaUnmapPhys(dev, addr, size, dir, attrs);
}

/** Linux `dma_map_resource`: `dmaMapPhys` with DMA_ATTR_MMIO. */
export function dmaMapResource(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  return dmaMapPhys(
    dev,
    phys,
    size,
    dir,
    attrs + (hasAttr(attrs, DMA_ATTR.MMIO) ? 0 : DMA_ATTR.MMIO),
  );
}

/** Linux `dma_unmap_resource`. */
export function dmaUnmapResource(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  dmaUnmapPhys(dev, addr, size, dir, attrs + (hasAttr(attrs, DMA_ATTR.MMIO) ? 0 : DMA_ATTR.MMIO));
}

/** Both sync directions: dma-debug's check, then the direct or IOMMU implementation. */
function syncSingle(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  forCpu: boolean,
): void {
  const d = checkDirection(dir);
  if (forCpu) dev.counters.c.syncsForCpu++;
  else dev.counters.c.syncsForDevice++;
  dev.debug?.sync(dev, addr, size, d, forCpu);
  if (dev.dmaSkipSync && dev.debug === null) return;
  if (forCpu) {
    if (dev.dmaIommu) iommuDmaSyncSingleForCpu(dev, addr, size, d);
    else dmaDirectSyncSingleForCpu(dev, addr, size, d);
  } else if (dev.dmaIommu) {
    iommuDmaSyncSingleForDevice(dev, addr, size, d);
  } else {
    dmaDirectSyncSingleForDevice(dev, addr, size, d);
  }
}

/** Linux `dma_sync_single_for_cpu`: gives the buffer back to the CPU (cache invalidate, bounce copy-out). */
export function dmaSyncSingleForCpu(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
): void {
  syncSingle(dev, addr, size, dir, true);
}

/** Linux `dma_sync_single_for_device`: gives the buffer to the device (bounce copy-in, cache clean). */
export function dmaSyncSingleForDevice(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
): void {
  syncSingle(dev, addr, size, dir, false);
}

/**
 * Linux `dma_need_unmap`: false only for a direct-mapped device that still skips syncs
 * (coherent, never bounced) with dma-debug off. Call it after the mappings were made.
 */
export function dmaNeedUnmap(dev: Device): boolean {
  if (dev.dmaIommu) return true;
  return !dev.dmaSkipSync || dev.debug !== null;
}

/** Linux `dma_need_sync` for one address. */
export function dmaNeedSync(dev: Device, addr: number): boolean {
  if (dev.dmaSkipSync && dev.debug === null) return false;
  if (dev.dmaIommu) return true;
  return !dev.coherent || (dev.swiotlb?.isSwiotlbBuffer(addr) ?? false);
}

/** Linux `dma_get_merge_boundary`: granule - 1 under an IOMMU DMA domain, else 0 ("cannot merge"). */
export function dmaGetMergeBoundary(dev: Device): number {
  return dev.dmaIommu ? iommuDmaGetMergeBoundary(dev) : 0;
}

/** Linux `dma_max_mapping_size`: the SWIOTLB limit where bouncing may happen, else unlimited. */
export function dmaMaxMappingSize(dev: Device): number {
  const swiotlbMax = dev.swiotlb?.maxMappingSize(dev.minAlignMask) ?? MAX_ADDR;
  if (dev.dmaIommu) return devUseSwiotlb(dev) ? swiotlbMax : MAX_ADDR;
  return dev.swiotlb !== null ? swiotlbMax : MAX_ADDR;
}

/**
 * Linux `dma_opt_mapping_size`: under an IOMMU the largest size the IOVA caches serve
 * (`iova_rcache_range`: 32 granules, 128 KiB with 4 KiB pages), capped by the max mapping size.
 */
export function dmaOptMappingSize(dev: Device): number {
  const max = dmaMaxMappingSize(dev);
  if (!dev.dmaIommu || dev.cookie === null) return max;
  return Math.min(max, dev.memory.pageSize * 32);
}

/** Linux `dma_get_max_seg_size`. */
export function dmaGetMaxSegSize(dev: Device): number {
  return dev.maxSegmentSize;
}

/** Describes a DMA address for messages. */
export function describeDma(addr: number, size: number): string {
  return `${hex(addr)}+${hex(size)}`;
}
