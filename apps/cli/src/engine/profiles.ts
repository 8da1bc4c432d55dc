/**
 * Hardware profiles: the cost table of each CPU and IOMMU kind (`machine.profile`). Every entry
 * says where its number comes from. Calibration figures (docs/validation.md, rows C1–C3) may set
 * entries; validation figures (rows P*) never do: they are predicted from these tables and their
 * error is reported by `dmasim validate` as it comes out.
 *
 * What each profile rests on:
 * - `intel-vtd`: the one-core ladder of C1 (passthrough / lazy / strict on an x86 host with
 *   Optane, polled io_uring) and the VT-d queued-invalidation cost of about 1 µs.
 * - `arm-smmuv3`: dma_map_benchmark on Arm Morello's SMMUv3 (C2: one thread, 4 KiB, strict:
 *   map 0.1 µs, unmap 0.6 µs) and the CMD_SYNC wait of an empty SMMUv3 command queue (C3: 240 ns).
 * - `amd-vi`: no AMD-Vi figure is in the calibration set; it uses the x86 values of `intel-vtd`
 *   and says so in each entry it shares.
 */
import { type KernelVersion, kernelHas } from "@dmasim/bvec";
import type { IoPgtableFormat } from "@dmasim/iommu";
import type { CostEntry, CostTable } from "./cost.ts";

/** The hardware profiles. */
export const PROFILE_NAMES = ["intel-vtd", "amd-vi", "arm-smmuv3"] as const;
/** A hardware profile name. */
export type ProfileName = (typeof PROFILE_NAMES)[number];

const C1 =
  "C1 (docs/validation.md): Gupta, linux-nvme 2025-11-24, one core: passthrough 5.01 M (device-bound), lazy 1.93 M, strict 570 K IOPS";
const C2 =
  "C2 (docs/validation.md): Saleh 2025, dma_map_benchmark on Morello SMMUv3, 1 thread 4 KiB strict: map 0.1 µs, unmap 0.6 µs";
const C3 =
  "C3 (docs/validation.md): Song 2020, SMMUv3 CMD_SYNC wait in an empty queue: 240 ns local, 550 ns remote";
const QI =
  "VT-d queued invalidation (qi_submit_sync) of about 2 500 cycles (≈1 µs) per wait on a Xeon Silver; C1's strict - lazy gap (≈1.24 µs per I/O) fixes the split";
const RCACHE =
  "Peleg et al. 2016, 'iommu/iova: introduce per-cpu caching to iova allocation': the magazines avoid the tree lock";
const AMD = "no AMD-Vi calibration figure: the x86 (intel-vtd, C1) value";

/** Entries every profile shares: the block layer, the driver, and the allocator's software. */
const COMMON: Record<string, CostEntry> = {
  "block.submit": {
    ns: 95,
    counters: ["nvmehost.submitted"],
    category: "block",
    source: `${C1}: passthrough costs at most ~200 ns per I/O in all`,
  },
  "block.complete": {
    ns: 40,
    counters: ["nvmehost.completed", "nvmehost.retries"],
    category: "block",
    source: C1,
  },
  "nvme.sqCopy": {
    ns: 20,
    counters: ["nvmehost.submitted"],
    category: "block",
    resource: "nvme-sq-lock",
    source:
      "nvme_sq_copy_cmd under nvmeq->sq_lock: a 64-byte copy and the tail update (contended only when CPUs share a queue)",
  },
  "irq.handle": {
    ns: 1000,
    counters: ["engine.irqs"],
    category: "irq",
    source:
      "an MSI-X interrupt, entry to exit (nvme_irq and the softirq end of blk-mq): about 1 µs on server CPUs; the wake-up of a sleeping task is not modelled",
  },
  "poll.reap": {
    ns: 25,
    counters: ["engine.polls"],
    category: "block",
    source: "one blk_hctx_poll → nvme_poll call that finds completions (io_uring IOPOLL)",
  },
  "doorbell.sq": {
    ns: 15,
    counters: ["nvmehost.sqDoorbells"],
    category: "doorbell",
    source: "a posted MMIO write",
  },
  "doorbell.cq": {
    ns: 15,
    counters: ["nvmehost.cqDoorbells"],
    category: "doorbell",
    source: "a posted MMIO write",
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
  "dma.iommuPath": {
    ns: 80,
    counters: ["dma.iommuMaps"],
    category: "dma-api",
    source: `${C1}: iommu_dma_map_phys / __iommu_dma_unmap bookkeeping beyond the direct path (part of lazy - passthrough ≈ 320 ns)`,
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
  "iova.depot": {
    ns: 40,
    counters: ["iova.depotPushes", "iova.depotPops"],
    category: "iova",
    resource: "rcache-depot-lock",
    source: "iova_depot_push/pop under rcache->lock (one lock per size class and domain)",
  },
  "iova.tree": {
    ns: 280,
    counters: ["iova.allocTree", "iova.allocTreeRetry", "iova.freeTree"],
    category: "iova",
    resource: "iova-tree-lock",
    source: `${RCACHE}; an rbtree walk and insert under iovad->iova_rbtree_lock`,
  },
  "iova.drain": {
    ns: 20000,
    counters: ["iova.drains"],
    category: "iova",
    resource: "iova-tree-lock",
    source: "free_global_cached_iovas + free_cpu_cached_iovas: every magazine back into the tree",
  },
  "pagetable.walk": {
    ns: 45,
    counters: ["pgtable.mapCalls", "pgtable.unmapCalls"],
    category: "pagetable",
    source: `${C1}: the table walk of one iommu_map / iommu_unmap call (part of lazy - passthrough)`,
  },
  "pagetable.pte": {
    ns: 9,
    counters: ["pgtable.pteWrites"],
    category: "pagetable",
    source: `${C2}: a 4 KiB map, PTE write included, is under 0.2 µs`,
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
    source: "iotlb_sync_map is nearly free without caching mode",
  },
  "fq.queue": {
    ns: 60,
    counters: ["fq.queued"],
    category: "flush-queue",
    resource: "fq-lock",
    source: `${C1}: queue_iova under fq->lock (part of lazy - passthrough)`,
  },
  "fq.reclaim": {
    ns: 20,
    counters: ["fq.reclaimed"],
    category: "flush-queue",
    resource: "fq-lock",
    source: "fq_ring_free_locked: one queued IOVA back into the rcache, under fq->lock",
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
    counters: ["swiotlb.maps", "swiotlb.unmaps"],
    category: "bounce",
    resource: "swiotlb-area-lock",
    source: "swiotlb_search_pool_area / swiotlb_release_slots under the area lock",
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

/**
 * The invalidation entries of an IOMMU kind: the CPU's part (building and queueing the commands)
 * and the hardware's service time on the one invalidation queue, which the CPU spins on until the
 * wait descriptor (VT-d, AMD-Vi) or CMD_SYNC (SMMUv3) completes.
 */
function invalidation(o: {
  rangeCpu: number;
  rangeService: number;
  allCpu: number;
  allService: number;
  syncMapCpu: number;
  syncMapService: number;
  source: string;
}): Record<string, CostEntry> {
  return {
    "iotlb.rangeInvalidation": {
      ns: o.rangeCpu,
      counters: ["domain.rangeInvalidations"],
      category: "iotlb",
      source: `${o.source}: building and queueing a page-selective invalidation`,
    },
    "iommu.rangeInvalidationWait": {
      ns: o.rangeService,
      counters: ["domain.rangeInvalidations"],
      category: "iotlb",
      resource: "iommu-invalidation-queue",
      source: `${o.source}: the hardware's service of one page-selective invalidation and its completion wait`,
    },
    "iotlb.flushAll": {
      ns: o.allCpu,
      counters: ["domain.flushAlls"],
      category: "iotlb",
      source: `${o.source}: queueing a domain-wide invalidation`,
    },
    "iommu.flushAllWait": {
      ns: o.allService,
      counters: ["domain.flushAlls"],
      category: "iotlb",
      resource: "iommu-invalidation-queue",
      source: `${o.source}: the hardware's service of a domain-wide invalidation and its completion wait`,
    },
    "iotlb.syncMapFlush": {
      ns: o.syncMapCpu,
      counters: ["domain.syncMapFlushes"],
      category: "iotlb",
      source: `${o.source}: caching-mode IOMMUs (VT-d CM, virtio-iommu) flush on iotlb_sync_map`,
    },
    "iommu.syncMapFlushWait": {
      ns: o.syncMapService,
      counters: ["domain.syncMapFlushes"],
      category: "iotlb",
      resource: "iommu-invalidation-queue",
      source: `${o.source}: the wait for that flush`,
    },
  };
}

/** The device-side walk of an IOTLB miss: PTE reads from memory, or from the walk cache. */
function deviceWalk(
  memReadNs: number,
  cacheHitNs: number,
  source: string,
): Record<string, CostEntry> {
  return {
    "device.walkRead": {
      ns: memReadNs,
      counters: ["pgtable.walkMemReads"],
      category: "iotlb",
      on: "device",
      source: `${source}: one PTE read from memory by the IOMMU's page walker on an IOTLB miss`,
    },
    "device.walkCacheHit": {
      ns: cacheHitNs,
      counters: ["pgtable.walkCacheHits"],
      category: "iotlb",
      on: "device",
      source: `${source}: an upper-level entry served by the walk cache (VT-d paging-structure cache, SMMU walk cache)`,
    },
  };
}

/** x86 invalidation costs (C1's split between the CPU's part and the queue's service). */
const X86_INVALIDATION = {
  rangeCpu: 200,
  rangeService: 1130,
  allCpu: 300,
  allService: 1500,
  syncMapCpu: 200,
  syncMapService: 1130,
};

const INTEL: CostTable = {
  ...COMMON,
  ...invalidation({ ...X86_INVALIDATION, source: `${C1}; ${QI}` }),
  ...deviceWalk(100, 5, "a DRAM access on an x86 server (≈100 ns load-to-use)"),
};

const AMD_VI: CostTable = {
  ...COMMON,
  ...invalidation({
    ...X86_INVALIDATION,
    source: `${AMD}: INVALIDATE_IOMMU_PAGES + COMPLETION_WAIT on the command buffer`,
  }),
  ...deviceWalk(100, 5, AMD),
};

const ARM: CostTable = {
  ...COMMON,
  ...invalidation({
    rangeCpu: 320,
    rangeService: 240,
    allCpu: 300,
    allService: 400,
    syncMapCpu: 320,
    syncMapService: 240,
    source: `${C2}; ${C3}`,
  }),
  ...deviceWalk(120, 5, "a DRAM access on an arm64 server (≈120 ns)"),
};

/** An IOMMU's "I am virtualised" capability, and what Linux does about it. */
export interface CachingModeBit {
  /** The capability bit. */
  readonly bit: string;
  /** Why a lazy domain becomes strict, as the report says it. */
  readonly reason: string;
}

/**
 * The caching-mode bit of each IOMMU kind (`iommu.cachingMode`): VT-d CAP.CM (Linux
 * `intel_iommu_init` → `iommu_set_dma_strict`), AMD-Vi NpCache in the IOMMU capability header
 * (`iommu_init_pci` → `iommu_set_dma_strict`, since 5.15). SMMUv3 has none: null.
 */
export const CACHING_MODE: Readonly<Record<ProfileName, CachingModeBit | null>> = {
  "intel-vtd": {
    bit: "CAP.CM",
    reason: "caching mode (virtualised VT-d): IOMMU batching disallowed",
  },
  "amd-vi": {
    bit: "NpCache",
    reason: "NpCache (virtualised AMD-Vi): strict mode due to virtualization",
  },
  "arm-smmuv3": null,
};

/** The cost table of each profile. */
export const PROFILES: Readonly<Record<ProfileName, CostTable>> = {
  "intel-vtd": INTEL,
  "amd-vi": AMD_VI,
  "arm-smmuv3": ARM,
};

/** The cost table of the default profile (`intel-vtd`). */
export const DEFAULT_COSTS: CostTable = INTEL;

/** The cost table of `profile`. */
export function profileCosts(profile: ProfileName): CostTable {
  return PROFILES[profile];
}

/** What `pageTableFormat` reads of a job. */
export interface PageTableFormatInputs {
  readonly kernel: KernelVersion;
  readonly machine: { readonly profile: ProfileName };
  readonly iommu: {
    readonly format?: IoPgtableFormat | "auto" | undefined;
    readonly granule: number;
    readonly cachingMode: boolean;
  };
}

/**
 * The page-table format of a job's domains (docs/page-table-formats.md): `iommu.format` when it
 * names one, else the format the profile's driver uses in the job's kernel. From 6.19 the
 * VT-d driver maps through generic_pt's x86-64 first-stage table
 * (`intel_iommu_domain_alloc_paging_flags`: "Prefer first stage if possible by default"), or
 * its vtd-ss second-stage table where the IOMMU offers no first stage: caching mode stands for
 * QEMU's emulated VT-d, whose default legacy mode has second-stage tables only (gate
 * iommupt-vtd); the AMD driver through amd-v1 (iommupt-amd); SMMUv3 through io-pgtable-arm.
 * Before 6.19 the Intel and AMD drivers' own table code is not modelled, and so is a 16 KiB
 * or 64 KiB granule in any but arm-lpae: those jobs run the arm-lpae table.
 */
export function pageTableFormat(job: PageTableFormatInputs): IoPgtableFormat {
  const f = job.iommu.format;
  if (f !== undefined && f !== "auto") return f;
  if (job.iommu.granule !== 4096) return "arm-lpae";
  switch (job.machine.profile) {
    case "intel-vtd":
      if (!kernelHas(job.kernel, "iommupt-vtd")) return "arm-lpae";
      return job.iommu.cachingMode ? "vtd-ss" : "x86-64";
    case "amd-vi":
      return kernelHas(job.kernel, "iommupt-amd") ? "amd-v1" : "arm-lpae";
    case "arm-smmuv3":
      return "arm-lpae";
  }
}

const IOMMUPT =
  'generic_pt\'s commit messages ("iommupt: Add the AMD IOMMU v1 page table format", 879ced2bab1b; "iommupt: Add the x86 64 bit page table format", aef5de756ea8): iommu_map of 4 KiB 65 ns (AMD v1) / 71 ns (x86-64), of 256 × 4 KiB 381 / 392 ns (io-pgtable before: 1833 / 1360), iommu_unmap of 4 KiB 76 / 77 ns';

/**
 * The page-table entries of a generic_pt table: one walk per map or unmap call, and about
 * 1.2 ns per further PTE ((381 - 65) / 255 on AMD v1), the economics of batching many pages
 * into one call that the two-step API relies on.
 */
const GENERIC_PT_PAGETABLE: Record<string, CostEntry> = {
  "pagetable.walk": {
    ns: 64,
    counters: ["pgtable.mapCalls", "pgtable.unmapCalls"],
    category: "pagetable",
    source: `${IOMMUPT}: the walk of one iommu_map / iommu_unmap call (a 4 KiB map less its PTE)`,
  },
  "pagetable.pte": {
    ns: 1.2,
    counters: ["pgtable.pteWrites"],
    category: "pagetable",
    source: `${IOMMUPT}: (381 - 65) / 255 ns per further 4 KiB PTE of a batched map`,
  },
};

/**
 * The cost table of a job whose device gets IOMMU mode `mode`: its profile's, with the
 * page-table entries of the code its format runs (`pageTableFormat`) when it has a page table:
 * io-pgtable-arm's as the profile prices them, generic_pt's from its commit messages.
 */
export function jobCosts(job: PageTableFormatInputs, mode: string): CostTable {
  const base = PROFILES[job.machine.profile];
  if (mode === "none" || mode === "passthrough" || pageTableFormat(job) === "arm-lpae") return base;
  return { ...base, ...GENERIC_PT_PAGETABLE };
}
