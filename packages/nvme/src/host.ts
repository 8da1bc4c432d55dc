/**
 * The NVMe host driver (drivers/nvme/host/pci.c and core.c): controller bring-up through the
 * registers, the admin queue, Identify, I/O queue pairs in coherent memory, submission with
 * doorbells, completion polling with phase bits, status to block-status mapping with retries,
 * and the data mapping in either the new (two-step) or the old (scatterlist) style.
 */
import {
  BLK_STS,
  type Bio,
  type BlkStatus,
  CounterSet,
  REQ_OP,
  type QueueLimits,
  Request,
  SECTOR_SIZE,
  bioEndio,
  bioSplitToLimits,
  blkRqFromBios,
  fastMod,
  hex,
  kernelHas,
  queueLimits,
} from "@dmasim/bvec";
import {
  type CoherentBuffer,
  DmaPool,
  type Device,
  blkDmaIter,
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaOptMappingSize,
  dmaUseIova,
} from "@dmasim/dma-core";
import {
  NVME_ADMIN,
  NVME_AQ_DEPTH,
  NVME_CMD,
  NVME_CTRL_OACS_DBBUF_SUPP,
  NVME_CTRL_PAGE_SIZE,
  NVME_ID_CNS,
  NVME_ID_CTRL_OACS,
  NVME_MAX_BYTES,
  NVME_MAX_RETRIES,
  NVME_MAX_SEGS,
  NVME_OLD_MAX_SEGS,
  NVME_REG,
  NVME_SC,
  NVME_SGL_THRESHOLD,
  NVME_SMALL_POOL_SIZE,
  NVME_STATUS_DNR,
  nvmeStatusName,
} from "./constants.ts";
import type { NvmeController } from "./controller.ts";
import { NvmeError } from "./errors.ts";
import { IOD, IOD_BYTES, type Mempool, NvmeIod, dmaVecMempool, iodHas, sgMempool } from "./iod.ts";
import { nvmeMapData, nvmeUnmapData } from "./map-new.ts";
import { type OldMapContext, nvmeMapDataOld, nvmeUnmapDataOld } from "./map-old.ts";
import { CQE_SIZE, SQE, SQE_SIZE, getU16, getU32, setU16, setU32, setU64 } from "./sqe.ts";

/** The mapping style of a host. */
export type MappingStyle = "new" | "old";

/** Options of `NvmeHost`. */
export interface NvmeHostOptions {
  /** The PCI function as the DMA layer sees it (shared with the controller model). */
  readonly dev: Device;
  /** The controller's register interface. */
  readonly ctrl: NvmeController;
  /** "new" (two-step, blk_rq_dma_map; default) or "old" (scatterlist). */
  readonly mapping?: MappingStyle;
  /** Linux `sgl_threshold` (default 32 KiB; 0 disables threshold-based SGLs). */
  readonly sglThreshold?: number;
  /** I/O queue pairs to create (default 1). */
  readonly ioQueues?: number;
  /** I/O queue depth (default min(CAP.MQES + 1, 1024)). */
  readonly queueDepth?: number;
  /** Linux `nvme_max_retries` (default 5). */
  readonly maxRetries?: number;
  /**
   * The DMA mask the driver sets in `nvme_pci_alloc_dev` before it computes its limits: 64
   * bits (the default), or 48 under NVME_QUIRK_DMA_ADDRESS_BITS_48; a narrower value models a
   * device quirk of the same kind.
   */
  readonly dmaAddressBits?: number;
}

/** Counter names of the host. */
export type NvmeHostCounter =
  | "submitted"
  | "completed"
  | "failed"
  | "retries"
  | "requeues"
  | "sqDoorbells"
  | "cqDoorbells"
  | "prpCommands"
  | "sglCommands"
  | "singleSegment"
  | "iovaCoalesced"
  | "smallDescriptors"
  | "largeDescriptors"
  | "vecArrays"
  | "sgTables"
  | "inflightBytes"
  | "peakInflightBytes"
  | "shadowWrites"
  | "mmioDoorbellsSkipped";

/** What a completed request reports. */
export type CompletionCallback = (status: BlkStatus, nvmeStatus: number, req: Request) => void;

/** Per-request host memory, as Linux would allocate it. */
export interface RequestMemory {
  readonly iodBytes: number;
  readonly descriptorBytes: number;
  readonly vecArrayBytes: number;
  readonly scatterlistBytes: number;
}

/** Identify data the host keeps. */
export interface ControllerInfo {
  readonly mdts: number;
  readonly sgls: number;
  readonly namespaces: number;
  readonly mpsmin: number;
  readonly mqes: number;
}

/** One namespace as Identify reported it. */
export interface NamespaceInfo {
  readonly nsid: number;
  readonly lbaSize: number;
  readonly blocks: number;
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

/**
 * Linux `nvme_error_status` (drivers/nvme/host/core.c): an NVMe status (shifted form) to a
 * block status. Only the status code type and code count (`status & NVME_SCT_SC_MASK`, 0x7ff):
 * DNR (bit 14), More (bit 13) and CRD (bits 12:11) do not change the block status.
 */
export function nvmeErrorStatus(status: number): BlkStatus {
  const sc = fastMod(status, NVME_SCT_SC_MASK + 1);
  switch (sc) {
    case NVME_SC.SUCCESS:
      return BLK_STS.OK;
    case NVME_SC.CAP_EXCEEDED:
      return BLK_STS.NOSPC;
    case NVME_SC.LBA_RANGE:
    case NVME_SC.NS_NOT_READY:
      return BLK_STS.TARGET;
    case NVME_SC.INVALID_OPCODE:
    case NVME_SC.INVALID_FIELD:
    case NVME_SC.INVALID_NS:
      return BLK_STS.NOTSUPP;
    case NVME_SC.WRITE_FAULT:
    case NVME_SC.READ_ERROR:
      return BLK_STS.MEDIUM;
    default:
      return BLK_STS.IOERR;
  }
}

/** Linux `NVME_SCT_SC_MASK`: the status code type and status code of a (shifted) status. */
const NVME_SCT_SC_MASK = 0x7ff;
/** Linux `NVME_STATUS_CRD`: the Command Retry Delay field (bits 12:11 of the shifted status). */
const NVME_STATUS_CRD_SHIFT = 11;
/** Linux `BLK_MQ_RESOURCE_DELAY`: how long blk-mq waits to rerun a queue that ran out (3 ms). */
const BLK_MQ_RESOURCE_DELAY_NS = 3_000_000;

/** The NVMe host driver. */
export class NvmeHost {
  readonly dev: Device;
  readonly ctrl: NvmeController;
  readonly mapping: MappingStyle;
  readonly sglThreshold: number;
  /** The DMA mask width the driver sets at probe (`NvmeHostOptions.dmaAddressBits`). */
  readonly dmaAddressBits: number;
  readonly maxRetries: number;
  readonly counters = new CounterSet<NvmeHostCounter>("nvmehost", [
    "submitted",
    "completed",
    "failed",
    "retries",
    "requeues",
    "sqDoorbells",
    "cqDoorbells",
    "prpCommands",
    "sglCommands",
    "singleSegment",
    "iovaCoalesced",
    "smallDescriptors",
    "largeDescriptors",
    "vecArrays",
    "sgTables",
    "inflightBytes",
    "peakInflightBytes",
    "shadowWrites",
    "mmioDoorbellsSkipped",
  ]);
  /** Descriptor pools (Linux "nvme descriptor small" / "nvme descriptor page"). */
  small!: DmaPool;
  large!: DmaPool;
  /** The dma_vec mempool (new style). */
  readonly vecPool: Mempool<import("@dmasim/dma-core").DmaVec[]>;
  /** The scatterlist mempool (old style). */
  readonly sgPool: Mempool<import("@dmasim/dma-core").SgTable>;
  /** I/O queue limits set from the controller (Linux `nvme_set_ctrl_limits` and friends). */
  limits!: QueueLimits;
  /** Admin queue limits (virt boundary 4 KiB - 1). */
  adminLimits!: QueueLimits;
  info!: ControllerInfo;
  /** Linux `ctrl->crdt`: Identify CRDT1..CRDT3 (bytes 134..139), retry delays in 100 ms units. */
  crdt: readonly [number, number, number] = [0, 0, 0];
  namespaces: NamespaceInfo[] = [];
  readonly queues: NvmeQueue[] = [];
  private readonly wantIoQueues: number;
  private readonly wantDepth: number | undefined;
  private ctx!: OldMapContext;
  private enabled = false;
  /** Linux `dbbuf_dbs` / `dbbuf_eis`: the shadow doorbell and event index pages, when in use. */
  private dbbuf: { readonly dbs: CoherentBuffer; readonly eis: CoherentBuffer } | null = null;
  private readonly dbScratch = new Uint8Array(4);

  constructor(o: NvmeHostOptions) {
    this.dev = o.dev;
    this.ctrl = o.ctrl;
    this.mapping = o.mapping ?? "new";
    this.sglThreshold = o.sglThreshold ?? NVME_SGL_THRESHOLD;
    this.dmaAddressBits = o.dmaAddressBits ?? 64;
    this.maxRetries = o.maxRetries ?? NVME_MAX_RETRIES;
    this.wantIoQueues = o.ioQueues ?? 1;
    this.wantDepth = o.queueDepth;
    this.vecPool = dmaVecMempool();
    this.sgPool = sgMempool();
    if (this.wantIoQueues < 1)
      throw new NvmeError("EINVAL", `I/O queue count ${this.wantIoQueues} is below 1`);
  }

  /** The mapping context (exposed for tests of the builders). */
  get mapContext(): OldMapContext {
    return this.ctx;
  }

  /**
   * Brings the controller up as Linux does: disable, program the admin queue, enable with
   * CC.MPS = 0 (refusing a controller whose minimum page exceeds 4 KiB), Identify Controller and
   * Namespaces, set the queue limits, create the I/O queue pairs (CQ before SQ).
   */
  enable(): void {
    if (this.enabled) throw new NvmeError("EBUSY", "the host is already enabled");
    const ctrl = this.ctrl;
    const capHi = ctrl.readReg32(NVME_REG.CAP + 4);
    const capLo = ctrl.readReg32(NVME_REG.CAP);
    const mpsmin = Math.floor(capHi / 2 ** 16) % 16;
    const mqes = capLo % 65536;
    if (mpsmin + 12 > 12) {
      throw new NvmeError(
        "ENODEV",
        `Minimum device page size ${2 ** (mpsmin + 12)} too large for host (${NVME_CTRL_PAGE_SIZE})`,
      );
    }
    // The PCI driver's DMA settings (nvme_pci_alloc_dev): the mask first, so that the limits
    // below see it (dma_opt_mapping_size is the SWIOTLB segment when it cannot reach all RAM).
    this.dev.setMaskBits(this.dmaAddressBits);
    this.dev.minAlignMask = NVME_CTRL_PAGE_SIZE - 1;
    this.dev.maxSegmentSize = 0xffffffff;
    this.small = new DmaPool(
      "nvme descriptor small",
      this.dev,
      NVME_SMALL_POOL_SIZE,
      NVME_SMALL_POOL_SIZE,
    );
    this.large = new DmaPool(
      "nvme descriptor page",
      this.dev,
      NVME_CTRL_PAGE_SIZE,
      NVME_CTRL_PAGE_SIZE,
    );
    ctrl.writeReg32(NVME_REG.CC, 0);
    const admin = this.allocQueue(0, NVME_AQ_DEPTH);
    ctrl.writeReg32(NVME_REG.AQA, NVME_AQ_DEPTH - 1 + (NVME_AQ_DEPTH - 1) * 65536);
    ctrl.writeReg64(NVME_REG.ASQ, admin.sq.dmaAddr);
    ctrl.writeReg64(NVME_REG.ACQ, admin.cq.dmaAddr);
    // CC: EN, CSS NVM, MPS 0, AMS RR, IOSQES 6, IOCQES 4.
    ctrl.writeReg32(NVME_REG.CC, 1 + 6 * 2 ** 16 + 4 * 2 ** 20);
    if (!ctrl.ready) {
      this.freeQueue(admin);
      this.queues.length = 0;
      this.small.destroy();
      this.large.destroy();
      throw new NvmeError(
        "ENODEV",
        `controller failed to become ready (CSTS ${hex(ctrl.readReg32(NVME_REG.CSTS))})`,
      );
    }
    // Identify Controller.
    const id = this.identify(NVME_ID_CNS.CTRL, 0);
    const mdts = id[77] as number;
    const sgls = getU32(id, 536);
    const nn = getU32(id, 516);
    this.info = { mdts, sgls, namespaces: nn, mpsmin, mqes };
    this.crdt = [getU16(id, 134), getU16(id, 136), getU16(id, 138)];
    this.namespaces = [];
    for (let ns = 1; ns <= nn; ns++) {
      const d = this.identify(NVME_ID_CNS.NS, ns);
      const lbads = d[128 + 2] as number;
      const blocks = getU32(d, 0) + getU32(d, 4) * 2 ** 32;
      this.namespaces.push({ nsid: ns, lbaSize: 2 ** lbads, blocks });
    }
    this.limits = this.computeLimits(false);
    this.adminLimits = this.computeLimits(true);
    this.dbbufDmaAlloc(getU16(id, NVME_ID_CTRL_OACS));
    const sglSupported = sgls % 4 === 1 || sgls % 4 === 2;
    this.ctx = {
      dev: this.dev,
      mem: this.dev.memory,
      small: this.small,
      large: this.large,
      vecPool: this.vecPool,
      sgPool: this.sgPool,
      sglSupported,
      sglThreshold: this.sglThreshold,
      iter: blkDmaIter(),
    };
    const depth = Math.min(this.wantDepth ?? 1024, mqes + 1);
    // Linux `nvme_create_io_queues`: every queue's memory first (`nvme_alloc_queue`), then
    // `nvme_create_queue` for each, which creates the CQ before the SQ.
    for (let q = 1; q <= this.wantIoQueues; q++) this.allocQueue(q, depth);
    for (let q = 1; q <= this.wantIoQueues; q++) {
      const queue = this.queues[q] as NvmeQueue;
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.CREATE_CQ;
        setU64(cmd, SQE.PRP1, queue.cq.dmaAddr);
        setU32(cmd, SQE.CDW10, q + (depth - 1) * 65536);
        setU32(cmd, SQE.CDW11, 1); // physically contiguous, polled (no IEN)
      });
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.CREATE_SQ;
        setU64(cmd, SQE.PRP1, queue.sq.dmaAddr);
        setU32(cmd, SQE.CDW10, q + (depth - 1) * 65536);
        setU32(cmd, SQE.CDW11, 1 + q * 65536);
      });
    }
    this.dbbufSet();
    this.enabled = true;
  }

  /**
   * Linux's limits (`nvme_set_ctrl_limits`, `nvme_pci_alloc_dev` in drivers/nvme/host/):
   * max_hw_sectors from 8 MiB, the DMA optimal mapping size and MDTS; max_segments from that
   * (`nvme_max_drv_segments`, capped by the driver's NVME_MAX_SEGS); 4-byte DMA alignment; no
   * segment size limit. The admin queue (`nvme_init_identify`, `nvme_set_ctrl_limits(ctrl,
   * &lim, true)`) gets the same sizes with the 4 KiB virt boundary. An I/O queue has no virt
   * boundary only from 6.19 ("nvme: remove virtual boundary for sgl capable devices",
   * `nvme_pci_get_virt_boundary`: SGL support and the new mapping, gate "bio-gap-tracking");
   * before, and always in the old style, every queue has it.
   *
   * `dma_opt_mapping_size` never returns 0 in the model (the IOVA rcache range, or the SWIOTLB
   * segment less the 4 KiB minimum alignment), so the 2026 change that skips the clamp for a
   * 0 return cannot be observed and is not modelled.
   */
  private computeLimits(admin: boolean): QueueLimits {
    const info = this.info;
    const sglSupported = info.sgls % 4 === 1 || info.sgls % 4 === 2;
    let maxHw = Math.min(
      NVME_MAX_BYTES / SECTOR_SIZE,
      Math.floor(dmaOptMappingSize(this.dev) / SECTOR_SIZE),
    );
    if (info.mdts !== 0) maxHw = Math.min(maxHw, 2 ** (info.mdts + info.mpsmin + 12 - 9));
    const driverSegs = Math.floor(maxHw / 8) + 1;
    const maxSegs = Math.min(
      65535,
      driverSegs,
      this.mapping === "new" ? NVME_MAX_SEGS : NVME_OLD_MAX_SEGS,
    );
    const noBoundary =
      !admin &&
      this.mapping === "new" &&
      sglSupported &&
      kernelHas(this.dev.kernel, "bio-gap-tracking");
    const lbaSize = this.namespaces[0]?.lbaSize ?? 512;
    return queueLimits({
      logicalBlockSize: admin ? 512 : lbaSize,
      maxHwSectors: maxHw,
      maxSegments: maxSegs,
      virtBoundaryMask: noBoundary ? 0 : NVME_CTRL_PAGE_SIZE - 1,
      maxSegmentSize: 0xffffffff,
      dmaAlignment: 3,
    });
  }

  /** Linux `nvme_alloc_queue`: the completion queue's memory first, then the submission queue's. */
  private allocQueue(qid: number, depth: number): NvmeQueue {
    const cq = dmaAllocCoherent(this.dev, depth * CQE_SIZE);
    let sq: CoherentBuffer;
    try {
      sq = dmaAllocCoherent(this.dev, depth * SQE_SIZE);
    } catch (e) {
      dmaFreeCoherent(this.dev, depth * CQE_SIZE, cq.cpuAddr, cq.dmaAddr);
      throw e;
    }
    const q = new NvmeQueue(qid, depth, sq, cq);
    this.queues[qid] = q;
    return q;
  }

  /** Linux `nvme_free_queue`: the CQ, then the SQ (`nvme_free_sq`). */
  private freeQueue(q: NvmeQueue): void {
    dmaFreeCoherent(this.dev, q.depth * CQE_SIZE, q.cq.cpuAddr, q.cq.dmaAddr);
    dmaFreeCoherent(this.dev, q.depth * SQE_SIZE, q.sq.cpuAddr, q.sq.dmaAddr);
  }

  /** Runs one admin command to completion (advancing the clock if completions are delayed). */
  private adminSync(build: (cmd: Uint8Array) => void): void {
    const q = this.queues[0] as NvmeQueue;
    const tag = q.freeTags.pop();
    if (tag === undefined) throw new NvmeError("EBUSY", "no free admin tag");
    const iod = q.iod(tag);
    iod.resetForSubmit();
    build(iod.cmd);
    let result: number | undefined;
    q.callbacks[tag] = (_s, nvmeStatus) => {
      result = nvmeStatus;
    };
    this.writeCommand(q, iod, true);
    this.waitFor(q, () => result !== undefined);
    if (result !== 0) {
      throw new NvmeError(
        "EIO",
        `admin command ${hex(iod.cmd[SQE.OPCODE] as number)} failed: ${nvmeStatusName(result ?? 0)}`,
      );
    }
  }

  private waitFor(q: NvmeQueue, done: () => boolean): void {
    for (let spins = 0; !done(); spins++) {
      this.poll(q.qid);
      if (done()) return;
      if (this.ctrl.fatal)
        throw new NvmeError("EIO", "controller fatal status while waiting for a completion");
      const clock = this.ctrl.clock;
      if (clock === undefined || !clock.runNext() || spins > 1_000_000) {
        throw new NvmeError("ETIMEDOUT", `no completion on queue ${q.qid}`);
      }
    }
  }

  private identify(cns: number, nsid: number): Uint8Array {
    const buf = dmaAllocCoherent(this.dev, 4096);
    try {
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.IDENTIFY;
        setU32(cmd, SQE.NSID, nsid);
        setU64(cmd, SQE.PRP1, buf.dmaAddr);
        setU32(cmd, SQE.CDW10, cns);
      });
      return this.dev.memory.readBytes(buf.cpuAddr, 4096);
    } finally {
      dmaFreeCoherent(this.dev, 4096, buf.cpuAddr, buf.dmaAddr);
    }
  }

  /** Copies the command into the SQ, advances the tail, and rings the doorbell when `last`. */
  private writeCommand(q: NvmeQueue, iod: NvmeIod, last: boolean): void {
    iod.genctr = (iod.genctr + 1) % 16;
    iod.busy = true;
    setU16(iod.cmd, SQE.CID, iod.genctr * 4096 + iod.tag);
    this.dev.memory.write(q.sq.cpuAddr + q.sqTail * SQE_SIZE, iod.cmd, 0, SQE_SIZE);
    q.sqTail = (q.sqTail + 1) % q.depth;
    if (last) this.ringSq(q);
  }

  /**
   * Linux `nvme_write_sq_db`: the new tail goes to the shadow doorbell of an I/O queue when
   * doorbell buffers are in use, and the MMIO doorbell is written only when
   * `nvme_dbbuf_update_and_check_event` says the controller asked for it.
   */
  private ringSq(q: NvmeQueue): void {
    if (q.sqTail === q.lastSqTailDb) return;
    q.lastSqTailDb = q.sqTail;
    if (!this.dbbufUpdateAndCheckEvent(q.qid, 2 * q.qid, q.sqTail)) return;
    this.counters.c.sqDoorbells++;
    this.ctrl.writeReg32(NVME_REG.DBS + 2 * q.qid * 4, q.sqTail);
  }

  /**
   * Linux `nvme_dbbuf_update_and_check_event` for doorbell `slot` (2 * qid: SQ tail, 2 * qid + 1:
   * CQ head) of queue `qid`: without doorbell buffers (or on the admin queue, which Linux's
   * `nvme_dbbuf_init` leaves out) the MMIO doorbell is always written; otherwise `value` is
   * stored in the shadow page and the event index decides (`nvme_dbbuf_need_event`). The pages
   * are coherent memory, so the CPU reads and writes them directly.
   */
  private dbbufUpdateAndCheckEvent(qid: number, slot: number, value: number): boolean {
    const d = this.dbbuf;
    if (d === null || qid === 0) return true;
    const mem = this.dev.memory;
    const b = this.dbScratch;
    mem.read(d.dbs.cpuAddr + slot * 4, b, 0, 4);
    const old = getU16(b, 0);
    setU32(b, 0, value);
    mem.write(d.dbs.cpuAddr + slot * 4, b, 0, 4);
    this.counters.c.shadowWrites++;
    mem.read(d.eis.cpuAddr + slot * 4, b, 0, 4);
    const eventIdx = getU16(b, 0);
    if (nvmeDbbufNeedEvent(eventIdx, value, old)) return true;
    this.counters.c.mmioDoorbellsSkipped++;
    return false;
  }

  /**
   * Linux `nvme_dbbuf_dma_alloc`: when the controller supports Doorbell Buffer Config (OACS
   * bit 8), one coherent page for the shadow doorbells and one for the event indexes (Linux
   * sizes them by the queue count, `nvme_dbbuf_size`, which `dma_alloc_coherent` rounds up to
   * a page). An allocation failure leaves doorbell buffers off, as in Linux.
   */
  private dbbufDmaAlloc(oacs: number): void {
    if (Math.floor(oacs / NVME_CTRL_OACS_DBBUF_SUPP) % 2 === 0) return;
    let dbs: CoherentBuffer;
    try {
      dbs = dmaAllocCoherent(this.dev, NVME_CTRL_PAGE_SIZE);
    } catch {
      return;
    }
    try {
      this.dbbuf = { dbs, eis: dmaAllocCoherent(this.dev, NVME_CTRL_PAGE_SIZE) };
    } catch {
      dmaFreeCoherent(this.dev, NVME_CTRL_PAGE_SIZE, dbs.cpuAddr, dbs.dmaAddr);
    }
  }

  /** Linux `nvme_dbbuf_dma_free`. */
  private dbbufDmaFree(): void {
    const d = this.dbbuf;
    if (d === null) return;
    dmaFreeCoherent(this.dev, NVME_CTRL_PAGE_SIZE, d.dbs.cpuAddr, d.dbs.dmaAddr);
    dmaFreeCoherent(this.dev, NVME_CTRL_PAGE_SIZE, d.eis.cpuAddr, d.eis.dmaAddr);
    this.dbbuf = null;
  }

  /**
   * Linux `nvme_dbbuf_set`, sent once the I/O queues exist: Doorbell Buffer Config with PRP1 =
   * the shadow page, PRP2 = the event index page. On failure Linux warns ("unable to set
   * dbbuf"), frees the pages and carries on with MMIO doorbells only.
   */
  private dbbufSet(): void {
    const d = this.dbbuf;
    if (d === null) return;
    try {
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.DBBUF;
        setU64(cmd, SQE.PRP1, d.dbs.dmaAddr);
        setU64(cmd, SQE.PRP2, d.eis.dmaAddr);
      });
    } catch (e) {
      if (!(e instanceof NvmeError) || this.ctrl.fatal) throw e;
      this.dbbufDmaFree();
    }
  }

  /** Whether doorbell buffers (shadow doorbells) are in use. */
  get shadowDoorbells(): boolean {
    return this.dbbuf !== null;
  }

  /** Linux `nvme_commit_rqs`: rings the doorbell for commands queued with `last: false`. */
  commit(qid = 1): void {
    const q = this.queue(qid);
    this.ringSq(q);
  }

  private queue(qid: number): NvmeQueue {
    const q = this.queues[qid];
    if (q === undefined || qid === 0) throw new NvmeError("EINVAL", `no I/O queue ${qid}`);
    return q;
  }

  /**
   * Linux `nvme_queue_rq`: builds the command, maps the data and queues it. Returns OK when
   * submitted (`cb` runs at completion), RESOURCE when the caller must requeue later (no tag,
   * or a mapping resource ran out), or another block status when the request failed at once.
   */
  submit(
    req: Request,
    cb: CompletionCallback,
    opts: { qid?: number; nsid?: number; last?: boolean } = {},
  ): BlkStatus {
    if (!this.enabled) throw new NvmeError("ENODEV", "the host is not enabled");
    const q = this.queue(opts.qid ?? 1);
    return this.queueRq(q, req, cb, opts.nsid ?? 1, opts.last ?? true, 0);
  }

  /**
   * `submit` for a request that has been retried `retries` times: Linux keeps
   * `nvme_req(req)->retries` in the request and clears it only when a new request is set up
   * (`nvme_clear_nvme_request`, skipped for a requeued RQF_DONTPREP request), so a fresh
   * request starts at 0 whatever the tag's previous request left.
   */
  private queueRq(
    q: NvmeQueue,
    req: Request,
    cb: CompletionCallback,
    nsid: number,
    last: boolean,
    retries: number,
  ): BlkStatus {
    const ns = this.namespaces[nsid - 1];
    if (ns === undefined) throw new NvmeError("EINVAL", `no namespace ${nsid}`);
    const tag = q.freeTags.pop();
    if (tag === undefined) {
      this.counters.c.requeues++;
      return BLK_STS.RESOURCE;
    }
    const iod = q.iod(tag);
    iod.retries = retries;
    let st: BlkStatus;
    try {
      st = this.prep(iod, req, ns, nsid);
    } catch (e) {
      // A misuse error (e.g. a request that is not whole logical blocks): the tag goes back.
      iod.req = null;
      q.freeTags.push(tag);
      throw e;
    }
    if (st !== BLK_STS.OK) {
      q.freeTags.push(tag);
      if (st === BLK_STS.RESOURCE) this.counters.c.requeues++;
      return st;
    }
    q.callbacks[tag] = cb;
    this.counters.c.submitted++;
    this.writeCommand(q, iod, last);
    return BLK_STS.OK;
  }

  /** Linux `nvme_prep_rq`: reset the iod, build the command (`nvme_setup_cmd`), map the data. */
  private prep(iod: NvmeIod, req: Request, ns: NamespaceInfo, nsid: number): BlkStatus {
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
    const slba = (req.sector * SECTOR_SIZE) / ns.lbaSize;
    setU32(cmd, SQE.CDW10, slba % 2 ** 32);
    setU32(cmd, SQE.CDW11, Math.floor(slba / 2 ** 32));
    setU32(cmd, SQE.CDW12, bytes / ns.lbaSize - 1);
    if (req.nrPhysSegments === 0) return BLK_STS.OK;
    const st =
      this.mapping === "new" ? nvmeMapData(this.ctx, iod, req) : nvmeMapDataOld(this.ctx, iod, req);
    if (st === BLK_STS.OK) this.accountMap(iod);
    return st;
  }

  private accountMap(iod: NvmeIod): void {
    const c = this.counters.c;
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
    c.inflightBytes += this.totalMemory(iod);
    if (c.inflightBytes > c.peakInflightBytes) c.peakInflightBytes = c.inflightBytes;
  }

  /** Host memory one request holds while in flight (what Linux would allocate for it). */
  requestMemory(iod: NvmeIod): RequestMemory {
    return {
      iodBytes: IOD_BYTES[this.mapping],
      descriptorBytes: descriptorBytes(iod),
      vecArrayBytes: iod.dmaVecs !== null ? this.vecPool.objectBytes : 0,
      scatterlistBytes: iod.sgt !== null ? this.sgPool.objectBytes : 0,
    };
  }

  /** The sum of `requestMemory`'s descriptor, vec-array and scatterlist bytes (no object made). */
  private totalMemory(iod: NvmeIod): number {
    return (
      descriptorBytes(iod) +
      (iod.dmaVecs !== null ? this.vecPool.objectBytes : 0) +
      (iod.sgt !== null ? this.sgPool.objectBytes : 0)
    );
  }

  /**
   * Linux `nvme_poll_cq`: consumes new completion entries (phase bit), completes their requests
   * (unmapping the data first, retrying when the status allows), and writes the CQ head
   * doorbell once. Returns how many entries were consumed.
   */
  poll(qid = 1): number {
    const q = this.queues[qid];
    if (q === undefined) throw new NvmeError("EINVAL", `no queue ${qid}`);
    const mem = this.dev.memory;
    const e = cqeScratch;
    let n = 0;
    for (;;) {
      mem.read(q.cq.cpuAddr + q.cqHead * CQE_SIZE, e, 0, CQE_SIZE);
      const statusField = getU16(e, 14);
      if (statusField % 2 !== q.cqPhase) break;
      n++;
      q.cqHead = (q.cqHead + 1) % q.depth;
      if (q.cqHead === 0) q.cqPhase = 1 - q.cqPhase;
      const cid = getU16(e, 12);
      const tag = cid % 4096;
      const iod = q.iods[tag];
      if (iod === undefined || !iod.busy || Math.floor(cid / 4096) !== iod.genctr) continue; // stale or unknown CID: ignored as Linux does
      this.complete(q, iod, Math.floor(statusField / 2));
    }
    // Linux `nvme_ring_cq_doorbell`: through the shadow doorbell when in use.
    if (n > 0 && this.dbbufUpdateAndCheckEvent(qid, 2 * qid + 1, q.cqHead)) {
      this.counters.c.cqDoorbells++;
      this.ctrl.writeReg32(NVME_REG.DBS + (2 * qid + 1) * 4, q.cqHead);
    }
    // A completion restarts a queue whose requeued request ran out of a resource (blk-mq
    // SCHED_RESTART). Without a clock no delayed run can happen, so every poll retries.
    if (q.blocked && (q.restart || this.ctrl.clock === undefined)) this.runRequeue(q);
    return n;
  }

  private complete(q: NvmeQueue, iod: NvmeIod, nvmeStatus: number): void {
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
    {
      // Linux `nvme_pci_complete_rq`: unmap before completing.
      this.counters.c.inflightBytes -= this.totalMemory(iod);
      if (req.nrPhysSegments > 0 && req.op !== REQ_OP.FLUSH) {
        if (this.mapping === "new") nvmeUnmapData(this.ctx, iod, req);
        else nvmeUnmapDataOld(this.ctx, iod, req);
      }
    }
    iod.req = null;
    q.callbacks[iod.tag] = undefined;
    q.freeTags.push(iod.tag);
    q.restart = true;
    // Linux `nvme_decide_disposition`: retry unless DNR, too many retries, or success.
    if (
      q.qid !== 0 &&
      nvmeStatus !== 0 &&
      nvmeStatus < NVME_STATUS_DNR &&
      iod.retries < this.maxRetries
    ) {
      this.counters.c.retries++;
      this.retryReq(q, {
        req,
        cb: cb ?? noop,
        nsid: getU32(iod.cmd, SQE.NSID),
        retries: iod.retries + 1,
        status: nvmeStatus,
      });
      return;
    }
    const st = nvmeErrorStatus(nvmeStatus);
    this.counters.c.completed++;
    if (st !== BLK_STS.OK) this.counters.c.failed++;
    cb?.(st, nvmeStatus, req);
  }

  /**
   * Linux `nvme_retry_req`: the request goes back on the requeue list (`blk_mq_requeue_request`)
   * with one more retry, and the list is kicked after the Command Retry Delay the completion
   * asked for (`blk_mq_delay_kick_requeue_list`: CRD 1..3 selects Identify CRDT1..3, in 100 ms
   * units; CRD 0 is no delay). The model's controller reports CRDT1..3 as 0, so every retry
   * runs at once (Linux runs it from the requeue work item: the same order, a little later).
   */
  private retryReq(q: NvmeQueue, r: RequeuedRequest): void {
    q.requeueList.push(r);
    const crd = Math.floor(r.status / 2 ** NVME_STATUS_CRD_SHIFT) % 4;
    const delayNs = crd === 0 ? 0 : (this.crdt[crd - 1] as number) * 100_000_000;
    if (delayNs > 0 && this.ctrl.clock !== undefined) this.delayRunRequeue(q, delayNs);
    else this.runRequeue(q);
  }

  /**
   * Dispatches the requeue list in order (Linux `blk_mq_requeue_work`, then the hardware queue
   * dispatch). A request whose dispatch returns BLK_STS_RESOURCE stays at the head and is never
   * completed with it (`blk_mq_dispatch_rq_list`): the queue runs again when a request
   * completes (SCHED_RESTART) or, with nothing in flight, after BLK_MQ_RESOURCE_DELAY. Another
   * error ends the request with that status (`blk_mq_end_request`).
   */
  private runRequeue(q: NvmeQueue): void {
    const list = q.requeueList;
    while (list.length > 0) {
      const r = list[0] as RequeuedRequest;
      const st = this.queueRq(q, r.req, r.cb, r.nsid, true, r.retries);
      if (st === BLK_STS.RESOURCE) {
        q.blocked = true;
        q.restart = false;
        if (q.inflight === 0) this.delayRunRequeue(q, BLK_MQ_RESOURCE_DELAY_NS);
        return;
      }
      list.shift();
      if (st !== BLK_STS.OK) r.cb(st, r.status, r.req);
    }
    q.blocked = false;
  }

  /**
   * Runs the requeue list after `delayNs` on the controller's clock (Linux
   * `blk_mq_delay_run_hw_queue` / `blk_mq_delay_kick_requeue_list`). One run is pending at a
   * time; Linux's `mod_delayed_work` would move a pending run to the newer delay instead.
   */
  private delayRunRequeue(q: NvmeQueue, delayNs: number): void {
    const clock = this.ctrl.clock;
    if (clock === undefined || q.requeueTimer) return;
    q.requeueTimer = true;
    clock.schedule(delayNs, () => {
      q.requeueTimer = false;
      if (this.queues[q.qid] === q) this.runRequeue(q);
    });
  }

  /**
   * Splits a bio to the queue limits, submits every piece, and completes the bio (through
   * `bioEndio`) when all pieces are done. Requeues pieces that hit RESOURCE after polling.
   * Returns the requests submitted.
   */
  submitBio(bio: Bio, qid = 1): Request[] {
    const pieces = bioSplitToLimits(bio, this.limits);
    const reqs: Request[] = [];
    for (const p of pieces) {
      const req = blkRqFromBios(this.limits, [p]);
      reqs.push(req);
      const cb: CompletionCallback = (status) => bioEndio(p, status);
      let st = this.submit(req, cb, { qid });
      for (let tries = 0; st === BLK_STS.RESOURCE && tries < 1000; tries++) {
        this.poll(qid);
        this.ctrl.clock?.runNext();
        st = this.submit(req, cb, { qid });
      }
      if (st !== BLK_STS.OK) bioEndio(p, st);
    }
    return reqs;
  }

  /** Polls (and advances the clock) until no request is in flight or requeued on `qid`. */
  drain(qid = 1): void {
    const q = this.queue(qid);
    this.waitFor(q, () => q.inflight === 0 && q.requeueList.length === 0);
  }

  /**
   * Shuts down: deletes the I/O queues (SQ before CQ), disables the controller, and frees
   * every queue ring and descriptor pool. Throws EBUSY with requests in flight.
   */
  shutdown(): void {
    if (!this.enabled) return;
    for (const q of this.queues.slice(1)) {
      if (q.inflight > 0 || q.requeueList.length > 0)
        throw new NvmeError(
          "EBUSY",
          `queue ${q.qid} still has ${q.inflight} requests in flight and ${q.requeueList.length} requeued`,
        );
    }
    for (const q of this.queues.slice(1)) {
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.DELETE_SQ;
        setU32(cmd, SQE.CDW10, q.qid);
      });
      this.adminSync((cmd) => {
        cmd[SQE.OPCODE] = NVME_ADMIN.DELETE_CQ;
        setU32(cmd, SQE.CDW10, q.qid);
      });
    }
    this.ctrl.writeReg32(NVME_REG.CC, 0);
    for (const q of this.queues) this.freeQueue(q);
    this.queues.length = 0;
    this.dbbufDmaFree();
    this.small.destroy();
    this.large.destroy();
    this.enabled = false;
  }
}

/**
 * Linux `nvme_dbbuf_need_event`: whether moving a doorbell from `old` to `newIdx` passes the
 * controller's event index, `(u16)(new_idx - event_idx - 1) < (u16)(new_idx - old)`.
 */
export function nvmeDbbufNeedEvent(eventIdx: number, newIdx: number, old: number): boolean {
  const u16 = (v: number) => ((v % 65536) + 65536) % 65536;
  return u16(newIdx - eventIdx - 1) < u16(newIdx - old);
}

/** Bytes of the descriptor blocks a request holds. */
function descriptorBytes(iod: NvmeIod): number {
  if (iod.nrDescriptors === 0) return 0;
  return iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)
    ? NVME_SMALL_POOL_SIZE
    : iod.nrDescriptors * NVME_CTRL_PAGE_SIZE;
}

const cqeScratch = new Uint8Array(CQE_SIZE);
/** Stands for the request of an admin command in completion callbacks. */
const adminRequest = new Request(REQ_OP.FLUSH, queueLimits());
function noop(): void {
  // completion of a retried request whose caller gave no callback
}
