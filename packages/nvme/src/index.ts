/**
 * @dmasim/nvme — the NVMe host driver (Linux nvme-pci, in the new two-step and the old
 * scatterlist mapping styles) and a simulated NVMe controller that reads queues, PRP lists and
 * SGL segments from simulated memory by DMA through the IOMMU.
 */
export * from "./constants.ts";
export { NvmeError, type NvmeErrorCode } from "./errors.ts";
export {
  CQE_SIZE,
  SQE,
  SQE_SIZE,
  getU16,
  getU32,
  getU64,
  setSglDesc,
  setU16,
  setU32,
  setU64,
} from "./sqe.ts";
export { type NamespaceOptions, NvmeNamespace } from "./namespace.ts";
export { DmaRanges, type DescriptorHook, type SglCaps, walkPrp, walkSgl } from "./walker.ts";
export {
  NvmeController,
  type NvmeControllerCounter,
  type NvmeControllerOptions,
  type NvmeFaultPlan,
} from "./controller.ts";
export {
  IOD,
  IOD_BYTES,
  Mempool,
  type MempoolCounter,
  NvmeIod,
  dmaVecMempool,
  iodHas,
  sgMempool,
} from "./iod.ts";
export {
  type MapContext,
  USE_SGL,
  type UseSgl,
  blockView,
  nvmeMapData,
  nvmePciUseSgls,
  nvmeUnmapData,
} from "./map-new.ts";
export { type OldMapContext, nvmeMapDataOld, nvmeUnmapDataOld } from "./map-old.ts";
export {
  type CompletionCallback,
  type ControllerInfo,
  type MappingStyle,
  type NamespaceInfo,
  NvmeHost,
  type NvmeHostCounter,
  type NvmeHostOptions,
  NvmeQueue,
  type RequestMemory,
  nvmeErrorStatus,
} from "./host.ts";
