/**
 * The scatterlist-based nvme-pci data path (Linux up to 6.16; as in v6.8 drivers/nvme/host/pci.c
 * `nvme_map_data`): every multi-segment request takes a scatterlist table from a mempool,
 * `blk_rq_map_sg` fills it, `dma_map_sgtable` maps it, and the PRP list or SGL is built from
 * the mapped entries. Kept so both styles can run on the same controller and their costs can
 * be compared.
 */
import {
  BLK_STS,
  type BlkStatus,
  type Request,
  blkRqPayloadBytes,
  bvecPhys,
  fastMod,
  mpBvecIterBvec,
  setU64,
} from "@dmasim/bvec";
import {
  DmaError,
  P2P_MAP,
  type ScatterlistEntry,
  type SgTable,
  blkRqMapSg,
  dmaMapSgtable,
  dmaUnmapPage,
  dmaUnmapSgtable,
  rqDmaDir,
} from "@dmasim/dma-core";
import { SQE } from "../spec/commands.ts";
import {
  NVME_CMD_SGL_METABUF,
  NVME_SGL_DESC_SIZE,
  NVME_SGL_TYPE,
  setSglDesc,
} from "../spec/sgl.ts";
import { allocDescriptor, blockView, descriptorView, nvmeFreeDescriptors } from "./descriptors.ts";
import { IOD, type NvmeIod, iodHas } from "./iod.ts";
import {
  NVME_CTRL_PAGE_SIZE,
  NVME_PRP_ENTRIES_PER_PAGE,
  NVME_PRP_ENTRY_SIZE,
  NVME_SMALL_POOL_SIZE,
} from "./limits.ts";
import type { Mempool } from "./mempool.ts";
import { type MapContext, mapSingleSegment } from "./map.ts";

/** What the scatterlist path needs beyond the two-step one. */
export interface ScatterlistMapContext extends MapContext {
  readonly sgPool: Mempool<SgTable>;
}

/**
 * v6.8 `nvme_pci_use_sgls(dev, req, iod->sgt.nents)`: SGL-capable controller, I/O queue,
 * threshold, and the average size of the `nseg` entries `dma_map_sgtable` produced (not the
 * request's physical segments: an IOMMU that merges everything into one entry makes any
 * request of at least the threshold an SGL).
 */
function nvmePciUseSglsSg(ctx: MapContext, req: Request, qid: number, nseg: number): boolean {
  if (!ctx.sglSupported || qid === 0 || ctx.sglThreshold === 0) return false;
  const avg = Math.ceil(blkRqPayloadBytes(req) / nseg);
  return avg >= ctx.sglThreshold;
}

/**
 * v6.8 `nvme_setup_prp_simple` / `nvme_setup_sgl_simple`: one `dma_map_bvec` (the page API).
 * The PRP test masks the offset to the controller page, as upstream 1bd293fcf3af ("adjust
 * bv_offset by NVME_CTRL_PAGE_SIZE") did in the 6.8 stable series; v6.8.0 compared the whole
 * `bv_offset` (a difference only with CPU pages above 4 KiB).
 */
function nvmeSetupSimple(ctx: MapContext, iod: NvmeIod, req: Request): BlkStatus {
  const bio = req.bio;
  if (bio === null) return BLK_STS.IOERR;
  const bv = mpBvecIterBvec(bio.bvecs, bio.iter);
  const off = fastMod(bv.offset, NVME_CTRL_PAGE_SIZE);
  const prp = off + bv.len <= NVME_CTRL_PAGE_SIZE * 2;
  if (!prp && !(iod.qid !== 0 && ctx.sglThreshold !== 0 && ctx.sglSupported)) return BLK_STS.AGAIN;
  return mapSingleSegment(ctx, iod, req, bv, !prp, "page");
}

/** v6.8 `nvme_pci_setup_prps`: walks the mapped scatterlist; chains lists from the chosen pool. */
function nvmePciSetupPrps(ctx: MapContext, iod: NvmeIod, req: Request, sgt: SgTable): BlkStatus {
  const sg = sgt.sgl;
  let idx = 0;
  let s = sg[0] as ScatterlistEntry;
  let length = blkRqPayloadBytes(req);
  let dmaLen = s.dmaLength;
  let dmaAddr = s.dmaAddress;
  const offset = fastMod(dmaAddr, NVME_CTRL_PAGE_SIZE);
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
    const small = nprps <= NVME_SMALL_POOL_SIZE / NVME_PRP_ENTRY_SIZE;
    if (small) iod.flags += IOD.SMALL_DESCRIPTOR;
    const pool = small ? ctx.small : ctx.large;
    let blk = allocDescriptor(pool);
    if (blk === null) return BLK_STS.RESOURCE;
    iod.descriptors[iod.nrDescriptors++] = blk;
    firstDma = blk.dmaAddr;
    let list = descriptorView(ctx, iod, blk);
    let i = 0;
    for (;;) {
      if (i === NVME_PRP_ENTRIES_PER_PAGE) {
        const old = list;
        blk = allocDescriptor(pool);
        if (blk === null) {
          setU64(iod.cmd, SQE.PRP1, prp1);
          setU64(iod.cmd, SQE.PRP2, firstDma);
          return BLK_STS.RESOURCE;
        }
        iod.descriptors[iod.nrDescriptors++] = blk;
        list = blockView(ctx.mem, blk, NVME_CTRL_PAGE_SIZE);
        const last = (i - 1) * NVME_PRP_ENTRY_SIZE;
        list.set(old.subarray(last, last + NVME_PRP_ENTRY_SIZE), 0);
        setU64(old, last, blk.dmaAddr);
        i = 1;
      }
      setU64(list, i * NVME_PRP_ENTRY_SIZE, dmaAddr);
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

/** v6.8 `nvme_pci_setup_sgls`: one Data Block, or a single Last Segment of `entries` Data Blocks. */
function nvmePciSetupSgls(ctx: MapContext, iod: NvmeIod, req: Request, sgt: SgTable): BlkStatus {
  const entries = sgt.nents;
  iod.cmd[SQE.FLAGS] = NVME_CMD_SGL_METABUF;
  iod.useSgl = true;
  iod.totalLen = blkRqPayloadBytes(req);
  const first = sgt.sgl[0] as ScatterlistEntry;
  if (entries === 1) {
    setSglDesc(iod.cmd, SQE.SGL_ADDR, first.dmaAddress, first.dmaLength, NVME_SGL_TYPE.DATA);
    return BLK_STS.OK;
  }
  const small = entries <= NVME_SMALL_POOL_SIZE / NVME_SGL_DESC_SIZE;
  if (small) iod.flags += IOD.SMALL_DESCRIPTOR;
  const blk = allocDescriptor(small ? ctx.small : ctx.large);
  if (blk === null) return BLK_STS.RESOURCE;
  iod.descriptors[iod.nrDescriptors++] = blk;
  const list = descriptorView(ctx, iod, blk);
  for (let i = 0; i < entries; i++) {
    const s = sgt.sgl[i] as ScatterlistEntry;
    setSglDesc(list, i * NVME_SGL_DESC_SIZE, s.dmaAddress, s.dmaLength, NVME_SGL_TYPE.DATA);
  }
  const len = entries * NVME_SGL_DESC_SIZE;
  setSglDesc(iod.cmd, SQE.SGL_ADDR, blk.dmaAddr, len, NVME_SGL_TYPE.LAST_SEGMENT);
  return BLK_STS.OK;
}

/**
 * v6.8 `nvme_map_data`: a single segment through `nvme_setup_prp_simple` /
 * `nvme_setup_sgl_simple`; otherwise a scatterlist table from the mempool, `blk_rq_map_sg`,
 * `dma_map_sgtable`, then PRPs or SGLs by the average mapped entry.
 */
export function nvmeMapDataScatterlist(
  ctx: ScatterlistMapContext,
  iod: NvmeIod,
  req: Request,
): BlkStatus {
  if (req.nrPhysSegments === 1) {
    const bio = req.bio;
    const bv = bio ? mpBvecIterBvec(bio.bvecs, bio.iter) : undefined;
    if (bv !== undefined && ctx.dev.p2pState(bvecPhys(bv)) === P2P_MAP.NONE) {
      const st = nvmeSetupSimple(ctx, iod, req);
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
  const st = nvmePciUseSglsSg(ctx, req, iod.qid, sgt.nents)
    ? nvmePciSetupSgls(ctx, iod, req, sgt)
    : nvmePciSetupPrps(ctx, iod, req, sgt);
  if (st !== BLK_STS.OK) nvmeUnmapDataScatterlist(ctx, iod, req);
  return st;
}

/**
 * v6.8 `nvme_unmap_data`: `dma_unmap_page` for a single segment; otherwise one unmap call for
 * the whole table, then the table and the descriptors (`nvme_free_descriptors`).
 */
export function nvmeUnmapDataScatterlist(
  ctx: ScatterlistMapContext,
  iod: NvmeIod,
  req: Request,
): void {
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
  if (iod.nrDescriptors > 0) nvmeFreeDescriptors(ctx, iod);
}
