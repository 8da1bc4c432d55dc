/**
 * Splitting bios to the queue limits, as Linux keeps it in block/blk-merge.c: counting a bio's
 * physical segments under the limits, finding where it must be split (`bio_split_io_at`), the
 * split loop (`__bio_split_to_limits`) and the gap bits of the joints between bvecs and bios.
 */
import { ffs, fastMod, hex, or53 } from "./addr.ts";
import { type Bio, bioChain, bioSplit } from "./bio.ts";
import { type BioVec, type BvecIter, bvecIterAdvance, bvecPhys, mpBvecIterBvec } from "./bvec.ts";
import { BvecError } from "./errors.ts";
import {
  type QueueLimits,
  SECTOR_SIZE,
  UINT_MAX,
  biovecPhysMergeable,
  bvecGapToPrev,
  getMaxSegmentSize,
} from "./limits.ts";

/** Linux's `bvec_seg_gap`: the address bits of a joint between two bvecs (offset-based, as upstream). */
function bvecSegGap(prev: BioVec, cur: BioVec): number {
  return or53(cur.offset, prev.offset + prev.len);
}

/** Result of `bioSplitIoAt`. */
export interface SplitPoint {
  /** Where to split, in sectors; 0 when the bio fits the limits whole. */
  readonly sectors: number;
  /** Physical segments counted for the part that fits. */
  readonly segs: number;
}

/**
 * Linux `bvec_split_segs`: counts the segments one bvec needs under the limits, stopping at
 * `maxSegs` and `maxBytes`; returns whether the bvec must be split.
 */
function bvecSplitSegs(
  lim: QueueLimits,
  bv: BioVec,
  state: { nsegs: number; bytes: number },
  maxSegs: number,
  maxBytes: number,
): boolean {
  const maxLen = Math.min(maxBytes, UINT_MAX) - state.bytes;
  let len = Math.min(bv.len, maxLen);
  let total = 0;
  const phys = bvecPhys(bv);
  while (len > 0 && state.nsegs < maxSegs) {
    const seg = getMaxSegmentSize(lim, phys + total, len);
    state.nsegs++;
    total += seg;
    len -= seg;
    if (lim.virtBoundaryMask !== 0 && fastMod(bv.offset + total, lim.virtBoundaryMask + 1) !== 0)
      break;
  }
  state.bytes += total;
  return len > 0 || bv.len > maxLen;
}

/**
 * Linux `bio_split_io_at`: decides whether and where `bio` must be split to respect the queue
 * limits (max segments, `maxBytes`, the virt boundary, segment size and boundary), counts its
 * segments, and records the gap bit of the part that stays (`bio.gapBit`). Throws EINVAL for a
 * bvec that breaks the DMA alignment or `lenAlignMask`, or when no whole block fits (as Linux:
 * `if (!bytes) return -EINVAL`). `maxBytes` defaults to `max_sectors`, what `bio_split_rw`
 * passes for regular I/O (`get_max_io_size`).
 */
export function bioSplitIoAt(
  bio: Bio,
  lim: QueueLimits,
  maxBytes = lim.maxSectors * SECTOR_SIZE,
  lenAlignMask = lim.dmaAlignment,
): SplitPoint {
  const sectors = splitIoAt(bio, lim, maxBytes, lenAlignMask);
  return { sectors, segs: splitState.nsegs };
}

/**
 * The scratch state of `splitIoAt` (it runs to the end before it can run again, and is called
 * twice for every I/O: once by the split, once by the request append): module objects instead
 * of five allocations per call.
 */
const splitState = { nsegs: 0, bytes: 0 };
const splitPrev: BioVec = { page: 0, offset: 0, len: 0, pageSize: 4096 };
const splitBv: BioVec = { page: 0, offset: 0, len: 0, pageSize: 4096 };
const splitIt: BvecIter = { size: 0, idx: 0, done: 0 };

/**
 * `bioSplitIoAt` without the result object (for the split loop and `blkRqAppendBio`): returns
 * the sectors; `splitSegments()` then gives the segments counted.
 */
export function splitIoAt(
  bio: Bio,
  lim: QueueLimits,
  maxBytes: number,
  lenAlignMask: number,
): number {
  const state = splitState;
  state.nsegs = 0;
  state.bytes = 0;
  let gaps = 0;
  let havePrev = false;
  let mustSplit = false;
  const prev = splitPrev;
  const bv = splitBv;
  const it = splitIt;
  it.size = bio.iter.size;
  it.idx = bio.iter.idx;
  it.done = bio.iter.done;
  while (it.size > 0) {
    mpBvecIterBvec(bio.bvecs, it, bv);
    if (fastMod(bv.offset, lim.dmaAlignment + 1) !== 0 || fastMod(bv.len, lenAlignMask + 1) !== 0) {
      throw new BvecError(
        "EINVAL",
        `bvec at ${hex(bvecPhys(bv))}+${hex(bv.len)} breaks the queue DMA alignment ${hex(lim.dmaAlignment)} (offset) or ${hex(lenAlignMask)} (length)`,
      );
    }
    if (havePrev) {
      if (bvecGapToPrev(lim, prev, bv.offset)) {
        mustSplit = true;
        break;
      }
      gaps = or53(gaps, bvecSegGap(prev, bv));
    }
    if (
      state.nsegs < lim.maxSegments &&
      state.bytes + bv.len <= maxBytes &&
      bv.offset + bv.len <= bv.pageSize
    ) {
      state.nsegs++;
      state.bytes += bv.len;
    } else if (bvecSplitSegs(lim, bv, state, lim.maxSegments, maxBytes)) {
      mustSplit = true;
      break;
    }
    prev.page = bv.page;
    prev.offset = bv.offset;
    prev.len = bv.len;
    (prev as { pageSize: number }).pageSize = bv.pageSize;
    havePrev = true;
    bvecIterAdvance(bio.bvecs, it, bv.len);
  }
  bio.gapBit = ffs(gaps);
  if (!mustSplit) return 0;
  // Split on a logical block boundary (Linux `bio_split_alignment`).
  const bytes = state.bytes - fastMod(state.bytes, lim.logicalBlockSize);
  if (bytes === 0) {
    throw new BvecError(
      "EINVAL",
      `no whole ${lim.logicalBlockSize}-byte block of the bio fits the queue limits`,
    );
  }
  return bytes / SECTOR_SIZE;
}

/**
 * Splits `bio` into bios that each respect the limits (Linux `__bio_split_to_limits` applied
 * until nothing is left), at `max_sectors` as regular I/O is. The pieces are chained to the
 * original, which is returned last.
 */
export function bioSplitToLimits(bio: Bio, lim: QueueLimits): Bio[] {
  const out: Bio[] = [];
  for (;;) {
    const sectors = splitIoAt(bio, lim, lim.maxSectors * SECTOR_SIZE, lim.dmaAlignment);
    if (sectors === 0) break;
    const piece = bioSplit(bio, sectors);
    bioChain(piece, bio);
    splitIoAt(piece, lim, lim.maxSectors * SECTOR_SIZE, lim.dmaAlignment);
    out.push(piece);
  }
  out.push(bio);
  return out;
}

/** The segments the last `splitIoAt` counted for the part that fits. */
export function splitSegments(): number {
  return splitState.nsegs;
}

/** Linux `bio_get_last_bvec`: the last multi-page segment the bio covers. */
export function lastBvec(bio: Bio): BioVec {
  let idx = bio.iter.idx;
  let left = bio.iter.size;
  let start = bio.iter.done;
  for (;;) {
    const cur = bio.bvecs[idx] as BioVec;
    const avail = cur.len - start;
    if (left <= avail)
      return { page: cur.page, offset: cur.offset + start, len: left, pageSize: cur.pageSize };
    left -= avail;
    idx++;
    start = 0;
  }
}

/** Linux `bio_get_first_bvec`. */
export function firstBvec(bio: Bio): BioVec {
  return mpBvecIterBvec(bio.bvecs, bio.iter);
}

/** Linux `bio_seg_gap`: the gap bit after appending `next` behind `prev`. */
export function bioSegGap(lim: QueueLimits, prev: Bio, next: Bio, gapBit: number): number {
  const minNz = (a: number, b: number) => (a === 0 ? b : b === 0 ? a : Math.min(a, b));
  let g = minNz(gapBit, prev.gapBit);
  g = minNz(g, next.gapBit);
  const pb = lastBvec(prev);
  const nb = firstBvec(next);
  if (!biovecPhysMergeable(lim, pb, nb)) g = minNz(g, ffs(bvecSegGap(pb, nb)));
  return g;
}
