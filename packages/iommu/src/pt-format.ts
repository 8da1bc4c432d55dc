/**
 * What the common page-table core needs from a page-table format: how a PTE says "empty",
 * "table" or "leaf" (Linux `pt_load_entry_raw` of drivers/iommu/generic_pt, `iopte_leaf` and
 * `iopte_type` of io-pgtable-arm), where it points, which permissions a leaf grants, how the
 * hardware walker reads it, and how it decodes field by field for traces.
 *
 * Every format has 8-byte PTEs, handled as two little-endian 32-bit halves (`lo` holds bits
 * 31:0, `hi` bits 63:32). Levels are numbered as generic_pt numbers them: level 0 holds only
 * leaves, the top table has the highest level. Each format names its levels for display
 * (`levelNumber`): io-pgtable-arm counts down from the root to 3, the others keep generic_pt's
 * numbers.
 */
import type { IommuErrorCode } from "./errors.ts";
import type { IommuProt } from "./prot.ts";

/** The page-table formats modelled (docs/page-table-formats.md). */
export const IO_PGTABLE_FORMATS = ["arm-lpae", "amd-v1", "vtd-ss", "x86-64", "riscv"] as const;
/** A page-table format name. */
export type IoPgtableFormat = (typeof IO_PGTABLE_FORMATS)[number];

/** Which Linux code a format's map and unmap model. */
export type IoPgtableCode = "io-pgtable-arm" | "generic_pt";

/** One field of a PTE, decoded (for `trace` and the reports). */
export interface PteField {
  /** The field's name as the format's specification or Linux header names it ("OA", "IW"). */
  readonly name: string;
  /** The bit range, high first ("47:12") or one bit ("0"). */
  readonly bits: string;
  /** The field's value: the bits shifted down, or the address an address field holds. */
  readonly value: number;
  /** The value in words ("read-only", "0x1_2345_6000"). */
  readonly text: string;
}

/** The CPU-side decoding of one entry. */
export const PT_ENTRY = {
  /** Linux `PT_ENTRY_EMPTY`. */
  EMPTY: 0,
  /** Linux `PT_ENTRY_TABLE`: points at a lower table. */
  TABLE: 1,
  /** Linux `PT_ENTRY_OA`: a leaf, translating to an output address. */
  OA: 2,
} as const;
/** One of `PT_ENTRY`. */
export type PtEntryType = (typeof PT_ENTRY)[keyof typeof PT_ENTRY];

/** A page-table format's PTE semantics. Methods take the two 32-bit halves of the entry. */
export interface PtFormat {
  readonly name: IoPgtableFormat;
  /** The Linux code whose map/unmap semantics the table follows. */
  readonly code: IoPgtableCode;
  /**
   * How the CPU-side code reads an entry at `level` (Linux `pt_load_entry_raw`; io-pgtable-arm's
   * `iopte_leaf` test): empty, a table pointer, or a leaf.
   */
  entryType(lo: number, hi: number, level: number): PtEntryType;
  /**
   * How the IOMMU's walker reads an entry (the hardware's own rules, which for VT-d second stage
   * differ from Linux's: an entry with neither R nor W is not present).
   */
  deviceEntryType(lo: number, hi: number, level: number): PtEntryType;
  /** The physical address of the lower table a table entry points at (Linux `pt_table_pa`). */
  tableAddr(lo: number, hi: number): number;
  /**
   * The output address where a leaf entry's translation starts (Linux `pt_entry_oa`; for a
   * contiguous entry, the start of the whole contiguous range).
   */
  leafOa(lo: number, hi: number, level: number): number;
  /**
   * Log2 of the number of items a leaf entry spans (Linux `pt_entry_num_contig_lg2`): 0 for a
   * single item, more for AMD v1 contiguous sizes and the RISC-V 64 KiB NAPOT entry.
   */
  leafContigLg2(lo: number, hi: number, level: number): number;
  /** The `IOMMU_PROT` flags a leaf entry grants (what the device may do through it). */
  leafProt(lo: number, hi: number): IommuProt;
  /** The entry decoded field by field. */
  fields(lo: number, hi: number, level: number, type: PtEntryType): PteField[];
  /** The number the format's documents give the table level (arm: 3 for the leaf level). */
  levelNumber(level: number): number;
}

/** A generic_pt format: its constants and its `pt_install_*` / `pt_iommu_set_prot`. */
export interface GenericPtFormat extends PtFormat {
  /** Linux `PT_MAX_TOP_LEVEL`. */
  readonly maxTopLevel: number;
  /** Linux `PT_MAX_OUTPUT_ADDRESS_LG2`. */
  readonly maxOaLg2: number;
  /** Sizes (bytes, ascending) a leaf at `level` can have (Linux `pt_possible_sizes`). */
  possibleSizes(level: number): readonly number[];
  /** The error `pt_iommu_set_prot` returns for `prot`, if any. */
  protError(prot: IommuProt): { code: IommuErrorCode; message: string } | undefined;
  /** The leaf attribute bits for `prot` (`pt_iommu_set_prot`), low and high half. */
  protLo(prot: IommuProt): number;
  protHi(prot: IommuProt): number;
  /** A leaf entry of 2^`oaszLg2` bytes at `oa` (`pt_install_leaf_entry`), low and high half. */
  leafLo(oa: number, level: number, oaszLg2: number, attrLo: number): number;
  leafHi(oa: number, level: number, oaszLg2: number, attrHi: number): number;
  /** A table entry at `level` pointing at `pa` (`pt_install_table`), low and high half. */
  tableLo(pa: number, level: number): number;
  tableHi(pa: number, level: number): number;
}

/** `0x1234_5678` style hex for PTE field texts. */
export function fieldHex(value: number): string {
  return `0x${value.toString(16)}`;
}

/** A one-bit field. */
export function bitField(name: string, bit: number, set: boolean, text: string): PteField {
  return { name, bits: String(bit), value: set ? 1 : 0, text };
}

/** A multi-bit field. */
export function rangeField(
  name: string,
  high: number,
  low: number,
  value: number,
  text: string,
): PteField {
  return { name, bits: `${high}:${low}`, value, text };
}

/** The low-half bit `mask` (a 32-bit quantity) is set in `lo`. */
export function loBit(lo: number, mask: number): boolean {
  // eslint-disable-next-line no-bitwise -- PTE halves are 32-bit quantities
  return (lo & mask) !== 0;
}

/** `(half >>> shift) & mask` of a 32-bit PTE half. */
export function halfBits(half: number, shift: number, mask: number): number {
  // eslint-disable-next-line no-bitwise -- PTE halves are 32-bit quantities
  return (half >>> shift) & mask;
}
