/**
 * A namespace of the simulated controller: a logical block size, a capacity, and real bytes
 * stored sparsely (16 KiB chunks created on first write), so large namespaces cost only what
 * is written.
 */
import { checkInt, hex, isPow2 } from "@dmasim/bvec";
import { NvmeError } from "./errors.ts";

/** Bytes per stored chunk: small, so that scattered small writes do not each zero a large block. */
const CHUNK = 16384;
/** Chunks per directory leaf. */
const LEAF = 1024;
/**
 * Chunks carved from one slab. A fresh `Uint8Array` per chunk costs an allocation, its zeroing
 * and external-memory bookkeeping on every first write (a random-write workload over a large
 * namespace hits that on nearly every write); one zeroed slab holds this many chunks.
 */
const SLAB_CHUNKS = 64;
/** Bytes of each cached page view of a chunk. */
const PAGE = 4096;

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
  /** Two-level directory of chunks (dir[floor(ci / LEAF)][ci % LEAF]); a chunk exists once written. */
  private readonly dir: (Array<Uint8Array | undefined> | undefined)[] = [];
  /**
   * Views of each chunk's 4 KiB pages, beside `dir`: a read of one aligned page (the common
   * device transfer) copies from a ready view instead of creating a `subarray` per copy.
   */
  private readonly pageViews: (Array<Uint8Array[] | undefined> | undefined)[] = [];
  private chunkCount = 0;
  /** The slab new chunks are carved from, and how many of its chunks are taken. */
  private slab: ArrayBuffer | undefined = undefined;
  private slabUsed = SLAB_CHUNKS;

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
      const o = p - ci * CHUNK;
      const n = Math.min(CHUNK - o, len - done);
      const li = Math.floor(ci / LEAF);
      const k = ci - li * LEAF;
      const c = this.dir[li]?.[k];
      if (c === undefined) dst.fill(0, off + done, off + done + n);
      else if (n === PAGE && Math.floor(o / PAGE) * PAGE === o) {
        const views = (this.pageViews[li] as Uint8Array[][])[k] as Uint8Array[];
        dst.set(views[o / PAGE] as Uint8Array, off + done);
      } else dst.set(c.subarray(o, o + n), off + done);
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
      const o = p - ci * CHUNK;
      const n = Math.min(CHUNK - o, len - done);
      const li = Math.floor(ci / LEAF);
      let leaf = this.dir[li];
      if (leaf === undefined) {
        leaf = new Array<Uint8Array | undefined>(LEAF);
        this.dir[li] = leaf;
        this.pageViews[li] = new Array<Uint8Array[] | undefined>(LEAF);
      }
      const k = ci - li * LEAF;
      let c = leaf[k];
      if (c === undefined) {
        c = this.newChunk();
        leaf[k] = c;
        const views: Uint8Array[] = [];
        for (let v = 0; v < CHUNK; v += PAGE) views.push(c.subarray(v, v + PAGE));
        (this.pageViews[li] as Uint8Array[][])[k] = views;
      }
      c.set(src.subarray(off + done, off + done + n), o);
      done += n;
    }
  }

  /** A zeroed chunk from the current slab (a new slab when it is used up). */
  private newChunk(): Uint8Array {
    if (this.slab === undefined || this.slabUsed === SLAB_CHUNKS) {
      this.slab = new ArrayBuffer(SLAB_CHUNKS * CHUNK);
      this.slabUsed = 0;
    }
    const c = new Uint8Array(this.slab, this.slabUsed * CHUNK, CHUNK);
    this.slabUsed++;
    this.chunkCount++;
    return c;
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
