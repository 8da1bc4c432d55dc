/**
 * The IOTLB gather (struct iommu_iotlb_gather): the IOVA range, page size and freed page-table
 * pages an unmap collects, so that one range invalidation covers many cleared entries.
 */
import { MAX_ADDR } from "@dmasim/bvec";

/** What a gather needs from its domain: the sync that invalidates and re-initialises it. */
export interface GatherSyncTarget {
  /** Linux `iommu_iotlb_sync`. */
  iotlbSync(gather: IotlbGather): void;
}

/** A page-table page freed by an unmap, waiting for the invalidation that makes it safe. */
export interface FreedTablePage {
  /** First CPU page frame of the table. */
  readonly pfn: number;
  /** Page-allocator order of the block. */
  readonly order: number;
}

/** Linux `struct iommu_iotlb_gather` {start, end, pgsize, freelist, queued}. */
export class IotlbGather {
  /** Lowest IOVA gathered (MAX_ADDR when empty, as Linux uses ULONG_MAX). */
  start = MAX_ADDR;
  /** Last byte gathered, inclusive (0 when empty). */
  end = 0;
  /** Page size of the pages gathered so far (0 when none). */
  pgsize = 0;
  /** Page-table pages freed by the unmap; released after the invalidation (or by the flush queue). */
  freelist: FreedTablePage[] = [];
  /** Set by the lazy (flush-queue) unmap path: the page table then records no per-page invalidation. */
  queued = false;
}

/** Linux `iommu_iotlb_gather_init`: an empty gather. */
export function iommuIotlbGatherInit(gather: IotlbGather): void {
  gather.start = MAX_ADDR;
  gather.end = 0;
  gather.pgsize = 0;
  gather.freelist = [];
  gather.queued = false;
}

/** Linux `iommu_iotlb_gather_add_range`: widens the gathered range to cover `[iova, iova+size)`. */
export function iommuIotlbGatherAddRange(gather: IotlbGather, iova: number, size: number): void {
  const end = iova + size - 1;
  if (iova < gather.start) gather.start = iova;
  if (end > gather.end) gather.end = end;
}

/**
 * Linux `iommu_iotlb_gather_is_disjoint`: true when `[iova, iova+size)` neither overlaps nor
 * touches the gathered range (adjacent ranges merge).
 */
export function iommuIotlbGatherIsDisjoint(
  gather: IotlbGather,
  iova: number,
  size: number,
): boolean {
  const end = iova + size - 1;
  return gather.end !== 0 && (end + 1 < gather.start || iova > gather.end + 1);
}

/**
 * Linux `iommu_iotlb_gather_add_page`: a page-size change or a disjoint range syncs what was
 * gathered first, then the page is added.
 */
export function iommuIotlbGatherAddPage(
  domain: GatherSyncTarget,
  gather: IotlbGather,
  iova: number,
  size: number,
): void {
  if (
    (gather.pgsize !== 0 && gather.pgsize !== size) ||
    iommuIotlbGatherIsDisjoint(gather, iova, size)
  ) {
    domain.iotlbSync(gather);
  }
  gather.pgsize = size;
  iommuIotlbGatherAddRange(gather, iova, size);
}

/** Linux `iommu_iotlb_gather_queued`: true when the gather belongs to a lazy (queued) unmap. */
export function iommuIotlbGatherQueued(gather: IotlbGather | undefined): boolean {
  return gather !== undefined && gather.queued;
}
