/**
 * The I/O path of the host driver (Linux drivers/nvme/host/pci.c with core.c's completion
 * side): `nvme_queue_rq` (prepare the command, map the data, copy it into the submission queue,
 * ring the doorbell), `nvme_poll_cq` (consume completion entries by their phase tag),
 * `nvme_handle_cqe` and `nvme_pci_complete_rq` (unmap, then complete or retry), and blk-mq's
 * requeue list for retries and requests that ran out of a resource.
 */
import {
  BLK_STS,
  type BlkStatus,
  REQ_OP,
  Request,
  SECTOR_SIZE,
  fastMod,
  getU32,
  queueLimits,
  setU16,
  setU32,
} from "@dmasim/bvec";
import { dmaUseIova } from "@dmasim/dma-core";
import { NvmeError } from "../errors.ts";
import {
  CQE_SIZE,
  NVME_CMD,
  NVME_STATUS_DNR,
  SQE,
  SQE_SIZE,
  cqeCid,
  cqePhase,
  cqeStatus,
  setRwLbas,
} from "../spec/commands.ts";
import { cqHeadDoorbell, cstsCfs, sqTailDoorbell } from "../spec/registers.ts";
import { NVME_CRDT_UNIT_NS, nvmeErrorStatus, nvmeStatusCrd } from "./core.ts";
import type { NvmeDev } from "./dev.ts";
import { IOD, type NvmeIod, iodDescriptorBytes, iodHas } from "./iod.ts";
import type { NamespaceInfo } from "./limits.ts";
import {
  type CompletionCallback,
  NVME_CID_GENCTR_VALUES,
  type NvmeQueue,
  type RequeuedRequest,
  nvmeCid,
  nvmeGenctrFromCid,
  nvmeTagFromCid,
} from "./queue.ts";
import { nvmeMapDataScatterlist, nvmeUnmapDataScatterlist } from "./scatterlist.ts";
import { nvmeMapData, nvmeUnmapData } from "./two-step.ts";

/** Linux `BLK_MQ_RESOURCE_DELAY`: how long blk-mq waits to rerun a queue that ran out (3 ms). */
const BLK_MQ_RESOURCE_DELAY_NS = 3_000_000;
/** Polls (each advancing the clock by one event) before a synchronous wait gives up. */
const SYNC_WAIT_SPINS = 1_000_000;

/**
 * Gives the command a fresh identifier (Linux `nvme_setup_cmd`: `genctr++`, `nvme_cid`),
 * copies it into the SQ (`nvme_sq_copy_cmd`) and rings the doorbell when `last`
 * (`nvme_write_sq_db`).
 */
export function nvmeSubmitCmd(d: NvmeDev, q: NvmeQueue, iod: NvmeIod, last: boolean): void {
  iod.genctr = (iod.genctr + 1) % NVME_CID_GENCTR_VALUES;
  iod.busy = true;
  setU16(iod.cmd, SQE.CID, nvmeCid(iod.genctr, iod.tag));
  nvmeSqCopyCmd(d, q, iod.cmd);
  if (last) nvmeWriteSqDb(d, q);
}

/** Linux `nvme_sq_copy_cmd`: the command into the next SQ slot, and the tail advanced. */
function nvmeSqCopyCmd(d: NvmeDev, q: NvmeQueue, cmd: Uint8Array): void {
  d.dev.memory.write(q.sq.cpuAddr + q.sqTail * SQE_SIZE, cmd, 0, SQE_SIZE);
  q.sqTail = (q.sqTail + 1) % q.depth;
}

/**
 * Linux `nvme_write_sq_db`: the new tail goes to the shadow doorbell of an I/O queue when
 * doorbell buffers are in use, and the MMIO doorbell is written only when
 * `nvme_dbbuf_update_and_check_event` says the controller asked for it.
 */
export function nvmeWriteSqDb(d: NvmeDev, q: NvmeQueue): void {
  if (q.sqTail === q.lastSqTailDb) return;
  q.lastSqTailDb = q.sqTail;
  if (!dbbufUpdateAndCheckEvent(d, q.qid, 2 * q.qid, q.sqTail)) return;
  d.counters.c.sqDoorbells++;
  d.bar.writeReg32(sqTailDoorbell(q.qid), q.sqTail);
}

/**
 * Linux `nvme_dbbuf_update_and_check_event`: without doorbell buffers, or on the admin queue
 * (which Linux's `nvme_dbbuf_init` leaves out), the MMIO doorbell is always written.
 */
function dbbufUpdateAndCheckEvent(d: NvmeDev, qid: number, slot: number, value: number): boolean {
  const b = d.dbbuf;
  if (b === null || qid === 0) return true;
  return b.updateAndCheckEvent(d.dev, slot, value, d.counters.c);
}

/**
 * Linux `nvme_queue_rq` on queue `q` for a request that has been retried `retries` times:
 * Linux keeps `nvme_req(req)->retries` in the request and clears it only when a new request is
 * set up (`nvme_clear_nvme_request`, skipped for a requeued RQF_DONTPREP request), so a fresh
 * request starts at 0 whatever the tag's previous request left.
 */
export function nvmeQueueRq(
  d: NvmeDev,
  q: NvmeQueue,
  req: Request,
  cb: CompletionCallback,
  nsid: number,
  last: boolean,
  retries: number,
): BlkStatus {
  const ns = d.namespaces[nsid - 1];
  if (ns === undefined) throw new NvmeError("EINVAL", `no namespace ${nsid}`);
  const tag = q.freeTags.pop();
  if (tag === undefined) {
    d.counters.c.requeues++;
    return BLK_STS.RESOURCE;
  }
  const iod = q.iod(tag);
  iod.retries = retries;
  let st: BlkStatus;
  try {
    st = nvmePrepRq(d, iod, req, ns, nsid);
  } catch (e) {
    // A misuse error (e.g. a request that is not whole logical blocks): the tag goes back.
    iod.req = null;
    q.freeTags.push(tag);
    throw e;
  }
  if (st !== BLK_STS.OK) {
    q.freeTags.push(tag);
    if (st === BLK_STS.RESOURCE) d.counters.c.requeues++;
    return st;
  }
  q.callbacks[tag] = cb;
  d.counters.c.submitted++;
  nvmeSubmitCmd(d, q, iod, last);
  return BLK_STS.OK;
}

/** Linux `nvme_prep_rq`: reset the iod, build the command (`nvme_setup_cmd`), map the data. */
function nvmePrepRq(
  d: NvmeDev,
  iod: NvmeIod,
  req: Request,
  ns: NamespaceInfo,
  nsid: number,
): BlkStatus {
  iod.resetForSubmit();
  iod.req = req;
  const cmd = iod.cmd;
  setU32(cmd, SQE.NSID, nsid);
  if (req.op === REQ_OP.FLUSH) {
    cmd[SQE.OPCODE] = NVME_CMD.FLUSH;
    return BLK_STS.OK;
  }
  cmd[SQE.OPCODE] = req.op === REQ_OP.WRITE ? NVME_CMD.WRITE : NVME_CMD.READ;
  const bytes = req.dataLen;
  if (bytes === 0)
    throw new NvmeError("EINVAL", `a ${req.op} request at sector ${req.sector} has no data`);
  if (fastMod(bytes, ns.lbaSize) !== 0 || fastMod(req.sector * SECTOR_SIZE, ns.lbaSize) !== 0) {
    throw new NvmeError(
      "EINVAL",
      `request at sector ${req.sector} of ${bytes} bytes is not aligned to the ${ns.lbaSize}-byte LBA size`,
    );
  }
  setRwLbas(cmd, (req.sector * SECTOR_SIZE) / ns.lbaSize, bytes / ns.lbaSize);
  if (req.nrPhysSegments === 0) return BLK_STS.OK;
  const st =
    d.mapping === "two-step"
      ? nvmeMapData(d.ctx, iod, req)
      : nvmeMapDataScatterlist(d.ctx, iod, req);
  if (st === BLK_STS.OK) accountMap(d, iod);
  return st;
}

function accountMap(d: NvmeDev, iod: NvmeIod): void {
  const c = d.counters.c;
  if (iod.cmd[SQE.FLAGS] === 0) c.prpCommands++;
  else c.sglCommands++;
  if (iodHas(iod.flags, IOD.SINGLE_SEGMENT)) c.singleSegment++;
  if (dmaUseIova(iod.dmaState)) c.iovaCoalesced++;
  if (iod.nrDescriptors > 0) {
    if (iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)) c.smallDescriptors++;
    else c.largeDescriptors += iod.nrDescriptors;
  }
  if (iod.dmaVecs !== null) c.vecArrays++;
  if (iod.sgt !== null) c.sgTables++;
  c.inflightBytes += iodInflightBytes(d, iod);
  if (c.inflightBytes > c.peakInflightBytes) c.peakInflightBytes = c.inflightBytes;
}

/** The descriptor, vec-array and scatterlist bytes a request holds (see `NvmeHost.requestMemory`). */
export function iodInflightBytes(d: NvmeDev, iod: NvmeIod): number {
  return (
    iodDescriptorBytes(iod) +
    (iod.dmaVecs !== null ? d.vecPool.objectBytes : 0) +
    (iod.sgt !== null ? d.sgPool.objectBytes : 0)
  );
}

/**
 * Linux `nvme_poll_cq`: consumes new completion entries (phase tag), hands each to
 * `nvme_handle_cqe` (unmapping the data first, retrying when the status allows), and writes
 * the CQ head doorbell once (`nvme_ring_cq_doorbell`). Returns how many entries were consumed.
 */
export function nvmePollCq(d: NvmeDev, qid: number): number {
  const q = d.queues[qid];
  if (q === undefined) throw new NvmeError("EINVAL", `no queue ${qid}`);
  const mem = d.dev.memory;
  const e = d.cqe;
  let n = 0;
  for (;;) {
    mem.read(q.cq.cpuAddr + q.cqHead * CQE_SIZE, e, 0, CQE_SIZE);
    if (cqePhase(e) !== q.cqPhase) break;
    n++;
    q.cqHead = (q.cqHead + 1) % q.depth;
    if (q.cqHead === 0) q.cqPhase = 1 - q.cqPhase;
    nvmeHandleCqe(d, q, e);
  }
  // Linux `nvme_ring_cq_doorbell`: through the shadow doorbell when in use.
  if (n > 0 && dbbufUpdateAndCheckEvent(d, qid, 2 * qid + 1, q.cqHead)) {
    d.counters.c.cqDoorbells++;
    d.bar.writeReg32(cqHeadDoorbell(qid), q.cqHead);
  }
  // A completion restarts a queue whose requeued request ran out of a resource (blk-mq
  // SCHED_RESTART). Without a clock no delayed run can happen, so every poll retries.
  if (q.blocked && (q.restart || d.dev.clock === undefined)) runRequeue(d, q);
  return n;
}

/**
 * Polls `q` (advancing the device's clock) until `done`; throws EIO once CSTS.CFS is set and
 * ETIMEDOUT when nothing is left to happen.
 */
export function nvmeWaitFor(d: NvmeDev, q: NvmeQueue, done: () => boolean): void {
  for (let spins = 0; !done(); spins++) {
    nvmePollCq(d, q.qid);
    if (done()) return;
    if (cstsCfs(d.csts()))
      throw new NvmeError("EIO", "controller fatal status while waiting for a completion");
    const clock = d.dev.clock;
    if (clock === undefined || !clock.runNext() || spins > SYNC_WAIT_SPINS) {
      throw new NvmeError("ETIMEDOUT", `no completion on queue ${q.qid}`);
    }
  }
}

/**
 * Linux `nvme_handle_cqe`: finds the request by the CID's tag (`nvme_tag_from_cid`) and
 * checks its generation (`nvme_genctr_from_cid`); a stale or unknown CID is ignored, as Linux
 * does after its warning.
 */
function nvmeHandleCqe(d: NvmeDev, q: NvmeQueue, e: Uint8Array): void {
  const cid = cqeCid(e);
  const iod = q.iods[nvmeTagFromCid(cid)];
  if (iod === undefined || !iod.busy || nvmeGenctrFromCid(cid) !== iod.genctr) return;
  nvmePciCompleteRq(d, q, iod, cqeStatus(e));
}

/**
 * Linux `nvme_pci_complete_rq` (unmap before completing) and `nvme_complete_rq` with
 * `nvme_decide_disposition`: retry unless DNR, too many retries, or success.
 */
function nvmePciCompleteRq(d: NvmeDev, q: NvmeQueue, iod: NvmeIod, nvmeStatus: number): void {
  const req = iod.req;
  const cb = q.callbacks[iod.tag];
  iod.busy = false;
  if (req === null) {
    // An admin command.
    q.callbacks[iod.tag] = undefined;
    q.freeTags.push(iod.tag);
    cb?.(nvmeErrorStatus(nvmeStatus), nvmeStatus, adminRequest);
    return;
  }
  d.counters.c.inflightBytes -= iodInflightBytes(d, iod);
  if (req.nrPhysSegments > 0 && req.op !== REQ_OP.FLUSH) {
    if (d.mapping === "two-step") nvmeUnmapData(d.ctx, iod, req);
    else nvmeUnmapDataScatterlist(d.ctx, iod, req);
  }
  iod.req = null;
  q.callbacks[iod.tag] = undefined;
  q.freeTags.push(iod.tag);
  q.restart = true;
  if (
    q.qid !== 0 &&
    nvmeStatus !== 0 &&
    nvmeStatus < NVME_STATUS_DNR &&
    iod.retries < d.maxRetries
  ) {
    d.counters.c.retries++;
    nvmeRetryReq(d, q, {
      req,
      cb: cb ?? noop,
      nsid: getU32(iod.cmd, SQE.NSID),
      retries: iod.retries + 1,
      status: nvmeStatus,
    });
    return;
  }
  const st = nvmeErrorStatus(nvmeStatus);
  d.counters.c.completed++;
  if (st !== BLK_STS.OK) d.counters.c.failed++;
  cb?.(st, nvmeStatus, req);
}

/**
 * Linux `nvme_retry_req`: the request goes back on the requeue list (`blk_mq_requeue_request`)
 * with one more retry, and the list is kicked after the Command Retry Delay the completion
 * asked for (`blk_mq_delay_kick_requeue_list`: CRD 1..3 selects Identify CRDT1..3, in 100 ms
 * units; CRD 0 is no delay). The model's controller reports CRDT1..3 as 0, so every retry
 * runs at once (Linux runs it from the requeue work item: the same order, a little later).
 */
function nvmeRetryReq(d: NvmeDev, q: NvmeQueue, r: RequeuedRequest): void {
  q.requeueList.push(r);
  const crd = nvmeStatusCrd(r.status);
  const delayNs = crd === 0 ? 0 : (d.crdt[crd - 1] as number) * NVME_CRDT_UNIT_NS;
  if (delayNs > 0 && d.dev.clock !== undefined) delayRunRequeue(d, q, delayNs);
  else runRequeue(d, q);
}

/**
 * Dispatches the requeue list in order (Linux `blk_mq_requeue_work`, then the hardware queue
 * dispatch). A request whose dispatch returns BLK_STS_RESOURCE stays at the head and is never
 * completed with it (`blk_mq_dispatch_rq_list`): the queue runs again when a request
 * completes (SCHED_RESTART) or, with nothing in flight, after BLK_MQ_RESOURCE_DELAY. Another
 * error ends the request with that status (`blk_mq_end_request`).
 */
function runRequeue(d: NvmeDev, q: NvmeQueue): void {
  const list = q.requeueList;
  while (list.length > 0) {
    const r = list[0] as RequeuedRequest;
    const st = nvmeQueueRq(d, q, r.req, r.cb, r.nsid, true, r.retries);
    if (st === BLK_STS.RESOURCE) {
      q.blocked = true;
      q.restart = false;
      if (q.inflight === 0) delayRunRequeue(d, q, BLK_MQ_RESOURCE_DELAY_NS);
      return;
    }
    list.shift();
    if (st !== BLK_STS.OK) r.cb(st, r.status, r.req);
  }
  q.blocked = false;
}

/**
 * Runs the requeue list after `delayNs` on the device's clock (Linux
 * `blk_mq_delay_run_hw_queue` / `blk_mq_delay_kick_requeue_list`). One run is pending at a
 * time; Linux's `mod_delayed_work` would move a pending run to the newer delay instead.
 */
function delayRunRequeue(d: NvmeDev, q: NvmeQueue, delayNs: number): void {
  const clock = d.dev.clock;
  if (clock === undefined || q.requeueTimer) return;
  q.requeueTimer = true;
  clock.schedule(delayNs, () => {
    q.requeueTimer = false;
    if (d.queues[q.qid] === q) runRequeue(d, q);
  });
}

/** Stands for the request of an admin command in completion callbacks. */
const adminRequest = new Request(REQ_OP.FLUSH, queueLimits());
function noop(): void {
  // completion of a retried request whose caller gave no callback
}
