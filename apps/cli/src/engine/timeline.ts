/**
 * CPU timelines: the scheduler every timed part of the engine shares (the workload run and
 * map-bench). A timeline does one piece of work at a time. A piece of work runs the packages'
 * code when it starts, is priced from the counters it moved, and then keeps the timeline busy
 * for its CPU time and for its acquisitions of shared resources, taken back to back after the
 * CPU part; each acquisition waits while another timeline holds the resource. Everything happens
 * in simulated-time order: a step runs at once only when nothing else (no other timeline's
 * event, no callback on the simulated clock) is due before it, otherwise it becomes an event on
 * the heap; an acquisition of an exclusive resource (one only this timeline takes) needs no
 * such order and runs at once. No step scans all timelines.
 */
import type { SimClock } from "@dmasim/bvec";
import type { Pricer, ResourceKind } from "./cost.ts";
import { EventHeap } from "./event-heap.ts";
import type { Resource } from "./resources.ts";

/** A timeline's phase. */
export const PHASE = { IDLE: 0, STEPS: 1, END: 2 } as const;

const EV_WAKE = 0;
const EV_STEP = 1;

/**
 * The scheduling state of one timeline (a simulated CPU, a map-bench thread), idle at time 0.
 * A class, so that every run's timelines share one hidden class: code the JIT optimized for one
 * run's timelines stays valid for the next run's (object literals spread from a helper got a new
 * one each run, and the hot paths deoptimized on every new run).
 */
export class Timeline {
  readonly id: number;
  phase: number = PHASE.IDLE;
  /** Where the timeline is: the next step's arrival, or when it is free. */
  cursor = 0;
  wakePending = false;
  /** When the current piece of work started, and how long it has waited for resources. */
  segStart = 0;
  segWait = 0;
  /** The resource steps of the current piece of work: the first `nSteps` entries. */
  readonly steps: Resource[] = [];
  readonly stepCount: number[] = [];
  readonly stepHold: number[] = [];
  nSteps = 0;
  stepIdx = 0;

  constructor(id: number) {
    this.id = id;
  }
}

/** What the timelines run. */
export interface TimelineWork<T extends Timeline> {
  /** Whether idle `tl` has a piece of work to start. */
  hasWork(tl: T): boolean;
  /** Starts `tl`'s next piece of work at `t`: runs it and calls `plan`; false when it has none. */
  start(tl: T, t: number): boolean;
  /** The end of `tl`'s piece of work, at `tl.cursor` (it may move the cursor on). */
  finish(tl: T): void;
  /** Fires the simulated clock's callbacks due at `t`. */
  clockEvent(t: number): void;
  /** Nothing is scheduled any more: schedule what is left (return true) or let the run end. */
  drained(): boolean;
}

/** The timelines of a run, its event heap and its pricer's running totals. */
export class Timelines<T extends Timeline> {
  readonly heap = new EventHeap();
  /** Resource acquisitions of the last `price()`, one slot per resource entry of the pricer. */
  readonly counts: Float64Array;
  private readonly last: Float64Array;
  private cpuLast: number;
  private readonly list: readonly T[];
  private readonly clock: SimClock;
  private readonly pricer: Pricer;
  private readonly work: TimelineWork<T>;

  constructor(clock: SimClock, pricer: Pricer, list: readonly T[], work: TimelineWork<T>) {
    this.clock = clock;
    this.pricer = pricer;
    this.list = list;
    this.work = work;
    this.counts = new Float64Array(pricer.resources.length);
    this.last = new Float64Array(pricer.resources.length);
    this.cpuLast = pricer.cpu();
    pricer.counts(this.last);
  }

  /** Prices what ran since the last call: CPU ns, and resource acquisitions into `counts`. */
  price(): number {
    const c = this.pricer.cpu();
    const ns = c - this.cpuLast;
    this.cpuLast = c;
    const counts = this.counts;
    const last = this.last;
    this.pricer.counts(counts);
    for (let i = 0; i < counts.length; i++) {
      const v = counts[i] as number;
      counts[i] = v - (last[i] as number);
      last[i] = v;
    }
    return ns;
  }

  /**
   * Plans `tl`'s piece of work from `t`: `cpuNs` of CPU time, then `counts[i]` acquisitions of
   * resource entry i, on the instance `instance` picks.
   */
  plan(
    tl: T,
    t: number,
    cpuNs: number,
    counts: Float64Array,
    instance: (kind: ResourceKind) => Resource,
  ): void {
    tl.segStart = t;
    tl.segWait = 0;
    tl.cursor = t + cpuNs;
    tl.stepIdx = 0;
    const entries = this.pricer.resources;
    let k = 0;
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i] as number;
      if (n <= 0) continue;
      const r = entries[i] as (typeof entries)[number];
      tl.steps[k] = instance(r.kind);
      tl.stepCount[k] = n;
      tl.stepHold[k] = r.ns;
      k++;
    }
    tl.nSteps = k;
    tl.phase = PHASE.STEPS;
  }

  /** Wakes idle `tl` at `t` (or when it is free, if later). */
  wake(tl: T, t: number): void {
    if (tl.phase !== PHASE.IDLE || tl.wakePending) return;
    tl.wakePending = true;
    this.heap.push(Math.max(t, tl.cursor), EV_WAKE, tl.id);
  }

  /** Runs every event in time order until nothing is left. */
  run(onEvent?: () => void): void {
    const heap = this.heap;
    const clock = this.clock;
    for (;;) {
      const te = heap.peekTime();
      const tc = clock.nextAt();
      if (tc <= te) {
        if (tc === Infinity) {
          if (this.work.drained()) continue;
          return;
        }
        this.work.clockEvent(tc);
      } else {
        const kind = heap.peekKind();
        const tl = this.list[heap.peekArg()] as T;
        heap.pop();
        if (te > tl.cursor) tl.cursor = te;
        if (kind === EV_WAKE) {
          tl.wakePending = false;
          if (tl.phase !== PHASE.IDLE) continue;
        }
        this.advance(tl);
      }
      onEvent?.();
    }
  }

  /** Whether work at `t` may run now: nothing else is due before it. */
  private canRun(t: number): boolean {
    return t <= this.heap.peekTime() && t < this.clock.nextAt();
  }

  private clockTo(t: number): void {
    const ti = Math.floor(t);
    if (ti > this.clock.now) this.clock.advanceTo(ti);
  }

  /** Runs `tl` from where it is for as long as nothing else is due first. */
  private advance(tl: T): void {
    for (;;) {
      if (tl.phase === PHASE.STEPS) {
        while (tl.stepIdx < tl.nSteps) {
          const r = tl.steps[tl.stepIdx] as Resource;
          // An exclusive resource is free whenever its one user arrives: no order to keep.
          if (!r.exclusive && !this.canRun(tl.cursor)) {
            this.heap.push(tl.cursor, EV_STEP, tl.id);
            return;
          }
          const i = tl.stepIdx++;
          const count = tl.stepCount[i] as number;
          const hold = tl.stepHold[i] as number;
          const end = r.acquire(tl.cursor, count, hold);
          tl.segWait += end - tl.cursor - count * hold;
          tl.cursor = end;
        }
        tl.phase = PHASE.END;
      }
      if (tl.phase === PHASE.END) {
        if (!this.canRun(tl.cursor)) {
          this.heap.push(tl.cursor, EV_STEP, tl.id);
          return;
        }
        this.clockTo(tl.cursor);
        this.work.finish(tl);
        tl.phase = PHASE.IDLE;
      }
      // Idle: take the next piece of work, if any.
      if (!this.work.hasWork(tl)) return;
      if (!this.canRun(tl.cursor)) {
        tl.wakePending = true;
        this.heap.push(tl.cursor, EV_WAKE, tl.id);
        return;
      }
      this.clockTo(tl.cursor);
      if (!this.work.start(tl, tl.cursor)) return;
    }
  }
}
