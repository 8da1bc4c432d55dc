/**
 * Simulated physical memory: a region map (RAM with holes, device memory such as P2P BARs),
 * real bytes stored sparsely (a page costs host memory only once it is written), and a buddy
 * page allocator for the simulated kernel with Linux's zones (DMA, DMA32, Normal).
 */
import {
  TWO_POW_32,
  alignDown,
  alignUp,
  checkAddr,
  checkInt,
  fastMod,
  hex,
  isAligned,
  join64,
  pow2,
} from "./addr.ts";
import { CounterSet } from "./counters.ts";
import { BvecError } from "./errors.ts";
import { Rng } from "./random.ts";

/** The kinds of physical region. */
export const REGION_KIND = {
  /** System RAM, usable by the page allocator. */
  RAM: "ram",
  /** Device memory a peer device exposes through a PCI BAR (P2P DMA provider). */
  P2P: "p2p",
  /** Other MMIO (registers); holds bytes but is never handed out as RAM. */
  MMIO: "mmio",
} as const;
/** A region kind. */
export type RegionKind = (typeof REGION_KIND)[keyof typeof REGION_KIND];

/** A region of the physical address map, as given to `PhysMemory`. */
export interface RegionSpec {
  /** First byte (aligned to the page size). */
  readonly start: number;
  /** Length in bytes (a multiple of the page size). */
  readonly size: number;
  readonly kind: RegionKind;
  /** Who owns it: the device exposing a BAR, or a label for RAM. */
  readonly owner?: string;
}

/** A region of the physical address map. */
export interface Region extends RegionSpec {
  readonly owner: string;
  /** One past the last byte. */
  readonly end: number;
}

/** Linux memory zones (x86-64 boundaries): DMA below 16 MiB, DMA32 below 4 GiB, Normal above. */
export const ZONE = { DMA: "dma", DMA32: "dma32", NORMAL: "normal" } as const;
/** A zone name. */
export type Zone = (typeof ZONE)[keyof typeof ZONE];

const ZONE_DMA_END = 16 * 1024 * 1024;
const ZONE_DMA32_END = TWO_POW_32;
const ZONES: readonly Zone[] = [ZONE.DMA, ZONE.DMA32, ZONE.NORMAL];
/** Which zones an allocation may use, in the order tried (Linux zonelist fallback). */
const ZONE_FALLBACK: Readonly<Record<Zone, readonly Zone[]>> = {
  normal: [ZONE.NORMAL, ZONE.DMA32, ZONE.DMA],
  dma32: [ZONE.DMA32, ZONE.DMA],
  dma: [ZONE.DMA],
};

/** Linux `MAX_PAGE_ORDER`: the largest buddy block is 2^10 pages (4 MiB with 4 KiB pages). */
export const MAX_PAGE_ORDER = 10;

/** The page sizes a simulated machine may have. */
export const PAGE_SIZES = [4096, 16384, 65536] as const;
/** A supported page size. */
export type PageSize = (typeof PAGE_SIZES)[number];

/**
 * Copies of at most this many bytes (command and completion entries, PRP and SGL entries) go
 * byte by byte: cheaper than the typed-array view `set` needs.
 */
const SMALL_COPY = 32;

/**
 * Something that can copy its bytes `[at, at + len)` into `dst[dstOff..]`: the source of
 * `PhysMemory.writeFrom` (an NVMe namespace's `read` has this shape).
 */
export interface ByteSource {
  read(at: number, dst: Uint8Array, dstOff: number, len: number): void;
}

/**
 * Something that can take `len` bytes from `src[srcOff..]` at its byte `at`: the destination
 * of `PhysMemory.readTo` (an NVMe namespace's `write` has this shape).
 */
export interface ByteSink {
  write(at: number, src: Uint8Array, srcOff: number, len: number): void;
}

/** Options for `PhysMemory`. */
export interface PhysMemoryOptions {
  /** The CPU page size: 4 KiB (default), 16 KiB or 64 KiB. */
  readonly pageSize?: PageSize;
  /** The region map. Default: `standardLayout(ramBytes)`. */
  readonly regions?: readonly RegionSpec[];
  /** RAM size for the default layout (default 8 GiB). */
  readonly ramBytes?: number;
}

/** Options for a page allocation. */
export interface AllocOptions {
  /** The highest zone the pages may come from (default Normal, falling back to DMA32, DMA). */
  readonly zone?: Zone;
}

/**
 * The usual x86-64 physical map for `ramBytes` of RAM: the first 1 MiB reserved, low RAM up to
 * 2 GiB, the PCI hole from 2 GiB to 4 GiB, and the rest of RAM from 4 GiB up.
 */
export function standardLayout(ramBytes: number, pageSize: PageSize = 4096): RegionSpec[] {
  checkInt(ramBytes, "RAM size", pageSize);
  const lowStart = 0x100000;
  const lowEnd = 0x80000000;
  const low = Math.min(alignDown(ramBytes, pageSize), lowEnd - lowStart);
  const out: RegionSpec[] = [
    { start: lowStart, size: low, kind: REGION_KIND.RAM, owner: "ram-low" },
  ];
  const rest = alignDown(ramBytes - low, pageSize);
  if (rest > 0)
    out.push({ start: TWO_POW_32, size: rest, kind: REGION_KIND.RAM, owner: "ram-high" });
  return out;
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

const LEAF = 1024; // chunks per directory leaf
/**
 * Bytes are stored in chunks of 64 KiB (or one page when pages are larger): large copies then
 * take a few `set` calls instead of one per 4 KiB page, while untouched memory still costs
 * nothing.
 */
const CHUNK_BYTES = 65536;

interface RegionStore {
  readonly region: Region;
  readonly startPfn: number;
  readonly endPfn: number;
  /** Two-level directory of chunks, indexed from the region start; a chunk exists once written. */
  readonly dir: (Array<Uint8Array | undefined> | undefined)[];
}

interface FreeArea {
  /** Free block heads per order, in insertion order (deterministic). */
  readonly lists: Set<number>[];
  freePages: number;
  totalPages: number;
}

/**
 * Simulated physical memory with real, sparse bytes and a buddy page allocator.
 * Addresses are numbers below 2^52; a machine with many GiB of RAM costs only the pages touched.
 */
export class PhysMemory {
  /** The CPU page size in bytes. */
  readonly pageSize: PageSize;
  /** Bytes per storage chunk (64 KiB, or the page size when larger). */
  readonly chunkBytes: number;
  /** Event counters: bytes moved, pages touched, allocations. */
  readonly counters = new CounterSet<MemoryCounter>("memory", [
    "bytesRead",
    "bytesWritten",
    "chunksMaterialized",
    "pagesInUse",
    "pagesAllocated",
    "pagesFreed",
    "allocCalls",
    "allocFailures",
  ]);
  /**
   * Fault injection: when set and it returns true, the page allocation fails as if memory were
   * exhausted (the `order` and zone requested are passed in).
   */
  allocFaultHook: ((order: number, zone: Zone) => boolean) | undefined = undefined;

  private readonly stores: RegionStore[] = [];
  private lastStore: RegionStore | undefined;
  private zeroChunk: Uint8Array | undefined = undefined;
  private readonly areas: Record<Zone, FreeArea>;
  /** Free block head pfn -> order. */
  private readonly freeHeads = new Map<number, number>();
  /** Allocated block head pfn -> order. */
  private readonly allocated = new Map<number, number>();

  constructor(options: PhysMemoryOptions = {}) {
    const pageSize = options.pageSize ?? 4096;
    if (!(PAGE_SIZES as readonly number[]).includes(pageSize)) {
      throw new BvecError(
        "EINVAL",
        `page size ${hex(pageSize)} is not one of 4 KiB, 16 KiB, 64 KiB`,
      );
    }
    this.pageSize = pageSize;
    this.chunkBytes = Math.max(CHUNK_BYTES, pageSize);
    this.areas = {
      dma: newArea(),
      dma32: newArea(),
      normal: newArea(),
    };
    const specs = options.regions ?? standardLayout(options.ramBytes ?? 8 * 1024 ** 3, pageSize);
    for (const spec of specs) this.addRegion(spec);
  }

  /** The regions, sorted by address. */
  get regions(): readonly Region[] {
    return this.stores.map((s) => s.region);
  }

  /** Total bytes of RAM. */
  get ramBytes(): number {
    let n = 0;
    for (const s of this.stores) if (s.region.kind === REGION_KIND.RAM) n += s.region.size;
    return n;
  }

  /** Pages currently allocated by the page allocator. */
  get pagesInUse(): number {
    return this.counters.c.pagesInUse;
  }

  /** Free pages in a zone, or in all zones. */
  freePageCount(zone?: Zone): number {
    if (zone) return this.areas[zone].freePages;
    return this.areas.dma.freePages + this.areas.dma32.freePages + this.areas.normal.freePages;
  }

  /**
   * Adds a region to the map. It must be page-aligned and must not overlap another region.
   * RAM regions are handed to the page allocator at once.
   */
  addRegion(spec: RegionSpec): Region {
    const ps = this.pageSize;
    checkAddr(spec.start, "region start");
    checkInt(spec.size, "region size", 1);
    checkAddr(spec.start + spec.size, "region end", 53);
    if (!isAligned(spec.start, ps) || !isAligned(spec.size, ps)) {
      throw new BvecError(
        "EINVAL",
        `region ${hex(spec.start)}+${hex(spec.size)} is not aligned to the ${hex(ps)} page size`,
      );
    }
    if (!Object.values(REGION_KIND).includes(spec.kind)) {
      throw new BvecError(
        "EINVAL",
        `region kind ${JSON.stringify(spec.kind)} is not ram, p2p or mmio`,
      );
    }
    const end = spec.start + spec.size;
    for (const s of this.stores) {
      if (spec.start < s.region.end && s.region.start < end) {
        throw new BvecError(
          "EINVAL",
          `region ${hex(spec.start)}-${hex(end - 1)} overlaps ${s.region.owner} at ${hex(s.region.start)}-${hex(s.region.end - 1)}`,
        );
      }
    }
    const region: Region = {
      start: spec.start,
      size: spec.size,
      end,
      kind: spec.kind,
      owner: spec.owner ?? spec.kind,
    };
    const store: RegionStore = {
      region,
      startPfn: spec.start / ps,
      endPfn: end / ps,
      dir: [],
    };
    this.stores.push(store);
    this.stores.sort((a, b) => a.region.start - b.region.start);
    if (region.kind === REGION_KIND.RAM) this.seedAllocator(store.startPfn, store.endPfn);
    return region;
  }

  /** The region containing `phys`, or undefined for a hole. */
  regionOf(phys: number): Region | undefined {
    return this.storeOf(phys)?.region;
  }

  /** True when `[phys, phys + len)` lies inside one RAM region. */
  isRam(phys: number, len = 1): boolean {
    const s = this.storeOf(phys);
    return s !== undefined && s.region.kind === REGION_KIND.RAM && phys + len <= s.region.end;
  }

  /** The zone a RAM address belongs to. */
  zoneOf(phys: number): Zone {
    return phys < ZONE_DMA_END ? ZONE.DMA : phys < ZONE_DMA32_END ? ZONE.DMA32 : ZONE.NORMAL;
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
    let store = this.checkedStore(phys, len);
    const cs = this.chunkBytes;
    let p = phys;
    let done = 0;
    while (done < len) {
      if (p >= store.region.end) store = this.storeOf(p) as RegionStore;
      const rel = p - store.region.start;
      const off = fastMod(rel, cs);
      const n = Math.min(cs - off, len - done, store.region.end - p);
      const chunk = this.lookup(store, (rel - off) / cs);
      if (chunk === undefined) dst.fill(0, dstOff + done, dstOff + done + n);
      else if (n <= SMALL_COPY) {
        const d = dstOff + done;
        const o = smallInt(off);
        for (let i = 0; i < n; i++) dst[d + i] = chunk[o + i] as number;
      } else dst.set(off === 0 && n === cs ? chunk : chunk.subarray(off, off + n), dstOff + done);
      done += n;
      p += n;
    }
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
    let store = this.checkedStore(phys, len);
    const cs = this.chunkBytes;
    let p = phys;
    let done = 0;
    while (done < len) {
      if (p >= store.region.end) store = this.storeOf(p) as RegionStore;
      const rel = p - store.region.start;
      const off = fastMod(rel, cs);
      const n = Math.min(cs - off, len - done, store.region.end - p);
      const chunk = this.materialize(store, (rel - off) / cs);
      if (n <= SMALL_COPY) {
        const from = srcOff + done;
        const o = smallInt(off);
        for (let i = 0; i < n; i++) chunk[o + i] = src[from + i] as number;
      } else
        chunk.set(
          srcOff + done === 0 && n === src.length
            ? src
            : src.subarray(srcOff + done, srcOff + done + n),
          off,
        );
      done += n;
      p += n;
    }
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
    let store = this.checkedStore(phys, len);
    const cs = this.chunkBytes;
    let p = phys;
    let done = 0;
    while (done < len) {
      if (p >= store.region.end) store = this.storeOf(p) as RegionStore;
      const rel = p - store.region.start;
      const off = fastMod(rel, cs);
      const n = Math.min(cs - off, len - done, store.region.end - p);
      src.read(srcAt + done, this.materialize(store, (rel - off) / cs), off, n);
      done += n;
      p += n;
    }
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
    let store = this.checkedStore(phys, len);
    const cs = this.chunkBytes;
    let p = phys;
    let done = 0;
    while (done < len) {
      if (p >= store.region.end) store = this.storeOf(p) as RegionStore;
      const rel = p - store.region.start;
      const off = fastMod(rel, cs);
      const n = Math.min(cs - off, len - done, store.region.end - p);
      const chunk = this.lookup(store, (rel - off) / cs);
      if (chunk === undefined) dst.write(dstAt + done, this.zeros(), 0, n);
      else dst.write(dstAt + done, chunk, off, n);
      done += n;
      p += n;
    }
    this.counters.c.bytesRead += len;
  }

  /** Fills `len` bytes at `phys` with `value` (0 on untouched memory costs nothing). */
  fill(phys: number, len: number, value = 0): void {
    if (len === 0) return;
    let store = this.checkedStore(phys, len);
    const cs = this.chunkBytes;
    let p = phys;
    let done = 0;
    while (done < len) {
      if (p >= store.region.end) store = this.storeOf(p) as RegionStore;
      const rel = p - store.region.start;
      const off = fastMod(rel, cs);
      const n = Math.min(cs - off, len - done, store.region.end - p);
      const ci = (rel - off) / cs;
      if (value !== 0 || this.lookup(store, ci) !== undefined)
        this.materialize(store, ci).fill(value, off, off + n);
      done += n;
      p += n;
    }
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

  /** Reads a little-endian 32-bit value. */
  readU32(phys: number): number {
    const store = this.checkedStore(phys, 4);
    const rel = phys - store.region.start;
    const cs = this.chunkBytes;
    const off = fastMod(rel, cs);
    if (off <= cs - 4 && phys + 4 <= store.region.end) {
      const chunk = this.lookup(store, (rel - off) / cs);
      this.counters.c.bytesRead += 4;
      if (chunk === undefined) return 0;
      return (
        (chunk[off] as number) +
        (chunk[off + 1] as number) * 0x100 +
        (chunk[off + 2] as number) * 0x10000 +
        (chunk[off + 3] as number) * 0x1000000
      );
    }
    const b = this.readBytes(phys, 4);
    return (
      (b[0] as number) +
      (b[1] as number) * 0x100 +
      (b[2] as number) * 0x10000 +
      (b[3] as number) * 0x1000000
    );
  }

  /** Writes a little-endian 32-bit value (0 <= value < 2^32). */
  writeU32(phys: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) {
      throw new BvecError("ERANGE", `32-bit value ${hex(value)} does not fit in 32 bits`);
    }
    const b = scratch4;
    b[0] = value % 0x100;
    b[1] = Math.floor(value / 0x100) % 0x100;
    b[2] = Math.floor(value / 0x10000) % 0x100;
    b[3] = Math.floor(value / 0x1000000);
    this.write(phys, b, 0, 4);
  }

  /** Reads a little-endian 64-bit value as two halves; throws if it is 2^53 or more. */
  readU64(phys: number): number {
    return join64(this.readU32(phys), this.readU32(phys + 4));
  }

  /** Writes a little-endian 64-bit value (below 2^53) as two 32-bit halves. */
  writeU64(phys: number, value: number): void {
    checkAddr(value, "64-bit value", 53);
    this.writeU32(phys, value % TWO_POW_32);
    this.writeU32(phys + 4, Math.floor(value / TWO_POW_32));
  }

  /**
   * The backing bytes of page `pfn`, created (zeroed) if never touched: a view of exactly one
   * page. Hardware models that keep structures in memory (page tables, queues) use it for fast
   * typed access; the bytes are the same ones `read`/`write` see.
   */
  pageBytes(pfn: number): Uint8Array {
    const phys = pfn * this.pageSize;
    const store = this.checkedStore(phys, this.pageSize);
    const rel = phys - store.region.start;
    const off = fastMod(rel, this.chunkBytes);
    return this.materialize(store, (rel - off) / this.chunkBytes).subarray(
      off,
      off + this.pageSize,
    );
  }

  /** True when the memory of page `pfn` has backing bytes (its chunk was written). */
  isMaterialized(pfn: number): boolean {
    const phys = pfn * this.pageSize;
    const store = this.storeOf(phys);
    if (store === undefined) return false;
    const rel = phys - store.region.start;
    return this.lookup(store, Math.floor(rel / this.chunkBytes)) !== undefined;
  }

  /** Host bytes spent on simulated memory contents. */
  get backedBytes(): number {
    return this.counters.c.chunksMaterialized * this.chunkBytes;
  }

  // ---------------------------------------------------------------------------------------
  // Page allocator

  /**
   * Allocates 2^order contiguous pages, naturally aligned (Linux `alloc_pages`); returns the
   * first pfn. Throws a `BvecError` with code ENOMEM when no block is free.
   */
  allocPages(order = 0, options: AllocOptions = {}): number {
    const pfn = this.tryAllocPages(order, options);
    if (pfn < 0) {
      throw new BvecError(
        "ENOMEM",
        `no free block of order ${order} (${hex(pow2(order) * this.pageSize)} bytes) in zone ${options.zone ?? ZONE.NORMAL} or below`,
      );
    }
    return pfn;
  }

  /** Like `allocPages` but returns -1 when memory is exhausted, as `alloc_pages` returns NULL. */
  tryAllocPages(order = 0, options: AllocOptions = {}): number {
    if (!Number.isInteger(order) || order < 0 || order > MAX_PAGE_ORDER) {
      throw new BvecError("EINVAL", `page order ${order} is outside 0..${MAX_PAGE_ORDER}`);
    }
    const zone = options.zone ?? ZONE.NORMAL;
    const fallback = ZONE_FALLBACK[zone];
    if (fallback === undefined)
      throw new BvecError("EINVAL", `unknown zone ${JSON.stringify(zone)}`);
    const c = this.counters.c;
    c.allocCalls++;
    if (this.allocFaultHook?.(order, zone)) {
      c.allocFailures++;
      return -1;
    }
    for (const z of fallback) {
      const area = this.areas[z];
      for (let o = order; o <= MAX_PAGE_ORDER; o++) {
        const list = area.lists[o] as Set<number>;
        if (list.size === 0) continue;
        const head = list.values().next().value as number;
        this.removeFree(area, head, o);
        // Split down, returning the upper halves to the free lists.
        let cur = o;
        while (cur > order) {
          cur--;
          this.addFree(area, head + pow2(cur), cur);
        }
        this.markAllocated(head, order);
        return head;
      }
    }
    c.allocFailures++;
    return -1;
  }

  /** Frees a block from `allocPages` (Linux `__free_pages`); merges buddies. */
  freePages(pfn: number, order = 0): void {
    const got = this.allocated.get(pfn);
    if (got === undefined) {
      throw new BvecError(
        "EBUSY",
        `freeing pfn ${hex(pfn)} (phys ${hex(pfn * this.pageSize)}), which is not allocated`,
      );
    }
    if (got !== order) {
      throw new BvecError(
        "EINVAL",
        `freeing pfn ${hex(pfn)} with order ${order}, but it was allocated with order ${got}`,
      );
    }
    this.allocated.delete(pfn);
    const c = this.counters.c;
    c.pagesInUse -= pow2(order);
    c.pagesFreed += pow2(order);
    const area = this.areas[this.zoneOf(pfn * this.pageSize)];
    let head = pfn;
    let o = order;
    while (o < MAX_PAGE_ORDER) {
      const size = pow2(o);
      const buddy = fastMod(head / size, 2) === 0 ? head + size : head - size;
      if (
        this.freeHeads.get(buddy) !== o ||
        this.zoneOf(buddy * this.pageSize) !== this.zoneOf(head * this.pageSize)
      )
        break;
      this.removeFree(area, buddy, o);
      head = Math.min(head, buddy);
      o++;
    }
    this.addFree(area, head, o);
  }

  /** Allocates the specific free page `pfn` (order 0); returns false if it is not free RAM. */
  allocPageAt(pfn: number): boolean {
    for (let o = 0; o <= MAX_PAGE_ORDER; o++) {
      const size = pow2(o);
      const head = alignDown(pfn, size);
      if (this.freeHeads.get(head) !== o) continue;
      const area = this.areas[this.zoneOf(head * this.pageSize)];
      this.removeFree(area, head, o);
      // Split the block, keeping the half that holds pfn, freeing the other.
      let h = head;
      let cur = o;
      while (cur > 0) {
        cur--;
        const half = pow2(cur);
        if (pfn >= h + half) {
          this.addFree(area, h, cur);
          h += half;
        } else {
          this.addFree(area, h + half, cur);
        }
      }
      this.counters.c.allocCalls++;
      this.markAllocated(pfn, 0);
      return true;
    }
    return false;
  }

  /** The order a block head was allocated with, or undefined if `pfn` is not an allocated head. */
  allocatedOrder(pfn: number): number | undefined {
    return this.allocated.get(pfn);
  }

  /**
   * Allocates `count` single pages scattered over RAM, chosen by a seeded generator so that no
   * two consecutive pages of the result are physically adjacent (a deliberately fragmented
   * buffer). Throws ENOMEM when it cannot find enough such pages.
   */
  allocScattered(count: number, seed: number, options: AllocOptions = {}): number[] {
    checkInt(count, "page count");
    const rng = new Rng(seed);
    const zone = options.zone ?? ZONE.NORMAL;
    const allowed = new Set(ZONE_FALLBACK[zone]);
    const ram = this.stores.filter((s) => s.region.kind === REGION_KIND.RAM);
    const total = ram.reduce((n, s) => n + (s.endPfn - s.startPfn), 0);
    const out: number[] = [];
    let attempts = 0;
    const maxAttempts = count * 64 + 1024;
    while (out.length < count) {
      if (attempts++ > maxAttempts) {
        for (const p of out) this.freePages(p, 0);
        throw new BvecError(
          "ENOMEM",
          `could not find ${count} scattered free pages (found ${out.length})`,
        );
      }
      let k = rng.below(total);
      let pfn = -1;
      for (const s of ram) {
        const n = s.endPfn - s.startPfn;
        if (k < n) {
          pfn = s.startPfn + k;
          break;
        }
        k -= n;
      }
      if (!allowed.has(this.zoneOf(pfn * this.pageSize))) continue;
      const prev = out[out.length - 1];
      if (prev !== undefined && Math.abs(prev - pfn) <= 1) continue;
      if (this.allocPageAt(pfn)) out.push(pfn);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Internals

  private storeOf(phys: number): RegionStore | undefined {
    const last = this.lastStore;
    if (last !== undefined && phys >= last.region.start && phys < last.region.end) return last;
    const st = this.stores;
    let lo = 0;
    let hi = st.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1; // eslint-disable-line no-bitwise -- array index
      const s = st[mid] as RegionStore;
      if (phys < s.region.start) hi = mid - 1;
      else if (phys >= s.region.end) lo = mid + 1;
      else {
        this.lastStore = s;
        return s;
      }
    }
    return undefined;
  }

  private checkedStore(phys: number, len: number): RegionStore {
    if (!Number.isSafeInteger(phys) || phys < 0) checkAddr(phys, "physical address", 53);
    const s = this.storeOf(phys);
    if (s === undefined) {
      throw new BvecError(
        "EFAULT",
        `access of ${hex(len)} bytes at ${hex(phys)} falls in a hole of the physical map`,
      );
    }
    if (phys + len <= s.region.end) return s;
    // The access spans regions: every byte must be covered by adjacent regions.
    let p = s.region.end;
    while (p < phys + len) {
      const t = this.storeOf(p);
      if (t === undefined) {
        throw new BvecError(
          "EFAULT",
          `access of ${hex(len)} bytes at ${hex(phys)} reaches a hole at ${hex(p)} past the end of ${s.region.owner}`,
        );
      }
      p = t.region.end;
    }
    return s;
  }

  /** A chunk's worth of zeros (what untouched memory reads as), made on first use. */
  private zeros(): Uint8Array {
    this.zeroChunk ??= new Uint8Array(this.chunkBytes);
    return this.zeroChunk;
  }

  private lookup(store: RegionStore, chunk: number): Uint8Array | undefined {
    const li = Math.floor(chunk / LEAF);
    return store.dir[li]?.[chunk - li * LEAF];
  }

  private materialize(store: RegionStore, chunk: number): Uint8Array {
    const li = Math.floor(chunk / LEAF);
    let leaf = store.dir[li];
    if (leaf === undefined) {
      leaf = new Array<Uint8Array | undefined>(LEAF);
      store.dir[li] = leaf;
    }
    const at = chunk - li * LEAF;
    let bytes = leaf[at];
    if (bytes === undefined) {
      const size = Math.min(this.chunkBytes, store.region.size - chunk * this.chunkBytes);
      bytes = new Uint8Array(size);
      leaf[at] = bytes;
      this.counters.c.chunksMaterialized++;
    }
    return bytes;
  }

  private seedAllocator(startPfn: number, endPfn: number): void {
    const ps = this.pageSize;
    // Split at zone boundaries, then carve the largest naturally aligned blocks.
    const cuts = [startPfn, endPfn];
    for (const b of [ZONE_DMA_END / ps, ZONE_DMA32_END / ps])
      if (b > startPfn && b < endPfn) cuts.push(b);
    cuts.sort((a, b) => a - b);
    for (let i = 0; i + 1 < cuts.length; i++) {
      let p = cuts[i] as number;
      const end = cuts[i + 1] as number;
      const area = this.areas[this.zoneOf(p * ps)];
      while (p < end) {
        let o = MAX_PAGE_ORDER;
        while (o > 0 && (!isAligned(p, pow2(o)) || p + pow2(o) > end)) o--;
        this.addFree(area, p, o);
        area.totalPages += pow2(o);
        p += pow2(o);
      }
    }
  }

  private addFree(area: FreeArea, head: number, order: number): void {
    (area.lists[order] as Set<number>).add(head);
    this.freeHeads.set(head, order);
    area.freePages += pow2(order);
  }

  private removeFree(area: FreeArea, head: number, order: number): void {
    (area.lists[order] as Set<number>).delete(head);
    this.freeHeads.delete(head);
    area.freePages -= pow2(order);
  }

  private markAllocated(head: number, order: number): void {
    this.allocated.set(head, order);
    const c = this.counters.c;
    c.pagesInUse += pow2(order);
    c.pagesAllocated += pow2(order);
  }

  /** Pages of RAM per zone (for reports). */
  zoneSizes(): Record<Zone, number> {
    return {
      dma: this.areas.dma.totalPages,
      dma32: this.areas.dma32.totalPages,
      normal: this.areas.normal.totalPages,
    };
  }

  /** Rounds `bytes` up to whole pages. */
  pagesFor(bytes: number): number {
    return alignUp(bytes, this.pageSize) / this.pageSize;
  }

  /** The zones in order, lowest first. */
  static get zones(): readonly Zone[] {
    return ZONES;
  }
}

const scratch4 = new Uint8Array(4);

/**
 * An offset inside a chunk (below 2^16), as a 32-bit integer: offsets derived from an address
 * are doubles to V8, and a byte loop indexing with one converts it on every access (about
 * twice the cost of the loop with an integer index).
 */
function smallInt(off: number): number {
  // eslint-disable-next-line no-bitwise -- a chunk offset (< 2^16), not an address
  return off | 0;
}

function newArea(): FreeArea {
  const lists: Set<number>[] = [];
  for (let o = 0; o <= MAX_PAGE_ORDER; o++) lists.push(new Set<number>());
  return { lists, freePages: 0, totalPages: 0 };
}
