/**
 * A namespace of the simulated controller: a logical block size, a capacity, and real bytes
 * stored sparsely (4 KiB chunks created on first write), so large namespaces cost only what
 * is written.
 *
 * The store is its own, not bvec's `SparseBytes` (which holds simulated RAM): a namespace is
 * written at random far beyond the host's caches, and chunks carved from slabs with integer
 * slot indices cost less per access there than a chunk object each (a 256 MiB namespace under
 * 30 % random 4 KiB writes: about 0.8–1.2 µs per access against 1.0–2.0 µs for `SparseBytes`
 * with 4 KiB chunks, in the same process).
 */
import { checkInt, fastMod, hex, isPow2 } from "@dmasim/bvec";
import { NvmeError } from "../errors.ts";

/**
 * Bytes per stored chunk: one page, so that scattered small writes each zero (and make the host
 * fault in) only the page they write, and a read of a block never written copies nothing.
 * Chunks that follow each other in a slab are copied as one run, so large transfers over
 * data written in order still take few copies.
 */
const CHUNK = 4096;
/** Chunks per directory leaf (16 MiB of namespace). */
const LEAF = 4096;
/**
 * Chunks carved from one slab (1 MiB). A fresh `Uint8Array` per chunk costs an allocation, its
 * zeroing and external-memory bookkeeping on every first write (a random-write workload over a
 * large namespace hits that on nearly every write); one zeroed slab holds this many chunks.
 */
const SLAB_CHUNKS = 256;

/** Entries of the chunk view cache (a power of two). */
const VIEWS = 256;

/** Slabs the pool keeps at most (256 MiB). */
const POOL_SLABS = 256;
/**
 * Slabs given back by released namespaces (`NvmeNamespace.release`), taken by the next
 * namespaces of the process before any new one is allocated. A process that runs many jobs (a
 * sweep, `dmasim validate`, the benchmarks) would otherwise have the host fault in and zero
 * fresh memory on nearly every first write of every run: on a random-write workload over a
 * large namespace that is one page fault every few I/Os, a few percent of the whole run. A
 * reused slab still holds the bytes of its last namespace, so each of its chunks is zeroed when
 * it is taken, unless the write that takes it covers it whole.
 */
const slabPool: Uint8Array[] = [];

/** Options of a namespace. */
export interface NamespaceOptions {
  /** Logical block size: 512 or 4096 (any power of two 512..65536). */
  readonly lbaSize?: number;
  /** Capacity in logical blocks (default: 1 GiB worth). */
  readonly blocks?: number;
}

/** One NVMe namespace with real data. */
export class NvmeNamespace {
  readonly nsid: number;
  readonly lbaSize: number;
  readonly blocks: number;
  /**
   * Two-level directory of chunks: `dir[floor(ci / LEAF)][ci % LEAF]` is the chunk's slot + 1
   * (0: never written). Slot `s` is bytes `[(s % SLAB_CHUNKS) * CHUNK, ...)` of slab
   * `floor(s / SLAB_CHUNKS)`: chunks take slots in the order they are first written.
   *
   * Integers in typed arrays rather than a view object per chunk: in a long run the namespace
   * is far larger than the host's caches, so every object on the way to the bytes is one more
   * cache and TLB miss before the copy starts. A view of a slab made for the copy (young, and
   * in cache) is cheaper than a stored view that has gone cold; `viewOf` keeps the few made
   * last.
   */
  private readonly dir: (Int32Array | undefined)[] = [];
  /** The slabs, in slot order. */
  private readonly slabs: Uint8Array[] = [];
  /** Whether the last slab came from the pool (its chunks hold old bytes until taken). */
  private lastReused = false;
  private chunkCount = 0;
  /**
   * Views of whole chunks read lately, direct-mapped by slot (`VIEWS` entries, `viewSlot` says
   * whose): a chunk read again soon (a small working set) reuses its view instead of making one
   * per copy, while a read of a cold chunk costs one look in this small table.
   */
  private readonly viewOf: Uint8Array[] = [];
  private readonly viewSlot = new Int32Array(VIEWS).fill(-1);

  constructor(nsid: number, options: NamespaceOptions = {}) {
    this.nsid = nsid;
    this.lbaSize = options.lbaSize ?? 512;
    if (!isPow2(this.lbaSize) || this.lbaSize < 512 || this.lbaSize > 65536) {
      throw new NvmeError(
        "EINVAL",
        `namespace ${nsid}: LBA size ${this.lbaSize} is not a power of two in 512..65536`,
      );
    }
    this.blocks = checkInt(
      options.blocks ?? Math.floor(2 ** 30 / this.lbaSize),
      `namespace ${nsid} capacity (blocks)`,
      1,
    );
  }

  /** Capacity in bytes. */
  get bytes(): number {
    return this.blocks * this.lbaSize;
  }

  /** Host bytes of the chunks written so far (their slabs may hold up to 1 MiB more). */
  get backedBytes(): number {
    return this.chunkCount * CHUNK;
  }

  /** Copies `len` bytes at byte offset `at` into `dst[off..]` (unwritten blocks read as zeros). */
  read(at: number, dst: Uint8Array, off: number, len: number): void {
    this.check(at, len);
    let done = 0;
    while (done < len) {
      const p = at + done;
      const ci = Math.floor(p / CHUNK);
      const slot = this.slotOf(ci);
      let n = Math.min(CHUNK - (p - ci * CHUNK), len - done);
      // The run goes on over chunks never written either, or over the next slots of one slab.
      for (let k = 1; done + n < len; k++) {
        const next = this.slotOf(ci + k);
        if (slot < 0 ? next >= 0 : next !== slot + k || fastMod(next, SLAB_CHUNKS) === 0) break;
        n += Math.min(CHUNK, len - done - n);
      }
      if (slot < 0) dst.fill(0, off + done, off + done + n);
      else if (n === CHUNK && p === ci * CHUNK) dst.set(this.chunkView(slot), off + done);
      else {
        const si = Math.floor(slot / SLAB_CHUNKS);
        const b = (slot - si * SLAB_CHUNKS) * CHUNK + (p - ci * CHUNK);
        dst.set(new Uint8Array((this.slabs[si] as Uint8Array).buffer, b, n), off + done);
      }
      done += n;
    }
  }

  /** Copies `len` bytes from `src[off..]` to byte offset `at`. */
  write(at: number, src: Uint8Array, off: number, len: number): void {
    this.check(at, len);
    let done = 0;
    while (done < len) {
      const p = at + done;
      const ci = Math.floor(p / CHUNK);
      const slot = this.slotFor(ci, at, len);
      let n = Math.min(CHUNK - (p - ci * CHUNK), len - done);
      // The run goes on while the next chunks (written by this call in any case) take the next
      // slots of the same slab.
      for (let k = 1; done + n < len; k++) {
        const next = this.slotFor(ci + k, at, len);
        if (next !== slot + k || fastMod(next, SLAB_CHUNKS) === 0) break;
        n += Math.min(CHUNK, len - done - n);
      }
      const si = Math.floor(slot / SLAB_CHUNKS);
      (this.slabs[si] as Uint8Array).set(
        src.subarray(off + done, off + done + n),
        (slot - si * SLAB_CHUNKS) * CHUNK + (p - ci * CHUNK),
      );
      done += n;
    }
  }

  /** A view of the whole chunk in `slot`, from the view cache or made (and cached) now. */
  private chunkView(slot: number): Uint8Array {
    const h = fastMod(slot, VIEWS);
    if (this.viewSlot[h] === slot) return this.viewOf[h] as Uint8Array;
    const si = Math.floor(slot / SLAB_CHUNKS);
    const v = new Uint8Array(
      (this.slabs[si] as Uint8Array).buffer,
      (slot - si * SLAB_CHUNKS) * CHUNK,
      CHUNK,
    );
    this.viewOf[h] = v;
    this.viewSlot[h] = slot;
    return v;
  }

  /** The slot of chunk `ci`, or -1 when it was never written. */
  private slotOf(ci: number): number {
    const li = Math.floor(ci / LEAF);
    const leaf = this.dir[li];
    return leaf === undefined ? -1 : (leaf[ci - li * LEAF] as number) - 1;
  }

  /**
   * The slot of chunk `ci`, taking a new one when it was never written, for a write of `len`
   * bytes at `at` (a new chunk it does not cover whole is zeroed first, if it holds old bytes).
   */
  private slotFor(ci: number, at: number, len: number): number {
    const li = Math.floor(ci / LEAF);
    let leaf = this.dir[li];
    if (leaf === undefined) {
      leaf = new Int32Array(LEAF);
      this.dir[li] = leaf;
    }
    const k = ci - li * LEAF;
    let slot = (leaf[k] as number) - 1;
    if (slot < 0) {
      slot = this.newChunk(at > ci * CHUNK || at + len < (ci + 1) * CHUNK);
      leaf[k] = slot + 1;
    }
    return slot;
  }

  /**
   * Takes the next chunk slot, with a slab from the pool or a new one when the last slab is
   * full. The chunk reads as zeros, unless `zero` is false and it is about to be written whole.
   */
  private newChunk(zero: boolean): number {
    const slot = this.chunkCount;
    const si = Math.floor(slot / SLAB_CHUNKS);
    if (si === this.slabs.length) {
      const reused = slabPool.pop();
      this.lastReused = reused !== undefined;
      this.slabs.push(reused ?? new Uint8Array(SLAB_CHUNKS * CHUNK));
    }
    if (zero && this.lastReused) {
      const b = (slot - si * SLAB_CHUNKS) * CHUNK;
      (this.slabs[si] as Uint8Array).fill(0, b, b + CHUNK);
    }
    this.chunkCount++;
    return slot;
  }

  /**
   * Gives the namespace's host memory back: its slabs go to the pool the next namespaces of the
   * process take theirs from (up to 256 MiB is kept), and the namespace reads as never written
   * (zeros) from now on. Callers that are done with a machine (the engine, at the end of a run)
   * release its namespaces so that the next run's first writes reuse pages already faulted in.
   */
  release(): void {
    for (const slab of this.slabs) if (slabPool.length < POOL_SLABS) slabPool.push(slab);
    this.slabs.length = 0;
    this.dir.length = 0;
    this.chunkCount = 0;
    this.lastReused = false;
    this.viewOf.length = 0;
    this.viewSlot.fill(-1);
  }

  private check(at: number, len: number): void {
    if (at < 0 || at + len > this.bytes) {
      throw new NvmeError(
        "EINVAL",
        `namespace ${this.nsid}: access ${hex(at)}+${hex(len)} is outside its ${hex(this.bytes)} bytes`,
      );
    }
  }
}
