/**
 * `struct bio` and `struct request`, the parts the data path needs: the bvec table and its
 * iterator, chaining for split bios, the per-bio gap bit, and the request built from bios.
 */
import { MAX_ADDR, checkInt, fastMod, ffs, hex, or53 } from "./addr.ts";
import {
  type BioVec,
  type BvecIter,
  bvec,
  bvecIterAdvance,
  bvecTryMergePhys,
  bvecPhys,
  mpBvecIterBvec,
} from "./bvec.ts";
import { BvecError } from "./errors.ts";
import {
  type QueueLimits,
  SECTOR_SIZE,
  UINT_MAX,
  biovecPhysMergeable,
  bvecGapToPrev,
  getMaxSegmentSize,
} from "./limits.ts";

/** Request operations the model carries (Linux `enum req_op`, the data-path subset). */
export const REQ_OP = { READ: "read", WRITE: "write", FLUSH: "flush" } as const;
/** A request operation. */
export type ReqOp = (typeof REQ_OP)[keyof typeof REQ_OP];

/** Block-layer status codes (Linux `blk_status_t`), as values. */
export const BLK_STS = {
  OK: 0,
  NOTSUPP: 1,
  TIMEOUT: 2,
  NOSPC: 3,
  TRANSPORT: 4,
  TARGET: 5,
  RESV_CONFLICT: 6,
  MEDIUM: 7,
  PROTECTION: 8,
  RESOURCE: 9,
  IOERR: 10,
  DM_REQUEUE: 11,
  AGAIN: 12,
  DEV_RESOURCE: 13,
  ZONE_OPEN_RESOURCE: 14,
  ZONE_ACTIVE_RESOURCE: 15,
  OFFLINE: 16,
  DURATION_LIMIT: 17,
  INVAL: 19,
} as const;
/** A block status value. */
export type BlkStatus = (typeof BLK_STS)[keyof typeof BLK_STS];

/** Linux `struct bio`, the fields the data path uses. */
export class Bio {
  /** The operation. */
  readonly op: ReqOp;
  /** The bvec table (shared with clones made by `bioSplit`). */
  readonly bvecs: BioVec[];
  /** Linux `bi_max_vecs`: the table's capacity. */
  readonly maxVecs: number;
  /** Linux `bi_iter`: the part of the table this bio covers, and its start sector. */
  readonly iter: BvecIter & { sector: number };
  /** Linux `bi_next`: the next bio of the same request. */
  next: Bio | null = null;
  /** Linux `bi_bvec_gap_bit`: ffs of the OR of every gap between bvecs (0: no gap). */
  gapBit = 0;
  /** Linux `BIO_CLONED`: a clone shares its table and cannot grow. */
  readonly cloned: boolean;
  /** Linux `bi_private`-style parent of a chained bio (`bio_chain`). */
  parent: Bio | null = null;
  /** Linux `__bi_remaining`: completions still expected (chained children + itself). */
  remaining = 1;
  /** Linux `bi_status`: the first error seen. */
  status: BlkStatus = BLK_STS.OK;
  /** Linux `bi_end_io`: called once when the bio and all its chained children completed. */
  endIo: ((bio: Bio) => void) | undefined = undefined;

  constructor(
    op: ReqOp,
    sector: number,
    maxVecs = 256,
    table?: BioVec[],
    iter?: BvecIter,
    cloned = false,
  ) {
    checkInt(sector, "bio start sector");
    checkInt(maxVecs, "bio max vecs", 1);
    this.op = op;
    this.maxVecs = maxVecs;
    this.bvecs = table ?? [];
    this.iter = { size: iter?.size ?? 0, idx: iter?.idx ?? 0, done: iter?.done ?? 0, sector };
    this.cloned = cloned;
  }

  /** Linux `bi_vcnt`: bvecs in the table. */
  get vcnt(): number {
    return this.bvecs.length;
  }

  /** Bytes this bio covers (Linux `bi_iter.bi_size`). */
  get size(): number {
    return this.iter.size;
  }

  /** Sectors this bio covers (Linux `bio_sectors`). */
  get sectors(): number {
    return this.iter.size / SECTOR_SIZE;
  }
}

/**
 * Linux `bio_add_page`: appends `len` bytes at `offset` in page `page`; merges into the last
 * bvec when physically contiguous with it (`bvec_try_merge_page`). Returns `len`, or 0 when the
 * bio is full or cloned. `sameRegion`, when given, must say whether two physical addresses lie
 * in the same memory region (zone-device pages of different providers never merge).
 */
export function bioAddPage(
  bio: Bio,
  page: number,
  len: number,
  offset: number,
  pageSize = 4096,
  sameRegion?: (a: number, b: number) => boolean,
): number {
  const bv = bvec(page, offset, len, pageSize);
  if (bio.cloned) return 0;
  if (bio.iter.size > UINT_MAX - len) return 0;
  const last = bio.bvecs[bio.bvecs.length - 1];
  const phys = bvecPhys(bv);
  if (
    last !== undefined &&
    last.pageSize === pageSize &&
    (sameRegion === undefined || sameRegion(bvecPhys(last), phys)) &&
    bvecTryMergePhys(last, phys, len)
  ) {
    bio.iter.size += len;
    return len;
  }
  if (bio.bvecs.length >= bio.maxVecs) return 0;
  bio.bvecs.push(bv);
  bio.iter.size += len;
  return len;
}

/** Adds `len` bytes at physical address `phys` (Linux `bio_add_phys`-style helper over `bioAddPage`). */
export function bioAddPhys(bio: Bio, phys: number, len: number, pageSize = 4096): number {
  const off = fastMod(phys, pageSize);
  return bioAddPage(bio, (phys - off) / pageSize, len, off, pageSize);
}

/** Builds a bio from a list of bvecs, adding each with `bioAddPage` (so contiguous ones merge). */
export function bioFromBvecs(
  op: ReqOp,
  sector: number,
  bvecs: readonly BioVec[],
  maxVecs = Math.max(1, bvecs.length),
): Bio {
  const bio = new Bio(op, sector, maxVecs);
  for (const b of bvecs) {
    if (bioAddPage(bio, b.page, b.len, b.offset, b.pageSize) !== b.len) {
      throw new BvecError(
        "EINVAL",
        `bvec ${hex(bvecPhys(b))}+${hex(b.len)} does not fit in a bio of ${maxVecs} vecs`,
      );
    }
  }
  return bio;
}

/** Linux `bio_chain`: `bio` completes into `parent`, which waits for it. */
export function bioChain(bio: Bio, parent: Bio): void {
  if (bio.parent !== null) throw new BvecError("EINVAL", "bio is already chained");
  bio.parent = parent;
  parent.remaining++;
}

/** Linux `bio_endio`: one completion of `bio`; when none remain, runs `endIo` and completes the parent. */
export function bioEndio(bio: Bio, status: BlkStatus = BLK_STS.OK): void {
  if (bio.remaining <= 0)
    throw new BvecError("EINVAL", "bio completed more times than it was submitted");
  if (status !== BLK_STS.OK && bio.status === BLK_STS.OK) bio.status = status;
  if (--bio.remaining > 0) return;
  bio.endIo?.(bio);
  const parent = bio.parent;
  if (parent) {
    bio.parent = null;
    bioEndio(parent, bio.status);
  }
}

/**
 * Linux `bio_split`: returns a clone covering the first `sectors` of `bio` (sharing its bvec
 * table) and advances `bio` past them.
 */
export function bioSplit(bio: Bio, sectors: number): Bio {
  checkInt(sectors, "split sectors", 1);
  const bytes = sectors * SECTOR_SIZE;
  if (bytes >= bio.iter.size) {
    throw new BvecError("EINVAL", `cannot split a bio of ${bio.iter.size} bytes at ${bytes} bytes`);
  }
  const split = new Bio(
    bio.op,
    bio.iter.sector,
    bio.maxVecs,
    bio.bvecs,
    { size: bytes, idx: bio.iter.idx, done: bio.iter.done },
    true,
  );
  bvecIterAdvance(bio.bvecs, bio.iter, bytes);
  bio.iter.sector += sectors;
  return split;
}

/** The bvecs a bio covers, as multi-page segments (allocates; for tests and traces). */
export function bioSegments(bio: Bio): BioVec[] {
  const out: BioVec[] = [];
  const it = { size: bio.iter.size, idx: bio.iter.idx, done: bio.iter.done };
  while (it.size > 0) {
    const cur = bio.bvecs[it.idx] as BioVec;
    const len = Math.min(it.size, cur.len - it.done);
    out.push({ page: cur.page, offset: cur.offset + it.done, len, pageSize: cur.pageSize });
    bvecIterAdvance(bio.bvecs, it, len);
  }
  return out;
}

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
 * bvec that breaks the DMA alignment or `lenAlignMask`, or when no whole block fits.
 *
 * Deliberate difference: when the part that fits rounds down to zero whole logical blocks,
 * Linux's `bio_submit_split` lets the bio through unsplit (a split of 0 sectors means "no
 * split"), so it then breaks the limits further down; the model refuses such a bio instead.
 */
export function bioSplitIoAt(
  bio: Bio,
  lim: QueueLimits,
  maxBytes = lim.maxHwSectors * SECTOR_SIZE,
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

/** `bioSplitIoAt` without the result object: returns the sectors (segments: `splitState.nsegs`). */
function splitIoAt(bio: Bio, lim: QueueLimits, maxBytes: number, lenAlignMask: number): number {
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
 * until nothing is left). The pieces are chained to the original, which is returned last.
 */
export function bioSplitToLimits(bio: Bio, lim: QueueLimits): Bio[] {
  const out: Bio[] = [];
  for (;;) {
    const sectors = splitIoAt(bio, lim, lim.maxHwSectors * SECTOR_SIZE, lim.dmaAlignment);
    if (sectors === 0) break;
    const piece = bioSplit(bio, sectors);
    bioChain(piece, bio);
    splitIoAt(piece, lim, lim.maxHwSectors * SECTOR_SIZE, lim.dmaAlignment);
    out.push(piece);
  }
  out.push(bio);
  return out;
}

/** Linux `struct request`, the data-path fields. */
export class Request {
  /** The operation. */
  readonly op: ReqOp;
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

/** Linux `bio_get_last_bvec`: the last multi-page segment the bio covers. */
function lastBvec(bio: Bio): BioVec {
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
function firstBvec(bio: Bio): BioVec {
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
  const segs = splitState.nsegs;
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
