/**
 * The IOVA allocator of drivers/iommu/iova.c: a tree of allocated ranges searched top-down from
 * a cached node, the 32-bit fail-fast hint, and in front of the tree the per-CPU range caches
 * ("rcaches") of magazines with a global depot (iova-rcache.ts).
 *
 * All ranges are in granule-sized page frames ("pfns"), inclusive at both ends. pfn 0 is never
 * handed out (the start pfn is at least 1), so 0 always means failure, as in Linux.
 */
import {
  CounterSet,
  MAX_ADDR,
  type SimClock,
  hex,
  isPow2,
  orderBase2,
  roundupPow2,
} from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { IovaRcaches } from "./iova-rcache.ts";
import { type FitResult, IovaNode, type IovaRange, IovaTree } from "./iova-tree.ts";

/** Linux `IOVA_ANCHOR` (~0UL): the sentinel node's pfn, above every allocatable pfn. */
export const IOVA_ANCHOR = MAX_ADDR;

/** Options of an `IovaDomain`. */
export interface IovaDomainOptions {
  /** Allocation granule in bytes (a power of two; usually the smallest IOMMU page size). */
  readonly granule: number;
  /** First allocatable pfn (at least 1; dma-iommu uses max(1, aperture_start >> shift)). */
  readonly startPfn: number;
  /**
   * The CPU page size (Linux `PAGE_SIZE`): a granule above it is refused, as
   * `init_iova_domain` BUG()s on it. Omitted: the allocator stands alone and is not checked.
   */
  readonly pageSize?: number;
  /** CPUs with an rcache each (default 4). */
  readonly numCpus?: number;
  /** Simulated clock for the depot trimming work; without one the depot is never trimmed. */
  readonly clock?: SimClock;
}

/** Counter names of `IovaDomain`. */
export type IovaCounter =
  | "allocFastCalls"
  | "allocRcacheHit"
  | "allocTree"
  | "allocTreeRetry"
  | "allocAfterDrain"
  | "allocFailures"
  | "fail32Fast"
  | "rcacheMisses"
  | "drains"
  | "freeFastCalls"
  | "freeRcache"
  | "freeTree"
  | "depotPushes"
  | "depotPops"
  | "depotTrims"
  | "liveRanges"
  | "cachedRanges"
  | "depotSize";

/**
 * roundup_pow_of_two(n) and order_base_2(n) for n = 0..32 (the rcache's sizes), precomputed
 * when the module loads and only read afterwards.
 */
const SMALL_ROUNDUP = new Uint8Array(33);
const SMALL_ORDER = new Uint8Array(33);
for (let n = 1; n <= 32; n++) {
  SMALL_ROUNDUP[n] = roundupPow2(n);
  SMALL_ORDER[n] = orderBase2(n);
}

/** Linux `struct iova_domain` with its rcaches; the constructor is `init_iova_domain`. */
export class IovaDomain {
  /** Allocation granule in bytes. */
  readonly granule: number;
  /** First allocatable pfn. */
  readonly startPfn: number;
  /** Linux `dma_32bit_pfn`: the first pfn at or above 4 GiB. */
  readonly dma32bitPfn: number;
  /** CPUs with rcaches. */
  readonly numCpus: number;
  /** Event counters and gauges. */
  readonly counters = new CounterSet<IovaCounter>(
    "iova",
    [
      "allocFastCalls",
      "allocRcacheHit",
      "allocTree",
      "allocTreeRetry",
      "allocAfterDrain",
      "allocFailures",
      "fail32Fast",
      "rcacheMisses",
      "drains",
      "freeFastCalls",
      "freeRcache",
      "freeTree",
      "depotPushes",
      "depotPops",
      "depotTrims",
      "liveRanges",
      "cachedRanges",
      "depotSize",
    ],
    ["liveRanges", "cachedRanges", "depotSize"],
  );
  /** Linux `max32_alloc_size`: ≤4 GiB requests of this size or more fail fast. */
  max32AllocSize: number;

  private readonly tree = new IovaTree();
  private readonly anchor: IovaNode;
  private cachedNode: IovaNode;
  private cached32Node: IovaNode;
  private readonly rcaches: IovaRcaches;
  private readonly fit: FitResult = { node: null, newPfn: 0 };

  constructor(options: IovaDomainOptions) {
    const { granule, startPfn } = options;
    if (!isPow2(granule))
      throw new IommuError("EINVAL", `IOVA granule ${hex(granule)} is not a power of two`);
    if (options.pageSize !== undefined && granule > options.pageSize)
      throw new IommuError(
        "EINVAL",
        `IOVA granule ${granule} bytes is larger than the ${options.pageSize}-byte CPU page (init_iova_domain: BUG_ON(granule > PAGE_SIZE))`,
      );
    checkNum(startPfn, "start pfn");
    if (startPfn < 1)
      throw new IommuError(
        "EINVAL",
        `start pfn ${hex(startPfn)} would hand out pfn 0; it must be at least 1`,
      );
    const numCpus = options.numCpus ?? 4;
    checkNum(numCpus, "CPU count", 1);
    this.granule = granule;
    this.startPfn = startPfn;
    this.dma32bitPfn = 2 ** 32 / granule;
    this.max32AllocSize = this.dma32bitPfn;
    this.numCpus = numCpus;
    this.anchor = new IovaNode(IOVA_ANCHOR, IOVA_ANCHOR);
    this.tree.insert(this.anchor);
    this.cachedNode = this.anchor;
    this.cached32Node = this.anchor;
    this.rcaches = new IovaRcaches(numCpus, options.clock, this.counters.c, (pfn) => {
      const n = this.tree.findContaining(pfn);
      if (n === null || n === this.anchor) return false;
      this.removeNode(n);
      return true;
    });
  }

  /** Linux `iova_shift`: log2 of the granule. */
  get shift(): number {
    return Math.log2(this.granule);
  }

  /** Ranges in the tree (allocated, cached or reserved), the anchor excluded. */
  get liveRanges(): number {
    return this.tree.size - 1;
  }

  /** Linux `iova_pfn`: the pfn of an IOVA. */
  iovaPfn(iova: number): number {
    return Math.floor(iova / this.granule);
  }

  /**
   * Linux `alloc_iova`: a `size`-page range ending at or below `limitPfn` (inclusive), top-down,
   * aligned to roundup_pow_of_two(size) when `sizeAligned`. Returns the range or undefined.
   */
  allocIova(size: number, limitPfn: number, sizeAligned = true): IovaRange | undefined {
    checkNum(size, "IOVA size (pages)", 1);
    checkNum(limitPfn, "limit pfn");
    if (limitPfn >= IOVA_ANCHOR)
      throw new IommuError("ERANGE", `limit pfn ${hex(limitPfn)} reaches the anchor`);
    const n = this.allocAndInsert(size, limitPfn + 1, sizeAligned);
    return n === undefined ? undefined : rangeOf(n);
  }

  /** Linux `find_iova`: the range containing `pfn`, or undefined. */
  findIova(pfn: number): IovaRange | undefined {
    const n = this.tree.findContaining(pfn);
    return n === null || n === this.anchor ? undefined : rangeOf(n);
  }

  /**
   * Linux `free_iova`: frees the range containing `pfn`. Throws EINVAL when there is none
   * (misuse; Linux returns silently).
   */
  freeIova(pfn: number): void {
    const n = this.tree.findContaining(pfn);
    if (n === null || n === this.anchor) {
      throw new IommuError("EINVAL", `free_iova: no IOVA range contains pfn ${hex(pfn)}`);
    }
    this.removeNode(n);
  }

  /**
   * Linux `reserve_iova`: keeps `[pfnLo, pfnHi]` out of allocation. Overlapping ranges are merged
   * the way iova.c does it (an overlapped node is extended downwards; the part above it goes on).
   */
  reserveIova(pfnLo: number, pfnHi: number): IovaRange {
    checkNum(pfnLo, "reserve pfn_lo");
    checkNum(pfnHi, "reserve pfn_hi");
    if (pfnHi < pfnLo)
      throw new IommuError("EINVAL", `reserve range ${hex(pfnLo)}..${hex(pfnHi)} is empty`);
    if (pfnHi >= IOVA_ANCHOR)
      throw new IommuError(
        "ERANGE",
        `reserve range ${hex(pfnLo)}..${hex(pfnHi)} reaches the anchor`,
      );
    let lo = pfnLo;
    for (
      let n = this.tree.lowerBoundHi(lo);
      n !== null && n !== this.anchor;
      n = this.tree.next(n)
    ) {
      if (lo <= n.pfnHi && pfnHi >= n.pfnLo) {
        // __adjust_overlap_range
        if (lo < n.pfnLo) this.tree.setLo(n, lo);
        if (pfnHi > n.pfnHi) lo = n.pfnHi + 1;
        if (lo >= n.pfnLo && pfnHi <= n.pfnHi) return rangeOf(n);
      } else break;
    }
    const node = new IovaNode(lo, pfnHi);
    this.tree.insert(node);
    this.counters.c.liveRanges = this.tree.size - 1;
    return rangeOf(node);
  }

  /**
   * Linux `alloc_iova_fast`: rounds sizes under 32 pages up to a power of two, tries this CPU's
   * rcache, then the tree; on failure with `flushRcache` drains every cache and retries once.
   * Returns the first pfn, or 0 on failure.
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean, cpu: number): number {
    const c = this.counters.c;
    c.allocFastCalls++;
    if (!(size >= 1 && Number.isSafeInteger(size))) checkNum(size, "IOVA size (pages)", 1);
    if (!(limitPfn >= 0 && limitPfn < IOVA_ANCHOR && Number.isSafeInteger(limitPfn))) {
      checkNum(limitPfn, "limit pfn");
      throw new IommuError("ERANGE", `limit pfn ${hex(limitPfn)} reaches the anchor`);
    }
    if (!(cpu >= 0 && cpu < this.numCpus && Number.isInteger(cpu))) this.checkCpu(cpu);
    // iova.c: non-power-of-two frees into the rcache "will come back to bite us badly".
    if (size < 32) size = SMALL_ROUNDUP[size] as number;
    const pfn =
      size <= 32 ? this.rcaches.get(SMALL_ORDER[size] as number, size, limitPfn + 1, cpu) : 0;
    if (pfn !== 0) {
      c.allocRcacheHit++;
      c.cachedRanges--;
      return pfn;
    }
    c.rcacheMisses++;
    let n = this.allocAndInsert(size, limitPfn + 1, true);
    if (n !== undefined) return n.pfnLo;
    if (!flushRcache) {
      c.allocFailures++;
      return 0;
    }
    this.drainAll();
    n = this.allocAndInsert(size, limitPfn + 1, true);
    if (n === undefined) {
      c.allocFailures++;
      return 0;
    }
    c.allocAfterDrain++;
    return n.pfnLo;
  }

  /**
   * Linux `free_iova_fast`: puts a range of `size` pages back into this CPU's rcache, or into the
   * tree when its size class is not cached. Like Linux, a cached free does not look the range up;
   * a pfn with no range is reported when its magazine is drained.
   */
  freeIovaFast(pfn: number, size: number, cpu: number): void {
    const c = this.counters.c;
    c.freeFastCalls++;
    if (!(cpu >= 0 && cpu < this.numCpus && Number.isInteger(cpu))) this.checkCpu(cpu);
    if (!(pfn >= 1 && Number.isSafeInteger(pfn))) checkNum(pfn, "pfn", 1);
    if (!(size >= 1 && Number.isSafeInteger(size))) checkNum(size, "IOVA size (pages)", 1);
    if (size <= 32 && this.rcaches.insert(SMALL_ORDER[size] as number, pfn, cpu)) {
      c.freeRcache++;
      c.cachedRanges++;
      return;
    }
    this.freeIova(pfn);
  }

  /** Linux `free_cpu_cached_iovas`: returns one CPU's cached ranges to the tree (CPU hotplug). */
  freeCpuCachedIovas(cpu: number): void {
    this.checkCpu(cpu);
    this.rcaches.freeCpu(cpu);
  }

  /** Linux `free_global_cached_iovas`: returns every depot magazine's ranges to the tree. */
  freeGlobalCachedIovas(): void {
    this.rcaches.freeGlobal();
  }

  /** Linux `put_iova_domain`: drops the caches and every range; cancels the depot work. */
  putIovaDomain(): void {
    this.rcaches.cancelWork();
    this.drainAll();
    for (let n = this.tree.first(); n !== null && n !== this.anchor; n = this.tree.first())
      this.removeNode(n);
  }

  /** Every range in the tree, in order (cached and reserved ranges included, the anchor not). */
  ranges(): IovaRange[] {
    return this.tree
      .toArray()
      .filter((n) => n !== this.anchor)
      .map(rangeOf);
  }

  /** Pfns cached per size class: [class][cpu] loaded+prev, and the depot's magazines. */
  cacheState(): { order: number; perCpu: number[]; depotMagazines: number }[] {
    return this.rcaches.state();
  }

  // -------------------------------------------------------------------------------------

  private checkCpu(cpu: number): void {
    if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < this.numCpus)) {
      throw new IommuError("EINVAL", `cpu ${String(cpu)} is outside 0..${this.numCpus - 1}`);
    }
  }

  /** `__alloc_and_insert_iova_range` with an exclusive limit. */
  private allocAndInsert(size: number, limit: number, sizeAligned: boolean): IovaNode | undefined {
    const c = this.counters.c;
    const tree = this.tree;
    // align_mask = ~0 << fls(size - 1): natural alignment to the next power of two.
    const align = sizeAligned ? roundupPow2(size) : 1;
    if (limit <= this.dma32bitPfn && size >= this.max32AllocSize) {
      c.fail32Fast++;
      return undefined;
    }
    const start = limit <= this.dma32bitPfn ? this.cached32Node : this.cachedNode;
    const retryPfn = start.pfnHi;
    // Nodes above the lowest one that reaches the limit cannot fit anything (their predecessor
    // ends at or above the limit), so the walk effectively starts at the lower of the two.
    const reach = tree.lowerBoundHi(limit) as IovaNode;
    const bound = reach.pfnLo < start.pfnLo ? reach : start;
    const fit = this.fit;
    tree.searchFit(bound, limit, size, align, this.startPfn, fit);
    let retried = false;
    if (fit.node === null && retryPfn < limit) {
      // One more pass over (retry_pfn, limit), starting from iova_find_limit(limit): space
      // above the cached node that frees may have opened.
      retried = true;
      const top = limit > this.dma32bitPfn ? this.anchor : (tree.lowerBoundLo(limit) as IovaNode);
      const b2 = reach.pfnLo < top.pfnLo ? reach : top;
      tree.searchFit(b2, limit, size, align, retryPfn + 1, fit);
    }
    if (fit.node === null) {
      // iova.c records the failed size even for limits above 4 GiB; it is only consulted for
      // ≤4 GiB limits (quirk of __alloc_and_insert_iova_range).
      this.max32AllocSize = size;
      return undefined;
    }
    const node = new IovaNode(fit.newPfn, fit.newPfn + size - 1);
    tree.insert(node);
    // __cached_rbnode_insert_update
    if (node.pfnHi < this.dma32bitPfn) this.cached32Node = node;
    else this.cachedNode = node;
    c.liveRanges = tree.size - 1;
    if (retried) c.allocTreeRetry++;
    else c.allocTree++;
    return node;
  }

  private removeNode(n: IovaNode): void {
    // __cached_rbnode_delete_update
    const c32 = this.cached32Node;
    if (n === c32 || (n.pfnHi < this.dma32bitPfn && n.pfnLo >= c32.pfnLo)) {
      this.cached32Node = this.tree.next(n) as IovaNode;
    }
    if (n.pfnLo < this.dma32bitPfn) this.max32AllocSize = this.dma32bitPfn;
    if (n.pfnLo >= this.cachedNode.pfnLo) this.cachedNode = this.tree.next(n) as IovaNode;
    this.tree.remove(n);
    this.counters.c.freeTree++;
    this.counters.c.liveRanges = this.tree.size - 1;
  }

  /** Every CPU's magazines and every depot back into the tree. */
  private drainAll(): void {
    this.counters.c.drains++;
    for (let cpu = 0; cpu < this.numCpus; cpu++) this.freeCpuCachedIovas(cpu);
    this.freeGlobalCachedIovas();
  }
}

/** A detached copy of a node's range (callers never hold tree nodes). */
function rangeOf(n: IovaNode): IovaRange {
  return { pfnLo: n.pfnLo, pfnHi: n.pfnHi };
}
