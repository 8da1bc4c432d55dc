/**
 * The direct mapping path (kernel/dma/direct.{c,h}): bus offsets, the mask and bus-limit check,
 * SWIOTLB when the address is out of reach or bouncing is forced, cache maintenance on
 * non-coherent devices. Used without an IOMMU and for passthrough (identity) domains.
 */
import { MAX_ADDR, REGION_KIND, fls, hex } from "@dmasim/bvec";
import { archSyncDmaForCpu, archSyncDmaForDevice } from "./arch.ts";
import { DMA_ATTR, type DmaDirection, hasAttr } from "./constants.ts";
import type { Device } from "./device.ts";
import { DmaError } from "./errors.ts";
import { swiotlbTblMapSingle } from "./swiotlb.ts";

/** Linux `translate_phys_to_dma` / `phys_to_dma`: applies the bus offset; -1 when no range covers `phys`. */
export function physToDma(dev: Device, phys: number): number {
  if (dev.dmaRangeMap.length === 0) return phys;
  for (const r of dev.dmaRangeMap) {
    if (phys >= r.cpuStart && phys - r.cpuStart < r.size) return phys - r.cpuStart + r.dmaStart;
  }
  return -1;
}

/** Linux `translate_dma_to_phys` / `dma_to_phys`; -1 when no range covers `addr`. */
export function dmaToPhys(dev: Device, addr: number): number {
  if (dev.dmaRangeMap.length === 0) return addr;
  for (const r of dev.dmaRangeMap) {
    if (addr >= r.dmaStart && addr - r.dmaStart < r.size) return addr - r.dmaStart + r.cpuStart;
  }
  return -1;
}

/**
 * Linux `dma_direct_get_required_mask`: the mask that reaches the last page of RAM
 * (`max_pfn - 1`) at its bus address, as all ones up to its top bit; all ones when no bus
 * range covers it (`DMA_MAPPING_ERROR`).
 */
export function dmaDirectGetRequiredMask(dev: Device): number {
  let top = -1;
  for (const r of dev.memory.regions) if (r.kind === REGION_KIND.RAM) top = Math.max(top, r.end);
  if (top <= 0) return 0;
  const maxDma = physToDma(dev, top - dev.memory.pageSize);
  if (maxDma < 0) return MAX_ADDR;
  const bits = fls(maxDma);
  return bits >= 53 ? MAX_ADDR : 2 ** bits - 1;
}

/**
 * Linux `dma_direct_all_ram_mapped`: without a `dma_range_map` all RAM is reachable; with
 * one, every RAM range must be covered by its regions (`check_ram_in_range_map`).
 */
export function dmaDirectAllRamMapped(dev: Device): boolean {
  if (dev.dmaRangeMap.length === 0) return true;
  for (const ram of dev.memory.regions) {
    if (ram.kind !== REGION_KIND.RAM) continue;
    let at = ram.start;
    while (at < ram.end) {
      const m = dev.dmaRangeMap.find((r) => at >= r.cpuStart && at - r.cpuStart < r.size);
      if (m === undefined) return false;
      at = m.cpuStart + m.size;
    }
  }
  return true;
}

/** Linux `dma_capable`: the whole range is below min_not_zero(mask, bus_dma_limit). */
export function dmaCapable(dev: Device, addr: number, size: number): boolean {
  if (addr < 0) return false;
  const end = addr + size - 1;
  const limit = dev.busDmaLimit !== 0 ? Math.min(dev.dmaMask, dev.busDmaLimit) : dev.dmaMask;
  return end <= limit;
}

function overflow(dev: Device, addr: number, size: number): DmaError {
  return new DmaError(
    "EIO",
    `device ${dev.name}: DMA addr ${hex(addr)}+${size} overflow (mask ${hex(dev.dmaMask)}, bus limit ${hex(dev.busDmaLimit)})`,
  );
}

/** Maps through the device's SWIOTLB (Linux `swiotlb_map`): bounce, then the bounce address must be reachable. */
function swiotlbMap(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): number {
  const pool = dev.swiotlb;
  if (pool === null) throw overflow(dev, physToDma(dev, phys), size);
  const tlb = swiotlbTblMapSingle(dev, phys, size, 0, dev.minAlignMask);
  const addr = physToDma(dev, tlb);
  if (!dmaCapable(dev, addr, size)) {
    pool.unmapSingle(tlb, size, dir, true);
    throw overflow(dev, addr, size);
  }
  if (!dev.coherent && !hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC)) archSyncDmaForDevice(dev, size);
  return addr;
}

/** Linux `dma_direct_map_phys`. Throws EIO on overflow, ENOMEM when the bounce pool is full. */
export function dmaDirectMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): number {
  const mmio = hasAttr(attrs, DMA_ATTR.MMIO);
  if (dev.forceBounce) {
    if (mmio)
      throw new DmaError("EIO", `device ${dev.name}: MMIO at ${hex(phys)} cannot be bounced`);
    return swiotlbMap(dev, phys, size, dir, attrs);
  }
  let addr: number;
  if (mmio) {
    addr = phys;
    if (!dmaCapable(dev, addr, size)) throw overflow(dev, addr, size);
  } else {
    addr = physToDma(dev, phys);
    if (!dmaCapable(dev, addr, size)) {
      if (dev.swiotlb !== null) return swiotlbMap(dev, phys, size, dir, attrs);
      throw overflow(dev, addr, size);
    }
  }
  if (!dev.coherent && !hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !mmio)
    archSyncDmaForDevice(dev, size);
  dev.counters.c.directMaps++;
  return addr;
}

/** Linux `dma_direct_unmap_phys`. */
export function dmaDirectUnmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): void {
  if (hasAttr(attrs, DMA_ATTR.MMIO)) return;
  const phys = dmaToPhys(dev, addr);
  if (!hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC)) dmaDirectSyncSingleForCpu(dev, addr, size, dir);
  if (dev.swiotlb?.isSwiotlbBuffer(phys)) dev.swiotlb.unmapSingle(phys, size, dir, true);
}

/** Linux `dma_direct_sync_single_for_cpu`: cache invalidate first, then copy out of the bounce buffer. */
export function dmaDirectSyncSingleForCpu(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
): void {
  const phys = dmaToPhys(dev, addr);
  if (!dev.coherent) archSyncDmaForCpu(dev, size, dir);
  if (dev.swiotlb?.isSwiotlbBuffer(phys)) dev.swiotlb.syncForCpu(phys, size, dir);
}

/** Linux `dma_direct_sync_single_for_device`: copy into the bounce buffer first, then cache clean. */
export function dmaDirectSyncSingleForDevice(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
): void {
  const phys = dmaToPhys(dev, addr);
  if (dev.swiotlb?.isSwiotlbBuffer(phys)) dev.swiotlb.syncForDevice(phys, size, dir);
  if (!dev.coherent) archSyncDmaForDevice(dev, size);
}
