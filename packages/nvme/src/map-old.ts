/**
 * The old, scatterlist-based nvme-pci data path (≈ Linux 6.8, `nvme_map_data`): every
 * multi-segment request takes a scatterlist table from a mempool, `blk_rq_map_sg` fills it,
 * `dma_map_sgtable` maps it, and the PRP list or SGL is built from the mapped entries. Kept so
 * both styles can run on the same controller and their costs can be compared.
 */
import {
  BLK_STS,
  type BlkStatus,
  type Request,
  blkRqPayloadBytes,
  bvecPhys,
  mpBvecIterBvec,
} from "@dmasim/bvec";
import {
  DmaError,
  type DmaPool,
  type DmaPoolBlock,
  P2P_MAP,
  type ScatterlistEntry,
  type SgTable,
  blkRqMapSg,
  dmaMapSgtable,
  dmaUnmapPage,
  dmaUnmapSgtable,
  rqDmaDir,
} from "@dmasim/dma-core";
import {
  NVME_CMD_SGL_METABUF,
  NVME_CTRL_PAGE_SIZE,
  NVME_SGL_TYPE,
  NVME_SMALL_POOL_SIZE,
} from "./constants.ts";
import { IOD, type Mempool, type NvmeIod, iodHas } from "./iod.ts";
import { type MapContext, blockView, mapSingleSegment } from "./map-new.ts";
import { SQE, getU64, setSglDesc, setU64 } from "./sqe.ts";

/** What the old path needs beyond the new one. */
export interface OldMapContext extends MapContext {
  readonly sgPool: Mempool<SgTable>;
}

function alloc(pool: DmaPool): DmaPoolBlock | null {
  try {
    return pool.alloc();
  } catch (e) {
    if (e instanceof DmaError) return null;
    throw e;
  }
}

/**
 * Old `nvme_pci_use_sgls(dev, req, iod->sgt.nents)`: SGL-capable controller, I/O queue,
 * threshold, and the average size of the `nseg` entries `dma_map_sgtable` produced (not the
 * request's physical segments: an IOMMU that merges everything into one entry makes any
 * request of at least the threshold an SGL).
 */
function oldUseSgls(ctx: MapContext, req: Request, qid: number, nseg: number): boolean {
  if (!ctx.sglSupported || qid === 0 || ctx.sglThreshold === 0) return false;
  const avg = Math.ceil(blkRqPayloadBytes(req) / nseg);
  return avg >= ctx.sglThreshold;
}

/** Old `nvme_setup_prp_simple` / `nvme_setup_sgl_simple`: one `dma_map_bvec` (the page API). */
function setupSimple(ctx: MapContext, iod: NvmeIod, req: Request): BlkStatus {
  const bio = req.bio;
  if (bio === null) return BLK_STS.IOERR;
  const bv = mpBvecIterBvec(bio.bvecs, bio.iter);
  const off = bv.offset % NVME_CTRL_PAGE_SIZE;
  const prp = off + bv.len <= NVME_CTRL_PAGE_SIZE * 2;
  if (!prp && !(iod.qid !== 0 && ctx.sglThreshold !== 0 && ctx.sglSupported)) return BLK_STS.AGAIN;
  return mapSingleSegment(ctx, iod, req, bv, !prp, "page");
}

/** Old `nvme_pci_setup_prps`: walks the mapped scatterlist; chains lists from the chosen pool. */
function setupPrps(ctx: MapContext, iod: NvmeIod, req: Request, sgt: SgTable): BlkStatus {
  const sg = sgt.sgl;
  let idx = 0;
  let s = sg[0] as ScatterlistEntry;
  let length = blkRqPayloadBytes(req);
  let dmaLen = s.dmaLength;
  let dmaAddr = s.dmaAddress;
  const offset = dmaAddr % NVME_CTRL_PAGE_SIZE;
  let firstDma = 0;
  const prp1 = s.dmaAddress;
  iod.totalLen = length;
  length -= NVME_CTRL_PAGE_SIZE - offset;
  done: if (length > 0) {
    dmaLen -= NVME_CTRL_PAGE_SIZE - offset;
    if (dmaLen > 0) {
      dmaAddr += NVME_CTRL_PAGE_SIZE - offset;
    } else {
      s = sg[++idx] as ScatterlistEntry;
      dmaAddr = s.dmaAddress;
      dmaLen = s.dmaLength;
    }
    if (length <= NVME_CTRL_PAGE_SIZE) {
      firstDma = dmaAddr;
      break done;
    }
    const nprps = Math.ceil(length / NVME_CTRL_PAGE_SIZE);
    const small = nprps <= NVME_SMALL_POOL_SIZE / 8;
    if (small) iod.flags += IOD.SMALL_DESCRIPTOR;
    const pool = small ? ctx.small : ctx.large;
    let blk = alloc(pool);
    if (blk === null) return BLK_STS.RESOURCE;
    iod.descriptors[iod.nrDescriptors++] = blk;
    firstDma = blk.dmaAddr;
    let list = blockView(ctx.mem, blk, small ? NVME_SMALL_POOL_SIZE : NVME_CTRL_PAGE_SIZE);
    let i = 0;
    for (;;) {
      if (i === NVME_CTRL_PAGE_SIZE / 8) {
        const old = list;
        blk = alloc(pool);
        if (blk === null) {
          setU64(iod.cmd, SQE.PRP1, prp1);
          setU64(iod.cmd, SQE.PRP2, firstDma);
          return BLK_STS.RESOURCE;
        }
        iod.descriptors[iod.nrDescriptors++] = blk;
        list = blockView(ctx.mem, blk, NVME_CTRL_PAGE_SIZE);
        list.set(old.subarray((i - 1) * 8, i * 8), 0);
        setU64(old, (i - 1) * 8, blk.dmaAddr);
        i = 1;
      }
      setU64(list, i * 8, dmaAddr);
      i++;
      dmaLen -= NVME_CTRL_PAGE_SIZE;
      dmaAddr += NVME_CTRL_PAGE_SIZE;
      length -= NVME_CTRL_PAGE_SIZE;
      if (length <= 0) break;
      if (dmaLen > 0) continue;
      if (dmaLen < 0) {
        setU64(iod.cmd, SQE.PRP1, prp1);
        setU64(iod.cmd, SQE.PRP2, firstDma);
        return BLK_STS.IOERR;
      }
      s = sg[++idx] as ScatterlistEntry;
      dmaAddr = s.dmaAddress;
      dmaLen = s.dmaLength;
    }
  }
  setU64(iod.cmd, SQE.PRP1, prp1);
  setU64(iod.cmd, SQE.PRP2, firstDma);
  return BLK_STS.OK;
}

/** Old `nvme_pci_setup_sgls`: one Data Block, or a single Last Segment of `entries` Data Blocks. */
function setupSgls(ctx: MapContext, iod: NvmeIod, req: Request, sgt: SgTable): BlkStatus {
  const entries = sgt.nents;
  iod.cmd[SQE.FLAGS] = NVME_CMD_SGL_METABUF;
  iod.useSgl = true;
  iod.totalLen = blkRqPayloadBytes(req);
  const first = sgt.sgl[0] as ScatterlistEntry;
  if (entries === 1) {
    setSglDesc(iod.cmd, SQE.SGL_ADDR, first.dmaAddress, first.dmaLength, NVME_SGL_TYPE.DATA);
    return BLK_STS.OK;
  }
  const small = entries <= NVME_SMALL_POOL_SIZE / 16;
  if (small) iod.flags += IOD.SMALL_DESCRIPTOR;
  const blk = alloc(small ? ctx.small : ctx.large);
  if (blk === null) return BLK_STS.RESOURCE;
  iod.descriptors[iod.nrDescriptors++] = blk;
  const list = blockView(ctx.mem, blk, small ? NVME_SMALL_POOL_SIZE : NVME_CTRL_PAGE_SIZE);
  for (let i = 0; i < entries; i++) {
    const s = sgt.sgl[i] as ScatterlistEntry;
    setSglDesc(list, i * 16, s.dmaAddress, s.dmaLength, NVME_SGL_TYPE.DATA);
  }
  setSglDesc(iod.cmd, SQE.SGL_ADDR, blk.dmaAddr, entries * 16, NVME_SGL_TYPE.LAST_SEGMENT);
  return BLK_STS.OK;
}

/** Old `nvme_map_data`. */
export function nvmeMapDataOld(ctx: OldMapContext, iod: NvmeIod, req: Request): BlkStatus {
  if (req.nrPhysSegments === 1) {
    const bio = req.bio;
    const bv = bio ? mpBvecIterBvec(bio.bvecs, bio.iter) : undefined;
    if (bv !== undefined && ctx.dev.p2pState(bvecPhys(bv)) === P2P_MAP.NONE) {
      const st = setupSimple(ctx, iod, req);
      if (st !== BLK_STS.AGAIN) return st;
    }
  }
  const sgt = ctx.sgPool.alloc();
  if (sgt === null) return BLK_STS.RESOURCE;
  iod.sgt = sgt;
  blkRqMapSg(req, sgt);
  try {
    dmaMapSgtable(ctx.dev, sgt, rqDmaDir(req), 0);
  } catch (e) {
    ctx.sgPool.release(sgt);
    iod.sgt = null;
    if (e instanceof DmaError) return e.code === "EREMOTEIO" ? BLK_STS.TARGET : BLK_STS.RESOURCE;
    throw e;
  }
  const st = oldUseSgls(ctx, req, iod.qid, sgt.nents)
    ? setupSgls(ctx, iod, req, sgt)
    : setupPrps(ctx, iod, req, sgt);
  if (st !== BLK_STS.OK) nvmeUnmapDataOld(ctx, iod, req);
  return st;
}

/**
 * Old `nvme_unmap_data`: `dma_unmap_page` for a single segment; otherwise one unmap call for
 * the whole table, then the descriptors and the table.
 */
export function nvmeUnmapDataOld(ctx: OldMapContext, iod: NvmeIod, req: Request): void {
  if (iodHas(iod.flags, IOD.SINGLE_SEGMENT)) {
    dmaUnmapPage(ctx.dev, iod.dmaVec.addr, iod.dmaVec.len, rqDmaDir(req), 0);
    return;
  }
  const sgt = iod.sgt;
  if (sgt !== null) {
    dmaUnmapSgtable(ctx.dev, sgt, rqDmaDir(req), 0);
    ctx.sgPool.release(sgt);
    iod.sgt = null;
  }
  if (iod.nrDescriptors === 0) return;
  const pool = iodHas(iod.flags, IOD.SMALL_DESCRIPTOR) ? ctx.small : ctx.large;
  let dma = iod.cmd[SQE.FLAGS] === 0 ? getU64(iod.cmd, SQE.PRP2) : getU64(iod.cmd, SQE.SGL_ADDR);
  for (let i = 0; i < iod.nrDescriptors; i++) {
    const blk = iod.descriptors[i] as DmaPoolBlock;
    const next =
      i + 1 < iod.nrDescriptors
        ? getU64(blockView(ctx.mem, blk, NVME_CTRL_PAGE_SIZE), NVME_CTRL_PAGE_SIZE - 8)
        : 0;
    pool.freeBlock(blk.cpuAddr, dma);
    dma = next;
  }
  iod.nrDescriptors = 0;
}
