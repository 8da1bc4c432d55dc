/**
 * The public shapes of the I/O page table: walks, leaf lookups, dumps, counters and the IOTLB
 * callbacks (shared by every format).
 */
import type { IotlbGather } from "./iotlb-gather.ts";
import type { IommuProt } from "./prot.ts";
import type { PteField } from "./pt-format.ts";

/**
 * Callbacks into the IOTLB layer, as io-pgtable's `iommu_flush_ops`: `addPage` records one
 * cleared leaf in the gather (`io_pgtable_tlb_add_page`); `flushWalk` synchronously invalidates
 * a range whose table was torn down (`io_pgtable_tlb_flush_walk`). generic_pt calls the
 * domain's `iommu_iotlb_sync` itself (`sync`): after a map replaced tables by a leaf, and before
 * gathering a disjoint range when the table flushes ranges without gaps.
 */
export interface IoPgtableTlbOps {
  addPage(gather: IotlbGather, iova: number, size: number): void;
  flushWalk(iova: number, size: number): void;
  sync?(gather: IotlbGather): void;
}

/** One step of a walk: the table read at a level and the entry found there. */
export interface WalkStep {
  /** The level, numbered as the format numbers it (`PtFormat.levelNumber`). */
  readonly level: number;
  readonly tableAddr: number;
  readonly index: number;
  readonly pteAddr: number;
  readonly pteHi: number;
  readonly pteLo: number;
  readonly pte: string;
}

/** What a walk found for one IOVA. */
export interface WalkResult {
  /** True when a leaf maps the IOVA. */
  readonly present: boolean;
  /** Level of the last entry read, numbered as the format numbers it. */
  readonly level: number;
  /** Size of the leaf page or block (0 when not present); a contiguous entry's whole size. */
  readonly pageSize: number;
  /** The IOVA at which the leaf starts. */
  readonly iovaBase: number;
  /** The physical address the IOVA translates to (0 when not present). */
  readonly phys: number;
  /** The leaf's prot flags (0 when not present). */
  readonly prot: IommuProt;
  /** The last entry read, as halves and as hex. */
  readonly pteHi: number;
  readonly pteLo: number;
  readonly pte: string;
  /** Physical address of the table holding that entry, and of the entry itself. */
  readonly tableAddr: number;
  readonly pteAddr: number;
  /** Every level read, root first. */
  readonly steps: readonly WalkStep[];
}

/** A leaf lookup written into a caller-owned object (for the translation hot path). */
export interface LeafLookup {
  /** Physical address of the start of the leaf page/block (valid when the lookup returned true). */
  pagePhys: number;
  /** IOVA at which the leaf starts. */
  pageIova: number;
  /** Leaf size in bytes (a contiguous entry's whole size). */
  pageSize: number;
  /** Leaf prot flags. */
  prot: IommuProt;
}

/** One entry of a dump. */
export interface PteDumpEntry {
  /** The level, numbered as the format numbers it. */
  readonly level: number;
  readonly index: number;
  readonly iova: number;
  readonly kind: "table" | "block" | "page";
  /** Bytes the entry covers (one item; a contiguous entry's items are listed one by one). */
  readonly size: number;
  /** Output address (next table or mapped memory) of this item. */
  readonly addr: number;
  readonly prot: IommuProt;
  readonly pte: string;
  readonly tableAddr: number;
  /** The entry decoded by its format, field by field. */
  readonly fields: readonly PteField[];
}

/** Counter names of `IoPageTable`. */
export type IoPgtableCounter =
  | "mapCalls"
  | "unmapCalls"
  | "mapFailures"
  | "pteWrites"
  | "pteReads"
  | "walks"
  | "walkCacheHits"
  | "walkMemReads"
  | "tablePagesAllocated"
  | "tablePagesFreed"
  | "leavesMapped"
  | "leavesUnmapped"
  | "partialBlockUnmaps";

/** The counters, in report order. */
export const IO_PGTABLE_COUNTERS: readonly IoPgtableCounter[] = [
  "mapCalls",
  "unmapCalls",
  "mapFailures",
  "pteWrites",
  "pteReads",
  "walks",
  "walkCacheHits",
  "walkMemReads",
  "tablePagesAllocated",
  "tablePagesFreed",
  "leavesMapped",
  "leavesUnmapped",
  "partialBlockUnmaps",
];

/** A PTE as hex, high half first ("0x00000001_00007467"). */
export function formatPte(hi: number, lo: number): string {
  return `0x${hi.toString(16).padStart(8, "0")}_${lo.toString(16).padStart(8, "0")}`;
}
