/**
 * DMA API constants with Linux's values (include/linux/dma-direction.h, dma-mapping.h), and
 * the bus offset table of include/linux/dma-direct.h.
 */
import { PHYS_ADDR_BITS, checkAddr, hex } from "@dmasim/bvec";
import { DmaError } from "./errors.ts";

/** Linux `struct bus_dma_region`: CPU physical [cpuStart, cpuStart+size) appears at dmaStart on the bus. */
export interface BusDmaRegion {
  readonly cpuStart: number;
  readonly dmaStart: number;
  readonly size: number;
}

/** Linux `enum dma_data_direction`. */
export const DMA_DIRECTION = {
  BIDIRECTIONAL: 0,
  TO_DEVICE: 1,
  FROM_DEVICE: 2,
  NONE: 3,
} as const;
/** A DMA direction. */
export type DmaDirection = (typeof DMA_DIRECTION)[keyof typeof DMA_DIRECTION];

/** Shorthands, as in Linux. */
export const DMA_BIDIRECTIONAL = DMA_DIRECTION.BIDIRECTIONAL;
export const DMA_TO_DEVICE = DMA_DIRECTION.TO_DEVICE;
export const DMA_FROM_DEVICE = DMA_DIRECTION.FROM_DEVICE;
export const DMA_NONE = DMA_DIRECTION.NONE;

/** Linux `DMA_ATTR_*` bits (unsigned long attrs). */
export const DMA_ATTR = {
  WEAK_ORDERING: 2,
  WRITE_COMBINE: 4,
  NO_KERNEL_MAPPING: 16,
  SKIP_CPU_SYNC: 32,
  FORCE_CONTIGUOUS: 64,
  ALLOC_SINGLE_PAGES: 128,
  NO_WARN: 256,
  PRIVILEGED: 512,
  MMIO: 1024,
  DEBUGGING_IGNORE_CACHELINES: 2048,
  REQUIRE_COHERENT: 4096,
} as const;
export const DMA_ATTR_WEAK_ORDERING = DMA_ATTR.WEAK_ORDERING;
export const DMA_ATTR_WRITE_COMBINE = DMA_ATTR.WRITE_COMBINE;
export const DMA_ATTR_NO_KERNEL_MAPPING = DMA_ATTR.NO_KERNEL_MAPPING;
export const DMA_ATTR_SKIP_CPU_SYNC = DMA_ATTR.SKIP_CPU_SYNC;
export const DMA_ATTR_FORCE_CONTIGUOUS = DMA_ATTR.FORCE_CONTIGUOUS;
export const DMA_ATTR_ALLOC_SINGLE_PAGES = DMA_ATTR.ALLOC_SINGLE_PAGES;
export const DMA_ATTR_NO_WARN = DMA_ATTR.NO_WARN;
export const DMA_ATTR_PRIVILEGED = DMA_ATTR.PRIVILEGED;
export const DMA_ATTR_MMIO = DMA_ATTR.MMIO;
export const DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = DMA_ATTR.DEBUGGING_IGNORE_CACHELINES;
export const DMA_ATTR_REQUIRE_COHERENT = DMA_ATTR.REQUIRE_COHERENT;

const ATTR_ALL = 2 + 4 + 16 + 32 + 64 + 128 + 256 + 512 + 1024 + 2048 + 4096;

/** True when `attrs` has `flag` set (flags are single bits below 2^13). */
export function hasAttr(attrs: number, flag: number): boolean {
  // eslint-disable-next-line no-bitwise -- attrs is a 13-bit flag set, not an address
  return (attrs & flag) !== 0;
}

/** Checks an attrs value: only known `DMA_ATTR_*` bits. */
export function checkAttrs(attrs: number): number {
  if (attrs === 0) return 0;
  if (!Number.isInteger(attrs) || attrs < 0 || attrs > ATTR_ALL || attrsHasUnknown(attrs)) {
    throw new DmaError("EINVAL", `attrs ${hex(attrs)} has bits that are not DMA_ATTR_* flags`);
  }
  return attrs;
}

const ATTR_BITS = [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 4, 2] as const;

function attrsHasUnknown(attrs: number): boolean {
  let rest = attrs;
  for (const f of ATTR_BITS) if (rest >= f) rest -= f;
  return rest !== 0;
}

/** Linux `valid_dma_direction` (the kernel BUG()s; the model throws). */
export function checkDirection(dir: number): DmaDirection {
  if (dir !== 0 && dir !== 1 && dir !== 2) {
    throw new DmaError(
      "EINVAL",
      `DMA direction ${String(dir)} is not BIDIRECTIONAL (0), TO_DEVICE (1) or FROM_DEVICE (2)`,
    );
  }
  return dir;
}

/** The name of a direction, as Linux prints it. */
export function directionName(dir: number): string {
  return (
    ["DMA_BIDIRECTIONAL", "DMA_TO_DEVICE", "DMA_FROM_DEVICE", "DMA_NONE"][dir] ?? `invalid(${dir})`
  );
}

/** Linux `DMA_BIT_MASK(n)` as a limit: the highest address an n-bit mask reaches (n <= 64; clamped to 2^53-1). */
export function dmaBitMask(bits: number): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > 64) {
    throw new DmaError("EINVAL", `DMA mask width ${String(bits)} is outside 1..64 bits`);
  }
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}

const PHYS_LIMIT = 2 ** PHYS_ADDR_BITS;

/**
 * `checkAddr(phys, what)` for the hot paths: the common valid case is decided with one
 * precomputed limit (bvec's `checkAddr` computes `2 ** bits` per call); anything else goes to
 * `checkAddr` for the error.
 */
export function checkPhys(phys: number, what = "physical address"): number {
  if (phys >= 0 && phys < PHYS_LIMIT && Number.isInteger(phys)) return phys;
  return checkAddr(phys, what);
}
