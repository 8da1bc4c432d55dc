/**
 * The NVMe host driver (Linux drivers/nvme/host/pci.c and core.c): controller bring-up through
 * the registers, the admin queue, Identify, I/O queue pairs in coherent memory, submission with
 * doorbells, completion polling with phase tags, status to block-status mapping with retries,
 * and the data mapping in either the two-step or the scatterlist style.
 *
 * The host reaches the controller only through its register window (`NvmeBar`: MMIO reads and
 * writes) and through host memory the controller reads and writes by DMA. `NvmeHost` is the
 * driver's API; its state is an `NvmeDev` (dev.ts), worked on by probe.ts (bring-up, admin
 * commands, shutdown) and submit.ts (the I/O path).
 */
import {
  BLK_STS,
  type Bio,
  type BlkStatus,
  type CounterSet,
  type QueueLimits,
  type Request,
  bioEndio,
  bioSplitToLimits,
  blkRqFromBios,
} from "@dmasim/bvec";
import type { Device, DmaPool, DmaVec, SgTable } from "@dmasim/dma-core";
import { NvmeError } from "../errors.ts";
import { type MappingStyle, NvmeDev, type NvmeHostCounter, type NvmeHostOptions } from "./dev.ts";
import { IOD_BYTES, type NvmeIod, iodDescriptorBytes } from "./iod.ts";
import type { ControllerInfo, NamespaceInfo } from "./limits.ts";
import type { Mempool } from "./mempool.ts";
import { nvmeDevShutdown, nvmePciEnable } from "./probe.ts";
import type { CompletionCallback, NvmeQueue } from "./queue.ts";
import { nvmePollCq, nvmeQueueRq, nvmeWaitFor, nvmeWriteSqDb } from "./submit.ts";

/** Per-request host memory, as Linux would allocate it. */
export interface RequestMemory {
  readonly iodBytes: number;
  readonly descriptorBytes: number;
  readonly vecArrayBytes: number;
  readonly scatterlistBytes: number;
}

/** Polls before `submitBio` gives up on a piece that keeps hitting BLK_STS_RESOURCE. */
const RESOURCE_RETRY_SPINS = 1000;

/** The NVMe host driver. */
export class NvmeHost {
  private readonly d: NvmeDev;

  constructor(o: NvmeHostOptions) {
    this.d = new NvmeDev(o);
  }

  /** The PCI function as the DMA layer sees it. */
  get dev(): Device {
    return this.d.dev;
  }
  get mapping(): MappingStyle {
    return this.d.mapping;
  }
  /** Linux `sgl_threshold`. */
  get sglThreshold(): number {
    return this.d.sglThreshold;
  }
  /** The DMA mask width the driver sets at probe (`NvmeHostOptions.dmaAddressBits`). */
  get dmaAddressBits(): number {
    return this.d.dmaAddressBits;
  }
  /** Linux `nvme_max_retries`. */
  get maxRetries(): number {
    return this.d.maxRetries;
  }
  get counters(): CounterSet<NvmeHostCounter> {
    return this.d.counters;
  }
  /** The descriptor pools (Linux "nvme descriptor small" / "nvme descriptor page"), made at enable. */
  get small(): DmaPool {
    return this.d.small;
  }
  get large(): DmaPool {
    return this.d.large;
  }
  /** The dma_vec mempool (two-step style). */
  get vecPool(): Mempool<DmaVec[]> {
    return this.d.vecPool;
  }
  /** The scatterlist mempool (scatterlist style). */
  get sgPool(): Mempool<SgTable> {
    return this.d.sgPool;
  }
  /** I/O queue limits set from the controller (Linux `nvme_set_ctrl_limits` and friends). */
  get limits(): QueueLimits {
    return this.d.limits;
  }
  /** Admin queue limits (virt boundary 4 KiB - 1). */
  get adminLimits(): QueueLimits {
    return this.d.adminLimits;
  }
  /** The Identify Controller data the driver keeps. */
  get info(): ControllerInfo {
    return this.d.info;
  }
  /** Linux `ctrl->crdt`: Identify CRDT1..CRDT3, retry delays in 100 ms units. */
  get crdt(): readonly [number, number, number] {
    return this.d.crdt;
  }
  get namespaces(): readonly NamespaceInfo[] {
    return this.d.namespaces;
  }
  /** The queue pairs: 0 is the admin queue. */
  get queues(): readonly NvmeQueue[] {
    return this.d.queues;
  }
  /** Whether doorbell buffers (shadow doorbells) are in use. */
  get shadowDoorbells(): boolean {
    return this.d.dbbuf !== null;
  }

  /**
   * Brings the controller up as Linux does (see probe.ts `nvmePciEnable`): the admin queue,
   * Identify, the queue limits, the I/O queue pairs, doorbell buffers.
   */
  enable(): void {
    nvmePciEnable(this.d);
  }

  /**
   * Linux `nvme_queue_rq`: builds the command, maps the data and queues it. Returns OK when
   * submitted (`cb` runs at completion), RESOURCE when the caller must requeue later (no tag,
   * or a mapping resource ran out), or another block status when the request failed at once.
   */
  queueRq(
    req: Request,
    cb: CompletionCallback,
    opts: { qid?: number; nsid?: number; last?: boolean } = {},
  ): BlkStatus {
    const d = this.d;
    if (!d.enabled) throw new NvmeError("ENODEV", "the host is not enabled");
    const q = d.ioQueue(opts.qid ?? 1);
    return nvmeQueueRq(d, q, req, cb, opts.nsid ?? 1, opts.last ?? true, 0);
  }

  /** Linux `nvme_commit_rqs`: rings the doorbell for commands queued with `last: false`. */
  commitRqs(qid = 1): void {
    nvmeWriteSqDb(this.d, this.d.ioQueue(qid));
  }

  /**
   * Linux `nvme_poll_cq`: consumes new completion entries, completes (or retries) their
   * requests, and writes the CQ head doorbell once. Returns how many entries were consumed.
   */
  pollCq(qid = 1): number {
    return nvmePollCq(this.d, qid);
  }

  /** Host memory one request holds while in flight (what Linux would allocate for it). */
  requestMemory(iod: NvmeIod): RequestMemory {
    return {
      iodBytes: IOD_BYTES[this.d.mapping],
      descriptorBytes: iodDescriptorBytes(iod),
      vecArrayBytes: iod.dmaVecs !== null ? this.d.vecPool.objectBytes : 0,
      scatterlistBytes: iod.sgt !== null ? this.d.sgPool.objectBytes : 0,
    };
  }

  /**
   * Splits a bio to the queue limits, submits every piece, and completes the bio (through
   * `bioEndio`) when all pieces are done. Requeues pieces that hit RESOURCE after polling.
   * Returns the requests submitted.
   */
  submitBio(bio: Bio, qid = 1): Request[] {
    const pieces = bioSplitToLimits(bio, this.d.limits);
    const reqs: Request[] = [];
    for (const p of pieces) {
      const req = blkRqFromBios(this.d.limits, [p]);
      reqs.push(req);
      const cb: CompletionCallback = (status) => bioEndio(p, status);
      let st = this.queueRq(req, cb, { qid });
      for (let tries = 0; st === BLK_STS.RESOURCE && tries < RESOURCE_RETRY_SPINS; tries++) {
        this.pollCq(qid);
        this.d.dev.clock?.runNext();
        st = this.queueRq(req, cb, { qid });
      }
      if (st !== BLK_STS.OK) bioEndio(p, st);
    }
    return reqs;
  }

  /** Polls (and advances the clock) until no request is in flight or requeued on `qid`. */
  drain(qid = 1): void {
    const q = this.d.ioQueue(qid);
    nvmeWaitFor(this.d, q, () => q.inflight === 0 && q.requeueList.length === 0);
  }

  /**
   * Shuts down (Linux `nvme_dev_disable` and `nvme_remove`): deletes the I/O queues, disables
   * the controller, frees every queue ring and descriptor pool. Throws EBUSY with requests in
   * flight.
   */
  shutdown(): void {
    nvmeDevShutdown(this.d);
  }
}

export type { MappingStyle, NvmeHostCounter, NvmeHostOptions };
