/**
 * The `x86-64` page-table format: 4-level (48-bit) x86 paging as the IOMMUs read it, VT-d's
 * first stage and AMD's v2 table (drivers/iommu/generic_pt/fmt/x86_64.h; Intel SDM Vol. 3
 * "4-Level Paging and 5-Level Paging", VT-d specification "First-Stage Paging Entries").
 * Levels of 512 8-byte entries; leaves at levels 0 (PTE, 4 KiB), 1 (PDE, 2 MiB) and 2 (PDPTE,
 * 1 GiB). The IOVA space is sign-extended (PT_FEAT_SIGN_EXTEND): a lower half from 0 and an
 * upper half below 2^64, the top table's second half; DMA uses the lower half.
 *
 * PTE layout (64-bit, little-endian):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | P: present |
 * | 1     | R/W: writable (IOMMU_WRITE; always set on tables) |
 * | 2     | U/S: user (always set: Linux `x86_64_pt_iommu_set_prot`) |
 * | 5     | A: accessed (set by Linux on every entry it writes) |
 * | 6     | D: dirty (set with R/W on leaves) |
 * | 7     | PS: a leaf at level 1 or 2 (2 MiB / 1 GiB page) |
 * | 51:12 | output address |
 * | 63    | XD: execute disable (not set by Linux for the IOMMU) |
 *
 * A present entry can always be read: x86 paging has no read permission bit.
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

const P = 0x1;
const RW = 0x2;
const U = 0x4;
const A = 0x20;
const D = 0x40;
const PS = 0x80;
/** High-half bit 31: PTE bit 63. */
const XD = 0x80000000;

/** The x86-64 format. */
export class X86_64Format implements GenericPtFormat {
  readonly name = "x86-64" as const;
  readonly code = "generic_pt" as const;
  readonly maxTopLevel = 4;
  readonly maxOaLg2 = 52;

  entryType(lo: number, _hi: number, level: number): PtEntryType {
    if (!loBit(lo, P)) return PT_ENTRY.EMPTY;
    return level === 0 || (level <= 2 && loBit(lo, PS)) ? PT_ENTRY.OA : PT_ENTRY.TABLE;
  }

  deviceEntryType(lo: number, hi: number, level: number): PtEntryType {
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

  leafProt(lo: number, hi: number): IommuProt {
    return (
      IOMMU_PROT.READ +
      (loBit(lo, RW) ? IOMMU_PROT.WRITE : 0) +
      (loBit(hi, XD) ? IOMMU_PROT.NOEXEC : 0) +
      (loBit(lo, U) ? 0 : IOMMU_PROT.PRIV)
    );
  }

  possibleSizes(level: number): readonly number[] {
    return level <= 2 ? [2 ** (12 + 9 * level)] : [];
  }

  protError(): { code: IommuErrorCode; message: string } | undefined {
    return undefined;
  }

  /** `x86_64_pt_iommu_set_prot`: U | A, and R/W | D for IOMMU_WRITE. */
  protLo(prot: IommuProt): number {
    // eslint-disable-next-line no-bitwise -- prot is a 6-bit flag set, the result a PTE half
    return U | A | (prot & IOMMU_PROT.WRITE ? RW | D : 0);
  }

  protHi(): number {
    return 0;
  }

  leafLo(oa: number, level: number, _lg: number, attrLo: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (fastMod(oa, TWO_POW_32) | P | attrLo | (level !== 0 ? PS : 0)) >>> 0;
  }

  leafHi(oa: number, _level: number, _lg: number, attrHi: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (Math.floor(oa / TWO_POW_32) | attrHi) >>> 0;
  }

  /** `x86_64_pt_install_table`: P | R/W | U | A. */
  tableLo(pa: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (fastMod(pa, TWO_POW_32) | P | RW | U | A) >>> 0;
  }

  tableHi(pa: number): number {
    return Math.floor(pa / TWO_POW_32);
  }

  fields(lo: number, hi: number, level: number, type: PtEntryType): PteField[] {
    const isTable = type === PT_ENTRY.TABLE;
    const addr = this.tableAddr(lo, hi);
    const out: PteField[] = [
      bitField("P", 0, loBit(lo, P), loBit(lo, P) ? "present" : "not present"),
      bitField("R/W", 1, loBit(lo, RW), loBit(lo, RW) ? "writable" : "read-only"),
      bitField("U/S", 2, loBit(lo, U), loBit(lo, U) ? "user" : "supervisor"),
      bitField("A", 5, loBit(lo, A), loBit(lo, A) ? "accessed" : "not accessed"),
      bitField("D", 6, loBit(lo, D), loBit(lo, D) ? "dirty" : "clean"),
    ];
    if (level === 1 || level === 2)
      out.push(bitField("PS", 7, loBit(lo, PS), loBit(lo, PS) ? "page" : "table"));
    out.push(
      rangeField("OA", 51, 12, addr, isTable ? `next table at ${fieldHex(addr)}` : fieldHex(addr)),
      bitField("XD", 63, loBit(hi, XD), loBit(hi, XD) ? "execute disable" : "executable"),
    );
    return out;
  }

  levelNumber(level: number): number {
    return level;
  }
}
