/**
 * Sparse bytes: a byte store of fixed size whose contents exist only where they were written.
 * The chunks live in a two-level directory, so a store of many GiB costs host memory only for
 * the chunks touched, and a large copy is a few `set` calls instead of one per page.
 */
import { checkInt, fastMod, hex } from "./addr.ts";
import { BvecError } from "./errors.ts";

/**
 * Something that can copy its bytes `[at, at + len)` into `dst[dstOff..]`: the source of
 * `PhysMemory.writeFrom` (an NVMe namespace's `read` has this shape, and so has
 * `SparseBytes.read`).
 */
export interface ByteSource {
  read(at: number, dst: Uint8Array, dstOff: number, len: number): void;
}

/**
 * Something that can take `len` bytes from `src[srcOff..]` at its byte `at`: the destination
 * of `PhysMemory.readTo` (an NVMe namespace's `write` has this shape, and so has
 * `SparseBytes.write`).
 */
export interface ByteSink {
  write(at: number, src: Uint8Array, srcOff: number, len: number): void;
}

/** Chunks per directory leaf. */
const LEAF = 1024;
/** The largest chunk: offsets inside a chunk then stay 31-bit integers (see `smallInt`). */
const MAX_CHUNK_BYTES = 2 ** 30;

/**
 * Copies of at most this many bytes (command and completion entries, PRP and SGL entries) go
 * byte by byte: cheaper than the typed-array view `set` needs.
 */
const SMALL_COPY = 32;

/** Zeros for the chunks never written, shared by every store (grown to the largest chunk). */
let zeros = new Uint8Array(0);

function zerosOf(n: number): Uint8Array {
  if (zeros.length < n) zeros = new Uint8Array(n);
  return zeros;
}

/**
 * What the chunk walk calls for each piece of a range: the chunk (undefined when it was never
 * written and the walk does not create chunks), the offset in it, the bytes of the piece, the
 * bytes of the range before it, and the two arguments the caller passed through.
 */
type ChunkVisitor<A> = (
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  done: number,
  a: A,
  b: number,
) => void;

/**
 * A sparse byte store of `size` bytes, in chunks of `chunkBytes` created (zeroed) on first
 * write; untouched bytes read as zeros and cost nothing. `PhysMemory` keeps one per region of
 * the physical map; a device model with a large backing store (an NVMe namespace), or any
 * sparse table indexed by offset, can keep its bytes in one too. Offsets are numbers below
 * 2^53 (docs/modelling-rules.md#addresses); the two-level directory holds any such size.
 */
export class SparseBytes implements ByteSource, ByteSink {
  /** Bytes the store holds. */
  readonly size: number;
  /** Bytes per chunk (the last chunk is shorter when `size` is not a multiple). */
  readonly chunkBytes: number;
  /** Chunks created so far. */
  chunkCount = 0;
  /** Directory of chunks: `dir[floor(i / LEAF)][i % LEAF]` is chunk i, once written. */
  private readonly dir: (Array<Uint8Array | undefined> | undefined)[] = [];
  private readonly onChunk: (() => void) | undefined;

  /** `onChunk` is called each time a chunk is created (`PhysMemory` counts them). */
  constructor(size: number, chunkBytes = 65536, onChunk?: () => void) {
    this.size = checkInt(size, "sparse store size", 1);
    this.chunkBytes = checkInt(chunkBytes, "sparse chunk size", 1);
    if (chunkBytes > MAX_CHUNK_BYTES) {
      throw new BvecError("EINVAL", `sparse chunk size ${hex(chunkBytes)} is above 1 GiB`);
    }
    this.onChunk = onChunk;
  }

  /** Copies `len` bytes at `at` into `dst[dstOff..]` (bytes never written read as zeros). */
  read(at: number, dst: Uint8Array, dstOff: number, len: number): void {
    const off = this.smallOffset(at, len);
    if (off >= 0) readPiece(this.lookup((at - off) / this.chunkBytes), off, len, 0, dst, dstOff);
    else this.each(at, len, false, readPiece, dst, dstOff);
  }

  /** Copies `len` bytes from `src[srcOff..]` to `at`. */
  write(at: number, src: Uint8Array, srcOff: number, len: number): void {
    const off = this.smallOffset(at, len);
    if (off >= 0)
      writePiece(this.materialize((at - off) / this.chunkBytes), off, len, 0, src, srcOff);
    else this.each(at, len, true, writePiece, src, srcOff);
  }

  /**
   * The common case, a small valid access inside one chunk (a queue entry, a PRP entry, a
   * PTE), goes straight to the piece, since the walk's set-up costs more than the copy: its
   * offset in the chunk, or -1 for any other access (which takes the checked walk).
   */
  private smallOffset(at: number, len: number): number {
    const off = fastMod(at, this.chunkBytes);
    return len <= SMALL_COPY &&
      off + len <= this.chunkBytes &&
      Number.isInteger(at) &&
      at >= 0 &&
      at + len <= this.size
      ? off
      : -1;
  }

  /** Takes `len` bytes from `src` (its bytes from `srcAt`) straight into the chunks at `at`. */
  writeFrom(at: number, src: ByteSource, srcAt: number, len: number): void {
    this.each(at, len, true, writeFromPiece, src, srcAt);
  }

  /** Gives `len` bytes at `at` straight from the chunks to `dst` (its bytes from `dstAt`). */
  readTo(at: number, dst: ByteSink, dstAt: number, len: number): void {
    this.each(at, len, false, readToPiece, dst, dstAt);
  }

  /** Fills `len` bytes at `at` with `value`; filling never-written bytes with 0 creates nothing. */
  fill(at: number, len: number, value: number): void {
    this.each(at, len, value !== 0, fillPiece, undefined, value);
  }

  /**
   * The backing bytes `[at, at + len)`, created (zeroed) if never written: a view into one
   * chunk, which the range must not leave. Hardware models that keep structures in memory use
   * it for fast typed access; the bytes are the ones `read` and `write` see.
   */
  view(at: number, len: number): Uint8Array {
    this.check(at, len);
    const cs = this.chunkBytes;
    const off = fastMod(at, cs);
    if (off + len > cs) {
      throw new BvecError(
        "EINVAL",
        `a view of ${hex(len)} bytes at ${hex(at)} crosses a ${hex(cs)}-byte chunk boundary`,
      );
    }
    return this.materialize((at - off) / cs).subarray(off, off + len);
  }

  /** True when the chunk holding byte `at` has been created. */
  isMaterialized(at: number): boolean {
    return this.lookup(Math.floor(at / this.chunkBytes)) !== undefined;
  }

  /**
   * The one walk over the chunks of `[at, at + len)`: calls `visit` once per chunk piece, in
   * order, creating missing chunks first when `create` is set.
   */
  private each<A>(
    at: number,
    len: number,
    create: boolean,
    visit: ChunkVisitor<A>,
    a: A,
    b: number,
  ): void {
    if (len === 0) return;
    this.check(at, len);
    const cs = this.chunkBytes;
    let done = 0;
    while (done < len) {
      const p = at + done;
      const off = fastMod(p, cs);
      const n = Math.min(cs - off, len - done);
      const ci = (p - off) / cs;
      visit(create ? this.materialize(ci) : this.lookup(ci), off, n, done, a, b);
      done += n;
    }
  }

  private check(at: number, len: number): void {
    if (!Number.isSafeInteger(at) || at < 0 || !Number.isSafeInteger(len) || len < 0) {
      throw new BvecError(
        "EINVAL",
        `sparse store access of ${String(len)} bytes at ${String(at)}: not non-negative integers`,
      );
    }
    if (at + len > this.size) {
      throw new BvecError(
        "EFAULT",
        `sparse store access of ${hex(len)} bytes at ${hex(at)} ends past its ${hex(this.size)} bytes`,
      );
    }
  }

  private lookup(chunk: number): Uint8Array | undefined {
    const li = Math.floor(chunk / LEAF);
    return this.dir[li]?.[chunk - li * LEAF];
  }

  private materialize(chunk: number): Uint8Array {
    const li = Math.floor(chunk / LEAF);
    let leaf = this.dir[li];
    if (leaf === undefined) {
      leaf = new Array<Uint8Array | undefined>(LEAF);
      this.dir[li] = leaf;
    }
    const at = chunk - li * LEAF;
    let bytes = leaf[at];
    if (bytes === undefined) {
      bytes = new Uint8Array(Math.min(this.chunkBytes, this.size - chunk * this.chunkBytes));
      leaf[at] = bytes;
      this.chunkCount++;
      this.onChunk?.();
    }
    return bytes;
  }
}

function readPiece(
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  done: number,
  dst: Uint8Array,
  dstOff: number,
): void {
  const d = dstOff + done;
  if (chunk === undefined) dst.fill(0, d, d + n);
  else if (n <= SMALL_COPY) {
    const o = smallInt(off);
    for (let i = 0; i < n; i++) dst[d + i] = chunk[o + i] as number;
  } else dst.set(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), d);
}

function writePiece(
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  done: number,
  src: Uint8Array,
  srcOff: number,
): void {
  const c = chunk as Uint8Array;
  const from = srcOff + done;
  if (n <= SMALL_COPY) {
    const o = smallInt(off);
    for (let i = 0; i < n; i++) c[o + i] = src[from + i] as number;
  } else c.set(from === 0 && n === src.length ? src : src.subarray(from, from + n), off);
}

function writeFromPiece(
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  done: number,
  src: ByteSource,
  srcAt: number,
): void {
  src.read(srcAt + done, chunk as Uint8Array, off, n);
}

function readToPiece(
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  done: number,
  dst: ByteSink,
  dstAt: number,
): void {
  if (chunk === undefined) dst.write(dstAt + done, zerosOf(n), 0, n);
  else dst.write(dstAt + done, chunk, off, n);
}

function fillPiece(
  chunk: Uint8Array | undefined,
  off: number,
  n: number,
  _done: number,
  _a: undefined,
  value: number,
): void {
  chunk?.fill(value, off, off + n);
}

/**
 * An offset inside a chunk (below 2^30), as a 32-bit integer: offsets derived from an address
 * are doubles to V8, and a byte loop indexing with one converts it on every access (about
 * twice the cost of the loop with an integer index).
 */
function smallInt(off: number): number {
  // eslint-disable-next-line no-bitwise -- a chunk offset (< 2^30), not an address
  return off | 0;
}
