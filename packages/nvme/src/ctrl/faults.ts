/**
 * Deterministic fault injection for the simulated controller: failed I/O commands, corrupted
 * descriptor reads and failed data reads, counted from the last `reset` so that a plan replays
 * exactly. The controller asks this object at three points of a command and reports what it
 * injected in its counters and error log.
 */
import { Rng } from "@dmasim/bvec";
import type { DescriptorHook } from "./walker.ts";

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

/** The reserved SGL descriptor type a corrupted descriptor gets (type 6h, sub type 0). */
const CORRUPT_SGL_TYPE_BYTE = 0x60;
/** What a corrupted PRP entry gets added to its first byte: a non-zero offset. */
const CORRUPT_PRP_OFFSET = 4;

/** The plan in force and its counts. */
export class NvmeFaultInjector {
  plan: NvmeFaultPlan;
  private ioSeen = 0;
  private descriptorReadsSeen = 0;
  private dataReadsSeen = 0;
  private rng: Rng;
  /**
   * The walk's descriptor hook: flips the N-th descriptor read so the walk must notice (a PRP
   * entry gets a non-zero offset, an SGL descriptor a reserved type).
   */
  readonly descriptorHook: DescriptorHook = (bytes, _length, kind) => {
    const c = this.plan.corruptDescriptor;
    this.descriptorReadsSeen++;
    if (c === undefined || this.descriptorReadsSeen !== c.nth) return;
    if (kind === "prp-list") bytes[0] = ((bytes[0] as number) + CORRUPT_PRP_OFFSET) % 256;
    else bytes[15] = CORRUPT_SGL_TYPE_BYTE;
  };

  constructor(plan: NvmeFaultPlan = {}) {
    this.plan = plan;
    this.rng = new Rng(plan.failCommand?.seed ?? 0);
  }

  /** Replaces the plan and restarts its counting. */
  reset(plan: NvmeFaultPlan): void {
    this.plan = plan;
    this.ioSeen = 0;
    this.descriptorReadsSeen = 0;
    this.dataReadsSeen = 0;
    this.rng = new Rng(plan.failCommand?.seed ?? 0);
  }

  /** Called for every I/O command: the status to fail it with, or -1 to run it. */
  ioCommand(): number {
    this.ioSeen++;
    const fc = this.plan.failCommand;
    if (fc === undefined) return -1;
    const hit =
      (fc.nth !== undefined && this.ioSeen === fc.nth) ||
      (fc.every !== undefined && fc.every > 0 && this.ioSeen % fc.every === 0) ||
      (fc.fraction !== undefined && this.rng.nextFloat() < fc.fraction);
    return hit ? fc.status : -1;
  }

  /** Called for every data DMA read from the host: true when this one must fail. */
  dataRead(): boolean {
    this.dataReadsSeen++;
    return this.plan.failDmaRead?.nth === this.dataReadsSeen;
  }

  /** The extra completion delay of the plan. */
  get delayNs(): number {
    return this.plan.delayNs ?? 0;
  }
}
