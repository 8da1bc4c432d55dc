/**
 * The state of the simulated controller that its transport (ctrl.ts) and its command set
 * (admin.ts, io.ts) share, as QEMU's `NvmeCtrl` is shared by the functions of hw/nvme/ctrl.c:
 * the configuration, the registers, the queues, the command being run and the Doorbell Buffer
 * Config pages. `NvmeController` owns one and keeps it private.
 */
import { CounterSet, type SimClock, setU32 } from "@dmasim/bvec";
import { type Device, DeviceDma } from "@dmasim/dma-core";
import { NVME_CSTS_CFS, NVME_CSTS_RDY, cstsCfs } from "../spec/registers.ts";
import { SQE_SIZE } from "../spec/commands.ts";
import type { SglSupport } from "../spec/identify.ts";
import { NvmeError } from "../errors.ts";
import { NvmeErrorLog, type NvmeErrReason } from "./error-log.ts";
import { type NvmeFaultPlan, NvmeFaultInjector } from "./faults.ts";
import { type NamespaceOptions, NvmeNamespace } from "./ns.ts";
import { DmaRanges, type SglCaps } from "./walker.ts";

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
  /** Identify CRDT1..CRDT3: the Command Retry Delay Times, in 100 ms units. Default 0, 0, 0. */
  readonly crdt?: readonly [number, number, number];
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

/** A submission queue (QEMU `NvmeSQueue`). */
export interface NvmeSQueue {
  readonly qid: number;
  readonly base: number;
  readonly size: number;
  readonly cqid: number;
  head: number;
  tail: number;
}

/** A completion waiting for room in its queue. */
export interface BackloggedCqe {
  sqid: number;
  sqhd: number;
  cid: number;
  status: number;
  result: number;
}

/** A completion queue (QEMU `NvmeCQueue`). */
export interface NvmeCQueue {
  readonly qid: number;
  readonly base: number;
  readonly size: number;
  tail: number;
  head: number;
  phase: number;
  /** Completions waiting for room. */
  readonly backlog: BackloggedCqe[];
}

/** The size of the controller's staging buffer at first; it grows to the largest write. */
const INITIAL_DATA_BUFFER = 128 * 1024;
/** The largest queue CAP.MQES can describe (MQES is 16 bits, 0-based). */
const MAX_QUEUE_ENTRIES = 65536;

/** What the controller's functions share (see the file comment). */
export class NvmeCtrlState {
  readonly dev: Device;
  readonly dma: DeviceDma;
  readonly clock: SimClock | undefined;
  readonly sgl: SglSupport;
  readonly sglCaps: SglCaps;
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
  /** Identify CRDT1..CRDT3. */
  readonly crdt: readonly [number, number, number];
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
  readonly faults: NvmeFaultInjector;
  readonly errorLog = new NvmeErrorLog();
  // Registers.
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0;
  acq = 0;
  /** The memory page size CC.MPS selected at enable. */
  pageSize = 4096;
  readonly sqs = new Map<number, NvmeSQueue>();
  readonly cqs = new Map<number, NvmeCQueue>();
  /** The command being run. */
  readonly cmd = new Uint8Array(SQE_SIZE);
  /** Why the command being run failed (set with its status by `fail`). */
  reason: NvmeErrReason | "" = "";
  /** The ranges of the command's data pointer. */
  readonly ranges = new DmaRanges();
  /** Staging buffer for data from the host. */
  data = new Uint8Array(INITIAL_DATA_BUFFER);
  /** QEMU `dbbuf_enabled` / `dbbuf_dbs` / `dbbuf_eis`: the configured shadow and event index pages. */
  dbbufEnabled = false;
  dbbufDbs = 0;
  dbbufEis = 0;
  private readonly u32 = new Uint8Array(4);

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
    if (this.maxQueueEntries < 2 || this.maxQueueEntries > MAX_QUEUE_ENTRIES) {
      throw new NvmeError(
        "EINVAL",
        `maximum queue entries ${this.maxQueueEntries} is outside 2..${MAX_QUEUE_ENTRIES}`,
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
    this.crdt = o.crdt ?? [0, 0, 0];
    if (o.serviceTimeNs !== undefined && this.clock === undefined)
      throw new NvmeError("EINVAL", "a service time model needs a clock");
    this.faults = new NvmeFaultInjector(o.faults ?? {});
    this.sglCaps = {
      support: this.sgl === "dword" ? "dword" : "byte",
      oversize: o.sglOversize ?? false,
      bitBucket: o.sglBitBucket ?? false,
    };
  }

  /** Records why the command being run fails and returns `status`. */
  fail(reason: NvmeErrReason, status: number): number {
    this.reason = reason;
    return status;
  }

  /** CSTS.CFS is set. */
  get fatal(): boolean {
    return cstsCfs(this.csts);
  }

  /** Sets CSTS.CFS on a ready controller (QEMU `pci_nvme_err_cfs`: a failed queue access). */
  setFatal(): void {
    this.csts = NVME_CSTS_RDY + NVME_CSTS_CFS;
  }

  /** Writes a 32-bit value by DMA (QEMU `stl_le_pci_dma`); a fault is counted, not fatal (QEMU ignores the result). */
  dmaWriteU32(addr: number, value: number): void {
    setU32(this.u32, 0, value);
    if (!this.dma.write(addr, this.u32, 0, 4).ok) this.counters.c.dmaFaults++;
  }
}
