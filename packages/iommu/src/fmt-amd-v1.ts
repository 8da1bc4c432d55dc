/**
 * The `amd-v1` page-table format: AMD IOMMU v1 host page tables (drivers/iommu/generic_pt/
 * fmt/amdv1.h; AMD I/O Virtualization Technology Specification, "I/O Page Tables for Host
 * Translations"). Up to 6 levels of 512 8-byte entries (level 5, the top one, holds no leaves);
 * the AMD driver starts at 3 levels and grows the top as IOVAs need it (PT_FEAT_DYNAMIC_TOP).
 *
 * PTE layout (64-bit, little-endian):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | PR: present |
 * | 6     | D: dirty (set by the IOMMU on a write) |
 * | 11:9  | NEXT_LEVEL: 0 = a leaf of the item size; 7 = a leaf whose size the OA encodes; else the level of the next table (its AMD "mode") |
 * | 51:12 | OA: output address; with NEXT_LEVEL 7 the low OA bits hold a run of ones, the page size being 2^(ones + 13) |
 * | 60    | FC: force coherent (always set: PT_FEAT_AMDV1_FORCE_COHERENCE is forced on) |
 * | 61    | IR: read permission (IOMMU_READ; always set on tables) |
 * | 62    | IW: write permission (IOMMU_WRITE; always set on tables) |
 *
 * Every power-of-two page size from 4 KiB to 2^51 is a leaf, except 512 GiB (a hardware bug,
 * Linux `amdv1pt_possible_sizes`): sizes between item sizes are contiguous runs of identical
 * PTEs with NEXT_LEVEL 7 (a 64 KiB page is 16 equal entries of the 4 KiB level).
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

/** Low-half bits. */
const PR = 0x1;
const D = 0x40;
/** High-half bits (bit n of the PTE is bit n - 32 of the high half). */
const FC = 0x10000000;
const IR = 0x20000000;
const IW = 0x40000000;
const NL_DEFAULT = 0;
const NL_SIZE = 7;

/** Trailing one bits of a 20-bit value. */
function trailingOnes(x: number, width: number): number {
  let n = 0;
  let v = x;
  while (n < width && v % 2 === 1) {
    v = (v - 1) / 2;
    n++;
  }
  return n;
}

/** The OA field (bits 51:12) in units of 4 KiB. */
function oaField(lo: number, hi: number): number {
  return halfBits(lo, 12, 0xfffff) + halfBits(hi, 0, 0xfffff) * 2 ** 20;
}

/** Linux `ffz` of the OA field: the length of the run of ones in its low bits. */
function oaOnes(lo: number, hi: number): number {
  const low = trailingOnes(halfBits(lo, 12, 0xfffff), 20);
  return low < 20 ? low : 20 + trailingOnes(halfBits(hi, 0, 0xfffff), 20);
}

function nextLevel(lo: number): number {
  return halfBits(lo, 9, 7);
}

/** The AMD v1 format. */
export class AmdV1Format implements GenericPtFormat {
  readonly name = "amd-v1" as const;
  readonly code = "generic_pt" as const;
  readonly maxTopLevel = 5;
  readonly maxOaLg2 = 52;

  entryType(lo: number, _hi: number, level: number): PtEntryType {
    if (!loBit(lo, PR)) return PT_ENTRY.EMPTY;
    const nl = nextLevel(lo);
    return level === 0 || nl === NL_DEFAULT || nl === NL_SIZE ? PT_ENTRY.OA : PT_ENTRY.TABLE;
  }

  deviceEntryType(lo: number, hi: number, level: number): PtEntryType {
    return this.entryType(lo, hi, level);
  }

  tableAddr(lo: number, hi: number): number {
    return oaField(lo, hi) * 4096;
  }

  leafOa(lo: number, hi: number): number {
    const oa = oaField(lo, hi);
    if (nextLevel(lo) !== NL_SIZE) return oa * 4096;
    const sz = oaOnes(lo, hi);
    return (oa - fastMod(oa, 2 ** (sz + 1))) * 4096;
  }

  leafContigLg2(lo: number, hi: number, level: number): number {
    if (nextLevel(lo) !== NL_SIZE) return 0;
    return oaOnes(lo, hi) + 13 - (12 + 9 * level);
  }

  leafProt(_lo: number, hi: number): IommuProt {
    return (loBit(hi, IR) ? IOMMU_PROT.READ : 0) + (loBit(hi, IW) ? IOMMU_PROT.WRITE : 0);
  }

  possibleSizes(level: number): readonly number[] {
    // Table 15: the top level cannot have translation entries.
    if (level >= this.maxTopLevel) return [];
    const isz = 12 + 9 * level;
    const out: number[] = [];
    for (let lg = isz; lg <= Math.min(51, isz + 8); lg++) if (lg !== 39) out.push(2 ** lg);
    return out;
  }

  protError(): { code: IommuErrorCode; message: string } | undefined {
    return undefined;
  }

  /** `amdv1pt_iommu_set_prot`: FC, IR for IOMMU_READ, IW for IOMMU_WRITE (all in the high half). */
  protLo(): number {
    return 0;
  }

  protHi(prot: IommuProt): number {
    // eslint-disable-next-line no-bitwise -- prot is a 6-bit flag set, the result a PTE half
    return (FC | (prot & IOMMU_PROT.READ ? IR : 0) | (prot & IOMMU_PROT.WRITE ? IW : 0)) >>> 0;
  }

  /** The address bits of a leaf: the OA, plus the run of ones that encodes a contiguous size. */
  private leafAddr(oa: number, level: number, oaszLg2: number): number {
    return oaszLg2 === 12 + 9 * level ? oa : oa + 2 ** (oaszLg2 - 1) - 4096;
  }

  leafLo(oa: number, level: number, oaszLg2: number, attrLo: number): number {
    const nl = oaszLg2 === 12 + 9 * level ? NL_DEFAULT : NL_SIZE;
    const a = fastMod(this.leafAddr(oa, level, oaszLg2), TWO_POW_32);
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (a | PR | (nl << 9) | attrLo) >>> 0;
  }

  leafHi(oa: number, level: number, oaszLg2: number, attrHi: number): number {
    const a = Math.floor(this.leafAddr(oa, level, oaszLg2) / TWO_POW_32);
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (a | attrHi) >>> 0;
  }

  /** `amdv1pt_install_table`: NEXT_LEVEL is the table's level as AMD counts it (level + 1). */
  tableLo(pa: number, level: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (fastMod(pa, TWO_POW_32) | PR | (level << 9)) >>> 0;
  }

  tableHi(pa: number): number {
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (Math.floor(pa / TWO_POW_32) | IR | IW) >>> 0;
  }

  fields(lo: number, hi: number, level: number, type: PtEntryType): PteField[] {
    const nl = nextLevel(lo);
    const isTable = type === PT_ENTRY.TABLE;
    const size = isTable ? 0 : 2 ** (12 + 9 * level + this.leafContigLg2(lo, hi, level));
    const addr = isTable ? this.tableAddr(lo, hi) : this.leafOa(lo, hi);
    return [
      bitField("PR", 0, loBit(lo, PR), loBit(lo, PR) ? "present" : "not present"),
      bitField("D", 6, loBit(lo, D), loBit(lo, D) ? "dirty" : "clean"),
      rangeField(
        "NEXT_LEVEL",
        11,
        9,
        nl,
        isTable
          ? `table of level ${nl - 1}`
          : nl === NL_SIZE
            ? `leaf, size in OA: ${fieldHex(size)}`
            : "leaf",
      ),
      rangeField("OA", 51, 12, addr, isTable ? `next table at ${fieldHex(addr)}` : fieldHex(addr)),
      bitField("FC", 60, loBit(hi, FC), loBit(hi, FC) ? "force coherent" : "no snoop allowed"),
      bitField("IR", 61, loBit(hi, IR), loBit(hi, IR) ? "readable" : "no reads"),
      bitField("IW", 62, loBit(hi, IW), loBit(hi, IW) ? "writable" : "no writes"),
    ];
  }

  levelNumber(level: number): number {
    return level;
  }
}
