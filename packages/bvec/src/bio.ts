/**
 * `struct bio`, the parts the data path needs: the bvec table and its iterator, adding pages,
 * splitting and chaining, and the per-bio gap bit. Splitting a bio to the queue limits is in
 * blk-merge.ts, the request built from bios in request.ts.
 */
import { checkInt, fastMod, hex } from "./addr.ts";
import {
  type BioVec,
  type BvecIter,
  bvec,
  bvecIterAdvance,
  bvecTryMergePhys,
  bvecPhys,
} from "./bvec.ts";
import { BvecError } from "./errors.ts";
import { SECTOR_SIZE, UINT_MAX } from "./limits.ts";
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

/** A status's name as the kernel writes it ("BLK_STS_IOERR"; the role of `blk_status_to_str`). */
export function blkStatusName(status: number): string {
  const name = Object.entries(BLK_STS).find(([, v]) => v === status)?.[0];
  return name === undefined ? `blk_status ${status}` : `BLK_STS_${name}`;
}

/** Linux `struct bio`, the fields the data path uses. */
export class Bio {
  /** The operation (set again by `bioReset`). */
  op: ReqOp;
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
 * bio is full or cloned. `samePgmap`, when given, is Linux `zone_device_pages_have_same_pgmap`
 * for the last bvec's address and the new one (false for host memory and P2P memory, or for two
 * P2P providers): such a page is refused (0; the caller starts a new bio), so one bio never
 * mixes them ("block: don't merge different kinds of P2P transfers in a single bio", 6.17).
 */
export function bioAddPage(
  bio: Bio,
  page: number,
  len: number,
  offset: number,
  pageSize = 4096,
  samePgmap?: (a: number, b: number) => boolean,
): number {
  const bv = bvec(page, offset, len, pageSize);
  if (bio.cloned) return 0;
  if (bio.iter.size > UINT_MAX - len) return 0;
  const last = bio.bvecs[bio.bvecs.length - 1];
  const phys = bvecPhys(bv);
  if (last !== undefined) {
    if (samePgmap !== undefined && !samePgmap(bvecPhys(last), phys)) return 0;
    if (last.pageSize === pageSize && bvecTryMergePhys(last, phys, len)) {
      bio.iter.size += len;
      return len;
    }
  }
  if (bio.bvecs.length >= bio.maxVecs) return 0;
  bio.bvecs.push(bv);
  bio.iter.size += len;
  return len;
}

/**
 * Linux `bio_reset`: makes a bio whose I/O has ended ready to be used again, for operation `op`
 * at `sector`: an empty table (its capacity, `maxVecs`, kept), no chain, no gap bit, status OK,
 * one completion expected and no `endIo`. A clone shares another bio's table and cannot be reset
 * (EINVAL). Callers that submit many I/Os keep one bio per slot this way instead of allocating
 * one per I/O.
 */
export function bioReset(bio: Bio, op: ReqOp, sector: number): void {
  if (bio.cloned) throw new BvecError("EINVAL", "cannot reset a cloned bio (it shares a table)");
  checkInt(sector, "bio start sector");
  bio.op = op;
  // Emptied by popping: setting an array's length to 0 gives V8's backing store up, and the
  // next bioAddPage would allocate a new one (about ten times the cost of the pops).
  const bvecs = bio.bvecs;
  while (bvecs.length > 0) bvecs.pop();
  bio.iter.size = 0;
  bio.iter.idx = 0;
  bio.iter.done = 0;
  bio.iter.sector = sector;
  bio.next = null;
  bio.gapBit = 0;
  bio.parent = null;
  bio.remaining = 1;
  bio.status = BLK_STS.OK;
  bio.endIo = undefined;
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
