/**
 * Physical-segment iteration over a request (Linux `blk_map_iter_next` in block/blk-mq-dma.c):
 * takes the current (multi-page) bvec, clamps it to the max segment size and the segment
 * boundary, then appends the following whole bvecs (across bios too) while they are physically
 * contiguous and the merged length stays within the clamp.
 */
import type { Bio } from "./bio.ts";
import type { Request } from "./request.ts";
import { type BioVec, type BvecIter, bvecIterAdvanceSingle, bvecPhys } from "./bvec.ts";
import { MAX_ADDR } from "./addr.ts";
import { UINT_MAX, getMaxSegmentSize } from "./limits.ts";

/** A physical segment: address and length (Linux `struct phys_vec`). */
export interface PhysVec {
  paddr: number;
  len: number;
}

/** Linux `struct blk_map_iter`: the position of the segment iterator inside a request. */
export interface BlkMapIter {
  bio: Bio | null;
  bvecs: readonly BioVec[];
  iter: BvecIter;
}

/** Linux `blk_rq_map_iter_init`: an iterator at the start of the request's data. */
export function blkRqMapIterInit(req: Request, out?: BlkMapIter): BlkMapIter {
  const bio = req.bio;
  const it = out ?? { bio: null, bvecs: [], iter: { size: 0, idx: 0, done: 0 } };
  it.bio = bio;
  if (bio === null) {
    it.bvecs = [];
    it.iter.size = 0;
    it.iter.idx = 0;
    it.iter.done = 0;
  } else {
    it.bvecs = bio.bvecs;
    it.iter.size = bio.iter.size;
    it.iter.idx = bio.iter.idx;
    it.iter.done = bio.iter.done;
  }
  return it;
}

/** Moves to the next bio when the current one is exhausted (Linux `__blk_map_iter_next`). */
function mapIterNextBio(it: BlkMapIter): boolean {
  if (it.iter.size > 0) return true;
  const next = it.bio?.next ?? null;
  if (next === null) return false;
  it.bio = next;
  it.bvecs = next.bvecs;
  it.iter.size = next.iter.size;
  it.iter.idx = next.iter.idx;
  it.iter.done = next.iter.done;
  return true;
}

/**
 * Linux `blk_map_iter_next`: writes the next physical segment into `vec` and returns true, or
 * returns false at the end of the request. Allocation-free.
 */
export function blkMapIterNext(req: Request, it: BlkMapIter, vec: PhysVec): boolean {
  const lim = req.limits;
  if (it.iter.size === 0) return false;
  let cur = it.bvecs[it.iter.idx] as BioVec;
  const paddr = bvecPhys(cur) + it.iter.done;
  const maxSize = getMaxSegmentSize(lim, paddr, UINT_MAX);
  let len = Math.min(Math.min(it.iter.size, cur.len - it.iter.done), maxSize);
  bvecIterAdvanceSingle(it.bvecs, it.iter, len);
  // Only a bvec consumed whole may be merged with the next one.
  const mask = lim.segBoundaryMask;
  const unit = mask === MAX_ADDR ? 0 : mask + 1;
  while (it.iter.size === 0 || it.iter.done === 0) {
    if (!mapIterNextBio(it)) break;
    cur = it.bvecs[it.iter.idx] as BioVec;
    const nextLen = Math.min(it.iter.size, cur.len - it.iter.done);
    const nextPhys = bvecPhys(cur) + it.iter.done;
    if (len + nextLen > maxSize) break;
    // Linux `biovec_phys_mergeable`: contiguous, and not crossing a segment boundary.
    if (paddr + len !== nextPhys) break;
    if (unit !== 0 && Math.floor(paddr / unit) !== Math.floor((nextPhys + nextLen - 1) / unit))
      break;
    len += nextLen;
    bvecIterAdvanceSingle(it.bvecs, it.iter, nextLen);
  }
  vec.paddr = paddr;
  vec.len = len;
  return true;
}

/** All physical segments of a request, in order (allocates; for setup code, tests and traces). */
export function blkRqPhysSegments(req: Request): PhysVec[] {
  const it = blkRqMapIterInit(req);
  const out: PhysVec[] = [];
  for (;;) {
    const v = { paddr: 0, len: 0 };
    if (!blkMapIterNext(req, it, v)) break;
    out.push(v);
  }
  return out;
}

/** How many physical segments `blkMapIterNext` yields for the request (allocation-free). */
export function countPhysSegments(req: Request): number {
  const it = blkRqMapIterInit(req);
  const v = { paddr: 0, len: 0 };
  let n = 0;
  while (blkMapIterNext(req, it, v)) n++;
  return n;
}
