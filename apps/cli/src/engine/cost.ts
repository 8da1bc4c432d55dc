/**
 * The cost model: prices the events the packages count, in CPU nanoseconds. Counting stays in
 * the packages; pricing happens only here. The default table cites where each number comes
 * from (shared/reference/peers.md); a user can replace any entry with a JSON file.
 */
import { z } from "zod";

/** Cost categories, for the per-I/O breakdown. */
export const COST_CATEGORIES = [
  "block",
  "doorbell",
  "dma-api",
  "iova",
  "pagetable",
  "iotlb",
  "flush-queue",
  "bounce",
  "cache",
  "descriptors",
  "scatterlist",
] as const;
/** A cost category. */
export type CostCategory = (typeof COST_CATEGORIES)[number];

/** One priced event. */
export interface CostEntry {
  /** Nanoseconds per event (or per byte when `perByte`). */
  readonly ns: number;
  /** The counters that count the event, as `scope.name` (summed). */
  readonly counters: readonly string[];
  readonly category: CostCategory;
  readonly perByte?: boolean;
  /** Where the number comes from. */
  readonly source: string;
}

/** A cost table: name → entry. */
export type CostTable = Readonly<Record<string, CostEntry>>;

const GUPTA =
  "Gupta 2025 (peers.md §3.4): one core does 5.01 MIOPS passthrough, 1.93 M lazy, 570 K strict";
const MORELLO =
  "Saleh 2025 dma_map_benchmark on SMMUv3 (peers.md §3.1): 4K strict map 0.1 µs, unmap 0.6 µs";
const RCACHE = "Peleg 2016 / Murphy 2023 (peers.md §3.2): per-CPU caches avoid the rbtree lock";

/** The default costs. Calibrated so a 4 KiB read costs ≈200 ns passthrough, ≈520 ns lazy, ≈1750 ns strict. */
export const DEFAULT_COSTS: CostTable = {
  "block.submit": {
    ns: 140,
    counters: ["nvmehost.submitted"],
    category: "block",
    source: `${GUPTA}: ~200 ns per I/O in total without an IOMMU`,
  },
  "block.complete": {
    ns: 40,
    counters: ["nvmehost.completed", "nvmehost.retries"],
    category: "block",
    source: GUPTA,
  },
  "doorbell.sq": {
    ns: 15,
    counters: ["nvmehost.sqDoorbells"],
    category: "doorbell",
    source: "posted MMIO write, amortised by batching",
  },
  "doorbell.cq": {
    ns: 15,
    counters: ["nvmehost.cqDoorbells"],
    category: "doorbell",
    source: "posted MMIO write",
  },
  "dma.map": {
    ns: 12,
    counters: ["dma.maps", "dma.iovaTryAllocs"],
    category: "dma-api",
    source: "call and dispatch overhead of dma_map_phys / dma_iova_try_alloc",
  },
  "dma.unmap": {
    ns: 10,
    counters: ["dma.unmaps"],
    category: "dma-api",
    source: "call overhead of dma_unmap_phys",
  },
  "dma.iovaLink": {
    ns: 12,
    counters: ["dma.iovaLinks", "dma.iovaUnlinks"],
    category: "dma-api",
    source: "dma_iova_link call overhead (the PTEs are priced separately)",
  },
  "dma.iovaSync": {
    ns: 8,
    counters: ["dma.iovaSyncs"],
    category: "dma-api",
    source: "dma_iova_sync call",
  },
  "iova.rcache": {
    ns: 25,
    counters: ["iova.allocRcacheHit", "iova.freeRcache"],
    category: "iova",
    source: RCACHE,
  },
  "iova.tree": {
    ns: 280,
    counters: ["iova.allocTree", "iova.allocTreeRetry", "iova.freeTree"],
    category: "iova",
    source: `${RCACHE}; rbtree walk under the domain lock`,
  },
  "iova.drain": {
    ns: 20000,
    counters: ["iova.drains"],
    category: "iova",
    source: "draining every CPU's magazines into the tree",
  },
  "pagetable.pte": {
    ns: 9,
    counters: ["pgtable.pteWrites"],
    category: "pagetable",
    source: MORELLO,
  },
  "pagetable.tableAlloc": {
    ns: 250,
    counters: ["pgtable.tablePagesAllocated"],
    category: "pagetable",
    source: "page allocation and zeroing of a 4 KiB table",
  },
  "pagetable.tableFree": {
    ns: 60,
    counters: ["pgtable.tablePagesFreed"],
    category: "pagetable",
    source: "page free",
  },
  "iotlb.syncMap": {
    ns: 4,
    counters: ["domain.syncMapCalls"],
    category: "iotlb",
    source: "iotlb_sync_map is nearly free without caching mode (dma-iommu.md §4.10)",
  },
  "iotlb.syncMapFlush": {
    ns: 900,
    counters: ["domain.syncMapFlushes"],
    category: "iotlb",
    source: "caching-mode IOMMUs flush on sync_map (VT-d CM, virtio-iommu)",
  },
  "iotlb.rangeInvalidation": {
    ns: 1150,
    counters: ["domain.rangeInvalidations"],
    category: "iotlb",
    source: `${MORELLO}; ${GUPTA}: strict costs ~1.5 µs more per I/O`,
  },
  "iotlb.flushAll": {
    ns: 2500,
    counters: ["domain.flushAlls"],
    category: "iotlb",
    source: "whole-domain invalidation + wait, amortised over a flush-queue batch",
  },
  "fq.queue": {
    ns: 45,
    counters: ["fq.queued"],
    category: "flush-queue",
    source: `${GUPTA}: lazy costs ~320 ns more than passthrough per I/O`,
  },
  "fq.reclaim": {
    ns: 20,
    counters: ["fq.reclaimed"],
    category: "flush-queue",
    source: "freeing a queued IOVA into the rcache",
  },
  "bounce.bytes": {
    ns: 0.1,
    counters: ["swiotlb.bouncedBytesToDevice", "swiotlb.bouncedBytesFromDevice"],
    category: "bounce",
    perByte: true,
    source: "memcpy at ~10 GB/s",
  },
  "bounce.slots": {
    ns: 120,
    counters: ["swiotlb.maps"],
    category: "bounce",
    source: "slot search under the area lock",
  },
  "cache.clean": {
    ns: 0.03,
    counters: ["dma.cacheCleanBytes"],
    category: "cache",
    perByte: true,
    source: "arm64 dcache clean by VA to PoC",
  },
  "cache.invalidate": {
    ns: 0.03,
    counters: ["dma.cacheInvalidateBytes"],
    category: "cache",
    perByte: true,
    source: "arm64 dcache invalidate by VA",
  },
  "descriptors.small": {
    ns: 40,
    counters: ["pool.small.allocs"],
    category: "descriptors",
    source: "dma_pool_alloc of a 256-byte block",
  },
  "descriptors.large": {
    ns: 60,
    counters: ["pool.large.allocs"],
    category: "descriptors",
    source: "dma_pool_alloc of a 4 KiB page",
  },
  "descriptors.vecArray": {
    ns: 90,
    counters: ["mempool.vec.allocs"],
    category: "descriptors",
    source: "mempool_alloc of a 4 KiB dma_vec array (GFP_ATOMIC kmalloc)",
  },
  "sg.table": {
    ns: 90,
    counters: ["mempool.sg.allocs"],
    category: "scatterlist",
    source: "mempool_alloc of the scatterlist (≈4 KiB)",
  },
  "sg.entries": {
    ns: 14,
    counters: ["engine.sgEntries"],
    category: "scatterlist",
    source: "blk_rq_map_sg and dma_map_sg work per entry",
  },
  "sg.calls": {
    ns: 30,
    counters: ["dma.sgMaps", "dma.sgUnmaps"],
    category: "scatterlist",
    source: "dma_map_sgtable / dma_unmap_sgtable call overhead",
  },
};

const entrySchema = z
  .object({
    ns: z.number().min(0),
    counters: z.array(z.string()).min(1).optional(),
    category: z.enum(COST_CATEGORIES).optional(),
    perByte: z.boolean().optional(),
    source: z.string().optional(),
  })
  .strict();

/** Validates a user cost file and merges it over the defaults (a bare number sets `ns`). */
export function loadCostTable(input: unknown, base: CostTable = DEFAULT_COSTS): CostTable {
  const schema = z.record(z.string(), z.union([z.number().min(0), entrySchema]));
  const r = schema.safeParse(input);
  if (!r.success) {
    throw new Error(
      r.error.issues.map((i) => `costs.${i.path.join(".")}: ${i.message}`).join("\n"),
    );
  }
  const out: Record<string, CostEntry> = { ...base };
  for (const [k, v] of Object.entries(r.data)) {
    const prev = out[k];
    if (typeof v === "number") {
      if (!prev)
        throw new Error(
          `costs.${k}: unknown cost entry (a new entry needs counters and a category)`,
        );
      out[k] = { ...prev, ns: v, source: `${prev.source} (overridden)` };
    } else {
      const counters = v.counters ?? prev?.counters;
      const category = v.category ?? prev?.category;
      if (!counters || !category)
        throw new Error(`costs.${k}: a new entry needs counters and a category`);
      out[k] = {
        ns: v.ns,
        counters,
        category,
        ...(v.perByte !== undefined
          ? { perByte: v.perByte }
          : prev?.perByte !== undefined
            ? { perByte: prev.perByte }
            : {}),
        source: v.source ?? prev?.source ?? "user",
      };
    }
  }
  return out;
}

/** Where a live counter is read: `target[key]`. */
export interface CounterRef {
  readonly target: Readonly<Record<string, number>>;
  readonly key: string;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

/**
 * A compiled pricer over live counters: `total()` is the CPU ns of everything counted so far.
 * The engine asks for it several times per simulated I/O, so the sum is compiled into one
 * function of plain property reads (one object per counter set, one literal key per term) rather
 * than a loop of computed-key lookups; the terms and their order are the table's.
 */
export class Pricer {
  private readonly terms: { get: () => number; ns: number; category: number }[] = [];
  readonly table: CostTable;
  /** The compiled sum; `total()` calls it. */
  private readonly sum: () => number;

  constructor(table: CostTable, lookup: (name: string) => CounterRef | undefined) {
    this.table = table;
    const targets: Readonly<Record<string, number>>[] = [];
    const ns: number[] = [];
    const parts: string[] = [];
    for (const e of Object.values(table)) {
      for (const c of e.counters) {
        const ref = lookup(c);
        if (ref === undefined) continue;
        const { target, key } = ref;
        this.terms.push({
          get: () => target[key] ?? 0,
          ns: e.ns,
          category: COST_CATEGORIES.indexOf(e.category),
        });
        let ti = targets.indexOf(target);
        if (ti < 0) ti = targets.push(target) - 1;
        const read = IDENT.test(key) ? `t[${ti}].${key}` : `t[${ti}][${JSON.stringify(key)}]`;
        parts.push(`(${read} ?? 0) * n[${ns.length}]`);
        ns.push(e.ns);
      }
    }
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- built from counter names checked above
    const make = new Function(
      "t",
      "n",
      `return () => 0${parts.map((p) => ` + ${p}`).join("")};`,
    ) as (t: readonly Readonly<Record<string, number>>[], n: readonly number[]) => () => number;
    this.sum = make(targets, ns);
  }

  /** CPU ns of everything counted so far. */
  total(): number {
    return this.sum();
  }

  /** CPU ns by category of everything counted so far. */
  byCategory(): Record<CostCategory, number> {
    const out = Object.fromEntries(COST_CATEGORIES.map((c) => [c, 0])) as Record<
      CostCategory,
      number
    >;
    for (const t of this.terms) {
      const cat = COST_CATEGORIES[t.category] as CostCategory;
      out[cat] += t.get() * t.ns;
    }
    return out;
  }
}
