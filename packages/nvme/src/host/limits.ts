/**
 * Linux nvme-pci's data-path limits (drivers/nvme/host/pci.c, host/nvme.h) and the queue
 * limits the driver derives from Identify (`nvme_set_ctrl_limits`, drivers/nvme/host/core.c).
 * The specification's values (registers, opcodes, status codes, Identify fields) are in spec/.
 */
import {
  type KernelVersion,
  type QueueLimits,
  SECTOR_SIZE,
  kernelHas,
  queueLimits,
} from "@dmasim/bvec";

/** Linux `NVME_CTRL_PAGE_SIZE`: the host always programs a 4 KiB controller page (CC.MPS = 0). */
export const NVME_CTRL_PAGE_SIZE = 4096;
/** Linux `NVME_CTRL_PAGE_SHIFT`. */
export const NVME_CTRL_PAGE_SHIFT = 12;
/** Linux `NVME_SMALL_POOL_SIZE`: 256-byte descriptor blocks (32 PRP entries or 16 SGL descriptors). */
export const NVME_SMALL_POOL_SIZE = 256;
/** Linux `NVME_MAX_BYTES`: 8 MiB per request. */
export const NVME_MAX_BYTES = 8 * 1024 * 1024;
/** Linux `NVME_MAX_NR_DESCRIPTORS`: at most 5 descriptor pages per command. */
export const NVME_MAX_NR_DESCRIPTORS = 5;
/** Linux `NVME_MAX_SEGS`: one page of SGL descriptors (4096 / 16). */
export const NVME_MAX_SEGS = 256;
/** The bytes of one PRP entry (`__le64`). */
export const NVME_PRP_ENTRY_SIZE = 8;
/** PRP entries in one list page (512); the last one links to the next page. */
export const NVME_PRP_ENTRIES_PER_PAGE = NVME_CTRL_PAGE_SIZE / NVME_PRP_ENTRY_SIZE;
/** Linux `PRPS_PER_PAGE`: 511 data entries per list page, the last slot links to the next. */
export const PRPS_PER_PAGE = NVME_PRP_ENTRIES_PER_PAGE - 1;
/** Linux `sgl_threshold` default: SGLs when the average segment is at least 32 KiB. */
export const NVME_SGL_THRESHOLD = 32768;
/** Linux `NVME_AQ_DEPTH`. */
export const NVME_AQ_DEPTH = 32;
/** The scatterlist driver's `NVME_MAX_SEGS` (v6.8). */
export const NVME_OLD_MAX_SEGS = 128;
/** Linux `nvme_max_retries` default. */
export const NVME_MAX_RETRIES = 5;
/** The largest I/O queue the driver asks for (Linux `io_queue_depth` allows up to 4095; the model's default is 1024). */
export const NVME_IO_QUEUE_DEPTH = 1024;
/** `max_segments` is an unsigned short in Linux's queue limits. */
const USHRT_MAX = 65535;
/** A segment of any size (Linux sets `max_segment_size` to UINT_MAX). */
const UINT_MAX = 0xffffffff;
/** Linux `lim->dma_alignment = 3`: 4-byte aligned DMA. */
const NVME_DMA_ALIGNMENT = 3;

/** Identify data the host keeps. */
export interface ControllerInfo {
  readonly mdts: number;
  readonly sgls: number;
  readonly namespaces: number;
  readonly mpsmin: number;
  readonly mqes: number;
}

/** One namespace as Identify reported it. */
export interface NamespaceInfo {
  readonly nsid: number;
  readonly lbaSize: number;
  readonly blocks: number;
}

/**
 * Linux's limits (`nvme_set_ctrl_limits`, `nvme_pci_alloc_dev` in drivers/nvme/host/):
 * max_hw_sectors from 8 MiB, the DMA optimal mapping size and MDTS; max_segments from that
 * (`nvme_max_drv_segments`, capped by the driver's NVME_MAX_SEGS); 4-byte DMA alignment; no
 * segment size limit. The admin queue (`nvme_init_identify`, `nvme_set_ctrl_limits(ctrl,
 * &lim, true)`) gets the same sizes with the 4 KiB virt boundary. An I/O queue has no virt
 * boundary only from 6.19 ("nvme: remove virtual boundary for sgl capable devices",
 * `nvme_pci_get_virt_boundary`: SGL support and the two-step mapping, gate "bio-gap-tracking");
 * before, and always in the scatterlist style, every queue has it.
 *
 * `dma_opt_mapping_size` never returns 0 in the model (the IOVA rcache range, or the SWIOTLB
 * segment less the 4 KiB minimum alignment), so the 2026 change that skips the clamp for a
 * 0 return cannot be observed and is not modelled.
 */
export function nvmeSetCtrlLimits(o: {
  readonly info: ControllerInfo;
  readonly sglSupported: boolean;
  readonly twoStep: boolean;
  readonly kernel: KernelVersion;
  readonly dmaOptMappingSize: number;
  readonly lbaSize: number;
  readonly admin: boolean;
}): QueueLimits {
  const info = o.info;
  let maxHw = Math.min(NVME_MAX_BYTES / SECTOR_SIZE, Math.floor(o.dmaOptMappingSize / SECTOR_SIZE));
  if (info.mdts !== 0)
    maxHw = Math.min(maxHw, 2 ** (info.mdts + info.mpsmin + NVME_CTRL_PAGE_SHIFT - 9));
  // Linux `nvme_max_drv_segments`: one segment per controller page, plus one.
  const driverSegs = Math.floor(maxHw / (NVME_CTRL_PAGE_SIZE / SECTOR_SIZE)) + 1;
  const maxSegs = Math.min(USHRT_MAX, driverSegs, o.twoStep ? NVME_MAX_SEGS : NVME_OLD_MAX_SEGS);
  const noBoundary =
    !o.admin && o.twoStep && o.sglSupported && kernelHas(o.kernel, "bio-gap-tracking");
  return queueLimits({
    logicalBlockSize: o.admin ? SECTOR_SIZE : o.lbaSize,
    maxHwSectors: maxHw,
    maxSegments: maxSegs,
    virtBoundaryMask: noBoundary ? 0 : NVME_CTRL_PAGE_SIZE - 1,
    maxSegmentSize: UINT_MAX,
    dmaAlignment: NVME_DMA_ALIGNMENT,
  });
}
