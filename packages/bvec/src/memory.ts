/**
 * Simulated physical memory: the region map (phys-map.ts), real bytes stored sparsely in each
 * region (sparse.ts: a page costs host memory only once it is written), and the buddy page
 * allocator of the simulated kernel with Linux's zones (page-alloc.ts), behind one object.
 */
import { TWO_POW_32, alignUp, checkAddr, hex } from "./addr.ts";
import { CounterSet } from "./counters.ts";
import { BvecError } from "./errors.ts";
import { getU32, getU64, setU32, setU64 } from "./le.ts";
import { type AllocOptions, PageAllocator } from "./page-alloc.ts";
import {
  PAGE_SIZES,
  type PageSize,
  REGION_KIND,
  type Region,
  RegionMap,
  type RegionSpec,
  type RegionStore,
  ZONES,
  type Zone,
  standardLayout,
  zoneOf,
} from "./phys-map.ts";
import { type ByteSink, type ByteSource, SparseBytes } from "./sparse.ts";

/** Options for `PhysMemory`. */
export interface PhysMemoryOptions {
  /** The CPU page size: 4 KiB (default), 16 KiB or 64 KiB. */
  readonly pageSize?: PageSize;
  /** The region map. Default: `standardLayout(ramBytes)`. */
  readonly regions?: readonly RegionSpec[];
  /** RAM size for the default layout (default 8 GiB). */
  readonly ramBytes?: number;
}

/** Counter names of `PhysMemory`. */
export type MemoryCounter =
  | "bytesRead"
  | "bytesWritten"
  | "chunksMaterialized"
  | "pagesInUse"
  | "pagesAllocated"
  | "pagesFreed"
  | "allocCalls"
  | "allocFailures";

/**
 * Bytes are stored in chunks of 64 KiB (or one page when pages are larger): large copies then
 * take a few `set` calls instead of one per 4 KiB page, while untouched memory still costs
 * nothing.
 */
const CHUNK_BYTES = 65536;

/** RAM of the default layout: 8 GiB. */
const DEFAULT_RAM_BYTES = 8 * 1024 ** 3;

/**
 * What the region walk calls for each region piece of an access: the region's bytes, the
 * offset in them, the bytes of the piece, the bytes of the access before it, and the two
 * arguments the caller passed through.
 */
type RegionVisitor<A> = (
  bytes: SparseBytes,
  at: number,
  n: number,
  done: number,
  a: A,
  b: number,
) => void;

/**
 * Simulated physical memory with real, sparse bytes and a buddy page allocator.
 * Addresses are numbers below 2^53 (docs/modelling-rules.md#addresses); a machine with many GiB
 * of RAM costs only the pages touched.
 */
export class PhysMemory {
  /** The CPU page size in bytes. */
  readonly pageSize: PageSize;
  /** Bytes per storage chunk (64 KiB, or the page size when larger). */
  readonly chunkBytes: number;
  /** Event counters: bytes moved, pages touched, allocations. */
  readonly counters = new CounterSet<MemoryCounter>(
    "memory",
    [
      "bytesRead",
      "bytesWritten",
      "chunksMaterialized",
      "pagesInUse",
      "pagesAllocated",
      "pagesFreed",
      "allocCalls",
      "allocFailures",
    ],
    ["pagesInUse"],
  );

  private readonly map: RegionMap;
  private readonly pages: PageAllocator;

  constructor(options: PhysMemoryOptions = {}) {
    const pageSize = options.pageSize ?? 4096;
    if (!(PAGE_SIZES as readonly number[]).includes(pageSize)) {
      throw new BvecError(
        "EINVAL",
        `page size ${hex(pageSize)} is not one of 4 KiB, 16 KiB, 64 KiB`,
      );
    }
    this.pageSize = pageSize;
    const chunkBytes = Math.max(CHUNK_BYTES, pageSize);
    this.chunkBytes = chunkBytes;
    const onChunk = (): void => {
      this.counters.c.chunksMaterialized++;
    };
    this.map = new RegionMap(pageSize, (size) => new SparseBytes(size, chunkBytes, onChunk));
    this.pages = new PageAllocator(pageSize, this.counters.c);
    const specs =
      options.regions ?? standardLayout(options.ramBytes ?? DEFAULT_RAM_BYTES, pageSize);
    for (const spec of specs) this.addRegion(spec);
  }

  // ---------------------------------------------------------------------------------------
  // The physical map

  /** The regions, sorted by address. */
  get regions(): readonly Region[] {
    return this.map.all.map((s) => s.region);
  }

  /** Total bytes of RAM. */
  get ramBytes(): number {
    let n = 0;
    for (const s of this.map.all) if (s.region.kind === REGION_KIND.RAM) n += s.region.size;
    return n;
  }

  /**
   * Adds a region to the map. It must be page-aligned and must not overlap another region.
   * RAM regions are handed to the page allocator at once.
   */
  addRegion(spec: RegionSpec): Region {
    const store = this.map.add(spec);
    if (store.region.kind === REGION_KIND.RAM) this.pages.addRam(store.startPfn, store.endPfn);
    return store.region;
  }

  /** The region containing `phys`, or undefined for a hole. */
  regionOf(phys: number): Region | undefined {
    return this.map.find(phys)?.region;
  }

  /** True when `[phys, phys + len)` lies inside one RAM region. */
  isRam(phys: number, len = 1): boolean {
    const s = this.map.find(phys);
    return s !== undefined && s.region.kind === REGION_KIND.RAM && phys + len <= s.region.end;
  }

  /** The zone a RAM address belongs to. */
  zoneOf(phys: number): Zone {
    return zoneOf(phys);
  }

  /** Pages of RAM per zone (for reports). */
  zoneSizes(): Record<Zone, number> {
    return this.pages.zoneSizes();
  }

  /** Rounds `bytes` up to whole pages. */
  pagesFor(bytes: number): number {
    return alignUp(bytes, this.pageSize) / this.pageSize;
  }

  /** The zones in order, lowest first. */
  static get zones(): readonly Zone[] {
    return ZONES;
  }

  // ---------------------------------------------------------------------------------------
  // Bytes

  /** Copies `len` bytes at `phys` into `dst[dstOff..]` (untouched memory reads as zeros). */
  read(phys: number, dst: Uint8Array, dstOff = 0, len = dst.length - dstOff): void {
    if (len === 0) return;
    if (dstOff < 0 || dstOff + len > dst.length) {
      throw new BvecError(
        "EINVAL",
        `read of ${len} bytes at ${hex(phys)} into a ${dst.length}-byte buffer at offset ${dstOff} does not fit`,
      );
    }
    const s = this.map.checked(phys, len);
    // One region (nearly every access): no walk over regions.
    if (phys + len <= s.region.end) s.bytes.read(phys - s.region.start, dst, dstOff, len);
    else this.each(phys, len, readPiece, dst, dstOff);
    this.counters.c.bytesRead += len;
  }

  /** Copies `len` bytes from `src[srcOff..]` to `phys`. */
  write(phys: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    if (len === 0) return;
    if (srcOff < 0 || srcOff + len > src.length) {
      throw new BvecError(
        "EINVAL",
        `write of ${len} bytes at ${hex(phys)} from a ${src.length}-byte buffer at offset ${srcOff}: the buffer is too short`,
      );
    }
    const s = this.map.checked(phys, len);
    if (phys + len <= s.region.end) s.bytes.write(phys - s.region.start, src, srcOff, len);
    else this.each(phys, len, writePiece, src, srcOff);
    this.counters.c.bytesWritten += len;
  }

  /**
   * Like `write`, but the `len` bytes come from `src` (its bytes `[srcAt, srcAt + len)`), read
   * straight into the backing chunks: a device model with its own store (an NVMe namespace)
   * moves data into memory with one copy instead of two. Same checks, bytes and counters as
   * `write`.
   */
  writeFrom(phys: number, src: ByteSource, srcAt: number, len: number): void {
    if (len === 0) return;
    this.each(phys, len, writeFromPiece, src, srcAt);
    this.counters.c.bytesWritten += len;
  }

  /**
   * Like `read`, but the `len` bytes go straight from the backing chunks to `dst` (its bytes
   * `[dstAt, dstAt + len)`, through `dst.write`): a device model with its own store (an NVMe
   * namespace) takes data from memory with one copy instead of two. Same checks, bytes and
   * counters as `read`.
   */
  readTo(phys: number, dst: ByteSink, dstAt: number, len: number): void {
    if (len === 0) return;
    this.each(phys, len, readToPiece, dst, dstAt);
    this.counters.c.bytesRead += len;
  }

  /** Fills `len` bytes at `phys` with `value` (0 on untouched memory costs nothing). */
  fill(phys: number, len: number, value = 0): void {
    if (len === 0) return;
    this.each(phys, len, fillPiece, undefined, value);
    this.counters.c.bytesWritten += len;
  }

  /** Copies `len` bytes from `src` to `dst` inside simulated memory (overlap-safe). */
  copy(dst: number, src: number, len: number): void {
    if (len === 0) return;
    const tmp = new Uint8Array(len);
    this.read(src, tmp);
    this.write(dst, tmp);
  }

  /** Reads `len` bytes at `phys` into a new array. */
  readBytes(phys: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.read(phys, out);
    return out;
  }

  /** Reads a little-endian 32-bit value (through le.ts, like every fixed-width field). */
  readU32(phys: number): number {
    this.read(phys, scratch8, 0, 4);
    return getU32(scratch8, 0);
  }

  /** Writes a little-endian 32-bit value (0 <= value < 2^32). */
  writeU32(phys: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) {
      throw new BvecError("ERANGE", `32-bit value ${hex(value)} does not fit in 32 bits`);
    }
    setU32(scratch8, 0, value);
    this.write(phys, scratch8, 0, 4);
  }

  /** Reads a little-endian 64-bit value as two halves; throws if it is 2^53 or more. */
  readU64(phys: number): number {
    this.read(phys, scratch8, 0, 8);
    return getU64(scratch8, 0);
  }

  /** Writes a little-endian 64-bit value (below 2^53) as two 32-bit halves. */
  writeU64(phys: number, value: number): void {
    checkAddr(value, "64-bit value", 53);
    setU64(scratch8, 0, value);
    this.write(phys, scratch8, 0, 8);
  }

  /**
   * The backing bytes of page `pfn`, created (zeroed) if never touched: a view of exactly one
   * page. Hardware models that keep structures in memory (page tables, queues) use it for fast
   * typed access; the bytes are the same ones `read`/`write` see.
   */
  pageBytes(pfn: number): Uint8Array {
    const phys = pfn * this.pageSize;
    const s = this.map.checked(phys, this.pageSize);
    return s.bytes.view(phys - s.region.start, this.pageSize);
  }

  /** True when the memory of page `pfn` has backing bytes (its chunk was written). */
  isMaterialized(pfn: number): boolean {
    const phys = pfn * this.pageSize;
    const s = this.map.find(phys);
    return s !== undefined && s.bytes.isMaterialized(phys - s.region.start);
  }

  /** Host bytes spent on simulated memory contents. */
  get backedBytes(): number {
    return this.counters.c.chunksMaterialized * this.chunkBytes;
  }

  // ---------------------------------------------------------------------------------------
  // Page allocator (page-alloc.ts)

  /**
   * Fault injection: when set and it returns true, the page allocation fails as if memory were
   * exhausted (the `order` and zone requested are passed in).
   */
  get allocFaultHook(): ((order: number, zone: Zone) => boolean) | undefined {
    return this.pages.faultHook;
  }

  set allocFaultHook(hook: ((order: number, zone: Zone) => boolean) | undefined) {
    this.pages.faultHook = hook;
  }

  /** Pages currently allocated by the page allocator. */
  get pagesInUse(): number {
    return this.counters.c.pagesInUse;
  }

  /** Free pages in a zone, or in all zones. */
  freePageCount(zone?: Zone): number {
    return this.pages.freePageCount(zone);
  }

  /**
   * Allocates 2^order contiguous pages, naturally aligned (Linux `alloc_pages`); returns the
   * first pfn. Throws a `BvecError` with code ENOMEM when no block is free.
   */
  allocPages(order = 0, options: AllocOptions = {}): number {
    return this.pages.allocPages(order, options);
  }

  /** Like `allocPages` but returns -1 when memory is exhausted, as `alloc_pages` returns NULL. */
  tryAllocPages(order = 0, options: AllocOptions = {}): number {
    return this.pages.tryAllocPages(order, options);
  }

  /** Frees a block from `allocPages` (Linux `__free_pages`); merges buddies. */
  freePages(pfn: number, order = 0): void {
    this.pages.freePages(pfn, order);
  }

  /** Allocates the specific free page `pfn` (order 0); returns false if it is not free RAM. */
  allocPageAt(pfn: number): boolean {
    return this.pages.allocPageAt(pfn);
  }

  /** The order a block head was allocated with, or undefined if `pfn` is not an allocated head. */
  allocatedOrder(pfn: number): number | undefined {
    return this.pages.allocatedOrder(pfn);
  }

  /**
   * Allocates `count` single pages scattered over RAM, chosen by a seeded generator so that no
   * two consecutive pages of the result are physically adjacent (a deliberately fragmented
   * buffer). Throws ENOMEM when it cannot find enough such pages.
   */
  allocScattered(count: number, seed: number, options: AllocOptions = {}): number[] {
    return this.pages.allocScattered(count, seed, options);
  }

  /**
   * The one walk over the regions an access of `len` bytes at `phys` covers (after checking
   * that every byte lies in one): calls `visit` with each region's bytes, in order.
   */
  private each<A>(phys: number, len: number, visit: RegionVisitor<A>, a: A, b: number): void {
    let s: RegionStore = this.map.checked(phys, len);
    let done = 0;
    while (done < len) {
      const p = phys + done;
      if (p >= s.region.end) s = this.map.find(p) as RegionStore;
      const n = Math.min(len - done, s.region.end - p);
      visit(s.bytes, p - s.region.start, n, done, a, b);
      done += n;
    }
  }
}

/** The scratch bytes of the fixed-width accessors (everything here is synchronous). */
const scratch8 = new Uint8Array(8);

function readPiece(
  bytes: SparseBytes,
  at: number,
  n: number,
  done: number,
  dst: Uint8Array,
  dstOff: number,
): void {
  bytes.read(at, dst, dstOff + done, n);
}

function writePiece(
  bytes: SparseBytes,
  at: number,
  n: number,
  done: number,
  src: Uint8Array,
  srcOff: number,
): void {
  bytes.write(at, src, srcOff + done, n);
}

function writeFromPiece(
  bytes: SparseBytes,
  at: number,
  n: number,
  done: number,
  src: ByteSource,
  srcAt: number,
): void {
  bytes.writeFrom(at, src, srcAt + done, n);
}

function readToPiece(
  bytes: SparseBytes,
  at: number,
  n: number,
  done: number,
  dst: ByteSink,
  dstAt: number,
): void {
  bytes.readTo(at, dst, dstAt + done, n);
}

function fillPiece(
  bytes: SparseBytes,
  at: number,
  n: number,
  _done: number,
  _a: undefined,
  value: number,
): void {
  bytes.fill(at, n, value);
}
