/**
 * Per-request driver state (Linux `struct nvme_iod`, drivers/nvme/host/pci.c), its flags, and
 * what one request holds in host memory while in flight.
 */
import type { Request } from "@dmasim/bvec";
import {
  DmaIovaState,
  type DmaPoolBlock,
  type DmaVec,
  P2P_MAP,
  type P2pMap,
  type SgTable,
} from "@dmasim/dma-core";
import { SQE_SIZE } from "../spec/commands.ts";
import { NVME_CTRL_PAGE_SIZE, NVME_MAX_NR_DESCRIPTORS, NVME_SMALL_POOL_SIZE } from "./limits.ts";

/** Linux `enum nvme_iod_flags`. */
export const IOD = {
  ABORTED: 1,
  SMALL_DESCRIPTOR: 2,
  SINGLE_SEGMENT: 4,
  DATA_P2P: 8,
  META_P2P: 16,
  DATA_MMIO: 32,
  META_MMIO: 64,
  SINGLE_META_SEGMENT: 128,
} as const;

/** True when `flags` has `flag` (single bits below 2^8). */
export function iodHas(flags: number, flag: number): boolean {
  // eslint-disable-next-line no-bitwise -- flags is an 8-bit flag set, not an address
  return (flags & flag) !== 0;
}

/**
 * Bytes of the per-request state, as allocated for every tag whether used or not (the size
 * the review of the two-step API weighed, docs/review-points.md#inline-pair-in-iod). Two-step
 * style: command 64, flags and counts 2, total length 8, IOVA state 16, 5 descriptor pointers
 * 40, vec pointer and count 12, one inline DMA pair 16, request header 32. Scatterlist style
 * (v6.8): command 64, counts 8, first_dma/dma_len 16, meta 8, sg_table 16, 5 list pointers 40,
 * request header 32. The two-step figure is the model's iod, not upstream's: upstream has no
 * inline pair and carries metadata fields the model leaves out (about 224 bytes on x86-64).
 */
export const IOD_BYTES = { "two-step": 190, scatterlist: 184 } as const;

/** Linux `struct nvme_iod`, plus what the scatterlist style kept. */
export class NvmeIod {
  readonly tag: number;
  readonly qid: number;
  /** The 64-byte command that is copied into the submission queue. */
  readonly cmd = new Uint8Array(SQE_SIZE);
  /** `IOD` flags. */
  flags = 0;
  /** Descriptor blocks in use (PRP list pages / SGL segment), up to 5. */
  nrDescriptors = 0;
  readonly descriptors: (DmaPoolBlock | undefined)[] = new Array<DmaPoolBlock | undefined>(
    NVME_MAX_NR_DESCRIPTORS,
  );
  /** Bytes described and mapped (the unmap length). */
  totalLen = 0;
  /**
   * The two-step API state (docs/review-points.md#one-state-object,
   * docs/review-points.md#inline-pair-in-iod).
   */
  readonly dmaState = new DmaIovaState();
  /**
   * The one inline DMA pair (docs/review-points.md#inline-pair-in-iod): the single segment, or
   * the first recorded PRP segment.
   */
  readonly dmaVec: DmaVec = { addr: 0, len: 0 };
  /** More recorded segments, allocated only when needed (docs/review-points.md#inline-pair-in-iod). */
  dmaVecs: DmaVec[] | null = null;
  /** Recorded segments (inline + array). */
  nrDmaVecs = 0;
  /** The P2P map type of the data. */
  p2p: P2pMap = P2P_MAP.NONE;
  /** The request in flight (null for admin commands). */
  req: Request | null = null;
  /** The slot holds a command in flight. */
  busy = false;
  /**
   * Linux `nvme_req(req)->retries` of the request on this tag: set at each dispatch from the
   * request's own count (0 for a new request, `nvme_clear_nvme_request`), so nothing carries
   * over from the tag's previous request.
   */
  retries = 0;
  /** Scatterlist style: the scatterlist table from the mempool. */
  sgt: SgTable | null = null;
  /** Scatterlist style: whether the SGL format was used. */
  useSgl = false;
  /** Linux command identifier generation counter (4 bits). */
  genctr = 0;

  constructor(qid: number, tag: number) {
    this.qid = qid;
    this.tag = tag;
  }

  /** Linux `nvme_prep_rq` resets these before every submission. */
  resetForSubmit(): void {
    this.flags = 0;
    this.nrDescriptors = 0;
    this.totalLen = 0;
    this.nrDmaVecs = 0;
    this.p2p = P2P_MAP.NONE;
    this.useSgl = false;
    this.cmd.fill(0);
    for (let i = 0; i < NVME_MAX_NR_DESCRIPTORS; i++) this.descriptors[i] = undefined;
    // The state of the previous request is dead (destroyed at its unmap), but it still says
    // "IOVA in use"; the single-segment path never reaches `dma_iova_try_alloc` (which zeroes
    // it), so without this its unmap would destroy the stale range instead of unmapping.
    DmaIovaState.reset(this.dmaState);
  }
}

/** Bytes of the descriptor blocks a request holds. */
export function iodDescriptorBytes(iod: NvmeIod): number {
  if (iod.nrDescriptors === 0) return 0;
  return iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)
    ? NVME_SMALL_POOL_SIZE
    : iod.nrDescriptors * NVME_CTRL_PAGE_SIZE;
}
