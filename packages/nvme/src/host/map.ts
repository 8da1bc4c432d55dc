/**
 * What both nvme-pci mapping styles (two-step.ts, scatterlist.ts) share: the context the host
 * gives them, and the one mapping of a single-segment request.
 */
import {
  BLK_STS,
  type BioVec,
  type BlkStatus,
  type Request,
  bvecPhys,
  fastMod,
  setU64,
} from "@dmasim/bvec";
import {
  type BlkDmaIter,
  DmaError,
  type DmaVec,
  type Device,
  dmaMapPage,
  dmaMapPhys,
  rqDmaDir,
} from "@dmasim/dma-core";
import { SQE } from "../spec/commands.ts";
import { NVME_CMD_SGL_METABUF, NVME_SGL_TYPE, setSglDesc } from "../spec/sgl.ts";
import type { DescriptorPools } from "./descriptors.ts";
import { IOD, type NvmeIod } from "./iod.ts";
import { NVME_CTRL_PAGE_SIZE } from "./limits.ts";
import type { Mempool } from "./mempool.ts";

/** What the mapping code needs from the host. */
export interface MapContext extends DescriptorPools {
  readonly dev: Device;
  readonly vecPool: Mempool<DmaVec[]>;
  /** SGLs supported by the controller (SGLS bits 1:0 non-zero). */
  readonly sglSupported: boolean;
  /** Linux `sgl_threshold` (0 disables threshold-based SGLs). */
  readonly sglThreshold: number;
  /** Scratch iterator (mapping is synchronous). */
  readonly iter: BlkDmaIter;
}

/**
 * Which DMA API maps and unmaps a single segment: "phys" (`dma_map_phys`, nvme-pci from 6.18,
 * "nvme-pci: migrate to dma_map_phys instead of map_page") or "page" (`dma_map_bvec`, i.e.
 * `dma_map_page_attrs`, and `dma_unmap_page`: 6.17, and the scatterlist driver).
 */
export type SingleSegmentApi = "phys" | "page";

/**
 * The one mapping of a single-segment request (the simple paths of both driver generations:
 * `dma_map_phys` or `dma_map_bvec`, as `api` says): maps the bvec, records it in the inline
 * pair, and describes it with PRP1/PRP2 or, when `sgl`, one SGL Data Block.
 */
export function mapSingleSegment(
  ctx: MapContext,
  iod: NvmeIod,
  req: Request,
  bv: BioVec,
  sgl: boolean,
  api: SingleSegmentApi,
): BlkStatus {
  let addr: number;
  try {
    addr =
      api === "phys"
        ? dmaMapPhys(ctx.dev, bvecPhys(bv), bv.len, rqDmaDir(req), 0)
        : dmaMapPage(ctx.dev, bv.page, bv.offset, bv.len, rqDmaDir(req), 0);
  } catch (e) {
    if (e instanceof DmaError) return BLK_STS.RESOURCE;
    throw e;
  }
  iod.dmaVec.addr = addr;
  iod.dmaVec.len = bv.len;
  iod.nrDmaVecs = 1;
  iod.totalLen = bv.len;
  iod.flags += IOD.SINGLE_SEGMENT;
  const cmd = iod.cmd;
  if (sgl) {
    cmd[SQE.FLAGS] = NVME_CMD_SGL_METABUF;
    setSglDesc(cmd, SQE.SGL_ADDR, addr, bv.len, NVME_SGL_TYPE.DATA);
    iod.useSgl = true;
    return BLK_STS.OK;
  }
  const first = NVME_CTRL_PAGE_SIZE - fastMod(bv.offset, NVME_CTRL_PAGE_SIZE);
  setU64(cmd, SQE.PRP1, addr);
  setU64(cmd, SQE.PRP2, bv.len > first ? addr + first : 0);
  return BLK_STS.OK;
}
