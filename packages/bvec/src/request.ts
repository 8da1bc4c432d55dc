/**
 * `struct request`, the parts the data path needs: the request built from bios that respect
 * the queue limits (`blk_rq_append_bio`), its segment count and its gap mask.
 */
import { MAX_ADDR } from "./addr.ts";
import type { Bio, ReqOp } from "./bio.ts";
import { bioSegGap, firstBvec, lastBvec, splitIoAt, splitSegments } from "./blk-merge.ts";
import { BvecError } from "./errors.ts";
import { type QueueLimits, SECTOR_SIZE, bvecGapToPrev } from "./limits.ts";

/** Linux `struct request`, the data-path fields. */
export class Request {
  /** The operation (set again by `blkRqInit`). */
  op: ReqOp;
  /** The queue limits the request was built under. */
  readonly limits: QueueLimits;
  /** First and last bio. */
  bio: Bio | null = null;
  biotail: Bio | null = null;
  /** Linux `__sector`. */
  sector: number;
  /** Linux `__data_len`: bytes. */
  dataLen = 0;
  /** Linux `nr_phys_segments`: the segment count the block layer computed while splitting. */
  nrPhysSegments = 0;
  /** Linux `phys_gap_bit`: ffs of the lowest gap between any two segments (0: none). */
  physGapBit = 0;
  /** Linux `tag`, assigned by the driver. */
  tag = -1;

  constructor(op: ReqOp, limits: QueueLimits, sector = 0) {
    this.op = op;
    this.limits = limits;
    this.sector = sector;
  }

  /** The request's bios in order. */
  bios(): Bio[] {
    const out: Bio[] = [];
    for (let b = this.bio; b; b = b.next) out.push(b);
    return out;
  }
}

/**
 * Linux `blk_rq_append_bio` (with `ll_back_merge_fn`'s checks): adds a bio that already
 * respects the limits to the request. Throws EINVAL when it would make a virt-boundary gap,
 * exceed max_hw_sectors or max_segments, or when the bio needs splitting first.
 */
export function blkRqAppendBio(req: Request, bio: Bio): void {
  const lim = req.limits;
  if (bio.op !== req.op)
    throw new BvecError("EINVAL", `cannot append a ${bio.op} bio to a ${req.op} request`);
  if (bio.size === 0) throw new BvecError("EINVAL", "cannot append an empty bio");
  const sectors = splitIoAt(bio, lim, lim.maxHwSectors * SECTOR_SIZE, lim.dmaAlignment);
  const segs = splitSegments();
  if (sectors !== 0) {
    throw new BvecError(
      "EINVAL",
      `bio of ${bio.size} bytes exceeds the queue limits; split it with bioSplitToLimits first`,
    );
  }
  const tail = req.biotail;
  if (tail === null) {
    req.bio = req.biotail = bio;
    req.sector = bio.iter.sector;
    req.dataLen = bio.size;
    req.nrPhysSegments = segs;
    req.physGapBit = bio.gapBit;
    return;
  }
  if (bvecGapToPrev(lim, lastBvec(tail), firstBvec(bio).offset)) {
    throw new BvecError("EINVAL", "appending the bio would leave a gap at the virt boundary");
  }
  if ((req.dataLen + bio.size) / SECTOR_SIZE > lim.maxHwSectors) {
    throw new BvecError(
      "EINVAL",
      `request would grow to ${req.dataLen + bio.size} bytes, above max_hw_sectors ${lim.maxHwSectors}`,
    );
  }
  if (req.nrPhysSegments + segs > lim.maxSegments) {
    throw new BvecError(
      "EINVAL",
      `request would need ${req.nrPhysSegments + segs} segments, above max_segments ${lim.maxSegments}`,
    );
  }
  req.physGapBit = bioSegGap(lim, tail, bio, req.physGapBit);
  tail.next = bio;
  req.biotail = bio;
  req.dataLen += bio.size;
  req.nrPhysSegments += segs;
}

/**
 * Linux `blk_rq_init` (what `blk_mq_rq_ctx_init` does for a preallocated request of a tag):
 * makes a request whose I/O has ended empty again, for operation `op` under the same limits: no
 * bios, sector 0, no data, no segments, no gap, no tag. `blkRqAppendBio` then fills it as it
 * fills a new one. The request must no longer be queued anywhere.
 */
export function blkRqInit(req: Request, op: ReqOp): void {
  req.op = op;
  req.bio = null;
  req.biotail = null;
  req.sector = 0;
  req.dataLen = 0;
  req.nrPhysSegments = 0;
  req.physGapBit = 0;
  req.tag = -1;
}

/** Builds a request from bios that each respect the limits (Linux `blk_mq_bio_to_request` + appends). */
export function blkRqFromBios(lim: QueueLimits, bios: readonly Bio[]): Request {
  const first = bios[0];
  if (first === undefined) throw new BvecError("EINVAL", "a request needs at least one bio");
  const req = new Request(first.op, lim, first.iter.sector);
  for (const b of bios) blkRqAppendBio(req, b);
  return req;
}

/** Linux `blk_rq_payload_bytes`: the bytes the request transfers. */
export function blkRqPayloadBytes(req: Request): number {
  return req.dataLen;
}

/** Linux `blk_rq_nr_phys_segments`. */
export function blkRqNrPhysSegments(req: Request): number {
  return req.nrPhysSegments;
}

/**
 * Linux `req_phys_gap_mask`: a mask with every bit from the lowest gap bit upward set (here up
 * to bit 52); 0 when the request has no gap. `and53(mask, boundary) !== 0` means some joint is
 * not aligned to `boundary + 1`.
 */
export function reqPhysGapMask(req: Request): number {
  if (req.physGapBit === 0) return 0;
  return MAX_ADDR - (2 ** (req.physGapBit - 1) - 1);
}
