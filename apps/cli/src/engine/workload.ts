/**
 * Workload generation, as fio does it for one job per CPU: block sizes (fixed, bsrange, bssplit),
 * the direction of each I/O (rw, rwmixread), offsets (sequential, or random and aligned, avoiding
 * the blocks of I/Os in flight), and the buffers each queue slot reads into or writes from, laid
 * out in simulated memory as the job asks.
 */
import {
  Bio,
  type PhysMemory,
  type QueueLimits,
  Request,
  type Rng,
  bioAddPage,
  bioReset,
  bioSplitToLimits,
  blkRqAppendBio,
  blkRqInit,
  fastMod,
} from "@dmasim/bvec";
import { JobError } from "./errors.ts";
import { type Job, sizeOf } from "./job.ts";

/** A physically contiguous piece of a slot's buffer. */
export interface BufferRange {
  readonly phys: number;
  readonly len: number;
}

/** Picks what the next I/O is. */
export class Workload {
  /** The largest block size the job can ask for. */
  readonly maxBs: number;
  /** Namespace bytes, whole logical blocks. */
  readonly nsBytes: number;
  private readonly rng: Rng;
  private readonly job: Job;
  private readonly pickBs: () => number;
  private seqOffset = 0;
  /**
   * In-flight I/Os per 4 KiB block of the namespace (a count: overlapping I/Os may share): a
   * typed array for namespaces up to 16 GiB, a map of the busy blocks beyond.
   */
  private readonly busyArray: Uint32Array | null;
  private readonly busyBlocks = new Map<number, number>();

  constructor(job: Job, rng: Rng) {
    this.job = job;
    this.rng = rng;
    const lba = job.controller.lbaSize;
    this.nsBytes = Math.floor((job.controller.namespaceGiB * 1024 ** 3) / lba) * lba;
    const spec = job.workload.bs;
    let sizes: number[];
    if (Array.isArray(spec)) {
      sizes = spec.map((x) => sizeOf(x.bs));
      const weights = spec.map((x) => x.weight);
      const total = weights.reduce((a, b) => a + b, 0);
      this.pickBs = () => {
        let r = rng.nextFloat() * total;
        for (let i = 0; i < sizes.length; i++) {
          r -= weights[i] as number;
          if (r < 0) return sizes[i] as number;
        }
        return sizes[sizes.length - 1] as number;
      };
    } else if (typeof spec === "object") {
      const lo = sizeOf(spec.min);
      const hi = sizeOf(spec.max);
      if (hi < lo) throw new JobError([`workload.bs: max ${hi} is below min ${lo}`]);
      sizes = [lo, hi];
      this.pickBs = () => lo + rng.below(Math.floor((hi - lo) / lba) + 1) * lba;
    } else {
      const b = sizeOf(spec);
      sizes = [b];
      this.pickBs = () => b;
    }
    for (const b of sizes) {
      if (b % lba !== 0)
        throw new JobError([`workload.bs: ${b} is not a multiple of the ${lba}-byte LBA size`]);
      if (b > this.nsBytes) throw new JobError([`workload.bs: ${b} exceeds the namespace`]);
    }
    this.maxBs = Math.max(...sizes);
    const blocks = Math.ceil(this.nsBytes / 4096);
    this.busyArray = blocks <= 2 ** 22 ? new Uint32Array(blocks) : null;
  }

  /** The size of the next I/O, bytes. */
  nextBs(): number {
    return this.pickBs();
  }

  /** Whether the next I/O writes. */
  nextIsWrite(): boolean {
    const rw = this.job.workload.rw;
    return (
      rw === "write" ||
      rw === "randwrite" ||
      (rw === "randrw" && this.rng.below(100) >= this.job.workload.rwmixread)
    );
  }

  /**
   * The offset of the next I/O of `bytes`: the next sequential one, or a random aligned one that
   * avoids the 4 KiB blocks of I/Os in flight (a read racing a write to the same sectors would make
   * verification meaningless). Call `start` with it, and `end` when the I/O completes.
   */
  nextOffset(bytes: number): number {
    const rw = this.job.workload.rw;
    if (rw === "read" || rw === "write") {
      if (this.seqOffset + bytes > this.nsBytes) this.seqOffset = 0;
      const o = this.seqOffset;
      this.seqOffset += bytes;
      return o;
    }
    const align = Math.min(4096, bytes);
    const slots = Math.floor((this.nsBytes - bytes) / align) + 1;
    for (let tries = 0; tries < 16; tries++) {
      const o = this.rng.below(slots) * align;
      if (!this.overlaps(o, bytes)) return o;
    }
    return this.rng.below(slots) * align;
  }

  /** Marks `[offset, offset + bytes)` in flight. */
  start(offset: number, bytes: number): void {
    const end = Math.ceil((offset + bytes) / 4096);
    const a = this.busyArray;
    for (let b = Math.floor(offset / 4096); b < end; b++) {
      if (a !== null) a[b] = (a[b] as number) + 1;
      else this.busyBlocks.set(b, (this.busyBlocks.get(b) ?? 0) + 1);
    }
  }

  /** Marks `[offset, offset + bytes)` no longer in flight. */
  end(offset: number, bytes: number): void {
    const end = Math.ceil((offset + bytes) / 4096);
    const a = this.busyArray;
    for (let b = Math.floor(offset / 4096); b < end; b++) {
      if (a !== null) {
        a[b] = (a[b] as number) - 1;
        continue;
      }
      const n = (this.busyBlocks.get(b) ?? 1) - 1;
      if (n === 0) this.busyBlocks.delete(b);
      else this.busyBlocks.set(b, n);
    }
  }

  private overlaps(offset: number, bytes: number): boolean {
    const end = Math.ceil((offset + bytes) / 4096);
    const a = this.busyArray;
    for (let b = Math.floor(offset / 4096); b < end; b++)
      if (a !== null ? (a[b] as number) > 0 : this.busyBlocks.has(b)) return true;
    return false;
  }
}

/**
 * The buffers of every queue slot: `slots` buffers of `maxBs` bytes (plus the job's offset),
 * laid out as `workload.buffers` asks: scattered pages, one contiguous block, an offset into the
 * first page, or 2 MiB huge pages.
 */
export class SlotBuffers {
  private readonly pages: number[][] = [];
  private readonly cache: (readonly BufferRange[] | undefined)[] = [];
  private readonly cacheBytes: number[] = [];
  private readonly ps: number;
  private readonly offset: number;

  constructor(job: Job, mem: PhysMemory, slots: number, maxBs: number) {
    const layout = job.workload.buffers;
    this.ps = mem.pageSize;
    this.offset = layout === "offset" ? job.workload.bufferOffset : 0;
    const ps = this.ps;
    const pagesPerSlot = Math.ceil((maxBs + this.offset) / ps);
    for (let s = 0; s < slots; s++) {
      let pages: number[];
      if (layout === "scattered") {
        // The seed of each slot's layout: cpu c, slot k of the old per-CPU numbering.
        pages = mem.allocScattered(pagesPerSlot, job.seed * 7919 + s);
      } else if (layout === "hugepage") {
        const hugePages = (2 * 1024 * 1024) / ps;
        const order = Math.log2(hugePages);
        pages = [];
        for (let left = pagesPerSlot; left > 0; left -= hugePages) {
          const base = mem.allocPages(order);
          for (let i = 0; i < Math.min(left, hugePages); i++) pages.push(base + i);
        }
      } else {
        const order = Math.ceil(Math.log2(pagesPerSlot));
        if (order > 10)
          throw new JobError([
            `workload.buffers: ${layout} buffers of ${maxBs} bytes exceed the largest contiguous block (${1024 * ps} bytes)`,
          ]);
        const base = mem.allocPages(order);
        pages = Array.from({ length: pagesPerSlot }, (_, i) => base + i);
      }
      this.pages.push(pages);
    }
  }

  /**
   * The physically contiguous pieces of the first `bytes` of slot `slot`'s buffer (the same
   * array for the same slot and size: the caller must not change it).
   */
  ranges(slot: number, bytes: number): readonly BufferRange[] {
    const cached = this.cache[slot];
    if (cached !== undefined && this.cacheBytes[slot] === bytes) return cached;
    const out = this.compute(slot, bytes);
    this.cache[slot] = out;
    this.cacheBytes[slot] = bytes;
    return out;
  }

  private compute(slot: number, bytes: number): BufferRange[] {
    const pages = this.pages[slot] as number[];
    const ps = this.ps;
    const out: BufferRange[] = [];
    let left = bytes;
    let off = this.offset;
    for (let i = 0; left > 0; i++) {
      const n = Math.min(ps - off, left);
      out.push({ phys: (pages[i] as number) * ps + off, len: n });
      left -= n;
      off = 0;
    }
    return out;
  }
}

/**
 * A FIFO of integers with a fixed room (a ring: no shifting): a CPU's ready queue slots, or its
 * completion queues with work pending.
 */
export class SlotQueue {
  private readonly ring: Int32Array;
  private head = 0;
  size = 0;

  constructor(capacity: number) {
    this.ring = new Int32Array(capacity);
  }

  push(slot: number): void {
    let i = this.head + this.size;
    if (i >= this.ring.length) i -= this.ring.length;
    this.ring[i] = slot;
    this.size++;
  }

  /** The oldest slot (the queue must not be empty). */
  shift(): number {
    const slot = this.ring[this.head] as number;
    this.head = this.head + 1 === this.ring.length ? 0 : this.head + 1;
    this.size--;
    return slot;
  }
}

/**
 * The block-layer side of each queue slot: one bio (its table as large as the slot's buffer has
 * pieces), made new for each I/O with `bioReset` (Linux `bio_reset`), and the requests its I/O
 * is split into, emptied with `blkRqInit` (Linux `blk_rq_init`, as blk-mq reuses the request of
 * a tag) and filled by `blkRqAppendBio`. A slot has one I/O at a time, and its requests are done
 * with when that I/O completes, so nothing is allocated per I/O.
 */
export class SlotRequests {
  private readonly bios: Bio[];
  private readonly reqs: Request[][];
  private readonly lim: QueueLimits;
  private readonly ps: number;

  constructor(buffers: SlotBuffers, slots: number, maxBs: number, lim: QueueLimits, ps: number) {
    this.bios = Array.from(
      { length: slots },
      (_, s) => new Bio("read", 0, Math.max(1, buffers.ranges(s, maxBs).length)),
    );
    this.reqs = Array.from({ length: slots }, () => []);
    this.lim = lim;
    this.ps = ps;
  }

  /**
   * Builds slot `slot`'s next I/O over the buffer pieces `rs`: its bio at byte `offset`, split
   * to the queue limits, one request per piece. Returns the number of requests (`request`).
   */
  build(slot: number, write: boolean, offset: number, rs: readonly BufferRange[]): number {
    const op = write ? "write" : "read";
    const ps = this.ps;
    const bio = this.bios[slot] as Bio;
    bioReset(bio, op, offset / 512);
    for (const r of rs) bioAddPage(bio, Math.floor(r.phys / ps), r.len, fastMod(r.phys, ps), ps);
    const pieces = bioSplitToLimits(bio, this.lim);
    const reqs = this.reqs[slot] as Request[];
    for (let i = 0; i < pieces.length; i++) {
      let req = reqs[i];
      if (req === undefined) {
        req = new Request(op, this.lim);
        reqs[i] = req;
      } else blkRqInit(req, op);
      blkRqAppendBio(req, pieces[i] as Bio);
    }
    return pieces.length;
  }

  /** Request `i` of the slot's current I/O. */
  request(slot: number, i: number): Request {
    return (this.reqs[slot] as Request[])[i] as Request;
  }
}
