/**
 * The state the run keeps per queue slot (its I/O in flight) and per simulated CPU (its timeline
 * and what it has to do).
 */
import { BLK_STS, type BlkStatus, type Request } from "@dmasim/bvec";
import type { ResourceKind } from "./cost.ts";
import type { Resource } from "./resources.ts";
import { Timeline } from "./timeline.ts";
import { SlotQueue } from "./workload.ts";

/**
 * The I/O of one queue slot (a slot has at most one in flight, so each slot keeps one record and
 * one completion callback for its whole run).
 */
export interface InFlight {
  readonly cpu: number;
  readonly slot: number;
  unit: number;
  readonly qid: number;
  write: boolean;
  offset: number;
  bytes: number;
  gen: number;
  readyAt: number;
  counted: boolean;
  doorbellAt: number;
  pending: number;
  status: BlkStatus;
  /** The NVMe status of the first failed command of the I/O (0: none, or not the device's). */
  nvmeStatus: number;
  /** The completion callback of each of its requests. */
  readonly done: (status: BlkStatus, nvmeStatus?: number) => void;
}

/** The kinds of a CPU's pieces of work. */
export const SEG_SUBMIT = 1;
export const SEG_COMPLETE = 2;
export const SEG_SOFTIRQ = 3;

export interface SoftIrq {
  readonly unit: number;
  readonly cpuNs: number;
  readonly counts: Float64Array;
}

/**
 * A list emptied and filled again by every piece of work. Its array keeps its capacity: setting
 * an array's length to 0 gives V8's backing store up, and the next push allocates a new one.
 * Entries past `size` are stale and never read.
 */
export class WorkList<T> {
  readonly items: T[] = [];
  size = 0;

  push(x: T): void {
    this.items[this.size++] = x;
  }

  clear(): void {
    this.size = 0;
  }

  includes(x: T): boolean {
    for (let i = 0; i < this.size; i++) if (this.items[i] === x) return true;
    return false;
  }
}

/** One simulated CPU: its timeline and what it has to do. */
export class Cpu extends Timeline {
  /** The queue this CPU submits to (1-based), the same on every controller. */
  readonly qid: number;
  segKind = 0;
  segUnit = 0;
  /** The instance of a resource kind this CPU's current piece of work uses. */
  readonly instance: (kind: ResourceKind) => Resource;
  /** The driver's submission options of this CPU (its queue; doorbells wait for the commit). */
  readonly submitOpts: { readonly qid: number; readonly last: false };
  /** Submissions of this piece of work, to ring at its end (unit × 256 + qid). */
  readonly commits = new WorkList<number>();
  /** I/Os submitted (SEG_SUBMIT) or completed (SEG_COMPLETE) by this piece of work. */
  readonly segIos = new WorkList<InFlight>();
  /**
   * Completion queues with an interrupt pending (or posts a polling CPU will find), oldest
   * first, as unit × 256 + qid: each at most once.
   */
  readonly cqPending: SlotQueue;
  readonly softirq: SoftIrq[] = [];
  /** Free queue slots ready for their next I/O, oldest first. */
  readonly ready: SlotQueue;
  readonly backlog: { req: Request; io: InFlight; unit: number }[] = [];
  retryBacklog = false;
  /** I/Os submitted and not yet completed. */
  inflight = 0;
  ios = 0;
  busyNs = 0;
  waitNs = 0;

  /**
   * CPU `id`, submitting to queue `qid`, with `depth` queue slots and room for the completion
   * queues of `keys` (controller, queue) pairs; `instance` picks the resources its work uses.
   */
  constructor(
    id: number,
    qid: number,
    depth: number,
    keys: number,
    instance: (cpu: Cpu, kind: ResourceKind) => Resource,
  ) {
    super(id);
    this.qid = qid;
    this.instance = (kind) => instance(this, kind);
    this.submitOpts = { qid, last: false };
    this.cqPending = new SlotQueue(keys);
    this.ready = new SlotQueue(depth);
  }
}

/**
 * One I/O record per queue slot (`depth` slots per CPU), each with its completion callback:
 * the first error sticks, and when the last request is done the I/O goes to `finished`.
 */
export function slotRecords(
  slots: number,
  depth: number,
  queueOf: (cpu: number) => number,
  finished: (io: InFlight) => void,
): InFlight[] {
  const out: InFlight[] = [];
  for (let slot = 0; slot < slots; slot++) {
    const cpu = Math.floor(slot / depth);
    const io: InFlight = {
      cpu,
      slot,
      unit: 0,
      qid: queueOf(cpu),
      write: false,
      offset: 0,
      bytes: 0,
      gen: 0,
      readyAt: 0,
      counted: false,
      doorbellAt: 0,
      pending: 0,
      status: BLK_STS.OK,
      nvmeStatus: 0,
      done: (status: BlkStatus, nvmeStatus = 0) => {
        if (status !== BLK_STS.OK && io.status === BLK_STS.OK) {
          io.status = status;
          io.nvmeStatus = nvmeStatus;
        }
        io.pending--;
        if (io.pending === 0) finished(io);
      },
    };
    out.push(io);
  }
  return out;
}
