/**
 * The state of the host driver (Linux `struct nvme_dev` of drivers/nvme/host/pci.c, with the
 * parts of `struct nvme_ctrl` the model needs): the register window, the queues, the descriptor
 * pools and mempools, the Identify data and queue limits, the doorbell buffers. The functions
 * of probe.ts (bring-up, admin commands, shutdown) and submit.ts (the I/O path) work on it;
 * `NvmeHost` owns one and keeps it private.
 */
import { CounterSet, type QueueLimits } from "@dmasim/bvec";
import type { Device, DmaPool, DmaVec, SgTable } from "@dmasim/dma-core";
import { NvmeError } from "../errors.ts";
import type { NvmeBar } from "../spec/bar.ts";
import { CQE_SIZE } from "../spec/commands.ts";
import { NVME_REG } from "../spec/registers.ts";
import type { NvmeDbbuf } from "./dbbuf.ts";
import {
  type ControllerInfo,
  NVME_MAX_RETRIES,
  NVME_SGL_THRESHOLD,
  type NamespaceInfo,
} from "./limits.ts";
import { type Mempool, dmaVecMempool, sgMempool } from "./mempool.ts";
import type { NvmeQueue } from "./queue.ts";
import type { ScatterlistMapContext } from "./scatterlist.ts";

/** The mapping style of a host: the two-step DMA API (Linux 6.17+) or scatterlists (before). */
export type MappingStyle = "two-step" | "scatterlist";

/** Options of `NvmeHost`. */
export interface NvmeHostOptions {
  /** The PCI function as the DMA layer sees it (shared with the controller model). */
  readonly dev: Device;
  /** The controller's register window (BAR0). */
  readonly bar: NvmeBar;
  /** "two-step" (blk_rq_dma_map; default) or "scatterlist". */
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

/** See the file comment. */
export class NvmeDev {
  readonly dev: Device;
  readonly bar: NvmeBar;
  readonly mapping: MappingStyle;
  readonly sglThreshold: number;
  readonly dmaAddressBits: number;
  readonly maxRetries: number;
  readonly wantIoQueues: number;
  readonly wantDepth: number | undefined;
  readonly counters = new CounterSet<NvmeHostCounter>(
    "nvmehost",
    [
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
    ],
    ["inflightBytes", "peakInflightBytes"],
  );
  /** Descriptor pools (Linux "nvme descriptor small" / "nvme descriptor page"), made at enable. */
  small!: DmaPool;
  large!: DmaPool;
  /** The dma_vec mempool (two-step style). */
  readonly vecPool: Mempool<DmaVec[]>;
  /** The scatterlist mempool (scatterlist style). */
  readonly sgPool: Mempool<SgTable>;
  /** I/O queue limits (Linux `nvme_set_ctrl_limits` and friends). */
  limits!: QueueLimits;
  /** Admin queue limits (virt boundary 4 KiB - 1). */
  adminLimits!: QueueLimits;
  info!: ControllerInfo;
  /** Linux `ctrl->crdt`: Identify CRDT1..CRDT3, retry delays in 100 ms units. */
  crdt: readonly [number, number, number] = [0, 0, 0];
  namespaces: NamespaceInfo[] = [];
  readonly queues: NvmeQueue[] = [];
  /** What the mapping functions need, set at enable. */
  ctx!: ScatterlistMapContext;
  enabled = false;
  /** Linux `dbbuf_dbs` / `dbbuf_eis`: the shadow doorbell and event index pages, when in use. */
  dbbuf: NvmeDbbuf | null = null;
  /** The completion entry being read (polling is synchronous). */
  readonly cqe = new Uint8Array(CQE_SIZE);

  constructor(o: NvmeHostOptions) {
    this.dev = o.dev;
    this.bar = o.bar;
    this.mapping = o.mapping ?? "two-step";
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

  /** CSTS as the controller reports it (an MMIO read). */
  csts(): number {
    return this.bar.readReg32(NVME_REG.CSTS);
  }

  /** I/O queue `qid`; EINVAL for the admin queue or one that does not exist. */
  ioQueue(qid: number): NvmeQueue {
    const q = this.queues[qid];
    if (q === undefined || qid === 0) throw new NvmeError("EINVAL", `no I/O queue ${qid}`);
    return q;
  }
}
