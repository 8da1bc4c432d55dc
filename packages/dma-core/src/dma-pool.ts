/**
 * `dma_pool` (mm/dmapool.c): fixed-size blocks with an alignment and an optional boundary they
 * may not cross, carved from coherent pages. Pages are kept until the pool is destroyed.
 */
import { CounterSet, InternalError, checkInt, hex, isPow2 } from "@dmasim/bvec";
import { type CoherentBuffer, dmaAllocCoherent, dmaFreeCoherent } from "./coherent.ts";
import type { Device } from "./device.ts";
import { DmaError } from "./errors.ts";

/** Linux `sizeof(struct dma_block)` on 64-bit: the smallest block a pool hands out. */
const DMA_BLOCK_BYTES = 16;

/** A block from a pool: CPU (physical) and DMA address. */
export interface DmaPoolBlock {
  readonly cpuAddr: number;
  readonly dmaAddr: number;
}

/** Counter names of `DmaPool`. */
export type DmaPoolCounter = "allocs" | "frees" | "pages" | "blocksInUse" | "failures";

/** Linux `struct dma_pool`. */
export class DmaPool {
  readonly name: string;
  readonly dev: Device;
  /** Block size (rounded up to the alignment). */
  readonly size: number;
  readonly align: number;
  readonly boundary: number;
  /** Bytes per backing coherent allocation: max(size, page size). */
  readonly allocation: number;
  readonly counters = new CounterSet<DmaPoolCounter>(
    "dmapool",
    ["allocs", "frees", "pages", "blocksInUse", "failures"],
    ["blocksInUse"],
  );
  /** Fault injection: return true to make the next allocation fail (Linux returns NULL). */
  faultHook: (() => boolean) | undefined = undefined;
  private readonly pages: CoherentBuffer[] = [];
  /** Free blocks, popped from the end (LIFO, like the pool's free list). */
  private readonly free: DmaPoolBlock[] = [];
  /** Live blocks by CPU address. */
  private readonly busy = new Map<number, DmaPoolBlock>();

  /** Linux `dma_pool_create`. */
  constructor(name: string, dev: Device, size: number, align = 0, boundary = 0) {
    checkInt(size, `dma_pool ${name} size`, 1);
    checkInt(align, `dma_pool ${name} align`);
    checkInt(boundary, `dma_pool ${name} boundary`);
    const a = align === 0 ? 1 : align;
    if (!isPow2(a))
      throw new DmaError("EINVAL", `dma_pool ${name}: align ${hex(align)} is not a power of two`);
    // A block is at least `sizeof(struct dma_block)` (a next pointer and a dma_addr_t).
    const sz = Math.ceil(Math.max(size, DMA_BLOCK_BYTES) / a) * a;
    const allocation = Math.max(sz, dev.memory.pageSize);
    let b = boundary === 0 ? allocation : boundary;
    if (boundary !== 0 && (boundary < sz || !isPow2(boundary))) {
      throw new DmaError(
        "EINVAL",
        `dma_pool ${name}: boundary ${hex(boundary)} is smaller than the block size ${hex(sz)} or not a power of two`,
      );
    }
    b = Math.min(b, allocation);
    this.name = name;
    this.dev = dev;
    this.size = sz;
    this.align = a;
    this.boundary = b;
    this.allocation = allocation;
  }

  /** Blocks handed out and not freed. */
  get inUse(): number {
    return this.busy.size;
  }

  /** Linux `dma_pool_alloc`. Throws ENOMEM when no block can be had. */
  alloc(): DmaPoolBlock {
    if (this.faultHook?.() ?? false) {
      this.counters.c.failures++;
      throw new DmaError("ENOMEM", `dma_pool ${this.name}: allocation failed (injected)`);
    }
    let blk = this.free.pop();
    if (blk === undefined) {
      this.grow();
      blk = this.free.pop();
      if (blk === undefined)
        throw new InternalError(`dma_pool ${this.name}: a new page yielded no block`);
    }
    this.busy.set(blk.cpuAddr, blk);
    this.counters.c.allocs++;
    this.counters.c.blocksInUse++;
    return blk;
  }

  /** Linux `dma_pool_free`; a block that is not live (double free, foreign address) is an error. */
  freeBlock(cpuAddr: number, dmaAddr: number): void {
    const blk = this.busy.get(cpuAddr);
    if (blk === undefined || blk.dmaAddr !== dmaAddr) {
      throw new DmaError(
        "EINVAL",
        `dma_pool_free ${this.name}: ${hex(cpuAddr)}/${hex(dmaAddr)} is not a live block of this pool`,
      );
    }
    this.busy.delete(cpuAddr);
    this.free.push(blk);
    this.counters.c.frees++;
    this.counters.c.blocksInUse--;
  }

  /** Linux `dma_pool_destroy`: frees the pages; refuses (EBUSY) while blocks are live. */
  destroy(): void {
    if (this.busy.size > 0) {
      throw new DmaError(
        "EBUSY",
        `dma_pool_destroy ${this.name}, busy: ${this.busy.size} block(s) still allocated`,
      );
    }
    for (const p of this.pages) dmaFreeCoherent(this.dev, this.allocation, p.cpuAddr, p.dmaAddr);
    this.pages.length = 0;
    this.free.length = 0;
  }

  private grow(): void {
    let page: CoherentBuffer;
    try {
      page = dmaAllocCoherent(this.dev, this.allocation);
    } catch (e) {
      this.counters.c.failures++;
      throw e;
    }
    this.pages.push(page);
    this.counters.c.pages++;
    const blocks: DmaPoolBlock[] = [];
    let off = 0;
    while (off + this.size <= this.allocation) {
      if ((off % this.boundary) + this.size > this.boundary) {
        off += this.boundary - (off % this.boundary);
        continue;
      }
      blocks.push({ cpuAddr: page.cpuAddr + off, dmaAddr: page.dmaAddr + off });
      off += this.size;
    }
    // Lowest address is handed out first.
    for (let i = blocks.length - 1; i >= 0; i--) this.free.push(blocks[i] as DmaPoolBlock);
  }
}
