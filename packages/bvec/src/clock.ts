/**
 * Simulated time. The clock is a number of nanoseconds that moves only when told to; callbacks
 * scheduled on it fire in time order (ties in the order they were scheduled) as it advances.
 * There is no wall clock and no host timer anywhere in the model.
 */
import { checkInt, hex } from "./addr.ts";
import { BvecError } from "./errors.ts";

/** A handle to a scheduled callback, for `cancel`. */
export type TimerId = number;

/**
 * Stands in the heap for a cancelled callback until it reaches the top and is dropped (it is
 * never called).
 */
function cancelled(): void {
  // never called
}

/**
 * A simulated clock in nanoseconds with an ordered queue of scheduled callbacks.
 *
 * The queue is a binary min-heap on (time, scheduling order) kept in parallel arrays (times and
 * sequence numbers, which V8 stores unboxed, with the callbacks and their arguments beside
 * them) rather than one object per callback: a deep queue (hundreds of completions in flight)
 * is then a few contiguous arrays to sift through, and scheduling allocates nothing. Sequence
 * numbers are unique, so the order callbacks fire in is fully determined by (time, sequence).
 */
export class SimClock {
  private nowNs = 0;
  private seq = 0;
  /** Heap entries: time, sequence number (= timer id), callback, argument. */
  private readonly hAt: number[] = [];
  private readonly hSeq: number[] = [];
  private readonly hFn: ((now: number, arg: never) => void)[] = [];
  private readonly hArg: unknown[] = [];
  /** Callbacks scheduled and not yet fired or cancelled. */
  private live = 0;
  /** Cancelled callbacks still in the heap (none: nothing to drop, no checks). */
  private cancelledInHeap = 0;

  /** The current simulated time in nanoseconds. */
  get now(): number {
    return this.nowNs;
  }

  /** How many callbacks are scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.live;
  }

  /** The time of the earliest scheduled callback, or `Infinity` when none is scheduled. */
  nextAt(): number {
    this.dropCancelled();
    return this.hAt.length === 0 ? Infinity : (this.hAt[0] as number);
  }

  /**
   * Schedules `fn` to run `delayNs` nanoseconds from now (with `arg`, when given: a callback
   * shared by many timers then needs no closure per timer).
   */
  schedule(delayNs: number, fn: (now: number) => void): TimerId;
  schedule<T>(delayNs: number, fn: (now: number, arg: T) => void, arg: T): TimerId;
  schedule<T>(delayNs: number, fn: (now: number, arg: T) => void, arg?: T): TimerId {
    checkInt(delayNs, "timer delay (ns)");
    return this.scheduleAt(this.nowNs + delayNs, fn, arg as T);
  }

  /** Schedules `fn` to run at simulated time `atNs` (not in the past), with `arg` if given. */
  scheduleAt(atNs: number, fn: (now: number) => void): TimerId;
  scheduleAt<T>(atNs: number, fn: (now: number, arg: T) => void, arg: T): TimerId;
  scheduleAt<T>(atNs: number, fn: (now: number, arg: T) => void, arg?: T): TimerId {
    checkInt(atNs, "timer time (ns)");
    if (atNs < this.nowNs) {
      throw new BvecError("EINVAL", `timer time ${atNs} ns is before now (${this.nowNs} ns)`);
    }
    const id = ++this.seq;
    this.push(atNs, id, fn, arg as T);
    this.live++;
    return id;
  }

  /** Cancels a scheduled callback; returns false if it already fired or was cancelled. */
  cancel(id: TimerId): boolean {
    // A linear search: cancelling is rare (timers torn down), scheduling and firing are not.
    const i = this.hSeq.indexOf(id);
    if (i < 0 || this.hFn[i] === cancelled) return false;
    this.hFn[i] = cancelled;
    this.hArg[i] = undefined;
    this.live--;
    this.cancelledInHeap++;
    return true;
  }

  /** Advances time by `ns`, firing every callback due on the way. */
  advance(ns: number): void {
    checkInt(ns, "time step (ns)");
    this.advanceTo(this.nowNs + ns);
  }

  /**
   * Advances time to `t`, firing due callbacks in order. The clock reads each callback's own
   * time while it runs; callbacks may schedule more (also due ones, which fire in this call).
   */
  advanceTo(t: number): void {
    checkInt(t, "time (ns)");
    if (t < this.nowNs)
      throw new BvecError(
        "EINVAL",
        `cannot move the clock back from ${this.nowNs} to ${t} ns (${hex(t)})`,
      );
    const hAt = this.hAt;
    for (;;) {
      this.dropCancelled();
      if (hAt.length === 0 || (hAt[0] as number) > t) break;
      const at = hAt[0] as number;
      const fn = this.hFn[0] as (now: number, arg: unknown) => void;
      const arg = this.hArg[0];
      this.pop();
      this.live--;
      this.nowNs = at;
      fn(at, arg);
    }
    this.nowNs = t;
  }

  /** Fires the next due callback (advancing time to it); returns false when none is scheduled. */
  runNext(): boolean {
    const at = this.nextAt();
    if (at === Infinity) return false;
    this.advanceTo(at);
    return true;
  }

  private dropCancelled(): void {
    if (this.cancelledInHeap === 0) return;
    while (this.hFn.length > 0 && this.hFn[0] === cancelled) {
      this.pop();
      this.cancelledInHeap--;
    }
  }

  private push<T>(at: number, seq: number, fn: (now: number, arg: T) => void, arg: T): void {
    const hAt = this.hAt;
    const hSeq = this.hSeq;
    const hFn = this.hFn as ((now: number, arg: T) => void)[];
    const hArg = this.hArg;
    let i = hAt.length;
    hAt.push(at);
    hSeq.push(seq);
    hFn.push(fn);
    hArg.push(arg);
    while (i > 0) {
      const p = Math.floor((i - 1) / 2);
      const pAt = hAt[p] as number;
      // seq grows, so a new entry never goes above an equal-time one.
      if (!(at < pAt)) break;
      hAt[i] = pAt;
      hSeq[i] = hSeq[p] as number;
      hFn[i] = hFn[p] as (now: number, arg: T) => void;
      hArg[i] = hArg[p];
      i = p;
    }
    hAt[i] = at;
    hSeq[i] = seq;
    hFn[i] = fn;
    hArg[i] = arg;
  }

  /** Removes the top entry. */
  private pop(): void {
    const hAt = this.hAt;
    const hSeq = this.hSeq;
    const hFn = this.hFn;
    const hArg = this.hArg;
    const lastAt = hAt.pop() as number;
    const lastSeq = hSeq.pop() as number;
    const lastFn = hFn.pop() as (now: number, arg: never) => void;
    const lastArg = hArg.pop();
    const n = hAt.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      let cAt = hAt[l] as number;
      if (r < n) {
        const rAt = hAt[r] as number;
        if (rAt < cAt || (rAt === cAt && (hSeq[r] as number) < (hSeq[l] as number))) {
          c = r;
          cAt = rAt;
        }
      }
      if (!(cAt < lastAt || (cAt === lastAt && (hSeq[c] as number) < lastSeq))) break;
      hAt[i] = cAt;
      hSeq[i] = hSeq[c] as number;
      hFn[i] = hFn[c] as (now: number, arg: never) => void;
      hArg[i] = hArg[c];
      i = c;
    }
    hAt[i] = lastAt;
    hSeq[i] = lastSeq;
    hFn[i] = lastFn;
    hArg[i] = lastArg;
  }
}
