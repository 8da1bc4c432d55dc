/**
 * @dmasim/dma-core — the Linux DMA API over the simulated IOMMU: the device model, direct and
 * IOMMU-backed streaming mappings (`dmaMapPhys`), SWIOTLB, coherent memory and `dma_pool`, the
 * scatterlist path, the two-step IOVA API, the block layer's request mapper, the device-side
 * DMA engine, and dma-debug extended to the IOVA API.
 */
export { DmaError, type DmaErrorCode } from "./errors.ts";
export {
  DMA_ATTR,
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WEAK_ORDERING,
  DMA_ATTR_WRITE_COMBINE,
  DMA_BIDIRECTIONAL,
  DMA_DIRECTION,
  DMA_FROM_DEVICE,
  DMA_NONE,
  DMA_TO_DEVICE,
  type BusDmaRegion,
  type DmaDirection,
  checkDirection,
  directionName,
  dmaBitMask,
  hasAttr,
} from "./constants.ts";
export {
  Device,
  type DeviceCounter,
  type DeviceOptions,
  P2P_MAP,
  type P2pMap,
  type P2pRoute,
} from "./device.ts";
export {
  IO_TLB_DEFAULT_SIZE,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  Swiotlb,
  type SwiotlbCounter,
  type SwiotlbOptions,
  swiotlbNareas,
} from "./swiotlb.ts";
export { type IommuDmaCookie, type IommuDmaOptions } from "./iommu-dma-cookie.ts";
export { dmaInfoToProt, iommuSetupDmaOps } from "./iommu-dma.ts";
export {
  dmaCapable,
  dmaDirectMapPhys,
  dmaDirectUnmapPhys,
  dmaToPhys,
  physToDma,
} from "./direct.ts";
export {
  dmaAddressingLimited,
  dmaGetMaxSegSize,
  dmaGetMergeBoundary,
  dmaGetRequiredMask,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMaxMappingSize,
  dmaNeedSync,
  dmaNeedUnmap,
  dmaOptMappingSize,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
} from "./mapping.ts";
export { type CoherentBuffer, dmaAllocCoherent, dmaFreeCoherent } from "./coherent.ts";
export { DmaPool, type DmaPoolBlock, type DmaPoolCounter } from "./dma-pool.ts";
export {
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaUseIova,
} from "./iova-api.ts";
export { type DmaVec, dmaUnmapRange } from "./dma-vec.ts";
export {
  SG_DMA_UNUSED,
  type ScatterlistEntry,
  SgTable,
  blkRqMapSg,
  dmaMapSg,
  dmaMapSgtable,
  dmaUnmapSg,
  dmaUnmapSgtable,
} from "./scatterlist.ts";
export {
  type BlkDmaIter,
  blkCanDmaMapIova,
  blkDmaIter,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  errnoToBlkStatus,
  rqDmaDir,
} from "./request-map.ts";
export {
  type DeviceDmaCounter,
  DeviceDma,
  type DmaAccessEvent,
  type DmaAccessResult,
} from "./device-dma.ts";
export { DMA_DEBUG_CLASS, type DmaDebugClass, type DmaDebugReport } from "./debug-common.ts";
export {
  ACTIVE_CACHELINE_MAX_OVERLAP,
  DmaDebug,
  type DmaDebugOptions,
  type DmaDebugType,
  L1_CACHE_BYTES,
  debugMapType,
} from "./debug.ts";
