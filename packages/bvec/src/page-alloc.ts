/**
 * The buddy page allocator of the simulated kernel (Linux `mm/page_alloc.c`: `alloc_pages`,
 * `__free_pages`), with free lists per zone and order and the zonelist fallback from Normal to
 * DMA32 to DMA. It hands out page frame numbers of RAM regions; it never touches their bytes.
 */
import { alignDown, checkInt, fastMod, hex, isAligned, pow2 } from "./addr.ts";
import { BvecError } from "./errors.ts";
import { ZONE, ZONE_DMA32_END, ZONE_DMA_END, type Zone, zoneOf } from "./phys-map.ts";
import { Rng } from "./random.ts";

/** Linux `MAX_PAGE_ORDER`: the largest buddy block is 2^10 pages (4 MiB with 4 KiB pages). */
export const MAX_PAGE_ORDER = 10;

/** Which zones an allocation may use, in the order tried (Linux zonelist fallback). */
const ZONE_FALLBACK: Readonly<Record<Zone, readonly Zone[]>> = {
  normal: [ZONE.NORMAL, ZONE.DMA32, ZONE.DMA],
  dma32: [ZONE.DMA32, ZONE.DMA],
  dma: [ZONE.DMA],
};

/**
 * `allocScattered` gives up after this many random picks per page asked for, plus
 * `SCATTER_MIN_TRIES`: a nearly full machine fails in bounded time instead of searching on.
 */
const SCATTER_TRIES_PER_PAGE = 64;
/** Random picks `allocScattered` always allows, however few pages are asked for. */
const SCATTER_MIN_TRIES = 1024;

/** Options for a page allocation. */
export interface AllocOptions {
  /** The highest zone the pages may come from (default Normal, falling back to DMA32, DMA). */
  readonly zone?: Zone;
}

/** The counters the page allocator keeps (a part of `PhysMemory`'s). */
export type PageAllocCounter =
  "pagesInUse" | "pagesAllocated" | "pagesFreed" | "allocCalls" | "allocFailures";

interface FreeArea {
  /** Free block heads per order, in insertion order (deterministic). */
  readonly lists: Set<number>[];
  freePages: number;
  totalPages: number;
}

function newArea(): FreeArea {
  const lists: Set<number>[] = [];
  for (let o = 0; o <= MAX_PAGE_ORDER; o++) lists.push(new Set<number>());
  return { lists, freePages: 0, totalPages: 0 };
}

/** A buddy allocator over the RAM of one physical map. */
export class PageAllocator {
  /**
   * Fault injection: when set and it returns true, the allocation fails as if memory were
   * exhausted (the `order` and zone requested are passed in).
   */
  faultHook: ((order: number, zone: Zone) => boolean) | undefined = undefined;

  private readonly pageSize: number;
  private readonly c: Record<PageAllocCounter, number>;
  private readonly areas: Record<Zone, FreeArea> = {
    dma: newArea(),
    dma32: newArea(),
    normal: newArea(),
  };
  /** Free block head pfn -> order. */
  private readonly freeHeads = new Map<number, number>();
  /** Allocated block head pfn -> order. */
  private readonly allocated = new Map<number, number>();
  /** The RAM handed to the allocator, as pfn ranges sorted by address. */
  private readonly ram: { readonly startPfn: number; readonly endPfn: number }[] = [];

  /** `counters` are the live values of the memory's counter set (`CounterSet.c`). */
  constructor(pageSize: number, counters: Record<PageAllocCounter, number>) {
    this.pageSize = pageSize;
    this.c = counters;
  }

  /** Free pages in a zone, or in all zones. */
  freePageCount(zone?: Zone): number {
    if (zone) return this.areas[zone].freePages;
    return this.areas.dma.freePages + this.areas.dma32.freePages + this.areas.normal.freePages;
  }

  /** Pages of RAM per zone. */
  zoneSizes(): Record<Zone, number> {
    return {
      dma: this.areas.dma.totalPages,
      dma32: this.areas.dma32.totalPages,
      normal: this.areas.normal.totalPages,
    };
  }

  /**
   * Hands the pages `[startPfn, endPfn)` of a RAM region to the allocator: split at the zone
   * boundaries, then carved into the largest naturally aligned blocks.
   */
  addRam(startPfn: number, endPfn: number): void {
    this.ram.push({ startPfn, endPfn });
    this.ram.sort((a, b) => a.startPfn - b.startPfn);
    const ps = this.pageSize;
    const cuts = [startPfn, endPfn];
    for (const b of [ZONE_DMA_END / ps, ZONE_DMA32_END / ps])
      if (b > startPfn && b < endPfn) cuts.push(b);
    cuts.sort((a, b) => a - b);
    for (let i = 0; i + 1 < cuts.length; i++) {
      let p = cuts[i] as number;
      const end = cuts[i + 1] as number;
      const area = this.areaOf(p);
      while (p < end) {
        let o = MAX_PAGE_ORDER;
        while (o > 0 && (!isAligned(p, pow2(o)) || p + pow2(o) > end)) o--;
        this.addFree(area, p, o);
        area.totalPages += pow2(o);
        p += pow2(o);
      }
    }
  }

  /** Linux `alloc_pages`: see `PhysMemory.allocPages`. Throws ENOMEM when no block is free. */
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
    const c = this.c;
    c.allocCalls++;
    if (this.faultHook?.(order, zone)) {
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

  /** Linux `__free_pages`: frees a block from `allocPages`, merging buddies. */
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
    const c = this.c;
    c.pagesInUse -= pow2(order);
    c.pagesFreed += pow2(order);
    const area = this.areaOf(pfn);
    let head = pfn;
    let o = order;
    while (o < MAX_PAGE_ORDER) {
      const size = pow2(o);
      const buddy = fastMod(head / size, 2) === 0 ? head + size : head - size;
      if (this.freeHeads.get(buddy) !== o || this.zoneOfPfn(buddy) !== this.zoneOfPfn(head)) break;
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
      const area = this.areaOf(head);
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
      this.c.allocCalls++;
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
   * two consecutive pages of the result are physically adjacent. Throws ENOMEM when it cannot
   * find enough such pages.
   */
  allocScattered(count: number, seed: number, options: AllocOptions = {}): number[] {
    checkInt(count, "page count");
    const rng = new Rng(seed);
    const zone = options.zone ?? ZONE.NORMAL;
    const allowed = new Set(ZONE_FALLBACK[zone]);
    const ram = this.ram;
    const total = ram.reduce((n, r) => n + (r.endPfn - r.startPfn), 0);
    const out: number[] = [];
    let attempts = 0;
    const maxAttempts = count * SCATTER_TRIES_PER_PAGE + SCATTER_MIN_TRIES;
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
      for (const r of ram) {
        const n = r.endPfn - r.startPfn;
        if (k < n) {
          pfn = r.startPfn + k;
          break;
        }
        k -= n;
      }
      if (!allowed.has(this.zoneOfPfn(pfn))) continue;
      const prev = out[out.length - 1];
      if (prev !== undefined && Math.abs(prev - pfn) <= 1) continue;
      if (this.allocPageAt(pfn)) out.push(pfn);
    }
    return out;
  }

  private zoneOfPfn(pfn: number): Zone {
    return zoneOf(pfn * this.pageSize);
  }

  private areaOf(pfn: number): FreeArea {
    return this.areas[this.zoneOfPfn(pfn)];
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
    const c = this.c;
    c.pagesInUse += pow2(order);
    c.pagesAllocated += pow2(order);
  }
}
