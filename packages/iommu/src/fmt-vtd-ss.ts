/**
 * The `vtd-ss` page-table format: Intel VT-d second-stage tables (drivers/iommu/generic_pt/
 * fmt/vtdss.h; VT-d specification "Second-Stage Translation", "Second-Stage Paging Entries").
 * 3, 4 or 5 levels (39, 48 or 57-bit, from the VA size) of 512 8-byte entries; leaves at
 * levels 0, 1 and 2 (4 KiB, 2 MiB, 1 GiB).
 *
 * Among the formats it alone has no present bit: the IOMMU treats an entry with neither R nor
 * W as not present, and Linux every entry that is not zero as present (`vtdss_pt_load_entry_raw`),
 * so `pt_iommu_set_prot` refuses a prot with neither IOMMU_READ nor IOMMU_WRITE (EINVAL).
 *
 * PTE layout (64-bit, little-endian):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | R: read (IOMMU_READ; always set on tables) |
 * | 1     | W: write (IOMMU_WRITE; always set on tables) |
 * | 7     | PS: a leaf at level 1 or 2 (2 MiB / 1 GiB page) |
 * | 8     | A: accessed (second-stage A/D tracking) |
 * | 9     | D: dirty |
 * | 11    | SNP: snoop (PT_FEAT_VTDSS_FORCE_COHERENCE; not set for DMA domains) |
 * | 51:12 | output address |
 */
import { TWO_POW_32, fastMod } from "@dmasim/bvec";
import type { IommuErrorCode } from "./errors.ts";
import { IOMMU_PROT, type IommuProt } from "./prot.ts";
import {
  type GenericPtFormat,
  PT_ENTRY,
  type PtEntryType,
  type PteField,
  bitField,
  fieldHex,
  halfBits,
  loBit,
  rangeField,
} from "./pt-format.ts";

const R = 0x1;
const W = 0x2;
const PS = 0x80;
const A = 0x100;
const D = 0x200;
const SNP = 0x800;

/** The VT-d second-stage format. */
export class VtdSsFormat implements GenericPtFormat {
  readonly name = "vtd-ss" as const;
  readonly code = "generic_pt" as const;
  readonly maxTopLevel = 4;
  readonly maxOaLg2 = 52;

  /** Linux's reading: every non-zero entry is present. */
  entryType(lo: number, hi: number, level: number): PtEntryType {
    if (lo === 0 && hi === 0) return PT_ENTRY.EMPTY;
    return level === 0 || (level <= 2 && loBit(lo, PS)) ? PT_ENTRY.OA : PT_ENTRY.TABLE;
  }

  /** The IOMMU's reading: an entry with neither R nor W is not present. */
  deviceEntryType(lo: number, hi: number, level: number): PtEntryType {
    // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
    if ((lo & (R | W)) === 0) return PT_ENTRY.EMPTY;
    return this.entryType(lo, hi, level);
  }

  tableAddr(lo: number, hi: number): number {
    return halfBits(lo, 12, 0xfffff) * 4096 + halfBits(hi, 0, 0xfffff) * TWO_POW_32;
  }

  leafOa(lo: number, hi: number): number {
    return this.tableAddr(lo, hi);
  }

  leafContigLg2(): number {
    return 0;
  }

  leafProt(lo: number): IommuProt {
    return (loBit(lo, R) ? IOMMU_PROT.READ : 0) + (loBit(lo, W) ? IOMMU_PROT.WRITE : 0);
  }

  possibleSizes(level: number): readonly number[] {
    return level <= 2 ? [2 ** (12 + 9 * level)] : [];
  }

  /** `vtdss_pt_iommu_set_prot`: "VTDSS does not have a present bit", so R or W is needed. */
  protError(prot: IommuProt): { code: IommuErrorCode; message: string } | undefined {
    // eslint-disable-next-line no-bitwise -- prot is a 6-bit flag set
    if ((prot & (IOMMU_PROT.READ | IOMMU_PROT.WRITE)) !== 0) return undefined;
    return {
      code: "EINVAL",
      message: "vtd-ss has no present bit: a leaf needs IOMMU_READ or IOMMU_WRITE",
    };
  }

  protLo(prot: IommuProt): number {
    // eslint-disable-next-line no-bitwise -- prot is a 6-bit flag set, the result a PTE half
    return (prot & IOMMU_PROT.READ ? R : 0) | (prot & IOMMU_PROT.WRITE ? W : 0);
  }

  protHi(): number {
    return 0;
  }

  leafLo(oa: number, level: number, _lg: number, attrLo: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (fastMod(oa, TWO_POW_32) | attrLo | (level !== 0 ? PS : 0)) >>> 0;
  }

  leafHi(oa: number, _level: number, _lg: number, attrHi: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (Math.floor(oa / TWO_POW_32) | attrHi) >>> 0;
  }

  /** `vtdss_pt_install_table`: R | W. */
  tableLo(pa: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (fastMod(pa, TWO_POW_32) | R | W) >>> 0;
  }

  tableHi(pa: number): number {
    return Math.floor(pa / TWO_POW_32);
  }

  fields(lo: number, hi: number, level: number, type: PtEntryType): PteField[] {
    const isTable = type === PT_ENTRY.TABLE;
    const addr = this.tableAddr(lo, hi);
    const out: PteField[] = [
      bitField("R", 0, loBit(lo, R), loBit(lo, R) ? "readable" : "no reads"),
      bitField("W", 1, loBit(lo, W), loBit(lo, W) ? "writable" : "no writes"),
    ];
    if (level === 1 || level === 2)
      out.push(bitField("PS", 7, loBit(lo, PS), loBit(lo, PS) ? "page" : "table"));
    out.push(
      bitField("A", 8, loBit(lo, A), loBit(lo, A) ? "accessed" : "not accessed"),
      bitField("D", 9, loBit(lo, D), loBit(lo, D) ? "dirty" : "clean"),
      bitField("SNP", 11, loBit(lo, SNP), loBit(lo, SNP) ? "snoop" : "no snoop forced"),
      rangeField("OA", 51, 12, addr, isTable ? `next table at ${fieldHex(addr)}` : fieldHex(addr)),
    );
    return out;
  }

  levelNumber(level: number): number {
    return level;
  }
}
