/**
 * @dmasim/bvec — the lowest layer of dmasim: address arithmetic, simulated physical memory,
 * bio_vecs, bios, requests, queue limits and physical-segment iteration, plus the simulated
 * clock, counters and seeded randomness every layer uses.
 */
export {
  MAX_ADDR,
  PHYS_ADDR_BITS,
  TWO_POW_32,
  alignDown,
  alignUp,
  and53,
  checkAddr,
  checkInt,
  checkMask,
  checkPow2,
  fastMod,
  ffs,
  fls,
  hex,
  hi32,
  ilog2,
  isAligned,
  isPow2,
  join64,
  lo32,
  lowMask,
  lowestSetBit,
  offsetIn,
  or53,
  orderBase2,
  parseAddress,
  pfnOf,
  pfnPhys,
  pow2,
  rounddownPow2,
  roundupPow2,
  xor53,
} from "./addr.ts";
export { getU16, getU32, getU64, getU64Hi, leU32View, setU16, setU32, setU64 } from "./le.ts";
export { BvecError, type BvecErrorCode, InternalError, SimError } from "./errors.ts";
export {
  CounterSet,
  type CounterSnapshot,
  collectCounters,
  collectGauges,
  diffCounters,
} from "./counters.ts";
export { SimClock, type TimerId } from "./clock.ts";
export { Rng } from "./random.ts";
export { type MemoryCounter, PhysMemory, type PhysMemoryOptions } from "./memory.ts";
export {
  PAGE_SIZES,
  type PageSize,
  REGION_KIND,
  type Region,
  type RegionKind,
  type RegionSpec,
  ZONE,
  type Zone,
  standardLayout,
} from "./phys-map.ts";
export { type AllocOptions, MAX_PAGE_ORDER } from "./page-alloc.ts";
export { type ByteSink, type ByteSource, SparseBytes } from "./sparse.ts";
export {
  type BioVec,
  type BvecIter,
  bvec,
  bvecFromPhys,
  bvecIter,
  bvecIterAdvance,
  bvecIterAdvanceSingle,
  bvecIterBvec,
  bvecPhys,
  bvecTryMergePhys,
  mpBvecIterBvec,
} from "./bvec.ts";
export {
  BLK_DEF_MAX_SECTORS_CAP,
  BLK_MAX_SEGMENTS,
  BLK_MAX_SEGMENT_SIZE,
  BLK_MIN_SEGMENT_SIZE,
  BLK_SEG_BOUNDARY_MASK,
  DEFAULT_QUEUE_LIMITS,
  type QueueLimits,
  SECTOR_SIZE,
  UINT_MAX,
  biovecPhysMergeable,
  bvecGapToPrev,
  getMaxSegmentSize,
  queueLimits,
} from "./limits.ts";
export {
  BLK_STS,
  blkStatusName,
  Bio,
  type BlkStatus,
  REQ_OP,
  type ReqOp,
  bioAddPage,
  bioAddPhys,
  bioChain,
  bioEndio,
  bioFromBvecs,
  bioReset,
  bioSegments,
  bioSplit,
} from "./bio.ts";
export { type SplitPoint, bioSegGap, bioSplitIoAt, bioSplitToLimits } from "./blk-merge.ts";
export {
  Request,
  blkRqAppendBio,
  blkRqFromBios,
  blkRqInit,
  blkRqNrPhysSegments,
  blkRqPayloadBytes,
  reqPhysGapMask,
} from "./request.ts";
export {
  type BlkMapIter,
  type PhysVec,
  blkMapIterNext,
  blkRqMapIterInit,
  blkRqPhysSegments,
  countPhysSegments,
} from "./segments.ts";
export {
  DEFAULT_KERNEL,
  KERNEL_GATES,
  KERNEL_VERSIONS,
  type KernelGate,
  type KernelGateName,
  type KernelVersion,
  isKernelVersion,
  kernelGatesMarkdown,
  kernelHas,
  parseKernelVersion,
} from "./kernel.ts";
