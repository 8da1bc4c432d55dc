/**
 * The simulated NVMe controller. It sees the host only through register writes (BAR0) and
 * DMA: it fetches submission queue entries from host memory, walks PRP lists and SGL segments,
 * moves data, and posts completion entries with phase bits, all through `DeviceDma` (so the
 * IOMMU translates and faults). A translation fault during any transfer is a Data Transfer
 * Error (04h), never an exception.
 *
 * Status and DNR on a read or write, as QEMU `nvme_read` / `nvme_do_write` set them: every
 * failure to map the data pointer (a bad descriptor, PSDT 11b, and also a PRP list page or SGL
 * segment that cannot be read) carries DNR (`invalid: return status | NVME_DNR`). A fault while
 * the data itself moves is a Data Transfer Error (04h) without DNR. QEMU never reports 04h there:
 * its block-layer errors come back through `nvme_aio_err` / `nvme_rw_complete_cb` as Unrecovered
 * Read Error or Write Fault, without DNR, and a DMA translation failure is absorbed by QEMU's DMA
 * helpers (it bounces through the unassigned region and completes). The model keeps QEMU's
 * retryable disposition (no DNR) with the specification's status for a failed transfer (04h),
 * rather than report an IOMMU fault as a media error.
 */
import { CounterSet, Rng, type SimClock, TWO_POW_32, hex, pow2 } from "@dmasim/bvec";
import { type Device, DeviceDma } from "@dmasim/dma-core";
import {
  NVME_ADMIN,
  NVME_CMD,
  NVME_CTRL_OACS_DBBUF_SUPP,
  NVME_ID_CNS,
  NVME_ID_CTRL_OACS,
  NVME_REG,
  NVME_SC,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  type SglSupport,
} from "./constants.ts";
import { NvmeError } from "./errors.ts";
import { type NamespaceOptions, NvmeNamespace } from "./namespace.ts";
import {
  CQE_SIZE,
  SQE,
  SQE_SIZE,
  getU16,
  getU32,
  getU64Hi,
  setU16,
  setU32,
  setU64,
} from "./sqe.ts";
import { DmaRanges, type DescriptorHook, type SglCaps, walkPrp, walkSgl } from "./walker.ts";

/** Deterministic fault injection for the controller. */
export interface NvmeFaultPlan {
  /** Fail I/O commands with `status` (Linux shifted form, e.g. 0x4004 = 04h with DNR): the N-th, every N-th, or a seeded fraction. */
  readonly failCommand?: {
    readonly status: number;
    readonly nth?: number;
    readonly every?: number;
    readonly fraction?: number;
    readonly seed?: number;
  };
  /** Extra simulated delay for every completion (needs a clock). */
  readonly delayNs?: number;
  /** Corrupt the N-th descriptor read (PRP list page or SGL segment) on the device side. */
  readonly corruptDescriptor?: { readonly nth: number };
  /** Make the N-th data DMA read (host memory to the device, i.e. writes) fail. */
  readonly failDmaRead?: { readonly nth: number };
}

/** Options of the controller. */
export interface NvmeControllerOptions {
  /** The controller's DMA identity (its IOMMU domain, masks). */
  readonly dev: Device;
  readonly clock?: SimClock;
  /** SGL support advertised in Identify (SGLS bits 1:0). */
  readonly sgl?: SglSupport;
  /** SGLS bit 18: SGLs longer than the transfer are accepted. */
  readonly sglOversize?: boolean;
  /** SGLS bit 16: Bit Bucket descriptors. */
  readonly sglBitBucket?: boolean;
  /** Maximum Data Transfer Size as a power of two of CAP.MPSMIN pages (0: no limit). Default 9 (2 MiB). */
  readonly mdts?: number;
  /** CAP.MPSMIN (page = 2^(12+MPSMIN)). Default 0. */
  readonly mpsmin?: number;
  /** CAP.MPSMAX. Default 4. */
  readonly mpsmax?: number;
  /** CAP.MQES + 1: the largest queue. Default 1024. */
  readonly maxQueueEntries?: number;
  /** I/O queue pairs the controller offers. Default 64. */
  readonly maxIoQueues?: number;
  /** Namespaces (default one of 1 GiB with 512-byte blocks). */
  readonly namespaces?: readonly NamespaceOptions[];
  /** Delay between fetching a command and posting its completion (needs a clock). Default 0. */
  readonly completionDelayNs?: number;
  /** A cap on mapped ranges per command (QEMU: 1024 → Internal Error). Default none. */
  readonly maxRanges?: number;
  /** Fault injection. */
  readonly faults?: NvmeFaultPlan;
  /**
   * Extra time from fetching a command to posting its completion, per command (a device
   * timing model: the workload engine prices media latency and bandwidth here). Needs a clock.
   */
  readonly serviceTimeNs?: (opcode: number, bytes: number, qid: number) => number;
  /**
   * The interrupt line of each completion queue (its MSI-X vector): called with the queue id
   * after a completion entry is posted, as QEMU's `nvme_post_cqes` asserts the queue's interrupt
   * (`nvme_irq_assert`). The host's handler then polls the queue.
   */
  readonly irq?: (cqid: number) => void;
  /**
   * Doorbell Buffer Config support (OACS bit 8, admin opcode 7Ch; QEMU `nvme_dbbuf_config`):
   * once the host configures a shadow doorbell page and an event index page, the controller
   * reads each queue's tail / head from the shadow page by DMA and writes the event index.
   * Default false.
   */
  readonly shadowDoorbells?: boolean;
}

/** Counter names of the controller. */
export type NvmeControllerCounter =
  | "doorbells"
  | "commandsFetched"
  | "adminCommands"
  | "ioCommands"
  | "completionsPosted"
  | "errors"
  | "prpWalks"
  | "sglWalks"
  | "descriptorReads"
  | "descriptorBytes"
  | "dataRanges"
  | "bytesRead"
  | "bytesWritten"
  | "dmaFaults"
  | "injectedFailures"
  | "shadowReads"
  | "shadowWrites"
  | "eventIdxWrites";

interface SubQueue {
  readonly qid: number;
  readonly base: number;
  readonly size: number;
  readonly cqid: number;
  head: number;
  tail: number;
}

interface CompQueue {
  readonly qid: number;
  readonly base: number;
  readonly size: number;
  tail: number;
  head: number;
  phase: number;
  /** Completions waiting for room. */
  readonly backlog: { sqid: number; sqhd: number; cid: number; status: number; result: number }[];
}

/** A completion waiting on the clock for its service time (recycled once posted). */
interface PendingPost {
  cqid: number;
  sqid: number;
  sqhd: number;
  cid: number;
  status: number;
}

/** CC register fields. */
function ccField(cc: number, shift: number, width: number): number {
  return Math.floor(cc / 2 ** shift) % 2 ** width;
}

/** The simulated NVMe controller. */
export class NvmeController {
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
  /** The per-command device time model, if any. */
  serviceTimeNs: ((opcode: number, bytes: number, qid: number) => number) | undefined;
  /** The completion-queue interrupt (see `NvmeControllerOptions.irq`), if any. */
  irq: ((cqid: number) => void) | undefined;
  readonly counters = new CounterSet<NvmeControllerCounter>("nvmectrl", [
    "doorbells",
    "commandsFetched",
    "adminCommands",
    "ioCommands",
    "completionsPosted",
    "errors",
    "prpWalks",
    "sglWalks",
    "descriptorReads",
    "descriptorBytes",
    "dataRanges",
    "bytesRead",
    "bytesWritten",
    "dmaFaults",
    "injectedFailures",
    "shadowReads",
    "shadowWrites",
    "eventIdxWrites",
  ]);
  /** Fault injection (may be replaced between runs). */
  faults: NvmeFaultPlan;
  private readonly sglCaps: SglCaps;
  private cc = 0;
  private csts = 0;
  private aqa = 0;
  private asq = 0;
  private acq = 0;
  private pageSize = 4096;
  private readonly sqs = new Map<number, SubQueue>();
  private readonly cqs = new Map<number, CompQueue>();
  private readonly ranges = new DmaRanges();
  private readonly cmd = new Uint8Array(SQE_SIZE);
  private readonly cqe = new Uint8Array(CQE_SIZE);
  private data = new Uint8Array(128 * 1024);
  /** QEMU `dbbuf_enabled` / `dbbuf_dbs` / `dbbuf_eis`: the configured shadow and event index pages. */
  private dbbufEnabled = false;
  private dbbufDbs = 0;
  private dbbufEis = 0;
  private readonly u32 = new Uint8Array(4);
  private ioSeen = 0;
  private descriptorReadsSeen = 0;
  private dataReadsSeen = 0;
  private rng: Rng;
  private readonly hook: DescriptorHook;
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
    const cq = this.cqs.get(p.cqid);
    if (cq) this.post(cq, p.sqid, p.sqhd, p.cid, p.status, 0);
    this.freePosts.push(p);
  };

  constructor(o: NvmeControllerOptions) {
    this.dev = o.dev;
    this.dma = new DeviceDma(o.dev);
    this.clock = o.clock;
    this.sgl = o.sgl ?? "none";
    this.mdts = o.mdts ?? 9;
    this.mpsmin = o.mpsmin ?? 0;
    this.mpsmax = o.mpsmax ?? 4;
    if (this.mpsmin > this.mpsmax)
      throw new NvmeError("EINVAL", `CAP.MPSMIN ${this.mpsmin} exceeds CAP.MPSMAX ${this.mpsmax}`);
    this.maxQueueEntries = o.maxQueueEntries ?? 1024;
    if (this.maxQueueEntries < 2 || this.maxQueueEntries > 65536) {
      throw new NvmeError(
        "EINVAL",
        `maximum queue entries ${this.maxQueueEntries} is outside 2..65536`,
      );
    }
    this.maxIoQueues = o.maxIoQueues ?? 64;
    this.namespaces = (o.namespaces ?? [{}]).map((n, i) => new NvmeNamespace(i + 1, n));
    this.completionDelayNs = o.completionDelayNs ?? 0;
    if ((this.completionDelayNs > 0 || (o.faults?.delayNs ?? 0) > 0) && this.clock === undefined) {
      throw new NvmeError("EINVAL", "completion delays need a clock");
    }
    this.maxRanges = o.maxRanges ?? Infinity;
    this.shadowDoorbells = o.shadowDoorbells ?? false;
    this.serviceTimeNs = o.serviceTimeNs;
    this.irq = o.irq;
    if (this.serviceTimeNs !== undefined && this.clock === undefined)
      throw new NvmeError("EINVAL", "a service time model needs a clock");
    this.faults = o.faults ?? {};
    this.rng = new Rng(this.faults.failCommand?.seed ?? 0);
    this.sglCaps = {
      support: this.sgl === "dword" ? "dword" : "byte",
      oversize: o.sglOversize ?? false,
      bitBucket: o.sglBitBucket ?? false,
    };
    this.hook = (bytes, _length, kind) => {
      const plan = this.faults.corruptDescriptor;
      this.descriptorReadsSeen++;
      if (plan === undefined || this.descriptorReadsSeen !== plan.nth) return;
      // Flip the entry so the walk must notice: a PRP entry gets a non-zero offset, an SGL
      // descriptor gets a reserved type.
      if (kind === "prp-list") bytes[0] = ((bytes[0] as number) + 4) % 256;
      else bytes[15] = 0x60;
    };
  }

  /** Replaces the fault plan and restarts its counting. */
  setFaults(plan: NvmeFaultPlan): void {
    this.faults = plan;
    this.ioSeen = 0;
    this.descriptorReadsSeen = 0;
    this.dataReadsSeen = 0;
    this.rng = new Rng(plan.failCommand?.seed ?? 0);
  }

  /** CSTS.RDY. */
  get ready(): boolean {
    return this.csts % 2 === 1;
  }

  /** CSTS.CFS: the controller hit a fatal error (for example a failed queue access). */
  get fatal(): boolean {
    return Math.floor(this.csts / 2) % 2 === 1;
  }

  /** Completions still waiting on the clock. */
  get pending(): number {
    return this.pendingPosts;
  }

  /** The CAP register as 64 bits: MQES, CQR, TO, DSTRD 0, CSS NVM, MPSMIN, MPSMAX. */
  capValue(): { lo: number; hi: number } {
    const lo = this.maxQueueEntries - 1 + 2 ** 16 /* CQR */ + 0x14 * 2 ** 24; /* TO = 10 s */
    const hi =
      2 ** (37 - 32) /* CSS NVM */ + this.mpsmin * 2 ** (48 - 32) + this.mpsmax * 2 ** (52 - 32);
    return { lo, hi };
  }

  /** Reads a 32-bit register. */
  readReg32(off: number): number {
    switch (off) {
      case NVME_REG.CAP:
        return this.capValue().lo;
      case NVME_REG.CAP + 4:
        return this.capValue().hi;
      case NVME_REG.VS:
        return 0x00020000;
      case NVME_REG.CC:
        return this.cc;
      case NVME_REG.CSTS:
        return this.csts;
      case NVME_REG.AQA:
        return this.aqa;
      case NVME_REG.ASQ:
        return this.asq % TWO_POW_32;
      case NVME_REG.ASQ + 4:
        return Math.floor(this.asq / TWO_POW_32);
      case NVME_REG.ACQ:
        return this.acq % TWO_POW_32;
      case NVME_REG.ACQ + 4:
        return Math.floor(this.acq / TWO_POW_32);
      default:
        return 0;
    }
  }

  /** Reads a 64-bit register (CAP, ASQ, ACQ) as a number (CAP's high bits fit below 2^53). */
  readReg64(off: number): number {
    return this.readReg32(off) + this.readReg32(off + 4) * TWO_POW_32;
  }

  /** Writes a 64-bit register (ASQ, ACQ). */
  writeReg64(off: number, value: number): void {
    if (off === NVME_REG.ASQ) this.asq = value;
    else if (off === NVME_REG.ACQ) this.acq = value;
    else throw new NvmeError("EINVAL", `register ${hex(off)} is not a 64-bit register`);
  }

  /** Writes a 32-bit register or a doorbell. */
  writeReg32(off: number, value: number): void {
    if (off >= NVME_REG.DBS) {
      this.doorbell(off, value);
      return;
    }
    switch (off) {
      case NVME_REG.CC:
        this.writeCc(value);
        return;
      case NVME_REG.AQA:
        this.aqa = value;
        return;
      case NVME_REG.ASQ:
        this.asq = Math.floor(this.asq / TWO_POW_32) * TWO_POW_32 + value;
        return;
      case NVME_REG.ASQ + 4:
        this.asq = (this.asq % TWO_POW_32) + value * TWO_POW_32;
        return;
      case NVME_REG.ACQ:
        this.acq = Math.floor(this.acq / TWO_POW_32) * TWO_POW_32 + value;
        return;
      case NVME_REG.ACQ + 4:
        this.acq = (this.acq % TWO_POW_32) + value * TWO_POW_32;
        return;
      case NVME_REG.INTMS:
      case NVME_REG.INTMC:
        return;
      default:
        throw new NvmeError("EINVAL", `register ${hex(off)} is read-only or not modelled`);
    }
  }

  private writeCc(value: number): void {
    const wasEn = this.cc % 2 === 1;
    const en = value % 2 === 1;
    this.cc = value;
    if (wasEn && !en) {
      this.reset();
      return;
    }
    if (!wasEn && en) {
      // QEMU `nvme_start_ctrl`: check MPS, queue sizes and alignment, else CSTS.CFS.
      const mps = ccField(value, 7, 4);
      const page = 2 ** (12 + mps);
      const asqs = (this.aqa % 4096) + 1;
      const acqs = (Math.floor(this.aqa / 65536) % 4096) + 1;
      const iosqes = ccField(value, 16, 4);
      const iocqes = ccField(value, 20, 4);
      const ok =
        mps >= this.mpsmin &&
        mps <= this.mpsmax &&
        this.asq % page === 0 &&
        this.acq % page === 0 &&
        this.asq !== 0 &&
        this.acq !== 0 &&
        asqs >= 2 &&
        acqs >= 2 &&
        (iosqes === 0 || iosqes === 6) &&
        (iocqes === 0 || iocqes === 4);
      if (!ok) {
        this.csts = 2; // CFS
        return;
      }
      this.pageSize = page;
      this.sqs.set(0, { qid: 0, base: this.asq, size: asqs, cqid: 0, head: 0, tail: 0 });
      this.cqs.set(0, {
        qid: 0,
        base: this.acq,
        size: acqs,
        tail: 0,
        head: 0,
        phase: 1,
        backlog: [],
      });
      this.csts = 1; // RDY
    }
  }

  private reset(): void {
    this.sqs.clear();
    this.cqs.clear();
    this.csts = 0;
    // QEMU `nvme_ctrl_reset`: the doorbell buffers are forgotten.
    this.dbbufEnabled = false;
    this.dbbufDbs = 0;
    this.dbbufEis = 0;
  }

  /** Whether doorbell buffers are configured (Doorbell Buffer Config succeeded since the last reset). */
  get dbbuf(): boolean {
    return this.dbbufEnabled;
  }

  /** Writes a 32-bit value by DMA (QEMU `stl_le_pci_dma`); a fault is counted, not fatal (QEMU ignores the result). */
  private dmaWriteU32(addr: number, value: number): void {
    setU32(this.u32, 0, value);
    if (!this.dma.write(addr, this.u32, 0, 4).ok) this.counters.c.dmaFaults++;
  }

  /**
   * QEMU `nvme_update_sq_tail` / `nvme_update_cq_head`: reads a queue's shadow doorbell (slot
   * 2 * qid for a tail, 2 * qid + 1 for a head; CAP.DSTRD 0). Returns the low 16 bits, or -1
   * when the read faults (QEMU ignores the result of `ldl_le_pci_dma`; the model keeps the value
   * it had).
   */
  private readShadow(slot: number): number {
    this.counters.c.shadowReads++;
    const v = this.dma.readU32(this.dbbufDbs + slot * 4);
    if (v < 0) {
      this.counters.c.dmaFaults++;
      return -1;
    }
    return v % 65536;
  }

  /** QEMU `nvme_update_sq_tail`: the SQ tail from the shadow page (an out-of-range value is fatal, as the MMIO path). */
  private updateSqTail(sq: SubQueue): void {
    const v = this.readShadow(2 * sq.qid);
    if (v < 0) return;
    if (v >= sq.size) {
      this.csts = 3;
      return;
    }
    sq.tail = v;
  }

  /** QEMU `nvme_update_sq_eventidx`: the event index of an SQ is the tail the controller has seen. */
  private updateSqEventIdx(sq: SubQueue): void {
    this.counters.c.eventIdxWrites++;
    this.dmaWriteU32(this.dbbufEis + 2 * sq.qid * 4, sq.tail);
  }

  /**
   * QEMU `nvme_update_cq_eventidx` then `nvme_update_cq_head`, done before each completion is
   * posted (`nvme_post_cqes`): the event index of a CQ is the head the controller knows, then
   * the head is read from the shadow page.
   */
  private updateCqHead(cq: CompQueue): void {
    this.counters.c.eventIdxWrites++;
    this.dmaWriteU32(this.dbbufEis + (2 * cq.qid + 1) * 4, cq.head);
    const v = this.readShadow(2 * cq.qid + 1);
    if (v < 0) return;
    if (v >= cq.size) {
      this.csts = 3;
      return;
    }
    cq.head = v;
  }

  private doorbell(off: number, value: number): void {
    this.counters.c.doorbells++;
    const idx = (off - NVME_REG.DBS) / 4;
    if (!Number.isInteger(idx))
      throw new NvmeError("EINVAL", `doorbell offset ${hex(off)} is not dword aligned`);
    const qid = Math.floor(idx / 2);
    if (!this.ready) return;
    if (idx % 2 === 0) {
      const sq = this.sqs.get(qid);
      if (sq === undefined || value >= sq.size) {
        this.csts = 3; // an invalid doorbell write is a fatal host error in this model
        return;
      }
      sq.tail = value;
      // QEMU `nvme_process_db`: an admin doorbell is copied into the shadow page, since hosts
      // (Linux included) do not use the shadow for the admin queue.
      if (qid === 0 && this.dbbufEnabled) {
        this.counters.c.shadowWrites++;
        this.dmaWriteU32(this.dbbufDbs, value);
      }
      this.process(sq);
    } else {
      const cq = this.cqs.get(qid);
      if (cq === undefined || value >= cq.size) {
        this.csts = 3;
        return;
      }
      cq.head = value;
      if (qid === 0 && this.dbbufEnabled) {
        this.counters.c.shadowWrites++;
        this.dmaWriteU32(this.dbbufDbs + 4, value);
      }
      this.drainBacklog(cq);
    }
  }

  /**
   * QEMU `nvme_process_sq`: fetches and runs commands until the SQ is empty. With doorbell
   * buffers the tail is read from the shadow page first, and after each command the event index
   * is set to the tail seen and the shadow tail read again, so entries the host adds meanwhile
   * are taken without an MMIO doorbell.
   */
  private process(sq: SubQueue): void {
    const c = this.counters.c;
    if (this.dbbufEnabled) this.updateSqTail(sq);
    while (sq.head !== sq.tail && !this.fatal) {
      const addr = sq.base + sq.head * SQE_SIZE;
      if (!this.dma.read(addr, this.cmd, 0, SQE_SIZE).ok) {
        c.dmaFaults++;
        this.csts = 3; // cannot fetch a command: controller fatal status
        return;
      }
      sq.head = (sq.head + 1) % sq.size;
      c.commandsFetched++;
      const cid = getU16(this.cmd, SQE.CID);
      // No modelled command returns a command-specific result (completion DW0): it is 0.
      const status = sq.qid === 0 ? this.admin() : this.io();
      if (status !== 0) c.errors++;
      let delay = this.completionDelayNs + (this.faults.delayNs ?? 0);
      if (this.serviceTimeNs !== undefined && sq.qid !== 0) {
        const op = this.cmd[SQE.OPCODE] as number;
        const ns = this.namespaces[getU32(this.cmd, SQE.NSID) - 1];
        const bytes =
          op === NVME_CMD.FLUSH || ns === undefined
            ? 0
            : ((getU32(this.cmd, SQE.CDW12) % 65536) + 1) * ns.lbaSize;
        delay += Math.max(0, Math.round(this.serviceTimeNs(op, bytes, sq.qid)));
      }
      if (delay > 0 && this.clock) {
        const p = this.freePosts.pop() ?? { cqid: 0, sqid: 0, sqhd: 0, cid: 0, status: 0 };
        p.cqid = sq.cqid;
        p.sqid = sq.qid;
        p.sqhd = sq.head;
        p.cid = cid;
        p.status = status;
        this.pendingPosts++;
        this.clock.schedule(delay, this.postDelayed, p);
      } else {
        const cq = this.cqs.get(sq.cqid);
        if (cq) this.post(cq, sq.qid, sq.head, cid, status, 0);
      }
      if (this.dbbufEnabled && !this.fatal) {
        this.updateSqEventIdx(sq);
        this.updateSqTail(sq);
      }
    }
  }

  private post(
    cq: CompQueue,
    sqid: number,
    sqhd: number,
    cid: number,
    status: number,
    result: number,
  ): void {
    if (this.dbbufEnabled) {
      this.updateCqHead(cq);
      if (this.fatal) return;
    }
    if ((cq.tail + 1) % cq.size === cq.head) {
      cq.backlog.push({ sqid, sqhd, cid, status, result });
      return;
    }
    const e = this.cqe;
    setU32(e, 0, result);
    setU32(e, 4, 0);
    setU16(e, 8, sqhd);
    setU16(e, 10, sqid);
    setU16(e, 12, cid);
    setU16(e, 14, status * 2 + cq.phase);
    if (!this.dma.write(cq.base + cq.tail * CQE_SIZE, e, 0, CQE_SIZE).ok) {
      this.counters.c.dmaFaults++;
      this.csts = 3;
      return;
    }
    this.counters.c.completionsPosted++;
    cq.tail = (cq.tail + 1) % cq.size;
    if (cq.tail === 0) cq.phase = 1 - cq.phase;
    this.irq?.(cq.qid);
  }

  private drainBacklog(cq: CompQueue): void {
    while (cq.backlog.length > 0 && (cq.tail + 1) % cq.size !== cq.head) {
      const b = cq.backlog.shift();
      if (b) this.post(cq, b.sqid, b.sqhd, b.cid, b.status, b.result);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Admin commands

  private psdt(): number {
    return Math.floor((this.cmd[SQE.FLAGS] as number) / 64);
  }

  /** Runs the admin command in `cmd`; returns its status. */
  private admin(): number {
    this.counters.c.adminCommands++;
    const op = this.cmd[SQE.OPCODE] as number;
    // NVMe over PCIe: admin commands use PRPs only.
    if (this.psdt() !== 0) return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    switch (op) {
      case NVME_ADMIN.IDENTIFY:
        return this.identify();
      case NVME_ADMIN.CREATE_CQ:
        return this.createCq();
      case NVME_ADMIN.CREATE_SQ:
        return this.createSq();
      case NVME_ADMIN.DELETE_SQ:
        return this.deleteSq();
      case NVME_ADMIN.DELETE_CQ:
        return this.deleteCq();
      case NVME_ADMIN.DBBUF:
        if (!this.shadowDoorbells) return NVME_SC.INVALID_OPCODE + NVME_STATUS_DNR;
        return this.dbbufConfig();
      default:
        return NVME_SC.INVALID_OPCODE + NVME_STATUS_DNR;
    }
  }

  private identify(): number {
    const cns = getU32(this.cmd, SQE.CDW10) % 256;
    const out = new Uint8Array(4096);
    if (cns === NVME_ID_CNS.CTRL) {
      setU16(out, 0, 0x1b36); // VID
      writeAscii(out, 4, 20, "DMASIM0001");
      writeAscii(out, 24, 40, "dmasim NVMe controller");
      writeAscii(out, 64, 8, "1.0");
      out[77] = this.mdts;
      out[512] = 0x66; // SQES: 64-byte entries
      out[513] = 0x44; // CQES: 16-byte entries
      setU32(out, 516, this.namespaces.length); // NN
      let sgls = this.sgl === "byte" ? 1 : this.sgl === "dword" ? 2 : 0;
      if (sgls !== 0) {
        if (this.sglCaps.bitBucket) sgls += 2 ** 16;
        if (this.sglCaps.oversize) sgls += 2 ** 18;
      }
      setU32(out, 536, sgls);
      if (this.shadowDoorbells) setU16(out, NVME_ID_CTRL_OACS, NVME_CTRL_OACS_DBBUF_SUPP);
    } else if (cns === NVME_ID_CNS.NS) {
      const ns = this.namespaces[getU32(this.cmd, SQE.NSID) - 1];
      if (ns === undefined) return NVME_SC.INVALID_NS + NVME_STATUS_DNR;
      setU64(out, 0, ns.blocks); // NSZE
      setU64(out, 8, ns.blocks); // NCAP
      setU64(out, 16, 0); // NUSE
      out[25] = 0; // NLBAF (0-based): one format
      out[26] = 0; // FLBAS: format 0
      out[128 + 2] = Math.log2(ns.lbaSize); // LBAF0.LBADS
    } else {
      return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    }
    return this.transfer(out, 4096, true);
  }

  private createCq(): number {
    const cdw10 = getU32(this.cmd, SQE.CDW10);
    const qid = cdw10 % 65536;
    const size = Math.floor(cdw10 / 65536) + 1;
    const contiguous = getU32(this.cmd, SQE.CDW11) % 2 === 1;
    const base = this.prp1();
    if (qid === 0 || qid > this.maxIoQueues || this.cqs.has(qid))
      return NVME_SC.QID_INVALID + NVME_STATUS_DNR;
    if (size < 2 || size > this.maxQueueEntries) return NVME_SC.QUEUE_SIZE + NVME_STATUS_DNR;
    if (!contiguous) return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    if (base < 0 || base % this.pageSize !== 0) return NVME_SC.PRP_INVALID_OFFSET + NVME_STATUS_DNR;
    this.cqs.set(qid, { qid, base, size, tail: 0, head: 0, phase: 1, backlog: [] });
    return 0;
  }

  private createSq(): number {
    const cdw10 = getU32(this.cmd, SQE.CDW10);
    const qid = cdw10 % 65536;
    const size = Math.floor(cdw10 / 65536) + 1;
    const cdw11 = getU32(this.cmd, SQE.CDW11);
    const contiguous = cdw11 % 2 === 1;
    const cqid = Math.floor(cdw11 / 65536);
    const base = this.prp1();
    if (qid === 0 || qid > this.maxIoQueues || this.sqs.has(qid))
      return NVME_SC.QID_INVALID + NVME_STATUS_DNR;
    if (cqid === 0 || !this.cqs.has(cqid)) return NVME_SC.CQ_INVALID + NVME_STATUS_DNR;
    if (size < 2 || size > this.maxQueueEntries) return NVME_SC.QUEUE_SIZE + NVME_STATUS_DNR;
    if (!contiguous) return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    if (base < 0 || base % this.pageSize !== 0) return NVME_SC.PRP_INVALID_OFFSET + NVME_STATUS_DNR;
    this.sqs.set(qid, { qid, base, size, cqid, head: 0, tail: 0 });
    return 0;
  }

  /**
   * QEMU `nvme_dbbuf_config`: PRP1 is the shadow doorbell page and PRP2 the event index page,
   * both page aligned (else Invalid Field with DNR). Every existing queue, the admin queue
   * included, gets its slots, and its current tail / head is written into the shadow page.
   */
  private dbbufConfig(): number {
    const dbs = this.prp1();
    const eis = this.prp2();
    if (dbs < 0 || eis < 0 || dbs % this.pageSize !== 0 || eis % this.pageSize !== 0)
      return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    this.dbbufDbs = dbs;
    this.dbbufEis = eis;
    this.dbbufEnabled = true;
    const c = this.counters.c;
    for (const sq of this.sqs.values()) {
      c.shadowWrites++;
      this.dmaWriteU32(dbs + 2 * sq.qid * 4, sq.tail);
    }
    for (const cq of this.cqs.values()) {
      c.shadowWrites++;
      this.dmaWriteU32(dbs + (2 * cq.qid + 1) * 4, cq.head);
    }
    return 0;
  }

  private deleteSq(): number {
    const qid = getU32(this.cmd, SQE.CDW10) % 65536;
    if (qid === 0 || !this.sqs.has(qid)) return NVME_SC.QID_INVALID + NVME_STATUS_DNR;
    this.sqs.delete(qid);
    return 0;
  }

  private deleteCq(): number {
    const qid = getU32(this.cmd, SQE.CDW10) % 65536;
    if (qid === 0 || !this.cqs.has(qid)) return NVME_SC.QID_INVALID + NVME_STATUS_DNR;
    for (const sq of this.sqs.values())
      if (sq.cqid === qid) return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    this.cqs.delete(qid);
    return 0;
  }

  private prp1(): number {
    return getU64Hi(this.cmd, SQE.PRP1) >= 0x200000
      ? -1
      : getU32(this.cmd, SQE.PRP1) + getU64Hi(this.cmd, SQE.PRP1) * TWO_POW_32;
  }

  private prp2(): number {
    return getU64Hi(this.cmd, SQE.PRP2) >= 0x200000
      ? -1
      : getU32(this.cmd, SQE.PRP2) + getU64Hi(this.cmd, SQE.PRP2) * TWO_POW_32;
  }

  // ---------------------------------------------------------------------------------------
  // I/O commands

  /** Runs the I/O command in `cmd`; returns its status. */
  private io(): number {
    const c = this.counters.c;
    c.ioCommands++;
    this.ioSeen++;
    const op = this.cmd[SQE.OPCODE] as number;
    const fc = this.faults.failCommand;
    if (fc) {
      const hit =
        (fc.nth !== undefined && this.ioSeen === fc.nth) ||
        (fc.every !== undefined && fc.every > 0 && this.ioSeen % fc.every === 0) ||
        (fc.fraction !== undefined && this.rng.nextFloat() < fc.fraction);
      if (hit) {
        c.injectedFailures++;
        return fc.status;
      }
    }
    if (op === NVME_CMD.FLUSH) return 0;
    if (op !== NVME_CMD.READ && op !== NVME_CMD.WRITE)
      return NVME_SC.INVALID_OPCODE + NVME_STATUS_DNR;
    const ns = this.namespaces[getU32(this.cmd, SQE.NSID) - 1];
    if (ns === undefined) return NVME_SC.INVALID_NS + NVME_STATUS_DNR;
    const slba = getU32(this.cmd, SQE.CDW10) + getU32(this.cmd, SQE.CDW11) * TWO_POW_32;
    const nlb = (getU32(this.cmd, SQE.CDW12) % 65536) + 1;
    const len = nlb * ns.lbaSize;
    // MDTS is checked before any descriptor is read (QEMU `nvme_check_mdts`).
    if (this.mdts !== 0 && len > this.pageSize * pow2(this.mdts))
      return NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    if (slba + nlb > ns.blocks) return NVME_SC.LBA_RANGE + NVME_STATUS_DNR;
    if (op === NVME_CMD.READ) {
      // The namespace's bytes go straight into host memory, range by range (no staging copy;
      // the LBA range was checked above, so the namespace read cannot fail).
      return this.transfer(this.data, len, true, ns, slba * ns.lbaSize);
    }
    if (this.data.length < len) this.data = new Uint8Array(len);
    return this.transfer(this.data, len, false, ns, slba * ns.lbaSize);
  }

  /**
   * Walks the data pointer and moves `len` bytes: to the host when `toHost`, else from it. The
   * device's side of the bytes is `ns` from byte `nsAt` on when given, else `buf[0..len)`. Data
   * from the host reaches `ns` only if the whole transfer succeeds: a single range goes
   * straight there (if it fails, nothing moved); several are staged in `buf` first, since a
   * later range may fail after earlier ones moved.
   */
  private transfer(
    buf: Uint8Array,
    len: number,
    toHost: boolean,
    ns?: NvmeNamespace,
    nsAt = 0,
  ): number {
    const c = this.counters.c;
    const psdt = this.psdt();
    const r = this.ranges;
    let st: number;
    if (psdt === 0) {
      c.prpWalks++;
      st = walkPrp(this.dma, this.prp1(), this.prp2(), len, this.pageSize, r, this.hook);
    } else if (psdt === 3) {
      st = NVME_SC.INVALID_FIELD; // QEMU `nvme_map_dptr`; a read or write adds DNR below
    } else if (this.sgl === "none") {
      st = NVME_SC.INVALID_FIELD + NVME_STATUS_DNR;
    } else {
      c.sglWalks++;
      st = walkSgl(this.dma, this.cmd, SQE.SGL_ADDR, len, this.sglCaps, toHost, r, this.hook);
    }
    c.descriptorReads += r.descriptorReads;
    c.descriptorBytes += r.descriptorBytes;
    if (st !== 0) {
      if (st === NVME_SC.DATA_XFER_ERROR) c.dmaFaults++;
      // QEMU `nvme_read` / `nvme_do_write`: a mapping failure of a read or write carries DNR
      // (`invalid: return status | NVME_DNR`); an admin command's (`nvme_c2h`) is returned as is.
      return ns !== undefined && st < NVME_STATUS_DNR ? st + NVME_STATUS_DNR : st;
    }
    if (r.count > this.maxRanges) return NVME_SC.INTERNAL + NVME_STATUS_DNR;
    c.dataRanges += r.count;
    // Data from the host goes straight to the namespace when it is one range of the whole length.
    const direct = !toHost && ns !== undefined && r.count === 1 && r.len[0] === len;
    let at = 0;
    for (let i = 0; i < r.count; i++) {
      const a = r.addr[i] as number;
      const n = r.len[i] as number;
      if (a < 0) {
        at += n; // Bit Bucket: discarded
        continue;
      }
      if (toHost) {
        const w =
          ns === undefined
            ? this.dma.write(a, buf, at, n)
            : this.dma.writeFrom(a, ns, nsAt + at, n);
        if (!w.ok) {
          c.dmaFaults++;
          return NVME_SC.DATA_XFER_ERROR;
        }
      } else {
        this.dataReadsSeen++;
        const fail = this.faults.failDmaRead?.nth === this.dataReadsSeen;
        if (
          fail ||
          !(direct ? this.dma.readTo(a, ns, nsAt + at, n) : this.dma.read(a, buf, at, n)).ok
        ) {
          c.dmaFaults++;
          if (fail) c.injectedFailures++;
          return NVME_SC.DATA_XFER_ERROR;
        }
      }
      at += n;
    }
    if (toHost) c.bytesWritten += len;
    else {
      c.bytesRead += len;
      if (ns !== undefined && !direct) ns.write(nsAt, buf, 0, len);
    }
    return 0;
  }

  /** The SGL type constants, for tests that build descriptors by hand. */
  static readonly SGL = NVME_SGL_TYPE;
}

function writeAscii(b: Uint8Array, off: number, len: number, s: string): void {
  for (let i = 0; i < len; i++) b[off + i] = i < s.length ? s.charCodeAt(i) : 0x20;
}
