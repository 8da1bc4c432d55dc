/**
 * Queue limits (Linux `struct queue_limits`) and the per-segment rules that derive from them.
 */
import { MAX_ADDR, and53, checkInt, checkMask, fastMod, hex, isPow2 } from "./addr.ts";
import { type BioVec, bvecPhys } from "./bvec.ts";
import { BvecError } from "./errors.ts";

/** Linux `BLK_SEG_BOUNDARY_MASK`: by default a segment may not cross a 4 GiB boundary. */
export const BLK_SEG_BOUNDARY_MASK = 0xffffffff;
/** Linux `BLK_MAX_SEGMENT_SIZE`: the default max segment size, 64 KiB. */
export const BLK_MAX_SEGMENT_SIZE = 65536;
/** Linux `BLK_MIN_SEGMENT_SIZE`. */
export const BLK_MIN_SEGMENT_SIZE = 4096;
/** Linux `BLK_MAX_SEGMENTS`: the default max segments, 128. */
export const BLK_MAX_SEGMENTS = 128;
/** Linux `UINT_MAX`, used for "no limit" segment sizes. */
export const UINT_MAX = 0xffffffff;
/** Bytes per sector (Linux `SECTOR_SIZE`). */
export const SECTOR_SIZE = 512;
/**
 * Linux `BLK_DEF_MAX_SECTORS_CAP`: the default cap of the soft `max_sectors` limit that regular
 * file-system I/O is split at, 4 MiB since 9b8b84879d4a "block: Increase
 * BLK_DEF_MAX_SECTORS_CAP" (6.17; 1280 KiB before), so in every modelled release.
 */
export const BLK_DEF_MAX_SECTORS_CAP = 8192;

/** Linux `struct queue_limits`, the fields the data path uses. */
export interface QueueLimits {
  /** Logical block size in bytes (512 .. page size, a power of two). */
  readonly logicalBlockSize: number;
  /** Largest physical segment, bytes. */
  readonly maxSegmentSize: number;
  /** A segment may not cross an address boundary of `segBoundaryMask + 1`. */
  readonly segBoundaryMask: number;
  /** Gaps are not allowed at addresses where `addr & virtBoundaryMask` != 0 (0: no rule). */
  readonly virtBoundaryMask: number;
  /** Largest number of physical segments per request. */
  readonly maxSegments: number;
  /** Largest request in 512-byte sectors (the hardware's and the driver's limit). */
  readonly maxHwSectors: number;
  /**
   * Linux `max_sectors`: the soft limit regular I/O is split at (`get_max_io_size`),
   * `min(max_hw_sectors, BLK_DEF_MAX_SECTORS_CAP)` unless set (then it is `max_user_sectors`),
   * rounded down to whole logical blocks. Passthrough requests (`blk_rq_append_bio`) may use up
   * to `maxHwSectors`.
   */
  readonly maxSectors: number;
  /** Buffers must be aligned to `dmaAlignment + 1` bytes (a mask). */
  readonly dmaAlignment: number;
}

/** Linux's defaults (`blk_set_stacking_limits` / `blk_validate_limits` for a plain queue). */
export const DEFAULT_QUEUE_LIMITS: QueueLimits = {
  logicalBlockSize: 512,
  maxSegmentSize: BLK_MAX_SEGMENT_SIZE,
  segBoundaryMask: BLK_SEG_BOUNDARY_MASK,
  virtBoundaryMask: 0,
  maxSegments: BLK_MAX_SEGMENTS,
  maxHwSectors: 255,
  maxSectors: 255,
  dmaAlignment: 511,
};

/**
 * Linux `blk_validate_limits`: fills defaults and rejects inconsistent limits with an error
 * naming the field and the value. A virt boundary forces `maxSegmentSize` to UINT_MAX, as Linux
 * does (a driver with a virt boundary cannot also ask for a segment size limit).
 */
export function queueLimits(partial: Partial<QueueLimits> = {}): QueueLimits {
  const virtBoundaryMask = partial.virtBoundaryMask ?? 0;
  checkMask(virtBoundaryMask, "virt_boundary_mask");
  let maxSegmentSize =
    partial.maxSegmentSize ?? (virtBoundaryMask ? UINT_MAX : BLK_MAX_SEGMENT_SIZE);
  if (virtBoundaryMask !== 0) {
    if (partial.maxSegmentSize !== undefined && partial.maxSegmentSize !== UINT_MAX) {
      throw new BvecError(
        "EINVAL",
        `max_segment_size ${hex(partial.maxSegmentSize)} cannot be combined with virt_boundary_mask ${hex(virtBoundaryMask)}`,
      );
    }
    maxSegmentSize = UINT_MAX;
  }
  const logicalBlockSize = partial.logicalBlockSize ?? DEFAULT_QUEUE_LIMITS.logicalBlockSize;
  const maxHwSectors = partial.maxHwSectors ?? DEFAULT_QUEUE_LIMITS.maxHwSectors;
  const lim: QueueLimits = {
    logicalBlockSize,
    maxSegmentSize,
    segBoundaryMask: partial.segBoundaryMask ?? BLK_SEG_BOUNDARY_MASK,
    virtBoundaryMask,
    maxSegments: partial.maxSegments ?? BLK_MAX_SEGMENTS,
    maxHwSectors,
    maxSectors: maxSectorsOf(partial.maxSectors, maxHwSectors, logicalBlockSize),
    dmaAlignment: partial.dmaAlignment ?? DEFAULT_QUEUE_LIMITS.dmaAlignment,
  };
  checkInt(lim.logicalBlockSize, "logical_block_size", 512);
  if (!isPow2(lim.logicalBlockSize) || lim.logicalBlockSize > 65536) {
    throw new BvecError(
      "EINVAL",
      `logical_block_size ${lim.logicalBlockSize} is not a power of two in 512..65536`,
    );
  }
  checkInt(lim.maxSegmentSize, "max_segment_size", 1);
  if (lim.maxSegmentSize < BLK_MIN_SEGMENT_SIZE) {
    throw new BvecError(
      "EINVAL",
      `max_segment_size ${hex(lim.maxSegmentSize)} is below ${hex(BLK_MIN_SEGMENT_SIZE)}`,
    );
  }
  if (lim.maxSegmentSize > UINT_MAX) {
    throw new BvecError("ERANGE", `max_segment_size ${hex(lim.maxSegmentSize)} exceeds UINT_MAX`);
  }
  checkMask(lim.segBoundaryMask, "seg_boundary_mask");
  if (lim.segBoundaryMask < BLK_MIN_SEGMENT_SIZE - 1) {
    throw new BvecError(
      "EINVAL",
      `seg_boundary_mask ${hex(lim.segBoundaryMask)} is below ${hex(BLK_MIN_SEGMENT_SIZE - 1)}`,
    );
  }
  checkInt(lim.maxSegments, "max_segments", 1);
  if (lim.maxSegments > 0xffff)
    throw new BvecError("ERANGE", `max_segments ${lim.maxSegments} exceeds USHRT_MAX`);
  checkInt(lim.maxHwSectors, "max_hw_sectors", 1);
  if (lim.maxHwSectors * SECTOR_SIZE < lim.logicalBlockSize) {
    throw new BvecError(
      "EINVAL",
      `max_hw_sectors ${lim.maxHwSectors} is smaller than one logical block`,
    );
  }
  checkMask(lim.dmaAlignment, "dma_alignment");
  return lim;
}

/** `PAGE_SIZE / SECTOR_SIZE` with 4 KiB pages: the smallest `max_user_sectors`. */
const MIN_USER_SECTORS = 4096 / SECTOR_SIZE;

/**
 * `blk_validate_limits`' `max_sectors`: the user's limit when given (`max_user_sectors`: at
 * least a page of sectors and at most `max_hw_sectors`, else EINVAL), otherwise
 * `min(max_hw_sectors, BLK_DEF_MAX_SECTORS_CAP)`; then rounded down to whole logical blocks.
 * (A queue's `io_opt` or a large `io_min` would also set it; the modelled devices set neither.)
 */
function maxSectorsOf(user: number | undefined, maxHw: number, lbs: number): number {
  let ms = Math.min(maxHw, BLK_DEF_MAX_SECTORS_CAP);
  if (user !== undefined) {
    checkInt(user, "max_user_sectors", 1);
    if (user > maxHw || user < MIN_USER_SECTORS) {
      throw new BvecError(
        "EINVAL",
        `max_user_sectors ${user} is outside ${MIN_USER_SECTORS}..max_hw_sectors ${maxHw}`,
      );
    }
    ms = user;
  }
  const perBlock = Math.max(1, lbs / SECTOR_SIZE);
  return ms - fastMod(ms, perBlock);
}

/**
 * Linux `get_max_segment_size`: how many bytes a segment starting at `paddr` may hold: the
 * lesser of `len`, the max segment size, and the distance to the next segment boundary.
 */
export function getMaxSegmentSize(lim: QueueLimits, paddr: number, len: number): number {
  const mask = lim.segBoundaryMask;
  const toBoundary = mask === MAX_ADDR ? MAX_ADDR : mask - fastMod(paddr, mask + 1);
  return Math.min(len, Math.min(toBoundary, lim.maxSegmentSize - 1) + 1);
}

/**
 * Linux `biovec_phys_mergeable`: two bvecs can share one segment when the second starts where
 * the first ends and together they do not cross a segment boundary.
 */
export function biovecPhysMergeable(lim: QueueLimits, a: BioVec, b: BioVec): boolean {
  const a1 = bvecPhys(a);
  const b1 = bvecPhys(b);
  if (a1 + a.len !== b1) return false;
  const mask = lim.segBoundaryMask;
  if (mask === MAX_ADDR) return true;
  const unit = mask + 1;
  return Math.floor(a1 / unit) === Math.floor((b1 + b.len - 1) / unit);
}

/**
 * Linux `__bvec_gap_to_prev`/`bvec_gap_to_prev`: with a virt boundary, a bvec that starts at
 * `offset` after `prev` makes a gap when either side is not on the boundary.
 */
export function bvecGapToPrev(lim: QueueLimits, prev: BioVec, offset: number): boolean {
  const mask = lim.virtBoundaryMask;
  if (mask === 0) return false;
  return and53(offset, mask) !== 0 || and53(prev.offset + prev.len, mask) !== 0;
}
