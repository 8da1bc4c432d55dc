/**
 * Per-request driver state (Linux `struct nvme_iod`) and the per-device allocators the data
 * path uses: the dma_vec mempool and, for the old mapping style, the scatterlist mempool.
 */
import { CounterSet, type Request } from "@dmasim/bvec";
import {
  DmaIovaState,
  type DmaPoolBlock,
  type DmaVec,
  P2P_MAP,
  type P2pMap,
  SgTable,
} from "@dmasim/dma-core";
import { NVME_MAX_NR_DESCRIPTORS, NVME_MAX_SEGS, NVME_OLD_MAX_SEGS } from "./constants.ts";

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
 * Bytes of the per-request state, as allocated for every tag whether used or not (the number
 * the 2024 review discussions argued about). New style: command 64, flags and counts 2, total
 * length 8, IOVA state 16, 5 descriptor pointers 40, vec pointer and count 12, one inline
 * DMA pair 16, request header 32. Old style (v6.8): command 64, counts 8, first_dma/dma_len 16,
 * meta 8, sg_table 16, 5 list pointers 40, request header 32.
 */
export const IOD_BYTES = { new: 190, old: 184 } as const;

/** Linux `struct nvme_iod`, plus what the old scatterlist style kept. */
export class NvmeIod {
  readonly tag: number;
  readonly qid: number;
  /** The 64-byte command that is copied into the submission queue. */
  readonly cmd = new Uint8Array(64);
  /** `IOD` flags. */
  flags = 0;
  /** Descriptor blocks in use (PRP list pages / SGL segment), up to 5. */
  nrDescriptors = 0;
  readonly descriptors: (DmaPoolBlock | undefined)[] = new Array<DmaPoolBlock | undefined>(
    NVME_MAX_NR_DESCRIPTORS,
  );
  /** Bytes described and mapped (the unmap length). */
  totalLen = 0;
  /** The two-step API state (R1, R5). */
  readonly dmaState = new DmaIovaState();
  /** The one inline DMA pair (R5): the single segment, or the first recorded PRP segment. */
  readonly dmaVec: DmaVec = { addr: 0, len: 0 };
  /** More recorded segments, allocated only when needed (R5). */
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
  /** Old style: the scatterlist table from the mempool. */
  sgt: SgTable | null = null;
  /** Old style: whether the SGL format was used. */
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

/** Counter names of the mempools. */
export type MempoolCounter = "allocs" | "frees" | "failures" | "inUse" | "bytesInUse";

/**
 * A mempool of fixed-size objects (Linux `mempool_t` over kmalloc): the dma_vec arrays of 256
 * pairs (4 KiB) or the old style's scatterlist tables. Allocation may fail (fault injection).
 */
export class Mempool<T> {
  readonly name: string;
  readonly objectBytes: number;
  readonly counters = new CounterSet<MempoolCounter>("mempool", [
    "allocs",
    "frees",
    "failures",
    "inUse",
    "bytesInUse",
  ]);
  /** Fault injection: return true to fail the next allocation (GFP_ATOMIC failure). */
  faultHook: (() => boolean) | undefined = undefined;
  private readonly free: T[] = [];
  private readonly make: () => T;

  constructor(name: string, objectBytes: number, make: () => T) {
    this.name = name;
    this.objectBytes = objectBytes;
    this.make = make;
  }

  /** Returns an object, or null when the allocation fails. */
  alloc(): T | null {
    const c = this.counters.c;
    if (this.faultHook?.() ?? false) {
      c.failures++;
      return null;
    }
    c.allocs++;
    c.inUse++;
    c.bytesInUse += this.objectBytes;
    return this.free.pop() ?? this.make();
  }

  /** Returns an object to the pool. */
  release(o: T): void {
    const c = this.counters.c;
    c.frees++;
    c.inUse--;
    c.bytesInUse -= this.objectBytes;
    this.free.push(o);
  }
}

/** Linux `nvme_pci_alloc_iod_mempool`: arrays of NVME_MAX_SEGS DMA pairs (4 KiB). */
export function dmaVecMempool(): Mempool<DmaVec[]> {
  return new Mempool<DmaVec[]>("nvme dma_vec", NVME_MAX_SEGS * 16, () => {
    const a: DmaVec[] = [];
    for (let i = 0; i < NVME_MAX_SEGS; i++) a.push({ addr: 0, len: 0 });
    return a;
  });
}

/** The old style's scatterlist mempool: NVME_MAX_SEGS (128) entries of 32 bytes. */
export function sgMempool(): Mempool<SgTable> {
  return new Mempool<SgTable>(
    "nvme sg",
    NVME_OLD_MAX_SEGS * 32,
    () => new SgTable(NVME_OLD_MAX_SEGS),
  );
}
