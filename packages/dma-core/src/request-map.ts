/**
 * The block layer's DMA mapping of a request (block/blk-mq-dma.c, include/linux/blk-mq-dma.h):
 * `blkRqDmaMapIterStart` classifies the first segment for P2P, then either links every
 * segment into one IOVA range with the two-step API (one sync, one segment out) or maps
 * segment by segment with `dmaMapPhys`. Failures come back as block status values.
 */
import {
  BLK_STS,
  kernelHas,
  type BlkMapIter,
  type BlkStatus,
  type PhysVec,
  REQ_OP,
  type Request,
  and53,
  blkMapIterNext,
  blkRqMapIterInit,
  blkRqPayloadBytes,
  reqPhysGapMask,
} from "@dmasim/bvec";
import { DMA_ATTR, DMA_DIRECTION, type DmaDirection } from "./constants.ts";
import { P2P_MAP, type Device, type P2pMap } from "./device.ts";
import { DmaError, type DmaErrorCode } from "./errors.ts";
import {
  type DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaUseIova,
} from "./iova-api.ts";
import { dmaGetMergeBoundary, dmaMapPage, dmaMapPhys, dmaNeedUnmap } from "./mapping.ts";

/** Linux `struct blk_dma_iter`. */
export interface BlkDmaIter {
  /** The DMA address of the segment just mapped. */
  addr: number;
  /** Its length. */
  len: number;
  /** Valid when a map call returned false. */
  status: BlkStatus;
  /** The P2P map type of the request (Linux `iter->p2pdma.map`). */
  p2p: P2pMap;
  /** The segment iterator (internal). */
  readonly iter: BlkMapIter;
  /** Scratch segment (internal). */
  readonly vec: PhysVec;
}

/** A fresh iterator (allocate once per request slot and reuse). */
export function blkDmaIter(): BlkDmaIter {
  return {
    addr: 0,
    len: 0,
    status: BLK_STS.OK,
    p2p: P2P_MAP.NONE,
    iter: { bio: null, bvecs: [], iter: { size: 0, idx: 0, done: 0 } },
    vec: { paddr: 0, len: 0 },
  };
}

/** Linux `rq_dma_dir`. */
export function rqDmaDir(req: Request): DmaDirection {
  return req.op === REQ_OP.WRITE ? DMA_DIRECTION.TO_DEVICE : DMA_DIRECTION.FROM_DEVICE;
}

/**
 * Linux `errno_to_blk_status` (the `blk_errors` table, block/blk-core.c) for the errors the DMA
 * layer gives: ENOMEM, EOPNOTSUPP, EREMOTEIO, EINVAL, ENODEV and EBUSY have their own status;
 * every other one (EIO, EPERM, EFAULT, EEXIST) is BLK_STS_IOERR.
 */
export function errnoToBlkStatus(code: DmaErrorCode): BlkStatus {
  switch (code) {
    case "ENOMEM":
      return BLK_STS.RESOURCE;
    case "EOPNOTSUPP":
      return BLK_STS.NOTSUPP;
    case "EREMOTEIO":
      return BLK_STS.TARGET;
    case "EINVAL":
      return BLK_STS.INVAL;
    case "ENODEV":
      return BLK_STS.OFFLINE;
    case "EBUSY":
      return BLK_STS.DEV_RESOURCE;
    default:
      return BLK_STS.IOERR;
  }
}

/**
 * Linux `blk_can_dma_map_iova`: no joint of the request is finer than the IOMMU merge
 * boundary. From 6.19 (per-bio gap tracking) the request's own gaps are tested
 * (`req_phys_gap_mask & dma_get_merge_boundary`); before, the test is static on the queue:
 * `!((queue_virt_boundary(q) + 1) & dma_get_merge_boundary)`, so a queue without a virt
 * boundary never takes the IOVA path under an IOMMU.
 */
export function blkCanDmaMapIova(req: Request, dev: Device): boolean {
  if (kernelHas(dev.kernel, "bio-gap-tracking"))
    return and53(reqPhysGapMask(req), dmaGetMergeBoundary(dev)) === 0;
  return and53(req.limits.virtBoundaryMask + 1, dmaGetMergeBoundary(dev)) === 0;
}

/**
 * The attrs of a P2P host-bridge mapping. From 6.19 ("block-dma: properly take MMIO path")
 * it is DMA_ATTR_MMIO on the IOVA and the direct path and at unmap; on 6.17 and 6.18
 * `blk_rq_dma_map_iter_start` treats host-bridge P2P like RAM (attrs 0: cache maintenance
 * and a cacheable IOMMU mapping, as Linux then did).
 */
function p2pAttrs(dev: Device, map: P2pMap): number {
  return map === P2P_MAP.THRU_HOST_BRIDGE && kernelHas(dev.kernel, "block-dma-mmio")
    ? DMA_ATTR.MMIO
    : 0;
}

function mapBus(dev: Device, iter: BlkDmaIter): boolean {
  iter.addr = dev.p2pBusAddr(iter.vec.paddr);
  iter.len = iter.vec.len;
  return true;
}

/** Linux `blk_dma_map_direct`: `dma_map_phys` from 6.18, `dma_map_page` on 6.17 (gate "dma-map-phys"). */
function mapDirect(req: Request, dev: Device, iter: BlkDmaIter): boolean {
  const { paddr, len } = iter.vec;
  const ps = dev.memory.pageSize;
  try {
    iter.addr = kernelHas(dev.kernel, "dma-map-phys")
      ? dmaMapPhys(dev, paddr, len, rqDmaDir(req), p2pAttrs(dev, iter.p2p))
      : dmaMapPage(
          dev,
          Math.floor(paddr / ps),
          paddr - Math.floor(paddr / ps) * ps,
          len,
          rqDmaDir(req),
        );
  } catch (e) {
    if (!(e instanceof DmaError)) throw e;
    iter.status = BLK_STS.RESOURCE;
    return false;
  }
  iter.len = iter.vec.len;
  return true;
}

/**
 * Linux `blk_rq_dma_map_iova`: links every segment, then one sync; on failure destroys what
 * was linked and reports the status. A failed `dma_iova_link` is handled as in the stable fix
 * (gregkh stable ee6bf57a): the state is destroyed and the request fails with the link's
 * status. torvalds @073b9bf9 instead breaks out of the link loop, syncs the part it linked
 * and reports success with `iter.len` the whole IOVA size, so the device would be handed a
 * range that is partly unmapped; the model keeps the fixed behaviour on every release (it is
 * not dated to a release, so not gated).
 */
function mapIova(req: Request, dev: Device, state: DmaIovaState, iter: BlkDmaIter): boolean {
  const dir = rqDmaDir(req);
  const attrs = p2pAttrs(dev, iter.p2p);
  iter.addr = state.addr;
  iter.len = dmaIovaSize(state);
  let mapped = 0;
  try {
    do {
      dmaIovaLink(dev, state, iter.vec.paddr, mapped, iter.vec.len, dir, attrs);
      mapped += iter.vec.len;
    } while (blkMapIterNext(req, iter.iter, iter.vec));
    dmaIovaSync(dev, state, 0, mapped);
  } catch (e) {
    if (!(e instanceof DmaError)) throw e;
    dmaIovaDestroy(dev, state, mapped, dir, attrs);
    iter.status = errnoToBlkStatus(e.code);
    return false;
  }
  return true;
}

/**
 * Linux `blk_rq_dma_map_iter_start`: maps the first DMA segment of `req` (or, on the IOVA path,
 * the whole request as one segment). Returns false with `iter.status` set when nothing was
 * mapped. `state` is reset and, if the IOVA path was taken, must be kept for unmapping.
 */
export function blkRqDmaMapIterStart(
  req: Request,
  dev: Device,
  state: DmaIovaState,
  iter: BlkDmaIter,
): boolean {
  blkRqMapIterInit(req, iter.iter);
  iter.status = BLK_STS.OK;
  iter.p2p = P2P_MAP.NONE;
  if (!blkMapIterNext(req, iter.iter, iter.vec)) return false;
  const p2p = dev.p2pState(iter.vec.paddr);
  switch (p2p) {
    case P2P_MAP.BUS_ADDR:
      iter.p2p = p2p;
      return mapBus(dev, iter);
    case P2P_MAP.THRU_HOST_BRIDGE:
      iter.p2p = p2p;
      break;
    case P2P_MAP.NONE:
      break;
    default:
      iter.status = BLK_STS.INVAL;
      return false;
  }
  if (
    blkCanDmaMapIova(req, dev) &&
    dmaIovaTryAlloc(dev, state, iter.vec.paddr, blkRqPayloadBytes(req))
  ) {
    return mapIova(req, dev, state, iter);
  }
  return mapDirect(req, dev, iter);
}

/** Linux `blk_rq_dma_map_iter_next`: maps the next segment (per-segment path only). */
export function blkRqDmaMapIterNext(
  req: Request,
  dev: Device,
  state: DmaIovaState,
  iter: BlkDmaIter,
): boolean {
  if (dmaUseIova(state)) return false;
  if (!blkMapIterNext(req, iter.iter, iter.vec)) return false;
  if (iter.p2p === P2P_MAP.BUS_ADDR) return mapBus(dev, iter);
  return mapDirect(req, dev, iter);
}

/** Linux `blk_rq_dma_map_coalesce`: the whole request went into one IOVA range. */
export function blkRqDmaMapCoalesce(state: DmaIovaState): boolean {
  return dmaUseIova(state);
}

/**
 * Linux `blk_rq_dma_unmap`: returns true when nothing is left for the caller to unmap (P2P bus
 * addresses, an IOVA range it destroyed, or a device that needs no unmap); false when the
 * caller must unmap each segment itself.
 */
export function blkRqDmaUnmap(
  req: Request,
  dev: Device,
  state: DmaIovaState,
  mappedLen: number,
  map: P2pMap,
): boolean {
  if (map === P2P_MAP.BUS_ADDR) return true;
  if (dmaUseIova(state)) {
    dmaIovaDestroy(dev, state, mappedLen, rqDmaDir(req), p2pAttrs(dev, map));
    return true;
  }
  return !dmaNeedUnmap(dev);
}
