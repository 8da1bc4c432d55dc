/**
 * `bio_vec` and its iterator (include/linux/bvec.h). A bvec names a page frame, an offset and
 * a length; it may span several physically contiguous pages ("multi-page bvec"), in which case
 * `offset` may exceed the page size.
 */
import { checkAddr, checkInt, fastMod, hex } from "./addr.ts";
import { BvecError } from "./errors.ts";

/** Linux `struct bio_vec`: `page` is a page frame number, `pageSize` the size of that frame. */
export interface BioVec {
  /** Page frame number of the first page (Linux `bv_page`). */
  page: number;
  /** Byte offset from the start of that page; may exceed the page size in a multi-page bvec. */
  offset: number;
  /** Length in bytes (Linux `bv_len`). */
  len: number;
  /** The page size the frame number counts in (4, 16 or 64 KiB). */
  readonly pageSize: number;
}

/** Builds a bvec, checking its fields. */
export function bvec(page: number, offset: number, len: number, pageSize = 4096): BioVec {
  checkInt(page, "bvec page frame");
  checkInt(offset, "bvec offset");
  checkInt(len, "bvec length", 1);
  if (len > 0xffffffff)
    throw new BvecError("ERANGE", `bvec length ${hex(len)} does not fit bv_len (32 bits)`);
  checkAddr(page * pageSize + offset + len, "bvec end");
  return { page, offset, len, pageSize };
}

/** Builds a bvec for `len` bytes at physical address `phys` (Linux `bvec_set_phys`). */
export function bvecFromPhys(phys: number, len: number, pageSize = 4096): BioVec {
  checkAddr(phys, "bvec physical address");
  const off = fastMod(phys, pageSize);
  return bvec((phys - off) / pageSize, off, len, pageSize);
}

/**
 * Linux `bvec_phys`: the physical address of the first byte (the helper the review asked for,
 * docs/review-points.md#bvec-phys).
 */
export function bvecPhys(bv: BioVec): number {
  return bv.page * bv.pageSize + bv.offset;
}

/** Linux `struct bvec_iter`: a position inside an array of bvecs. */
export interface BvecIter {
  /** Bytes left to iterate (Linux `bi_size`). */
  size: number;
  /** Index of the current bvec (Linux `bi_idx`). */
  idx: number;
  /** Bytes of the current bvec already consumed (Linux `bi_bvec_done`). */
  done: number;
}

/** A fresh iterator over `size` bytes starting at bvec 0. */
export function bvecIter(size: number): BvecIter {
  return { size, idx: 0, done: 0 };
}

/**
 * Linux `mp_bvec_iter_bvec`: the current multi-page segment (the rest of the current bvec,
 * clamped to the bytes left), written into `out` (allocated when omitted).
 */
export function mpBvecIterBvec(bvecs: readonly BioVec[], iter: BvecIter, out?: BioVec): BioVec {
  const cur = bvecs[iter.idx];
  if (cur === undefined)
    throw new BvecError("EINVAL", `bvec iterator index ${iter.idx} is past ${bvecs.length} bvecs`);
  const len = Math.min(iter.size, cur.len - iter.done);
  if (out === undefined)
    return { page: cur.page, offset: cur.offset + iter.done, len, pageSize: cur.pageSize };
  out.page = cur.page;
  out.offset = cur.offset + iter.done;
  out.len = len;
  (out as { pageSize: number }).pageSize = cur.pageSize;
  return out;
}

/**
 * Linux `bvec_iter_bvec`: the current single-page segment: like `mpBvecIterBvec` but never
 * crossing a page boundary, with `page` advanced to the frame that holds the byte.
 */
export function bvecIterBvec(bvecs: readonly BioVec[], iter: BvecIter, out?: BioVec): BioVec {
  const mp = mpBvecIterBvec(bvecs, iter, out);
  const ps = mp.pageSize;
  const pageAdv = Math.floor(mp.offset / ps);
  mp.page += pageAdv;
  mp.offset -= pageAdv * ps;
  mp.len = Math.min(mp.len, ps - mp.offset);
  return mp;
}

/** Linux `bvec_iter_advance`: moves `bytes` forward across bvecs. Throws if past the end. */
export function bvecIterAdvance(bvecs: readonly BioVec[], iter: BvecIter, bytes: number): void {
  if (bytes > iter.size) {
    throw new BvecError(
      "EINVAL",
      `advancing a bvec iterator by ${bytes} bytes with only ${iter.size} left`,
    );
  }
  iter.size -= bytes;
  let rest = bytes + iter.done;
  let idx = iter.idx;
  for (;;) {
    const cur = bvecs[idx];
    if (rest === 0 || cur === undefined || rest < cur.len) break;
    rest -= cur.len;
    idx++;
  }
  iter.idx = idx;
  iter.done = rest;
}

/** Linux `bvec_iter_advance_single`: advances within the current bvec (`bytes` <= what is left in it). */
export function bvecIterAdvanceSingle(
  bvecs: readonly BioVec[],
  iter: BvecIter,
  bytes: number,
): void {
  const done = iter.done + bytes;
  const cur = bvecs[iter.idx] as BioVec;
  iter.size -= bytes;
  if (done === cur.len) {
    iter.idx++;
    iter.done = 0;
  } else {
    iter.done = done;
  }
}

/**
 * Linux `bvec_try_merge_page` (the physical-contiguity part): extends `bv` by `len` bytes when
 * the new bytes start exactly where it ends. Returns whether it merged.
 */
export function bvecTryMergePhys(bv: BioVec, phys: number, len: number): boolean {
  if (bvecPhys(bv) + bv.len !== phys) return false;
  if (bv.len + len > 0xffffffff) return false;
  bv.len += len;
  return true;
}
