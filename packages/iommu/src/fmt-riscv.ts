/**
 * The `riscv` page-table format: RISC-V Sv39, Sv48 and Sv57 tables as the RISC-V IOMMU reads
 * them (drivers/iommu/generic_pt/fmt/riscv.h; the RISC-V privileged specification's "Sv39",
 * "Sv48", "Sv57" and the "Svnapot" extension). 3, 4 or 5 levels of 512 8-byte entries, a leaf
 * possible at every level, and at level 0 a 64 KiB NAPOT leaf: 16 equal entries with N set and
 * the low PPN bits 1000. The IOVA space is sign-extended (PT_FEAT_SIGN_EXTEND).
 *
 * PTE layout (64-bit, little-endian):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | V: valid |
 * | 1     | R: readable (IOMMU_READ, and with IOMMU_WRITE) |
 * | 2     | W: writable (IOMMU_WRITE) |
 * | 3     | X: executable (unless IOMMU_NOEXEC) |
 * | 4     | U: user (always set on leaves) |
 * | 5     | G: global |
 * | 6     | A: accessed (always set on leaves) |
 * | 7     | D: dirty (set with W) |
 * | 9:8   | RSW: reserved for software |
 * | 53:10 | PPN: physical page number (the output address / 4 KiB) |
 * | 62:61 | PBMT: memory type (Svpbmt; not used by the RISC-V IOMMU driver) |
 * | 63    | N: NAPOT (a 64 KiB leaf with PPN[3:0] = 1000) |
 *
 * A valid entry with none of R, W, X points at the next table.
 */
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

const V = 0x1;
const R = 0x2;
const W = 0x4;
const X = 0x8;
const U = 0x10;
const G = 0x20;
const A = 0x40;
const D = 0x80;
/** High-half bit 31: PTE bit 63. */
const N = 0x80000000;
/** PPN bit 3 (PTE bit 13): the Svnapot 64 KiB encoding of ppn[3:0]. */
const NAPOT_64K = 0x2000;

/** The PPN (bits 53:10). */
function ppn(lo: number, hi: number): number {
  return halfBits(lo, 10, 0x3fffff) + halfBits(hi, 0, 0x3fffff) * 2 ** 22;
}

/** The RISC-V format. */
export class RiscvFormat implements GenericPtFormat {
  readonly name = "riscv" as const;
  readonly code = "generic_pt" as const;
  readonly maxTopLevel = 4;
  readonly maxOaLg2 = 56;

  entryType(lo: number, _hi: number, level: number): PtEntryType {
    if (!loBit(lo, V)) return PT_ENTRY.EMPTY;
    return level === 0 || loBit(lo, R + W + X) ? PT_ENTRY.OA : PT_ENTRY.TABLE;
  }

  deviceEntryType(lo: number, hi: number, level: number): PtEntryType {
    return this.entryType(lo, hi, level);
  }

  tableAddr(lo: number, hi: number): number {
    return ppn(lo, hi) * 4096;
  }

  leafOa(lo: number, hi: number): number {
    const p = ppn(lo, hi);
    // A NAPOT entry: the PPN with its low four bits (the 1000 encoding) cleared.
    return (loBit(hi, N) ? p - (p % 16) : p) * 4096;
  }

  leafContigLg2(_lo: number, hi: number): number {
    return loBit(hi, N) ? 4 : 0;
  }

  leafProt(lo: number): IommuProt {
    return (
      (loBit(lo, R) ? IOMMU_PROT.READ : 0) +
      (loBit(lo, W) ? IOMMU_PROT.WRITE : 0) +
      (loBit(lo, X) ? 0 : IOMMU_PROT.NOEXEC) +
      (loBit(lo, U) ? 0 : IOMMU_PROT.PRIV)
    );
  }

  /** Every level has its item size; level 0 the 64 KiB NAPOT size too (PT_FEAT_RISCV_SVNAPOT_64K). */
  possibleSizes(level: number): readonly number[] {
    return level === 0 ? [4096, 65536] : [2 ** (12 + 9 * level)];
  }

  /** `riscvpt_iommu_set_prot`: "Caller must specify a supported combination of flags". */
  protError(prot: IommuProt): { code: IommuErrorCode; message: string } | undefined {
    if (loBit(this.protLo(prot), R + W + X)) return undefined;
    return { code: "EOPNOTSUPP", message: `riscv: prot ${prot} gives a leaf none of R, W, X` };
  }

  /** `riscvpt_iommu_set_prot`: A | U; W | R | D for IOMMU_WRITE; R for IOMMU_READ; X unless IOMMU_NOEXEC. */
  protLo(prot: IommuProt): number {
    /* eslint-disable no-bitwise -- prot is a 6-bit flag set, the result a PTE half */
    let pte = A | U;
    if (prot & IOMMU_PROT.WRITE) pte |= W | R | D;
    if (prot & IOMMU_PROT.READ) pte |= R;
    if (!(prot & IOMMU_PROT.NOEXEC)) pte |= X;
    return pte;
    /* eslint-enable no-bitwise */
  }

  protHi(): number {
    return 0;
  }

  private ppnLo(pa: number): number {
    return ((pa / 4096) % 2 ** 22) * 1024;
  }

  private ppnHi(pa: number): number {
    return Math.floor(pa / 4096 / 2 ** 22);
  }

  leafLo(oa: number, level: number, lg: number, attrLo: number): number {
    const napot = level === 0 && lg !== 12 ? NAPOT_64K : 0;
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (this.ppnLo(oa) | V | attrLo | napot) >>> 0;
  }

  leafHi(oa: number, level: number, lg: number, attrHi: number): number {
    const napot = level === 0 && lg !== 12 ? N : 0;
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (this.ppnHi(oa) | attrHi | napot) >>> 0;
  }

  /** `riscvpt_install_table`: V and the PPN. */
  tableLo(pa: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (this.ppnLo(pa) | V) >>> 0;
  }

  tableHi(pa: number): number {
    return this.ppnHi(pa);
  }

  fields(lo: number, hi: number, _level: number, type: PtEntryType): PteField[] {
    const isTable = type === PT_ENTRY.TABLE;
    const addr = isTable ? this.tableAddr(lo, hi) : this.leafOa(lo, hi);
    const pbmt = halfBits(hi, 29, 3);
    const f = (name: string, bit: number, mask: number, on: string, off: string): PteField =>
      bitField(name, bit, loBit(lo, mask), loBit(lo, mask) ? on : off);
    return [
      f("V", 0, V, "valid", "invalid"),
      f("R", 1, R, "readable", "no reads"),
      f("W", 2, W, "writable", "no writes"),
      f("X", 3, X, "executable", "no execute"),
      f("U", 4, U, "user", "supervisor"),
      f("G", 5, G, "global", "not global"),
      f("A", 6, A, "accessed", "not accessed"),
      f("D", 7, D, "dirty", "clean"),
      rangeField("RSW", 9, 8, halfBits(lo, 8, 3), fieldHex(halfBits(lo, 8, 3))),
      rangeField("PPN", 53, 10, addr, isTable ? `next table at ${fieldHex(addr)}` : fieldHex(addr)),
      rangeField("PBMT", 62, 61, pbmt, pbmt === 0 ? "PMA" : pbmt === 1 ? "NC" : "IO"),
      bitField("N", 63, loBit(hi, N), loBit(hi, N) ? "NAPOT 64 KiB" : "not NAPOT"),
    ];
  }

  levelNumber(level: number): number {
    return level;
  }
}
