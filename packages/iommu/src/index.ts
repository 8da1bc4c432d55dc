/**
 * @dmasim/iommu — the IOMMU layer of dmasim: domains, I/O page tables in simulated memory, the
 * IOVA allocator with its per-CPU caches, the IOTLB, the flush queue, and device-side
 * translation that returns faults as data.
 *
 * How the pieces connect (and how dma-core builds on them):
 *
 * - `IommuDomain` (struct iommu_domain) owns an `IoPageTable` when it is a paging domain (DMA,
 *   DMA_FQ, unmanaged) and tags its entries in an `Iotlb` (shared per IOMMU, or private).
 *   `map`/`mapNosync`/`syncMap` are `iommu_map`/`iommu_map_nosync`/`iommu_sync_map`;
 *   `unmapFast(iova, size, gather)` + `iotlbSync(gather)` are `iommu_unmap_fast` +
 *   `iommu_iotlb_sync`; `flushIotlbAll()` is the whole-domain invalidation.
 * - `IovaDomain` (struct iova_domain) hands out IOVA pfns: `allocIovaFast`/`freeIovaFast` are
 *   what `iommu_dma_alloc_iova`/`iommu_dma_free_iova` call (32-bit-first policy: try
 *   `allocIovaFast(n, 0xFFFFFFFF >> shift, false, cpu)`, then the full limit with
 *   `flushRcache = true`).
 * - Strict unmap (dma-core `__iommu_dma_unmap` on a DMA domain): `unmapFast` into a fresh
 *   `IotlbGather`, `iotlbSync`, then `freeIovaFast`.
 * - Lazy unmap (DMA_FQ): set `gather.queued = true`, `unmapFast`, then
 *   `FlushQueue.queueIova(pfn, pages, gather.freelist, cpu)`; the queue frees the IOVA and the
 *   table pages after a whole-domain flush that started after the entry was queued.
 * - Devices reach memory through `translate`/`translateInto`: IOTLB first, table walk on a
 *   miss, permission checks, fault records in the domain's `faultLog`. A translation served from
 *   an IOTLB entry whose leaf was unmapped but not yet invalidated counts as a stale hit: the
 *   lazy-mode exposure window. `FlushQueue.exposure()` reports the unmap-to-invalidation time.
 */
export { IommuError, type IommuErrorCode } from "./errors.ts";
export {
  DMA_ACCESS,
  type DmaAccess,
  IOMMU_DOMAIN,
  IOMMU_DOMAIN_FLAG,
  IOMMU_DOMAIN_NAMES,
  IOMMU_PROT,
  IOMMU_PROT_ALL,
  type IommuDomainType,
  type IommuProt,
  domainTypeHas,
  protName,
} from "./prot.ts";
export { type PgsizeChoice, iommuPgsize, pgsizeList } from "./pgsize.ts";
export {
  type FreedTablePage,
  type GatherSyncTarget,
  IotlbGather,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
  iommuIotlbGatherQueued,
} from "./iotlb-gather.ts";
export { IO_PGTABLE_GRANULES, type IoPgtableGranule, PTE_HI, PTE_LO } from "./fmt-arm-lpae.ts";
export { IoPageTable, type IoPgtableConfig } from "./io-pgtable.ts";
export { iommuMapRaw, iommuUnmapRaw, type PageSizeTarget } from "./iommu-core.ts";
export type { MappedBytes } from "./pt-core.ts";
export {
  IO_PGTABLE_FORMATS,
  type IoPgtableCode,
  type IoPgtableFormat,
  type PteField,
} from "./pt-format.ts";
export type {
  IoPgtableCounter,
  IoPgtableTlbOps,
  LeafLookup,
  PteDumpEntry,
  WalkResult,
  WalkStep,
} from "./pt-types.ts";
export { type IovaRange } from "./iova-tree.ts";
export {
  IOVA_ANCHOR,
  type IovaCounter,
  IovaDomain,
  type IovaDomainOptions,
} from "./iova-domain.ts";
export { IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE, IOVA_RANGE_CACHE_MAX_SIZE } from "./iova-rcache.ts";
export { Iotlb, type IotlbCounter, type IotlbEntry, type IotlbOptions } from "./iotlb.ts";
export { FAULT_REASON, FaultLog, type FaultReason, type IommuFault } from "./fault.ts";
export {
  IommuDomain,
  type IommuDomainCounter,
  type IommuDomainGeometry,
  type IommuDomainOptions,
} from "./iommu-domain.ts";
export {
  FlushQueue,
  type FlushQueueCounter,
  type FlushQueueDomain,
  type FlushQueueOptions,
  IOVA_DEFAULT_FQ_SIZE,
  IOVA_DEFAULT_FQ_TIMEOUT_NS,
  IOVA_SINGLE_FQ_SIZE,
  IOVA_SINGLE_FQ_TIMEOUT_NS,
} from "./flush-queue.ts";
export { type HistogramBin, type HistogramSummary, NsHistogram } from "./histogram.ts";
export {
  type PhysRun,
  type TranslateResult,
  TranslationBuffer,
  translate,
  translateInto,
} from "./translate.ts";
