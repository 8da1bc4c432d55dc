/**
 * A queue pair of the host driver (Linux `struct nvme_queue`, drivers/nvme/host/pci.c): the
 * submission and completion rings in coherent memory, the ring state, the tags with their
 * iods, and blk-mq's requeue list; and the command identifier arithmetic of host/nvme.h.
 */
import type { BlkStatus, Request } from "@dmasim/bvec";
import {
  type CoherentBuffer,
  type Device,
  dmaAllocCoherent,
  dmaFreeCoherent,
} from "@dmasim/dma-core";
import { CQE_SIZE, SQE_SIZE } from "../spec/commands.ts";
import { NvmeIod } from "./iod.ts";

/** What a completed request reports. */
export type CompletionCallback = (status: BlkStatus, nvmeStatus: number, req: Request) => void;

/** A request on a queue's requeue list. */
export interface RequeuedRequest {
  readonly req: Request;
  readonly cb: CompletionCallback;
  readonly nsid: number;
  /** Linux `nvme_req(req)->retries`, carried by the request across its dispatches. */
  readonly retries: number;
  /** The NVMe status of the attempt that failed (what an error at dispatch reports). */
  readonly status: number;
}

/** The tag field of a command identifier is bits 11:0 (Linux `nvme_tag_from_cid`: cid & 0xfff). */
const NVME_CID_TAGS = 4096;
/** The generation counter of a command identifier is bits 15:12 (Linux `nvme_genctr_mask`: 4 bits). */
export const NVME_CID_GENCTR_VALUES = 16;

/** Linux `nvme_cid`: the command identifier of `tag` in generation `genctr` (genctr << 12 | tag). */
export function nvmeCid(genctr: number, tag: number): number {
  return genctr * NVME_CID_TAGS + tag;
}

/** Linux `nvme_tag_from_cid`: the tag of a command identifier (cid & 0xfff). */
export function nvmeTagFromCid(cid: number): number {
  return cid % NVME_CID_TAGS;
}

/** Linux `nvme_genctr_from_cid`: the generation of a command identifier (cid >> 12). */
export function nvmeGenctrFromCid(cid: number): number {
  return Math.floor(cid / NVME_CID_TAGS);
}

/** A queue pair (Linux `struct nvme_queue`). */
export class NvmeQueue {
  readonly qid: number;
  readonly depth: number;
  readonly sq: CoherentBuffer;
  readonly cq: CoherentBuffer;
  sqTail = 0;
  lastSqTailDb = 0;
  cqHead = 0;
  cqPhase = 1;
  /**
   * The iod of each tag. Linux allocates every request's pdu with the tag set
   * (`blk_mq_alloc_rqs`); the model creates a tag's iod the first time the tag is used
   * (`iod()`), which changes nothing but the simulator's memory.
   */
  readonly iods: NvmeIod[] = [];
  readonly freeTags: number[] = [];
  readonly callbacks: (CompletionCallback | undefined)[] = [];
  /**
   * Requests waiting to be dispatched again (blk-mq's requeue and dispatch lists): retries, and
   * retries whose dispatch ran out of a resource (BLK_STS_RESOURCE), oldest first.
   */
  readonly requeueList: RequeuedRequest[] = [];
  /** The head of the requeue list ran out of a resource (BLK_STS_RESOURCE) when last dispatched. */
  blocked = false;
  /** A request completed since then (blk-mq SCHED_RESTART: the queue runs again). */
  restart = false;
  /** A delayed run of the requeue list is scheduled on the clock. */
  requeueTimer = false;

  constructor(qid: number, depth: number, sq: CoherentBuffer, cq: CoherentBuffer) {
    this.qid = qid;
    this.depth = depth;
    this.sq = sq;
    this.cq = cq;
    // blk-mq uses depth - 1 tags so the SQ never looks empty when it is full.
    for (let t = depth - 2; t >= 0; t--) this.freeTags.push(t);
    for (let t = 0; t < depth - 1; t++) this.callbacks.push(undefined);
  }

  /** The iod of `tag`. */
  iod(tag: number): NvmeIod {
    let iod = this.iods[tag];
    if (iod === undefined) {
      iod = new NvmeIod(this.qid, tag);
      this.iods[tag] = iod;
    }
    return iod;
  }

  /** Requests in flight. */
  get inflight(): number {
    return this.depth - 1 - this.freeTags.length;
  }
}

/** Linux `nvme_alloc_queue`: the completion queue's memory first, then the submission queue's. */
export function nvmeAllocQueue(dev: Device, qid: number, depth: number): NvmeQueue {
  const cq = dmaAllocCoherent(dev, depth * CQE_SIZE);
  let sq: CoherentBuffer;
  try {
    sq = dmaAllocCoherent(dev, depth * SQE_SIZE);
  } catch (e) {
    dmaFreeCoherent(dev, depth * CQE_SIZE, cq.cpuAddr, cq.dmaAddr);
    throw e;
  }
  return new NvmeQueue(qid, depth, sq, cq);
}

/** Linux `nvme_free_queue`: the CQ, then the SQ (`nvme_free_sq`). */
export function nvmeFreeQueue(dev: Device, q: NvmeQueue): void {
  dmaFreeCoherent(dev, q.depth * CQE_SIZE, q.cq.cpuAddr, q.cq.dmaAddr);
  dmaFreeCoherent(dev, q.depth * SQE_SIZE, q.sq.cpuAddr, q.sq.dmaAddr);
}
