/**
 * The `arm-lpae` page-table format: ARM LPAE stage-1 descriptors as io-pgtable-arm writes them
 * (drivers/iommu/io-pgtable-arm.c).
 *
 * Granule 4 KiB (page sizes 4K | 2M | 1G), 16 KiB (16K | 32M) or 64 KiB (64K | 512M); input
 * address size 32..48 bits (52 with the 64 KiB granule) deciding the number of levels. Every
 * table is a granule-sized block of 8-byte entries (granule / 8 of them; the root may use
 * fewer). ARM numbers the levels from the root down to 3, the leaf level.
 *
 * PTE layout (64-bit, little-endian):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | VALID |
 * | 1     | TYPE: 1 = table (levels < 3) or page (level 3); 0 = block |
 * | 4:2   | ATTRINDX: 0 normal non-cacheable, 1 normal write-back (IOMMU_CACHE), 2 device (IOMMU_MMIO) |
 * | 6     | AP[1] UNPRIV: set unless IOMMU_PRIV (privileged-only mappings clear it) |
 * | 7     | AP[2] RDONLY: set unless IOMMU_WRITE |
 * | 9:8   | SH: 3 (inner shareable) for cacheable mappings |
 * | 10    | AF: access flag, always set on leaves |
 * | 15:12 | with the 64 KiB granule: output address bits 51:48 (as ARM's 52-bit PA format) |
 * | 47:g  | output address (g = log2(granule)) |
 * | 54    | XN: IOMMU_NOEXEC |
 * | 55    | SW_NOREAD (software bit): set unless IOMMU_READ |
 *
 * A table descriptor is VALID | TYPE plus the next table's physical address.
 */
import { TWO_POW_32, fastMod } from "@dmasim/bvec";
import { IOMMU_PROT, IOMMU_PROT_ALL, type IommuProt } from "./prot.ts";
import {
  PT_ENTRY,
  type PtEntryType,
  type PtFormat,
  type PteField,
  bitField,
  fieldHex,
  halfBits,
  loBit,
  rangeField,
} from "./pt-format.ts";

/** Low-half PTE bits (genuine 32-bit quantities). */
export const PTE_LO = {
  VALID: 0x1,
  TYPE: 0x2,
  ATTR_NC: 0x0,
  ATTR_WB: 0x4,
  ATTR_DEVICE: 0x8,
  ATTR_MASK: 0x1c,
  AP_UNPRIV: 0x40,
  AP_RDONLY: 0x80,
  SH_INNER: 0x300,
  AF: 0x400,
} as const;

/** High-half PTE bits (bit n of the PTE is bit n - 32 of the high half). */
export const PTE_HI = {
  /** Output address bits 47:32 live in the low 16 bits of the high half. */
  ADDR_MASK: 0xffff,
  XN: 0x400000,
  SW_NOREAD: 0x800000,
} as const;

/** Supported translation granules. */
export const IO_PGTABLE_GRANULES = [4096, 16384, 65536] as const;
/** A translation granule in bytes. */
export type IoPgtableGranule = (typeof IO_PGTABLE_GRANULES)[number];

/** Linux `iopte_leaf`-style test: a present entry at `level` that is a table descriptor. */
export function isTableEntry(lo: number, level: number): boolean {
  // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
  return level > 0 && (lo & PTE_LO.TYPE) !== 0;
}

/** Linux `iopte_leaf`: a present entry at `level` that maps memory (a block or a page). */
export function isLeaf(lo: number, level: number): boolean {
  return lo !== 0 && !isTableEntry(lo, level);
}

/** The arm-lpae PTE format of one granule. */
export class ArmLpaeFormat implements PtFormat {
  readonly name = "arm-lpae" as const;
  readonly code = "io-pgtable-arm" as const;
  readonly granule: IoPgtableGranule;
  /** PTE attribute bits for each prot value 0..63 (low and high halves). */
  readonly protLo = new Uint32Array(IOMMU_PROT_ALL + 1);
  readonly protHi = new Uint32Array(IOMMU_PROT_ALL + 1);
  /** Address mask for the low PTE half (32-bit). */
  private readonly addrMaskLo: number;

  constructor(granule: IoPgtableGranule) {
    this.granule = granule;
    // eslint-disable-next-line no-bitwise -- a 32-bit mask of the address bits in the low PTE half
    this.addrMaskLo = ~(granule - 1) >>> 0;
    for (let p = 0; p <= IOMMU_PROT_ALL; p++) {
      const [lo, hi] = armLpaeProtToPte(p);
      this.protLo[p] = lo;
      this.protHi[p] = hi;
    }
  }

  entryType(lo: number, _hi: number, level: number): PtEntryType {
    if (lo === 0) return PT_ENTRY.EMPTY;
    return isTableEntry(lo, level) ? PT_ENTRY.TABLE : PT_ENTRY.OA;
  }

  deviceEntryType(lo: number, hi: number, level: number): PtEntryType {
    // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
    return (lo & PTE_LO.VALID) === 0 ? PT_ENTRY.EMPTY : this.entryType(lo, hi, level);
  }

  /** The output address held in a PTE. */
  tableAddr(lo: number, hi: number): number {
    /* eslint-disable no-bitwise -- decoding 32-bit PTE halves */
    let a = (lo & this.addrMaskLo) >>> 0;
    let top = 0;
    if (this.granule === 65536) {
      top = (lo >>> 12) & 0xf;
      a = (lo & 0xffff0000) >>> 0;
    }
    return a + (hi & PTE_HI.ADDR_MASK) * TWO_POW_32 + top * 2 ** 48;
    /* eslint-enable no-bitwise */
  }

  leafOa(lo: number, hi: number): number {
    return this.tableAddr(lo, hi);
  }

  leafContigLg2(): number {
    return 0;
  }

  /** The prot flags a leaf PTE encodes. */
  leafProt(lo: number, hi: number): IommuProt {
    /* eslint-disable no-bitwise -- PTE halves are 32-bit quantities; prot is a 6-bit flag set */
    let prot = 0;
    if (!(hi & PTE_HI.SW_NOREAD)) prot |= IOMMU_PROT.READ;
    if (!(lo & PTE_LO.AP_RDONLY)) prot |= IOMMU_PROT.WRITE;
    const attr = lo & PTE_LO.ATTR_MASK;
    if (attr === PTE_LO.ATTR_WB) prot |= IOMMU_PROT.CACHE;
    if (attr === PTE_LO.ATTR_DEVICE) prot |= IOMMU_PROT.MMIO;
    if (hi & PTE_HI.XN) prot |= IOMMU_PROT.NOEXEC;
    if (!(lo & PTE_LO.AP_UNPRIV)) prot |= IOMMU_PROT.PRIV;
    return prot;
    /* eslint-enable no-bitwise */
  }

  /** The low half of a PTE holding `addr` (granule-aligned) and attribute bits `bits`. */
  pteLo(addr: number, bits: number): number {
    let aLo = fastMod(addr, TWO_POW_32);
    if (this.granule === 65536 && addr >= 2 ** 48) aLo += Math.floor(addr / 2 ** 48) * 4096;
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (aLo | bits) >>> 0;
  }

  /** The high half of a PTE holding `addr` and high attribute bits `bits`. */
  pteHi(addr: number, bits: number): number {
    let aHi = Math.floor(addr / TWO_POW_32);
    if (this.granule === 65536 && addr >= 2 ** 48) aHi %= 65536;
    // eslint-disable-next-line no-bitwise -- composing a 32-bit PTE half
    return (aHi | bits) >>> 0;
  }

  fields(lo: number, hi: number, level: number, type: PtEntryType): PteField[] {
    const g = Math.log2(this.granule);
    const out: PteField[] = [
      bitField("VALID", 0, loBit(lo, PTE_LO.VALID), loBit(lo, PTE_LO.VALID) ? "valid" : "invalid"),
      bitField(
        "TYPE",
        1,
        loBit(lo, PTE_LO.TYPE),
        type === PT_ENTRY.TABLE ? "table" : level === 0 ? "page" : "block",
      ),
    ];
    const addr = this.tableAddr(lo, hi);
    if (type === PT_ENTRY.TABLE) {
      out.push(rangeField("NLTA", 47, g, addr, `next-level table at ${fieldHex(addr)}`));
      return out;
    }
    const attr = halfBits(lo, 2, 7);
    const sh = halfBits(lo, 8, 3);
    out.push(
      rangeField(
        "ATTRINDX",
        4,
        2,
        attr,
        attr === 1 ? "normal write-back" : attr === 2 ? "device" : "normal non-cacheable",
      ),
      bitField(
        "AP[1]",
        6,
        loBit(lo, PTE_LO.AP_UNPRIV),
        loBit(lo, PTE_LO.AP_UNPRIV) ? "unprivileged" : "privileged only",
      ),
      bitField(
        "AP[2]",
        7,
        loBit(lo, PTE_LO.AP_RDONLY),
        loBit(lo, PTE_LO.AP_RDONLY) ? "read-only" : "read/write",
      ),
      rangeField(
        "SH",
        9,
        8,
        sh,
        sh === 3 ? "inner shareable" : sh === 2 ? "outer shareable" : "non-shareable",
      ),
      bitField("AF", 10, loBit(lo, PTE_LO.AF), loBit(lo, PTE_LO.AF) ? "accessed" : "not accessed"),
    );
    if (this.granule === 65536) {
      const top = halfBits(lo, 12, 0xf);
      out.push(rangeField("OA[51:48]", 15, 12, top, fieldHex(top)));
    }
    out.push(
      rangeField("OA", 47, g, addr, fieldHex(addr)),
      bitField(
        "XN",
        54,
        loBit(hi, PTE_HI.XN),
        loBit(hi, PTE_HI.XN) ? "execute never" : "executable",
      ),
      bitField(
        "SW_NOREAD",
        55,
        loBit(hi, PTE_HI.SW_NOREAD),
        loBit(hi, PTE_HI.SW_NOREAD) ? "no reads" : "readable",
      ),
    );
    return out;
  }

  levelNumber(level: number): number {
    return 3 - level;
  }
}

/** PTE attribute bits for `prot`, as [low half, high half] (`arm_lpae_prot_to_pte`). */
export function armLpaeProtToPte(prot: IommuProt): [number, number] {
  /* eslint-disable no-bitwise -- prot is a 6-bit flag set and the results are 32-bit PTE halves */
  let lo = PTE_LO.VALID | PTE_LO.AF;
  if (prot & IOMMU_PROT.MMIO) lo |= PTE_LO.ATTR_DEVICE;
  else if (prot & IOMMU_PROT.CACHE) lo |= PTE_LO.ATTR_WB | PTE_LO.SH_INNER;
  if (!(prot & IOMMU_PROT.PRIV)) lo |= PTE_LO.AP_UNPRIV;
  if (!(prot & IOMMU_PROT.WRITE)) lo |= PTE_LO.AP_RDONLY;
  let hi = 0;
  if (prot & IOMMU_PROT.NOEXEC) hi |= PTE_HI.XN;
  if (!(prot & IOMMU_PROT.READ)) hi |= PTE_HI.SW_NOREAD;
  return [lo >>> 0, hi >>> 0];
  /* eslint-enable no-bitwise */
}
