/**
 * The two-step nvme-pci data path (Linux 6.17+, drivers/nvme/host/pci.c): `nvme_map_data` with
 * the block layer's request mapper (`blk_rq_dma_map_iter_start` / `_next`, which use the
 * two-step IOVA API when they can), PRP lists and SGL segments built straight from the DMA
 * iterator, per-segment records kept only when they are needed, and `nvme_unmap_data`.
 */
import {
  BLK_STS,
  type BioVec,
  type BlkStatus,
  type Request,
  and53,
  blkRqPayloadBytes,
  bvecPhys,
  fastMod,
  getU32,
  getU64,
  kernelHas,
  mpBvecIterBvec,
  reqPhysGapMask,
  setU64,
} from "@dmasim/bvec";
import {
  type BlkDmaIter,
  DMA_ATTR,
  type DmaDirection,
  type DmaPoolBlock,
  type DmaVec,
  P2P_MAP,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaIovaSize,
  dmaNeedUnmap,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapRange,
  dmaUseIova,
  rqDmaDir,
} from "@dmasim/dma-core";
import { SQE } from "../spec/commands.ts";
import {
  NVME_CMD_SGL_METABUF,
  NVME_SGL_DESC_SIZE,
  NVME_SGL_TYPE,
  setSglDesc,
  sglDescType,
} from "../spec/sgl.ts";
import {
  allocDescriptor,
  blockView,
  descriptorPool,
  descriptorView,
  nvmeFreeDescriptors,
} from "./descriptors.ts";
import { IOD, type NvmeIod, iodHas } from "./iod.ts";
import {
  NVME_CTRL_PAGE_SIZE,
  NVME_MAX_NR_DESCRIPTORS,
  NVME_PRP_ENTRIES_PER_PAGE,
  NVME_PRP_ENTRY_SIZE,
  NVME_SMALL_POOL_SIZE,
} from "./limits.ts";
import { type MapContext, mapSingleSegment } from "./map.ts";

/** Linux `enum nvme_use_sgl`. */
export const USE_SGL = { UNSUPPORTED: 0, SUPPORTED: 1, FORCED: 2 } as const;
/** An SGL decision. */
export type UseSgl = (typeof USE_SGL)[keyof typeof USE_SGL];

/**
 * Linux `nvme_pci_use_sgls`. From 6.19 (gate "bio-gap-tracking": SGL-capable I/O queues have
 * no virt boundary) a gap inside a controller page, which PRPs cannot express, forces SGLs;
 * before, the 4 KiB virt boundary keeps such gaps out of every request and nothing forces SGLs
 * (user and multi-integrity-segment commands, which also force them, are not modelled).
 */
export function nvmePciUseSgls(ctx: MapContext, req: Request, qid: number): UseSgl {
  if (qid !== 0 && ctx.sglSupported) {
    if (
      kernelHas(ctx.dev.kernel, "bio-gap-tracking") &&
      and53(reqPhysGapMask(req), NVME_CTRL_PAGE_SIZE - 1) !== 0
    )
      return USE_SGL.FORCED;
    return USE_SGL.SUPPORTED;
  }
  return USE_SGL.UNSUPPORTED;
}

/**
 * nvme-pci's unmap of one segment it mapped or recorded (`nvme_unmap_data`, `nvme_free_prps`,
 * `nvme_free_sgls`, `nvme_unmap_iter`): `dma_unmap_phys` from 6.18, `dma_unmap_page` on 6.17
 * (gate "dma-map-phys"). The vec-array path goes through dma-core's `dmaUnmapRange`.
 */
function unmapSegment(
  ctx: MapContext,
  addr: number,
  len: number,
  dir: DmaDirection,
  attrs: number,
): void {
  if (kernelHas(ctx.dev.kernel, "dma-map-phys")) dmaUnmapPhys(ctx.dev, addr, len, dir, attrs);
  else dmaUnmapPage(ctx.dev, addr, len, dir, attrs);
}

function mapAttrs(iod: NvmeIod): number {
  return iodHas(iod.flags, IOD.DATA_MMIO) ? DMA_ATTR.MMIO : 0;
}

/** The segment `nvmePciSetupDataSimple` looks at (mapping is synchronous: one scratch bvec serves). */
const simpleBv: BioVec = { page: 0, offset: 0, len: 0, pageSize: 4096 };

/**
 * Linux `nvme_pci_setup_data_simple`: one segment, mapped with one call; PRP1/PRP2 when it fits
 * two controller pages and SGLs are not forced, else one SGL Data Block. Returns AGAIN to fall
 * back to the iterator (P2P memory, or no SGL support for a range PRP1+PRP2 cannot describe).
 */
function nvmePciSetupDataSimple(
  ctx: MapContext,
  iod: NvmeIod,
  req: Request,
  useSgl: UseSgl,
): BlkStatus {
  const bio = req.bio;
  if (bio === null) return BLK_STS.IOERR;
  const bv = mpBvecIterBvec(bio.bvecs, bio.iter, simpleBv);
  const phys = bvecPhys(bv);
  const prp1Offset = fastMod(bv.offset, NVME_CTRL_PAGE_SIZE);
  const prpPossible = prp1Offset + bv.len <= NVME_CTRL_PAGE_SIZE * 2;
  if (useSgl === USE_SGL.UNSUPPORTED && !prpPossible) return BLK_STS.AGAIN;
  if (ctx.dev.p2pState(phys) !== P2P_MAP.NONE) return BLK_STS.AGAIN;
  return mapSingleSegment(
    ctx,
    iod,
    req,
    bv,
    useSgl === USE_SGL.FORCED || !prpPossible,
    kernelHas(ctx.dev.kernel, "dma-map-phys") ? "phys" : "page",
  );
}

/**
 * Linux `nvme_pci_prp_save_mapping`: records a mapped segment for unmap when unmapping is
 * needed and the IOVA path was not used. The first record lives inline in the iod; the array
 * of records comes from the mempool only when a second segment arrives
 * (docs/review-points.md#inline-pair-in-iod). Deliberate difference: upstream's iod has no
 * inline pair, so its first record already takes the `dma_vecs` array from the mempool; dmasim
 * keeps the review's shape, so single-segment iterator-path I/Os (offset buffers on PRP-only
 * controllers, per-segment mapping, SWIOTLB) hold no array where Linux holds one.
 */
function nvmePciPrpSaveMapping(ctx: MapContext, iod: NvmeIod, iter: BlkDmaIter): boolean {
  if (dmaUseIova(iod.dmaState) || !dmaNeedUnmap(ctx.dev) || iodHas(iod.flags, IOD.DATA_P2P))
    return true;
  if (iod.nrDmaVecs === 0) {
    iod.dmaVec.addr = iter.addr;
    iod.dmaVec.len = iter.len;
    iod.nrDmaVecs = 1;
    return true;
  }
  if (iod.dmaVecs === null) {
    const arr = ctx.vecPool.alloc();
    if (arr === null) {
      iter.status = BLK_STS.RESOURCE;
      return false;
    }
    iod.dmaVecs = arr;
    const first = arr[0] as DmaVec;
    first.addr = iod.dmaVec.addr;
    first.len = iod.dmaVec.len;
  }
  if (iod.nrDmaVecs >= iod.dmaVecs.length) {
    // More segments than one array holds (NVME_MAX_SEGS): only a request that broke the queue
    // limits gets here; Linux would overrun its array, the model fails the request.
    iter.status = BLK_STS.IOERR;
    return false;
  }
  const v = iod.dmaVecs[iod.nrDmaVecs] as DmaVec;
  v.addr = iter.addr;
  v.len = iter.len;
  iod.nrDmaVecs++;
  return true;
}

/** Linux `nvme_unmap_iter`: undoes the segment the iterator mapped last (it was not recorded). */
function nvmeUnmapIter(ctx: MapContext, req: Request, iod: NvmeIod, iter: BlkDmaIter): void {
  if (!blkRqDmaUnmap(req, ctx.dev, iod.dmaState, dmaIovaSize(iod.dmaState), iter.p2p)) {
    unmapSegment(ctx, iter.addr, iter.len, rqDmaDir(req), mapAttrs(iod));
  }
}

/** Linux `nvme_pci_prp_iter_next`. */
function nvmePciPrpIterNext(
  ctx: MapContext,
  req: Request,
  iod: NvmeIod,
  iter: BlkDmaIter,
): boolean {
  if (iter.len > 0) return true;
  if (!blkRqDmaMapIterNext(req, ctx.dev, iod.dmaState, iter)) return false;
  if (!nvmePciPrpSaveMapping(ctx, iod, iter)) {
    unmapSegment(ctx, iter.addr, iter.len, rqDmaDir(req), mapAttrs(iod));
    return false;
  }
  return true;
}

/**
 * Linux `nvme_pci_setup_data_prp`: PRP1 is the first (possibly unaligned) address; PRP2 the
 * second page or a list; lists come from the small (<= 32 entries) or the large pool and chain
 * through slot 511 up to 5 pages. A segment that does not end on a 4 KiB boundary mid-request
 * is malformed (IOERR).
 */
function nvmePciSetupDataPrp(
  ctx: MapContext,
  iod: NvmeIod,
  req: Request,
  iter: BlkDmaIter,
): BlkStatus {
  let length = blkRqPayloadBytes(req);
  const cmd = iod.cmd;
  if (!nvmePciPrpSaveMapping(ctx, iod, iter)) {
    nvmeUnmapIter(ctx, req, iod, iter);
    return iter.status;
  }
  const prp1 = iter.addr;
  let prp2 = 0;
  let status: BlkStatus = BLK_STS.OK;
  let malformed = false;
  let chunk = Math.min(length, NVME_CTRL_PAGE_SIZE - fastMod(iter.addr, NVME_CTRL_PAGE_SIZE));
  iod.totalLen += chunk;
  iter.addr += chunk;
  iter.len -= chunk;
  length -= chunk;
  build: if (length > 0) {
    if (!nvmePciPrpIterNext(ctx, req, iod, iter)) {
      if (iter.status === BLK_STS.OK) malformed = true;
      else status = iter.status;
      break build;
    }
    if (length <= NVME_CTRL_PAGE_SIZE) {
      prp2 = iter.addr;
      iod.totalLen += length;
      break build;
    }
    if (Math.ceil(length / NVME_CTRL_PAGE_SIZE) <= NVME_SMALL_POOL_SIZE / NVME_PRP_ENTRY_SIZE)
      iod.flags += IOD.SMALL_DESCRIPTOR;
    const blk = allocDescriptor(descriptorPool(ctx, iod));
    if (blk === null) {
      status = BLK_STS.RESOURCE;
      break build;
    }
    prp2 = blk.dmaAddr;
    iod.descriptors[iod.nrDescriptors++] = blk;
    let list = descriptorView(ctx, iod, blk);
    let i = 0;
    for (;;) {
      if (i === NVME_PRP_ENTRIES_PER_PAGE) {
        if (iod.nrDescriptors >= NVME_MAX_NR_DESCRIPTORS) {
          malformed = true;
          break;
        }
        const next = allocDescriptor(ctx.large);
        if (next === null) {
          status = BLK_STS.RESOURCE;
          break;
        }
        iod.descriptors[iod.nrDescriptors++] = next;
        const nl = blockView(ctx.mem, next, NVME_CTRL_PAGE_SIZE); // chained pages are large
        // Move the last entry to the new page and put the link in its place.
        const last = (i - 1) * NVME_PRP_ENTRY_SIZE;
        nl.set(list.subarray(last, last + NVME_PRP_ENTRY_SIZE), 0);
        setU64(list, last, next.dmaAddr);
        list = nl;
        i = 1;
      }
      setU64(list, i * NVME_PRP_ENTRY_SIZE, iter.addr);
      i++;
      chunk = Math.min(length, NVME_CTRL_PAGE_SIZE);
      if (iter.len < chunk) {
        malformed = true;
        break;
      }
      iod.totalLen += chunk;
      iter.addr += chunk;
      iter.len -= chunk;
      length -= chunk;
      if (length === 0) break;
      if (!nvmePciPrpIterNext(ctx, req, iod, iter)) {
        if (iter.status === BLK_STS.OK) malformed = true;
        else status = iter.status;
        break;
      }
    }
  }
  // PRP1 and PRP2 are written even on failure: unmap finds the descriptors through PRP2.
  setU64(cmd, SQE.PRP1, prp1);
  setU64(cmd, SQE.PRP2, prp2);
  if (malformed) {
    nvmeUnmapData(ctx, iod, req, true);
    return BLK_STS.IOERR;
  }
  if (status !== BLK_STS.OK) {
    nvmeUnmapData(ctx, iod, req, true);
    return status;
  }
  return BLK_STS.OK;
}

/**
 * Linux `nvme_pci_setup_data_sgl`: one Data Block in the command for a single or coalesced
 * segment; otherwise a Last Segment descriptor pointing at up to 256 Data Blocks in a small
 * (<= 16) or large descriptor block.
 */
function nvmePciSetupDataSgl(
  ctx: MapContext,
  iod: NvmeIod,
  req: Request,
  iter: BlkDmaIter,
): BlkStatus {
  const cmd = iod.cmd;
  cmd[SQE.FLAGS] = NVME_CMD_SGL_METABUF;
  if (req.nrPhysSegments === 1 || dmaUseIova(iod.dmaState)) {
    setSglDesc(cmd, SQE.SGL_ADDR, iter.addr, iter.len, NVME_SGL_TYPE.DATA);
    iod.totalLen += iter.len;
    return BLK_STS.OK;
  }
  const entries = req.nrPhysSegments;
  if (entries <= NVME_SMALL_POOL_SIZE / NVME_SGL_DESC_SIZE) iod.flags += IOD.SMALL_DESCRIPTOR;
  const blk = allocDescriptor(descriptorPool(ctx, iod));
  if (blk === null) {
    if (iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)) iod.flags -= IOD.SMALL_DESCRIPTOR;
    nvmeUnmapIter(ctx, req, iod, iter);
    return BLK_STS.RESOURCE;
  }
  iod.descriptors[iod.nrDescriptors++] = blk;
  const list = descriptorView(ctx, iod, blk);
  let mapped = 0;
  let status: BlkStatus = BLK_STS.OK;
  do {
    if (mapped === entries) {
      status = BLK_STS.IOERR;
      break;
    }
    setSglDesc(list, mapped * NVME_SGL_DESC_SIZE, iter.addr, iter.len, NVME_SGL_TYPE.DATA);
    mapped++;
    iod.totalLen += iter.len;
  } while (blkRqDmaMapIterNext(req, ctx.dev, iod.dmaState, iter));
  setSglDesc(
    cmd,
    SQE.SGL_ADDR,
    blk.dmaAddr,
    mapped * NVME_SGL_DESC_SIZE,
    NVME_SGL_TYPE.LAST_SEGMENT,
  );
  if (status === BLK_STS.OK && iter.status !== BLK_STS.OK) status = iter.status;
  if (status !== BLK_STS.OK) {
    if (status === BLK_STS.IOERR) nvmeUnmapIter(ctx, req, iod, iter);
    nvmeUnmapData(ctx, iod, req, true);
    return status;
  }
  return BLK_STS.OK;
}

/**
 * Linux `nvme_map_data`: a single segment goes to `nvme_pci_setup_data_simple` (which may hand
 * it back); otherwise the iterator starts (two-step IOVA or per segment), and
 * `nvme_pci_use_sgls` with the average segment size picks SGL or PRP. Returns a block status;
 * on any failure nothing stays mapped or allocated.
 */
export function nvmeMapData(ctx: MapContext, iod: NvmeIod, req: Request): BlkStatus {
  const useSgl = nvmePciUseSgls(ctx, req, iod.qid);
  if (req.nrPhysSegments === 1) {
    const st = nvmePciSetupDataSimple(ctx, iod, req, useSgl);
    if (st !== BLK_STS.AGAIN) return st;
  }
  const iter = ctx.iter;
  if (!blkRqDmaMapIterStart(req, ctx.dev, iod.dmaState, iter)) return iter.status;
  iod.p2p = iter.p2p;
  if (iter.p2p === P2P_MAP.BUS_ADDR) iod.flags += IOD.DATA_P2P;
  else if (iter.p2p === P2P_MAP.THRU_HOST_BRIDGE) iod.flags += IOD.DATA_MMIO;
  const nseg = dmaUseIova(iod.dmaState) ? 1 : req.nrPhysSegments;
  const avg = Math.ceil(blkRqPayloadBytes(req) / nseg);
  if (
    useSgl === USE_SGL.FORCED ||
    (useSgl === USE_SGL.SUPPORTED && ctx.sglThreshold !== 0 && avg >= ctx.sglThreshold)
  ) {
    return nvmePciSetupDataSgl(ctx, iod, req, iter);
  }
  return nvmePciSetupDataPrp(ctx, iod, req, iter);
}

const scratchVecs: DmaVec[] = [];
/** The one-element list an inline DMA pair is unmapped through (set before each use). */
const inlineVec: DmaVec[] = [{ addr: 0, len: 0 }];

/**
 * Linux `nvme_unmap_data`: one path for every mapping kind (docs/review-points.md#one-unmap):
 * a single segment, an IOVA
 * range (destroyed through `blkRqDmaUnmap`), the SGL descriptors themselves as records, or the
 * recorded PRP segments; then the descriptor blocks. `failed` marks a teardown after a failed
 * build, where the IOVA range is destroyed whole.
 */
export function nvmeUnmapData(ctx: MapContext, iod: NvmeIod, req: Request, failed = false): void {
  const dir = rqDmaDir(req);
  const attrs = mapAttrs(iod);
  if (iodHas(iod.flags, IOD.SINGLE_SEGMENT)) {
    unmapSegment(ctx, iod.dmaVec.addr, iod.totalLen, dir, attrs);
    return;
  }
  const mapped = failed && dmaUseIova(iod.dmaState) ? dmaIovaSize(iod.dmaState) : iod.totalLen;
  if (!blkRqDmaUnmap(req, ctx.dev, iod.dmaState, mapped, iod.p2p)) {
    const cmd = iod.cmd;
    if (cmd[SQE.FLAGS] !== 0) {
      // SGL: the descriptors are the records.
      if (sglDescType(cmd, SQE.SGL_ADDR) === NVME_SGL_TYPE.DATA) {
        unmapSegment(ctx, getU64(cmd, SQE.SGL_ADDR), getU32(cmd, SQE.SGL_LEN), dir, attrs);
      } else {
        const list = descriptorView(ctx, iod, iod.descriptors[0] as DmaPoolBlock);
        const n = getU32(cmd, SQE.SGL_LEN) / NVME_SGL_DESC_SIZE;
        for (let i = 0; i < n; i++) {
          const v = scratchVecs[i] ?? (scratchVecs[i] = { addr: 0, len: 0 });
          v.addr = getU64(list, i * NVME_SGL_DESC_SIZE);
          v.len = getU32(list, i * NVME_SGL_DESC_SIZE + 8);
        }
        dmaUnmapRange(ctx.dev, iod.dmaState, scratchVecs, n, iod.totalLen, dir, attrs);
      }
    } else if (iod.nrDmaVecs > 0) {
      inlineVec[0] = iod.dmaVec;
      dmaUnmapRange(
        ctx.dev,
        iod.dmaState,
        iod.dmaVecs ?? inlineVec,
        iod.nrDmaVecs,
        iod.totalLen,
        dir,
        attrs,
      );
    }
  }
  if (iod.dmaVecs !== null) {
    ctx.vecPool.release(iod.dmaVecs);
    iod.dmaVecs = null;
  }
  iod.nrDmaVecs = 0;
  if (iod.nrDescriptors > 0) nvmeFreeDescriptors(ctx, iod);
}
