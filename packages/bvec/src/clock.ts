/**
 * Simulated time. The clock is a number of nanoseconds that moves only when told to; callbacks
 * scheduled on it fire in time order (ties in the order they were scheduled) as it advances.
 * There is no wall clock and no host timer anywhere in the model.
 */
import { checkInt, hex } from "./addr.ts";
import { BvecError } from "./errors.ts";

/** A handle to a scheduled callback, for `cancel`. */
export type TimerId = number;

interface Timer {
  at: number;
  seq: number;
  id: TimerId;
  fn: (now: number) => void;
}

/** A simulated clock in nanoseconds with an ordered queue of scheduled callbacks. */
export class SimClock {
  private nowNs = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];
  private readonly live = new Set<TimerId>();
  /** Cancelled callbacks still in the heap (none: nothing to drop, no lookups). */
  private cancelled = 0;

  /** The current simulated time in nanoseconds. */
  get now(): number {
    return this.nowNs;
  }

  /** How many callbacks are scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.live.size;
  }

  /** The time of the earliest scheduled callback, or `Infinity` when none is scheduled. */
  nextAt(): number {
    this.dropCancelled();
    return this.heap[0]?.at ?? Infinity;
  }

  /** Schedules `fn` to run `delayNs` nanoseconds from now. */
  schedule(delayNs: number, fn: (now: number) => void): TimerId {
    checkInt(delayNs, "timer delay (ns)");
    return this.scheduleAt(this.nowNs + delayNs, fn);
  }

  /** Schedules `fn` to run at simulated time `atNs` (not in the past). */
  scheduleAt(atNs: number, fn: (now: number) => void): TimerId {
    checkInt(atNs, "timer time (ns)");
    if (atNs < this.nowNs) {
      throw new BvecError("EINVAL", `timer time ${atNs} ns is before now (${this.nowNs} ns)`);
    }
    const id = ++this.seq;
    this.push({ at: atNs, seq: id, id, fn });
    this.live.add(id);
    return id;
  }

  /** Cancels a scheduled callback; returns false if it already fired or was cancelled. */
  cancel(id: TimerId): boolean {
    const was = this.live.delete(id);
    if (was) this.cancelled++;
    return was;
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
    for (;;) {
      this.dropCancelled();
      const top = this.heap[0];
      if (top === undefined || top.at > t) break;
      this.pop();
      this.live.delete(top.id);
      this.nowNs = top.at;
      top.fn(this.nowNs);
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
    if (this.cancelled === 0) return;
    let top = this.heap[0];
    while (top !== undefined && !this.live.has(top.id)) {
      this.pop();
      this.cancelled--;
      top = this.heap[0];
    }
  }

  private less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(t: Timer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = Math.floor((i - 1) / 2);
      const hp = h[p] as Timer;
      if (!this.less(t, hp)) break;
      h[i] = hp;
      i = p;
    }
    h[i] = t;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const hl = h[l] as Timer;
      const hr = h[r];
      const c = hr !== undefined && this.less(hr, hl) ? r : l;
      const hc = h[c] as Timer;
      if (!this.less(hc, last)) break;
      h[i] = hc;
      i = c;
    }
    h[i] = last;
  }
}
