/**
 * A pool of fixed-size objects that may fail to allocate (Linux mm/mempool.c over kmalloc),
 * and the two nvme-pci creates: the dma_vec arrays and, for the scatterlist style, the
 * scatterlist tables.
 */
import { CounterSet } from "@dmasim/bvec";
import { type DmaVec, SgTable } from "@dmasim/dma-core";
import { NVME_MAX_SEGS, NVME_OLD_MAX_SEGS } from "./limits.ts";

/** Bytes of one `struct dma_vec` (address and length). */
const DMA_VEC_BYTES = 16;
/** Bytes of one `struct scatterlist` entry. */
const SCATTERLIST_BYTES = 32;

/** Counter names of the mempools. */
export type MempoolCounter = "allocs" | "frees" | "failures" | "inUse" | "bytesInUse";

/**
 * A mempool of fixed-size objects (Linux `mempool_t` over kmalloc): the dma_vec arrays of 256
 * pairs (4 KiB) or the scatterlist style's tables. Allocation may fail (fault injection).
 */
export class Mempool<T> {
  readonly name: string;
  readonly objectBytes: number;
  readonly counters = new CounterSet<MempoolCounter>(
    "mempool",
    ["allocs", "frees", "failures", "inUse", "bytesInUse"],
    ["inUse", "bytesInUse"],
  );
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
  return new Mempool<DmaVec[]>("nvme dma_vec", NVME_MAX_SEGS * DMA_VEC_BYTES, () => {
    const a: DmaVec[] = [];
    for (let i = 0; i < NVME_MAX_SEGS; i++) a.push({ addr: 0, len: 0 });
    return a;
  });
}

/** The scatterlist style's mempool: NVME_OLD_MAX_SEGS (128) entries of 32 bytes. */
export function sgMempool(): Mempool<SgTable> {
  return new Mempool<SgTable>(
    "nvme sg",
    NVME_OLD_MAX_SEGS * SCATTERLIST_BYTES,
    () => new SgTable(NVME_OLD_MAX_SEGS),
  );
}
