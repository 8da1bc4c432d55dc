/**
 * The IOVA range caches of drivers/iommu/iova.c (`struct iova_rcache`): per size class, each
 * CPU holds a loaded and a previous magazine of freed pfns, full magazines go to a global depot,
 * and a delayed work trims the depot back to one magazine per CPU. Linux keeps them in iova.c
 * next to the tree; here they are their own structure, which `IovaDomain` owns and feeds.
 */
import { type SimClock, type TimerId, hex } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";

/** Linux `IOVA_RANGE_CACHE_MAX_SIZE`: rcache size classes (orders 0..5, 1..32 pages). */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** Linux `IOVA_MAG_SIZE`: pfns per magazine. */
export const IOVA_MAG_SIZE = 127;
/** Linux `IOVA_DEPOT_DELAY`: the depot trimming period, 100 ms (in ns of simulated time). */
export const IOVA_DEPOT_DELAY_NS = 100_000_000;

/** Linux `struct iova_magazine`. */
class Magazine {
  size = 0;
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);
}

/** Linux `struct iova_cpu_rcache`. */
interface CpuRcache {
  loaded: Magazine;
  prev: Magazine;
}

/** Linux `struct iova_rcache`: one size class. */
interface Rcache {
  /** Full magazines, LIFO (the last element is the top). */
  readonly depot: Magazine[];
  readonly cpus: CpuRcache[];
  timer: TimerId | undefined;
}

/** The counters of `IovaDomain` the caches keep. */
export interface IovaRcacheCounters {
  depotPushes: number;
  depotPops: number;
  depotTrims: number;
  depotSize: number;
  cachedRanges: number;
}

/** Gives a cached pfn's range back to the tree; false when the tree has no range there. */
export type IovaRelease = (pfn: number) => boolean;

/** The rcaches of one IOVA domain: every size class, for every CPU, and the depots. */
export class IovaRcaches {
  private readonly rcaches: Rcache[] = [];
  private readonly numCpus: number;
  private readonly clock: SimClock | undefined;
  private readonly c: IovaRcacheCounters;
  private readonly release: IovaRelease;

  constructor(
    numCpus: number,
    clock: SimClock | undefined,
    counters: IovaRcacheCounters,
    release: IovaRelease,
  ) {
    this.numCpus = numCpus;
    this.clock = clock;
    this.c = counters;
    this.release = release;
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) {
      const cpus: CpuRcache[] = [];
      for (let c = 0; c < numCpus; c++) cpus.push({ loaded: new Magazine(), prev: new Magazine() });
      this.rcaches.push({ depot: [], cpus, timer: undefined });
    }
  }

  /** `__iova_rcache_get` for size class `order` (sizes of 32 pages or less). */
  get(order: number, size: number, limit: number, cpu: number): number {
    const rc = this.rcaches[order] as Rcache;
    const cr = rc.cpus[cpu] as CpuRcache;
    if (cr.loaded.size === 0) {
      if (cr.prev.size !== 0) {
        const t = cr.loaded;
        cr.loaded = cr.prev;
        cr.prev = t;
      } else {
        const m = rc.depot.pop();
        if (m === undefined) return 0;
        // The empty loaded magazine is freed; the depot's full one takes its place.
        this.c.depotPops++;
        this.c.depotSize--;
        cr.loaded = m;
      }
    }
    return magazinePop(cr.loaded, limit - size);
  }

  /** `__iova_rcache_insert` for size class `order` (sizes of 32 pages or less). */
  insert(order: number, pfn: number, cpu: number): boolean {
    const rc = this.rcaches[order] as Rcache;
    const cr = rc.cpus[cpu] as CpuRcache;
    if (cr.loaded.size === IOVA_MAG_SIZE) {
      if (cr.prev.size !== IOVA_MAG_SIZE) {
        const t = cr.loaded;
        cr.loaded = cr.prev;
        cr.prev = t;
      } else {
        rc.depot.push(cr.loaded);
        this.c.depotPushes++;
        this.c.depotSize++;
        this.scheduleDepotWork(rc);
        cr.loaded = new Magazine();
      }
    }
    const m = cr.loaded;
    m.pfns[m.size++] = pfn;
    return true;
  }

  /** The loop of `free_cpu_cached_iovas`: one CPU's magazines back into the tree. */
  freeCpu(cpu: number): void {
    for (const rc of this.rcaches) {
      const cr = rc.cpus[cpu] as CpuRcache;
      this.magazineFreePfns(cr.loaded);
      this.magazineFreePfns(cr.prev);
    }
  }

  /** The loop of `free_global_cached_iovas`: every depot magazine back into the tree. */
  freeGlobal(): void {
    for (const rc of this.rcaches) {
      for (let m = rc.depot.pop(); m !== undefined; m = rc.depot.pop()) {
        this.c.depotSize--;
        this.magazineFreePfns(m);
      }
    }
  }

  /** The `cancel_delayed_work_sync` of `iova_domain_free_rcaches`: no depot work is left pending. */
  cancelWork(): void {
    for (const rc of this.rcaches) {
      if (rc.timer !== undefined) this.clock?.cancel(rc.timer);
      rc.timer = undefined;
    }
  }

  /** Pfns cached per size class: [class][cpu] loaded+prev, and the depot's magazines. */
  state(): { order: number; perCpu: number[]; depotMagazines: number }[] {
    return this.rcaches.map((rc, order) => ({
      order,
      perCpu: rc.cpus.map((cr) => cr.loaded.size + cr.prev.size),
      depotMagazines: rc.depot.length,
    }));
  }

  /** `schedule_delayed_work` of the depot trimming (no-op while already pending). */
  private scheduleDepotWork(rc: Rcache): void {
    const clock = this.clock;
    if (clock === undefined || rc.timer !== undefined) return;
    rc.timer = clock.schedule(IOVA_DEPOT_DELAY_NS, () => {
      rc.timer = undefined;
      this.depotWork(rc);
    });
  }

  /** Linux `iova_depot_work_func`: trims one magazine while the depot holds more than one per CPU. */
  private depotWork(rc: Rcache): void {
    if (rc.depot.length <= this.numCpus) return;
    const m = rc.depot.pop() as Magazine;
    this.c.depotSize--;
    this.c.depotTrims++;
    this.magazineFreePfns(m);
    this.scheduleDepotWork(rc);
  }

  /** Linux `iova_magazine_free_pfns`: every pfn of a magazine goes back to the tree. */
  private magazineFreePfns(m: Magazine): void {
    for (let i = 0; i < m.size; i++) {
      const pfn = m.pfns[i] as number;
      this.c.cachedRanges--;
      if (!this.release(pfn)) {
        m.size = 0;
        // Linux WARNs ("iova_magazine_free_pfns") and carries on; the model treats it as misuse.
        throw new IommuError(
          "EINVAL",
          `a cached IOVA pfn ${hex(pfn)} has no range in the tree (freed twice or never allocated)`,
        );
      }
    }
    m.size = 0;
  }
}

/** Linux `iova_magazine_pop`: the topmost pfn <= `limitPfn`, swapped out with the last; 0 when none. */
function magazinePop(m: Magazine, limitPfn: number): number {
  const pfns = m.pfns;
  let i = m.size - 1;
  if (i < 0) return 0;
  while ((pfns[i] as number) > limitPfn) {
    if (i === 0) return 0;
    i--;
  }
  const pfn = pfns[i] as number;
  m.size--;
  pfns[i] = pfns[m.size] as number;
  return pfn;
}
