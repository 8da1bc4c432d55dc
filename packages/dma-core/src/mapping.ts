/**
 * The streaming DMA API entry points (kernel/dma/mapping.c): dispatch between the direct path
 * and the IOMMU path, the dma-debug hooks, and the query helpers.
 */
import { MAX_ADDR, checkAddr, checkInt, hex, kernelHas } from "@dmasim/bvec";
import {
  DMA_ATTR,
  type DmaDirection,
  checkAttrs as checkAttrBits,
  checkDirection,
  checkPhys,
  hasAttr,
} from "./constants.ts";
import { isRamPfn } from "./debug.ts";
import type { Device } from "./device.ts";
import {
  dmaDirectAllRamMapped,
  dmaDirectGetRequiredMask,
  dmaDirectMapPhys,
  dmaDirectSyncSingleForCpu,
  dmaDirectSyncSingleForDevice,
  dmaDirectUnmapPhys,
  dmaToPhys,
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

/**
 * The attrs check of every mapping entry point (`dma_map_phys`, `dma_map_page_attrs`,
 * `dma_map_resource`, `dma_map_sg_attrs`, `dma_iova_link` and their unmaps), given the
 * caller's attrs and the Linux function name for the message: only `DMA_ATTR_*` bits, and only
 * the attributes the release has. DMA_ATTR_MMIO exists from 6.18 (gate "dma-attr-mmio"),
 * DMA_ATTR_REQUIRE_COHERENT and DMA_ATTR_DEBUGGING_IGNORE_CACHELINES from 7.0 (gates
 * "dma-attr-require-coherent", "dma-attr-ignore-cachelines"); before, the bit is no attribute
 * and the call is refused (EINVAL). Linux ignores an unknown bit; dmasim refuses it so that a
 * caller cannot rely on a behaviour the release lacks.
 */
export function checkAttrs(dev: Device, attrs: number, fn: string): number {
  if (attrs === 0) return 0;
  checkAttrBits(attrs);
  const missing =
    hasAttr(attrs, DMA_ATTR.MMIO) && !kernelHas(dev.kernel, "dma-attr-mmio")
      ? "DMA_ATTR_MMIO"
      : hasAttr(attrs, DMA_ATTR.REQUIRE_COHERENT) &&
          !kernelHas(dev.kernel, "dma-attr-require-coherent")
        ? "DMA_ATTR_REQUIRE_COHERENT"
        : hasAttr(attrs, DMA_ATTR.DEBUGGING_IGNORE_CACHELINES) &&
            !kernelHas(dev.kernel, "dma-attr-ignore-cachelines")
          ? "DMA_ATTR_DEBUGGING_IGNORE_CACHELINES"
          : null;
  if (missing !== null) {
    throw new DmaError("EINVAL", `${fn}: ${missing} is not in Linux ${dev.kernel}`);
  }
  return attrs;
}

/** `dma_map_phys` / `dma_unmap_phys` exist from 6.18 (gate "dma-map-phys"); before, EOPNOTSUPP. */
function checkPhysApi(dev: Device, fn: string): void {
  if (!kernelHas(dev.kernel, "dma-map-phys")) {
    throw new DmaError("EOPNOTSUPP", `${fn} is not in Linux ${dev.kernel}`);
  }
}

/** `attrs` with the single bit `flag` set. */
function withAttr(attrs: number, flag: number): number {
  return flag === 0 || hasAttr(attrs, flag) ? attrs : attrs + flag;
}

/**
 * The body of `dma_map_phys` (6.18), and of `dma_map_page_attrs` and `dma_map_resource`
 * before it (one implementation on every release): checks the caller's `attrs` for `fn`, adds
 * `extra` (DMA_ATTR_MMIO for `dma_map_resource`), maps, and records the mapping in dma-debug.
 */
function mapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  callerAttrs: number,
  fn: string,
  extra = 0,
): number {
  checkPhys(phys);
  checkInt(size, "DMA size", 1);
  checkAttrs(dev, callerAttrs, fn);
  const d = checkDirection(dir);
  const attrs = withAttr(callerAttrs, extra);
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

/**
 * Linux `dma_map_phys` (6.18): maps `size` bytes at `phys` for the device and returns the DMA
 * address. Failures throw a `DmaError` (where Linux returns DMA_MAPPING_ERROR): EIO for an
 * unreachable address without bouncing, ENOMEM for IOVA or bounce exhaustion, EPERM for MMIO
 * that would need bouncing, EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device, and on
 * 6.17, which has no `dma_map_phys` (use `dmaMapPage` or `dmaMapResource` there).
 */
export function dmaMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  checkPhysApi(dev, "dma_map_phys");
  return mapPhys(dev, phys, size, dir, attrs, "dma_map_phys");
}

/** The body of `dma_unmap_phys` (and of `dma_unmap_page_attrs` / `dma_unmap_resource`). */
function unmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  callerAttrs: number,
  fn: string,
  extra = 0,
): void {
  checkAddr(addr, "DMA address", 53);
  checkInt(size, "DMA size", 1);
  checkAttrs(dev, callerAttrs, fn);
  const d = checkDirection(dir);
  const attrs = withAttr(callerAttrs, extra);
  dev.debug?.unmap(dev, addr, size, d, hasAttr(attrs, DMA_ATTR.MMIO) ? "resource" : "phy", fn);
  if (dev.dmaIommu) iommuDmaUnmapPhys(dev, addr, size, d, attrs);
  else dmaDirectUnmapPhys(dev, addr, size, d, attrs);
  dev.counters.c.unmaps++;
}

/** Linux `dma_unmap_phys` (6.18; EOPNOTSUPP on 6.17, use `dmaUnmapPage` / `dmaUnmapResource`). */
export function dmaUnmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkPhysApi(dev, "dma_unmap_phys");
  unmapPhys(dev, addr, size, dir, attrs, "dma_unmap_phys");
}

/**
 * Linux `dma_map_page_attrs`: a thin wrapper computing phys = page * PAGE_SIZE + offset;
 * refuses MMIO. On every release (on 6.17 it is the driver's way to map memory).
 */
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
  return mapPhys(dev, page * dev.memory.pageSize + offset, size, dir, attrs, "dma_map_page");
}

/** Linux `dma_unmap_page_attrs` (does nothing for MMIO, as Linux). */
export function dmaUnmapPage(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkAttrs(dev, attrs, "dma_unmap_page");
  if (hasAttr(attrs, DMA_ATTR.MMIO)) return;
  unmapPhys(dev, addr, size, dir, attrs, "dma_unmap_page");
}

/**
 * Linux `dma_map_resource`: `dmaMapPhys` with DMA_ATTR_MMIO. RAM is checked only with
 * dma-debug attached (CONFIG_DMA_API_DEBUG): on 6.19 (f7326196a781, before af0c3f058662)
 * a RAM address is refused (WARN_ON_ONCE, DMA_MAPPING_ERROR; here EINVAL); on 6.18 and 7.0
 * (af0c3f058662 in their stable series) dma-debug reports it and the mapping goes ahead (see
 * `DmaDebug.mapPhys`); 6.17 has no check (a9c38c5d267c had dropped it).
 */
export function dmaMapResource(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  if (
    dev.debug !== null &&
    kernelHas(dev.kernel, "map-resource-ram-refused") &&
    isRamPfn(dev, phys)
  ) {
    dev.counters.c.mapFailures++;
    throw new DmaError(
      "EINVAL",
      `dma_map_resource of RAM address ${hex(phys)} on device ${dev.name} (refused with dma-debug on, as Linux ${dev.kernel})`,
    );
  }
  return mapPhys(dev, phys, size, dir, attrs, "dma_map_resource", DMA_ATTR.MMIO);
}

/** Linux `dma_unmap_resource`. */
export function dmaUnmapResource(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  unmapPhys(dev, addr, size, dir, attrs, "dma_unmap_resource", DMA_ATTR.MMIO);
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

/**
 * Linux `dma_need_sync` for one address: false while the device skips syncs (dma-debug off);
 * under an IOMMU always true; on the direct path `dma_direct_need_sync`: a non-coherent device,
 * or an address whose physical address (`dma_to_phys`, so bus offsets count) is a bounce slot.
 */
export function dmaNeedSync(dev: Device, addr: number): boolean {
  if (dev.dmaSkipSync && dev.debug === null) return false;
  if (dev.dmaIommu) return true;
  if (!dev.coherent) return true;
  const phys = dmaToPhys(dev, addr);
  return phys >= 0 && (dev.swiotlb?.isSwiotlbBuffer(phys) ?? false);
}

/** Linux `dma_get_merge_boundary`: granule - 1 under an IOMMU DMA domain, else 0 ("cannot merge"). */
export function dmaGetMergeBoundary(dev: Device): number {
  return dev.dmaIommu ? iommuDmaGetMergeBoundary(dev) : 0;
}

/**
 * Linux `dma_get_required_mask`: 32 bits under an IOMMU DMA domain (any IOVA will do), else
 * the mask that reaches all of RAM (`dma_direct_get_required_mask`).
 */
export function dmaGetRequiredMask(dev: Device): number {
  return dev.dmaIommu ? 0xffffffff : dmaDirectGetRequiredMask(dev);
}

/**
 * Linux `dma_addressing_limited`: the device's mask (or bus limit) cannot reach all of
 * memory: below the required mask, or, on the direct path, RAM outside its `dma_range_map`.
 */
export function dmaAddressingLimited(dev: Device): boolean {
  const limit = dev.busDmaLimit !== 0 ? Math.min(dev.getMask(), dev.busDmaLimit) : dev.getMask();
  if (limit < dmaGetRequiredMask(dev)) return true;
  if (dev.dmaIommu) return false;
  return !dmaDirectAllRamMapped(dev);
}

/**
 * Linux `dma_direct_max_mapping_size` (kernel/dma/direct.c): the SWIOTLB limit only when the
 * device has an active pool and may bounce through it: addressing-limited, or bouncing forced;
 * otherwise unlimited (SIZE_MAX).
 */
function dmaDirectMaxMappingSize(dev: Device): number {
  if (dev.swiotlb !== null && (dmaAddressingLimited(dev) || dev.forceBounce))
    return dev.swiotlb.maxMappingSize(dev.minAlignMask);
  return MAX_ADDR;
}

/**
 * Linux `dma_max_mapping_size`: the direct path's limit, or under an IOMMU DMA domain
 * `iommu_dma_max_mapping_size` (the SWIOTLB limit for untrusted devices, else unlimited).
 */
export function dmaMaxMappingSize(dev: Device): number {
  if (!dev.dmaIommu) return dmaDirectMaxMappingSize(dev);
  return devUseSwiotlb(dev) && dev.swiotlb !== null
    ? dev.swiotlb.maxMappingSize(dev.minAlignMask)
    : MAX_ADDR;
}

/**
 * Linux `dma_opt_mapping_size`: under an IOMMU the largest size the IOVA caches serve
 * (`iommu_dma_opt_mapping_size` = `iova_rcache_range`: PAGE_SIZE << 5, 128 KiB with 4 KiB
 * pages), and always capped by `dma_max_mapping_size`.
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
