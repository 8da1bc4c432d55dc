/**
 * What a run measures, fio-style: from the end of the ramp on, every I/O issued is measured —
 * its `slat` (ready to issue → doorbell), `clat` (doorbell → completion handled) and `lat` (both),
 * its direction and bytes — and the number of I/Os in flight is averaged over time, from ready to
 * completion (`qd.mean`: Little's law makes it IOPS × mean lat) and from doorbell to completion.
 * The depth each CPU had at each submission goes into fio's "IO depths" distribution.
 */
import { DepthHistogram, LatencyHistogram, TimeAverage } from "./stats.ts";

/** The timestamps and outcome of one finished I/O. */
export interface MeasuredIo {
  readonly counted: boolean;
  readonly write: boolean;
  readonly bytes: number;
  readonly readyAt: number;
  readonly doorbellAt: number;
}

/** The statistics of a run's measured window. */
export class Measurement {
  readonly lat = new LatencyHistogram();
  readonly clat = new LatencyHistogram();
  readonly slat = new LatencyHistogram();
  readonly depths = new DepthHistogram();
  /** I/Os from ready to completion, and from doorbell to completion, over time. */
  readonly qdSystem = new TimeAverage();
  readonly qdDevice = new TimeAverage();
  /** Whether the ramp is over. */
  measuring = false;
  windowStart = 0;
  /** The last measured completion. */
  lastDone = 0;
  counted = 0;
  rampIos = 0;
  reads = 0;
  writes = 0;
  bytes = 0;
  errors = 0;
  private inSystem = 0;
  private atDevice = 0;

  /** The ramp ends at `t`: the window starts. */
  begin(t: number): void {
    this.measuring = true;
    this.windowStart = t;
    this.qdSystem.restart(t);
    this.qdDevice.restart(t);
  }

  /** An I/O slot became ready for its next I/O at `t`. */
  ready(t: number): void {
    this.inSystem++;
    this.qdSystem.set(this.inSystem, t);
  }

  /** An I/O was issued by a CPU that then had `depth` I/Os in flight. */
  issued(depth: number): void {
    if (this.measuring) this.depths.record(depth);
    else this.rampIos++;
  }

  /** `n` I/Os reached the device at `t` (their doorbell). */
  doorbell(n: number, t: number): void {
    this.atDevice += n;
    this.qdDevice.set(this.atDevice, t);
  }

  /** An I/O completed at `t` (`ok`: without an error). */
  done(io: MeasuredIo, ok: boolean, t: number): void {
    this.atDevice--;
    this.qdDevice.set(this.atDevice, t);
    this.inSystem--;
    this.qdSystem.set(this.inSystem, t);
    if (!io.counted) return;
    this.counted++;
    this.bytes += io.bytes;
    if (io.write) this.writes++;
    else this.reads++;
    if (!ok) this.errors++;
    this.lat.record(t - io.readyAt);
    this.clat.record(t - io.doorbellAt);
    this.slat.record(io.doorbellAt - io.readyAt);
    if (t > this.lastDone) this.lastDone = t;
  }

  /** The end of the window: the last measured completion. */
  get windowEnd(): number {
    return Math.max(this.lastDone, this.windowStart);
  }
}
