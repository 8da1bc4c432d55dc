/**
 * The architecture's cache maintenance for non-coherent DMA (Linux `arch_sync_dma_for_device`
 * and `arch_sync_dma_for_cpu`, arch code that dma-direct and dma-iommu both call). The model
 * moves no data here: it counts the bytes cleaned and invalidated.
 */
import { DMA_DIRECTION, type DmaDirection } from "./constants.ts";
import type { Device } from "./device.ts";

/** Linux `arch_sync_dma_for_device`: cache maintenance before the device owns memory (counted). */
export function archSyncDmaForDevice(dev: Device, size: number): void {
  dev.counters.c.cacheCleanBytes += size;
}

/** Linux `arch_sync_dma_for_cpu`: before the CPU owns memory again (counted); nothing for TO_DEVICE. */
export function archSyncDmaForCpu(dev: Device, size: number, dir: DmaDirection): void {
  if (dir !== DMA_DIRECTION.TO_DEVICE) dev.counters.c.cacheInvalidateBytes += size;
}
