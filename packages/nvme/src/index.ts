/**
 * @dmasim/nvme — the NVMe layer, split where PCIe splits it:
 *
 * - spec/: what both sides know from the NVMe specification (registers, commands and
 *   completions, Identify, SGL descriptors, the register window `NvmeBar`), as QEMU keeps it
 *   in include/block/nvme.h;
 * - host/: the Linux nvme-pci host driver, in the two-step and the scatterlist mapping style;
 * - ctrl/: a simulated NVMe controller modelled on QEMU hw/nvme, which reads queues, PRP lists
 *   and SGL segments from simulated memory by DMA through the IOMMU.
 *
 * The test machine (`Rig`) is the subpath "@dmasim/nvme/testing".
 */
export { NvmeError, type NvmeErrorCode } from "./errors.ts";

// spec/
export { type NvmeBar } from "./spec/bar.ts";
export {
  ADDR_HI_LIMIT,
  CQE,
  CQE_SIZE,
  NVME_ADMIN,
  NVME_CMD,
  NVME_MAX_NAMESPACES,
  NVME_NSID_BROADCAST,
  NVME_PSDT,
  NVME_QUEUE_PHYS_CONTIG,
  NVME_SC,
  NVME_SC_NAMES,
  NVME_STATUS_DNR,
  SQE,
  SQE_SIZE,
  cdw10Qid,
  cdw10Qsize,
  cdw11Contiguous,
  cdw11Cqid,
  cqeCid,
  cqePhase,
  cqeSqhd,
  cqeSqid,
  cqeStatus,
  createSqCdw11,
  getAddr64,
  identifyCns,
  nvmeStatusName,
  queueCdw10,
  rwNlb,
  rwSlba,
  setCqe,
  setRwLbas,
  sqeFuse,
  sqePsdt,
} from "./spec/commands.ts";
export { type NvmeQueueKind, decodeCqe, decodeSqe } from "./spec/decode.ts";
export {
  type PrpEntryView,
  type SglDescriptorView,
  decodePrpList,
  decodeSglSegment,
} from "./spec/decode-dptr.ts";
export { type NvmeField } from "./spec/decode-field.ts";
export {
  ID_CTRL,
  ID_NS,
  NVME_CTRL_OACS_DBBUF_SUPP,
  NVME_CTRL_SGLS_BITBUCKET,
  NVME_CTRL_SGLS_EXCESS_LENGTH,
  NVME_IDENTIFY_DATA_SIZE,
  NVME_ID_CNS,
  NVME_SGLS,
  type NvmeIdCtrl,
  type NvmeIdNs,
  type SglSupport,
  oacsDbbufSupported,
  readIdCtrl,
  readIdNs,
  sglsSupport,
  sglsSupported,
  writeIdCtrl,
  writeIdNs,
} from "./spec/identify.ts";
export {
  NVME_CAP_CSS_NVM,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_REG,
  aqaAcqs,
  aqaAsqs,
  aqaValue,
  capCqr,
  capCss,
  capHiValue,
  capLoValue,
  capMpsmax,
  capMpsmin,
  capMqes,
  capTo,
  ccAms,
  ccCss,
  ccEn,
  ccIocqes,
  ccIosqes,
  ccMps,
  ccValue,
  cqHeadDoorbell,
  cstsCfs,
  cstsRdy,
  sqTailDoorbell,
  vsValue,
} from "./spec/registers.ts";
export {
  NVME_CMD_SGL_METABUF,
  NVME_CMD_SGL_METASEG,
  NVME_SGL_DESC_SIZE,
  NVME_SGL_SUBTYPE,
  NVME_SGL_TYPE,
  SGL_DESC,
  setSglDesc,
  sglDescLen,
  sglDescSubtype,
  sglDescType,
} from "./spec/sgl.ts";

// host/
export { NVME_SCT_SC_MASK, nvmeErrorStatus } from "./host/core.ts";
export { NvmeDbbuf, nvmeDbbufNeedEvent } from "./host/dbbuf.ts";
export {
  type DescriptorPools,
  allocDescriptor,
  blockView,
  descriptorPool,
  descriptorView,
  firstDescDmaAddr,
  nvmeFreeDescriptors,
} from "./host/descriptors.ts";
export { IOD, IOD_BYTES, NvmeIod, iodDescriptorBytes, iodHas } from "./host/iod.ts";
export {
  type ControllerInfo,
  NVME_AQ_DEPTH,
  NVME_CTRL_PAGE_SHIFT,
  NVME_CTRL_PAGE_SIZE,
  NVME_IO_QUEUE_DEPTH,
  NVME_MAX_BYTES,
  NVME_MAX_NR_DESCRIPTORS,
  NVME_MAX_RETRIES,
  NVME_MAX_SEGS,
  NVME_OLD_MAX_SEGS,
  NVME_PRP_ENTRIES_PER_PAGE,
  NVME_PRP_ENTRY_SIZE,
  NVME_SGL_THRESHOLD,
  NVME_SMALL_POOL_SIZE,
  type NamespaceInfo,
  PRPS_PER_PAGE,
  nvmeSetCtrlLimits,
} from "./host/limits.ts";
export { Mempool, type MempoolCounter, dmaVecMempool, sgMempool } from "./host/mempool.ts";
export {
  type MappingStyle,
  NvmeHost,
  type NvmeHostCounter,
  type NvmeHostOptions,
  type RequestMemory,
} from "./host/pci.ts";
export {
  type CompletionCallback,
  NvmeQueue,
  type RequeuedRequest,
  nvmeCid,
  nvmeGenctrFromCid,
  nvmeTagFromCid,
} from "./host/queue.ts";
export {
  type ScatterlistMapContext,
  nvmeMapDataScatterlist,
  nvmeUnmapDataScatterlist,
} from "./host/scatterlist.ts";
export { type MapContext, type SingleSegmentApi, mapSingleSegment } from "./host/map.ts";
export {
  USE_SGL,
  type UseSgl,
  nvmeMapData,
  nvmePciUseSgls,
  nvmeUnmapData,
} from "./host/two-step.ts";

// ctrl/
export { NvmeController } from "./ctrl/ctrl.ts";
export {
  NVME_ERR,
  NVME_ERROR_LOG_ENTRIES,
  type NvmeErrReason,
  type NvmeErrorEntry,
} from "./ctrl/error-log.ts";
export { type NvmeFaultPlan } from "./ctrl/faults.ts";
export { type NamespaceOptions, NvmeNamespace } from "./ctrl/ns.ts";
export { type NvmeControllerCounter, type NvmeControllerOptions } from "./ctrl/state.ts";
export {
  DmaRanges,
  type DescriptorHook,
  type SglCaps,
  nvmeMapPrp,
  nvmeMapSgl,
} from "./ctrl/walker.ts";
