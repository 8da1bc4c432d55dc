/**
 * The simulated NVMe controller, modelled on QEMU hw/nvme/ctrl.c. This file is its transport:
 * the registers of BAR0 (`nvme_mmio_read` / `nvme_mmio_write`), enable and reset
 * (`nvme_start_ctrl`, `nvme_ctrl_reset`), the doorbells (`nvme_process_db`), fetching commands
 * from submission queues (`nvme_process_sq`) and posting completions with phase tags
 * (`nvme_post_cqes`), with the Doorbell Buffer Config shadow doorbells. The commands themselves
 * are in admin.ts and io.ts, the PRP / SGL walk in walker.ts, fault injection in faults.ts.
 *
 * The controller sees the host only through register writes and DMA: everything it reads from
 * or writes to host memory goes through `DeviceDma` (so the IOMMU translates and faults). A
 * translation fault during a transfer is a Data Transfer Error (04h), never an exception; a
 * fault on a queue access sets CSTS.CFS.
 *
 * Deliberately simpler than QEMU (which moves data asynchronously through its block backend):
 * a command's data moves when it is fetched, inside the doorbell write, and only its completion
 * waits for the service time; the device never touches memory late (the lazy exposure window
 * comes from timestamps, not from a late DMA).
 */
import { type CounterSet, type SimClock, TWO_POW_32, getU16, getU32, hex } from "@dmasim/bvec";
import type { Device, DeviceDma } from "@dmasim/dma-core";
import type { NvmeBar } from "../spec/bar.ts";
import { CQE_SIZE, NVME_CMD, SQE, SQE_SIZE, rwNlb, setCqe } from "../spec/commands.ts";
import type { SglSupport } from "../spec/identify.ts";
import {
  NVME_CAP_CSS_NVM,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_REG,
  aqaAcqs,
  aqaAsqs,
  capHiValue,
  capLoValue,
  ccEn,
  ccIocqes,
  ccIosqes,
  ccMps,
  cstsRdy,
  vsValue,
} from "../spec/registers.ts";
import { NvmeError } from "../errors.ts";
import { nvmeAdminCmd } from "./admin.ts";
import type { NvmeErrorEntry } from "./error-log.ts";
import type { NvmeFaultPlan } from "./faults.ts";
import { nvmeIoCmd } from "./io.ts";
import type { NvmeNamespace } from "./ns.ts";
import {
  type NvmeCQueue,
  type NvmeControllerCounter,
  type NvmeControllerOptions,
  NvmeCtrlState,
  type NvmeSQueue,
} from "./state.ts";

/** CAP.TO: 20 units of 500 ms (10 s), what the model reports. */
const CAP_TO_10S = 0x14;
/** The base entry sizes CC.IOSQES / CC.IOCQES may select (2^6 = 64, 2^4 = 16 bytes; 0: not set yet). */
const IOSQES_64 = 6;
const IOCQES_16 = 4;
/** The smallest queue (two entries: one always stays empty). */
const MIN_QUEUE_ENTRIES = 2;
/** The smallest memory page, 2^12 (CC.MPS and CAP.MPSMIN count from it). */
const NVME_PAGE_SHIFT_MIN = 12;

/** A completion waiting on the clock for its service time (recycled once posted). */
interface PendingPost {
  cqid: number;
  sqid: number;
  sqhd: number;
  cid: number;
  status: number;
}

/** The simulated NVMe controller (QEMU `NvmeCtrl`). */
export class NvmeController implements NvmeBar {
  readonly dev: Device;
  readonly dma: DeviceDma;
  readonly clock: SimClock | undefined;
  readonly sgl: SglSupport;
  readonly mdts: number;
  readonly mpsmin: number;
  readonly mpsmax: number;
  readonly maxQueueEntries: number;
  readonly maxIoQueues: number;
  readonly namespaces: NvmeNamespace[];
  readonly completionDelayNs: number;
  readonly maxRanges: number;
  /** Doorbell Buffer Config is supported (OACS bit 8). */
  readonly shadowDoorbells: boolean;
  readonly counters: CounterSet<NvmeControllerCounter>;
  /** The per-command device time model, if any. */
  serviceTimeNs: ((opcode: number, bytes: number, qid: number) => number) | undefined;
  /** The completion-queue interrupt (see `NvmeControllerOptions.irq`), if any. */
  irq: ((cqid: number) => void) | undefined;
  private readonly n: NvmeCtrlState;
  /** The completion entry being posted. */
  private readonly cqe = new Uint8Array(CQE_SIZE);
  /** Completions scheduled on the clock and not yet posted. */
  private pendingPosts = 0;
  /** Records of posted delayed completions, for reuse. */
  private readonly freePosts: PendingPost[] = [];
  /**
   * Posts a delayed completion: one callback for every command, its record passed by the
   * clock, so that scheduling a completion allocates no closure.
   */
  private readonly postDelayed = (_now: number, p: PendingPost): void => {
    this.pendingPosts--;
    const cq = this.n.cqs.get(p.cqid);
    if (cq) this.nvmePostCqes(cq, p.sqid, p.sqhd, p.cid, p.status, 0);
    this.freePosts.push(p);
  };

  constructor(o: NvmeControllerOptions) {
    const n = new NvmeCtrlState(o);
    this.n = n;
    this.dev = n.dev;
    this.dma = n.dma;
    this.clock = n.clock;
    this.sgl = n.sgl;
    this.mdts = n.mdts;
    this.mpsmin = n.mpsmin;
    this.mpsmax = n.mpsmax;
    this.maxQueueEntries = n.maxQueueEntries;
    this.maxIoQueues = n.maxIoQueues;
    this.namespaces = n.namespaces;
    this.completionDelayNs = n.completionDelayNs;
    this.maxRanges = n.maxRanges;
    this.shadowDoorbells = n.shadowDoorbells;
    this.counters = n.counters;
    this.serviceTimeNs = o.serviceTimeNs;
    this.irq = o.irq;
  }

  /** The fault plan in force. */
  get faults(): NvmeFaultPlan {
    return this.n.faults.plan;
  }

  /** Replaces the fault plan and restarts its counting. */
  setFaults(plan: NvmeFaultPlan): void {
    this.n.faults.reset(plan);
  }

  /** CSTS.RDY (for tests and tools; the host reads CSTS). */
  get ready(): boolean {
    return cstsRdy(this.n.csts);
  }

  /** CSTS.CFS: the controller hit a fatal error (for example a failed queue access). */
  get fatal(): boolean {
    return this.n.fatal;
  }

  /** Completions still waiting on the clock. */
  get pending(): number {
    return this.pendingPosts;
  }

  /** Whether doorbell buffers are configured (Doorbell Buffer Config succeeded since the last reset). */
  get dbbuf(): boolean {
    return this.n.dbbufEnabled;
  }

  /** The last failed commands, newest first, with the reason each failed (see error-log.ts). */
  errorLog(): NvmeErrorEntry[] {
    return this.n.errorLog.entries();
  }

  /** The newest error-log entry of command `cid` on submission queue `sqid`, if still kept. */
  commandError(sqid: number, cid: number): NvmeErrorEntry | undefined {
    return this.n.errorLog.find(sqid, cid);
  }

  // ---------------------------------------------------------------------------------------
  // Registers (QEMU `nvme_mmio_read` / `nvme_write_bar`)

  /** Reads a 32-bit register. */
  readReg32(off: number): number {
    const n = this.n;
    switch (off) {
      case NVME_REG.CAP:
        return capLoValue({ mqes: n.maxQueueEntries - 1, cqr: true, to: CAP_TO_10S });
      case NVME_REG.CAP + 4:
        return capHiValue({ css: NVME_CAP_CSS_NVM, mpsmin: n.mpsmin, mpsmax: n.mpsmax });
      case NVME_REG.VS:
        return vsValue(2, 0);
      case NVME_REG.CC:
        return n.cc;
      case NVME_REG.CSTS:
        return n.csts;
      case NVME_REG.AQA:
        return n.aqa;
      case NVME_REG.ASQ:
        return n.asq % TWO_POW_32;
      case NVME_REG.ASQ + 4:
        return Math.floor(n.asq / TWO_POW_32);
      case NVME_REG.ACQ:
        return n.acq % TWO_POW_32;
      case NVME_REG.ACQ + 4:
        return Math.floor(n.acq / TWO_POW_32);
      default:
        return 0;
    }
  }

  /** Writes a 64-bit register (ASQ, ACQ). */
  writeReg64(off: number, value: number): void {
    if (off === NVME_REG.ASQ) this.n.asq = value;
    else if (off === NVME_REG.ACQ) this.n.acq = value;
    else throw new NvmeError("EINVAL", `register ${hex(off)} is not a 64-bit register`);
  }

  /** Writes a 32-bit register or a doorbell. */
  writeReg32(off: number, value: number): void {
    const n = this.n;
    if (off >= NVME_REG.DBS) {
      this.nvmeProcessDb(off, value);
      return;
    }
    switch (off) {
      case NVME_REG.CC:
        this.writeCc(value);
        return;
      case NVME_REG.AQA:
        n.aqa = value;
        return;
      case NVME_REG.ASQ:
        n.asq = Math.floor(n.asq / TWO_POW_32) * TWO_POW_32 + value;
        return;
      case NVME_REG.ASQ + 4:
        n.asq = (n.asq % TWO_POW_32) + value * TWO_POW_32;
        return;
      case NVME_REG.ACQ:
        n.acq = Math.floor(n.acq / TWO_POW_32) * TWO_POW_32 + value;
        return;
      case NVME_REG.ACQ + 4:
        n.acq = (n.acq % TWO_POW_32) + value * TWO_POW_32;
        return;
      case NVME_REG.INTMS:
      case NVME_REG.INTMC:
        return;
      default:
        throw new NvmeError("EINVAL", `register ${hex(off)} is read-only or not modelled`);
    }
  }

  /** A CC write (QEMU `nvme_write_bar`, case CC): EN 0 → 1 starts the controller, 1 → 0 resets it. */
  private writeCc(value: number): void {
    const n = this.n;
    const wasEn = ccEn(n.cc);
    const en = ccEn(value);
    n.cc = value;
    if (wasEn && !en) this.nvmeCtrlReset();
    else if (!wasEn && en) this.nvmeStartCtrl();
  }

  /**
   * QEMU `nvme_start_ctrl`: checks CC.MPS against CAP, the admin queue addresses (page aligned,
   * non-zero) and sizes, and the entry sizes; on success creates the admin queue pair and sets
   * CSTS.RDY, else sets CSTS.CFS (QEMU `pci_nvme_err_startfail_*`).
   */
  private nvmeStartCtrl(): void {
    const n = this.n;
    const mps = ccMps(n.cc);
    const page = 2 ** (NVME_PAGE_SHIFT_MIN + mps);
    const asqs = aqaAsqs(n.aqa) + 1;
    const acqs = aqaAcqs(n.aqa) + 1;
    const iosqes = ccIosqes(n.cc);
    const iocqes = ccIocqes(n.cc);
    const ok =
      mps >= n.mpsmin &&
      mps <= n.mpsmax &&
      n.asq % page === 0 &&
      n.acq % page === 0 &&
      n.asq !== 0 &&
      n.acq !== 0 &&
      asqs >= MIN_QUEUE_ENTRIES &&
      acqs >= MIN_QUEUE_ENTRIES &&
      (iosqes === 0 || iosqes === IOSQES_64) &&
      (iocqes === 0 || iocqes === IOCQES_16);
    if (!ok) {
      n.csts = NVME_CSTS_CFS;
      return;
    }
    n.pageSize = page;
    n.sqs.set(0, { qid: 0, base: n.asq, size: asqs, cqid: 0, head: 0, tail: 0 });
    n.cqs.set(0, { qid: 0, base: n.acq, size: acqs, tail: 0, head: 0, phase: 1, backlog: [] });
    n.csts = NVME_CSTS_RDY;
  }

  /** QEMU `nvme_ctrl_reset`: the queues and the doorbell buffers are forgotten, CSTS cleared. */
  private nvmeCtrlReset(): void {
    const n = this.n;
    n.sqs.clear();
    n.cqs.clear();
    n.csts = 0;
    n.dbbufEnabled = false;
    n.dbbufDbs = 0;
    n.dbbufEis = 0;
  }

  // ---------------------------------------------------------------------------------------
  // Doorbells, shadow doorbells

  /**
   * QEMU `nvme_update_sq_tail` / `nvme_update_cq_head`: reads a queue's shadow doorbell (slot
   * 2 * qid for a tail, 2 * qid + 1 for a head; CAP.DSTRD 0). Returns the low 16 bits, or -1
   * when the read faults (QEMU ignores the result of `ldl_le_pci_dma`; the model keeps the value
   * it had).
   */
  private readShadow(slot: number): number {
    const n = this.n;
    n.counters.c.shadowReads++;
    const v = n.dma.readU32(n.dbbufDbs + slot * 4);
    if (v < 0) {
      n.counters.c.dmaFaults++;
      return -1;
    }
    return v % 65536;
  }

  /** QEMU `nvme_update_sq_tail`: the SQ tail from the shadow page (an out-of-range value is fatal, as the MMIO path). */
  private nvmeUpdateSqTail(sq: NvmeSQueue): void {
    const v = this.readShadow(2 * sq.qid);
    if (v < 0) return;
    if (v >= sq.size) {
      this.n.setFatal();
      return;
    }
    sq.tail = v;
  }

  /** QEMU `nvme_update_sq_eventidx`: the event index of an SQ is the tail the controller has seen. */
  private nvmeUpdateSqEventidx(sq: NvmeSQueue): void {
    this.n.counters.c.eventIdxWrites++;
    this.n.dmaWriteU32(this.n.dbbufEis + 2 * sq.qid * 4, sq.tail);
  }

  /**
   * QEMU `nvme_update_cq_eventidx` then `nvme_update_cq_head`, done before each completion is
   * posted (`nvme_post_cqes`): the event index of a CQ is the head the controller knows, then
   * the head is read from the shadow page.
   */
  private nvmeUpdateCqHead(cq: NvmeCQueue): void {
    this.n.counters.c.eventIdxWrites++;
    this.n.dmaWriteU32(this.n.dbbufEis + (2 * cq.qid + 1) * 4, cq.head);
    const v = this.readShadow(2 * cq.qid + 1);
    if (v < 0) return;
    if (v >= cq.size) {
      this.n.setFatal();
      return;
    }
    cq.head = v;
  }

  /**
   * QEMU `nvme_process_db`: a submission queue tail doorbell runs the queue, a completion queue
   * head doorbell frees entries (and posts what waited for room). A write to a queue that does
   * not exist, or beyond its size, sets CSTS.CFS: deliberately, as QEMU ignores it and reports
   * an Invalid Doorbell asynchronous event only if an AER is outstanding (the model has no AER).
   */
  private nvmeProcessDb(off: number, value: number): void {
    const n = this.n;
    n.counters.c.doorbells++;
    const idx = (off - NVME_REG.DBS) / 4;
    if (!Number.isInteger(idx))
      throw new NvmeError("EINVAL", `doorbell offset ${hex(off)} is not dword aligned`);
    const qid = Math.floor(idx / 2);
    if (!cstsRdy(n.csts)) return;
    if (idx % 2 === 0) {
      const sq = n.sqs.get(qid);
      if (sq === undefined || value >= sq.size) {
        n.setFatal();
        return;
      }
      sq.tail = value;
      // An admin doorbell is copied into the shadow page, since hosts (Linux included) do not
      // use the shadow for the admin queue.
      if (qid === 0 && n.dbbufEnabled) {
        n.counters.c.shadowWrites++;
        n.dmaWriteU32(n.dbbufDbs, value);
      }
      this.nvmeProcessSq(sq);
    } else {
      const cq = n.cqs.get(qid);
      if (cq === undefined || value >= cq.size) {
        n.setFatal();
        return;
      }
      cq.head = value;
      if (qid === 0 && n.dbbufEnabled) {
        n.counters.c.shadowWrites++;
        n.dmaWriteU32(n.dbbufDbs + 4, value);
      }
      this.drainBacklog(cq);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Queues

  /**
   * QEMU `nvme_process_sq`: fetches and runs commands until the SQ is empty. With doorbell
   * buffers the tail is read from the shadow page first, and after each command the event index
   * is set to the tail seen and the shadow tail read again, so entries the host adds meanwhile
   * are taken without an MMIO doorbell. A failed command is recorded with its reason.
   */
  private nvmeProcessSq(sq: NvmeSQueue): void {
    const n = this.n;
    const c = n.counters.c;
    if (n.dbbufEnabled) this.nvmeUpdateSqTail(sq);
    while (sq.head !== sq.tail && !n.fatal) {
      const addr = sq.base + sq.head * SQE_SIZE;
      if (!n.dma.read(addr, n.cmd, 0, SQE_SIZE).ok) {
        c.dmaFaults++;
        n.setFatal(); // cannot fetch a command: controller fatal status
        return;
      }
      sq.head = (sq.head + 1) % sq.size;
      c.commandsFetched++;
      const cid = getU16(n.cmd, SQE.CID);
      n.reason = "";
      // No modelled command returns a command-specific result (completion DW0): it is 0.
      const status = sq.qid === 0 ? nvmeAdminCmd(n) : nvmeIoCmd(n);
      if (status !== 0) {
        c.errors++;
        if (n.reason !== "")
          n.errorLog.record(sq.qid, cid, n.cmd[SQE.OPCODE] as number, status, n.reason);
      }
      let delay = n.completionDelayNs + n.faults.delayNs;
      if (this.serviceTimeNs !== undefined && sq.qid !== 0) {
        const op = n.cmd[SQE.OPCODE] as number;
        const ns = n.namespaces[getU32(n.cmd, SQE.NSID) - 1];
        const bytes = op === NVME_CMD.FLUSH || ns === undefined ? 0 : rwNlb(n.cmd) * ns.lbaSize;
        delay += Math.max(0, Math.round(this.serviceTimeNs(op, bytes, sq.qid)));
      }
      if (delay > 0 && n.clock) {
        const p = this.freePosts.pop() ?? { cqid: 0, sqid: 0, sqhd: 0, cid: 0, status: 0 };
        p.cqid = sq.cqid;
        p.sqid = sq.qid;
        p.sqhd = sq.head;
        p.cid = cid;
        p.status = status;
        this.pendingPosts++;
        n.clock.schedule(delay, this.postDelayed, p);
      } else {
        const cq = n.cqs.get(sq.cqid);
        if (cq) this.nvmePostCqes(cq, sq.qid, sq.head, cid, status, 0);
      }
      if (n.dbbufEnabled && !n.fatal) {
        this.nvmeUpdateSqEventidx(sq);
        this.nvmeUpdateSqTail(sq);
      }
    }
  }

  /**
   * QEMU `nvme_post_cqes`: writes one completion entry with the queue's phase tag, advances the
   * tail (flipping the phase on wrap) and raises the queue's interrupt. A full queue keeps the
   * completion until the host frees an entry; a failed write is controller fatal.
   */
  private nvmePostCqes(
    cq: NvmeCQueue,
    sqid: number,
    sqhd: number,
    cid: number,
    status: number,
    result: number,
  ): void {
    const n = this.n;
    if (n.dbbufEnabled) {
      this.nvmeUpdateCqHead(cq);
      if (n.fatal) return;
    }
    if ((cq.tail + 1) % cq.size === cq.head) {
      cq.backlog.push({ sqid, sqhd, cid, status, result });
      return;
    }
    const e = this.cqe;
    setCqe(e, { result, sqhd, sqid, cid, status, phase: cq.phase });
    if (!n.dma.write(cq.base + cq.tail * CQE_SIZE, e, 0, CQE_SIZE).ok) {
      n.counters.c.dmaFaults++;
      n.setFatal();
      return;
    }
    n.counters.c.completionsPosted++;
    cq.tail = (cq.tail + 1) % cq.size;
    if (cq.tail === 0) cq.phase = 1 - cq.phase;
    this.irq?.(cq.qid);
  }

  /** Posts the completions that waited for room, as far as the queue now has room. */
  private drainBacklog(cq: NvmeCQueue): void {
    while (cq.backlog.length > 0 && (cq.tail + 1) % cq.size !== cq.head) {
      const b = cq.backlog.shift();
      if (b) this.nvmePostCqes(cq, b.sqid, b.sqhd, b.cid, b.status, b.result);
    }
  }
}
