/**
 * What a run measures, fio-style: from the end of the ramp on, every I/O issued is measured —
 * its `slat` (ready to issue → doorbell), `clat` (doorbell → completion handled) and `lat` (both),
 * its direction and bytes — and the number of I/Os in flight is averaged over time, from ready to
 * completion (`qd.mean`: Little's law makes it IOPS × mean lat) and from doorbell to completion.
 * The depth each CPU had at each submission goes into fio's "IO depths" distribution.
 */
import { BLK_STS, type BlkStatus, blkStatusName } from "@dmasim/bvec";
import { nvmeStatusName } from "@dmasim/nvme";
import { DepthHistogram, LatencyHistogram, TimeAverage } from "./stats.ts";

/**
 * Why an I/O failed, for the report: its block status (`blk_status_t`) and, when the device
 * failed the command, the NVMe status (e.g. "BLK_STS_IOERR: NVMe Data Transfer Error (DNR)").
 */
export function failureCause(status: BlkStatus, nvmeStatus: number): string {
  const name = blkStatusName(status);
  if (nvmeStatus !== 0) return `${name}: NVMe ${nvmeStatusName(nvmeStatus)}`;
  if (status === BLK_STS.RESOURCE)
    return `${name}: a DMA mapping (or a bounce slot) could not be had, with nothing in flight to free one`;
  return name;
}

/** The timestamps and outcome of one finished I/O. */
export interface MeasuredIo {
  readonly counted: boolean;
  readonly write: boolean;
  readonly bytes: number;
  readonly readyAt: number;
  readonly doorbellAt: number;
}

/** The statistics of one direction (fio's "read" and "write" sections). */
export class DirectionMeasure {
  readonly lat = new LatencyHistogram();
  readonly clat = new LatencyHistogram();
  readonly slat = new LatencyHistogram();
  ios = 0;
  bytes = 0;
  errors = 0;
}

/** One row of the per-interval log (fio's bandwidth, IOPS and latency logs, as one record). */
export interface IntervalRow {
  /** End of the interval, ms after the window's start (the last row may be shorter). */
  readonly tMs: number;
  readonly ms: number;
  readonly ios: number;
  readonly reads: number;
  readonly writes: number;
  readonly iops: number;
  readonly bandwidthMBps: number;
  /** Mean and largest `lat` of the I/Os completed in the interval (0 when none). */
  readonly latMeanUs: number;
  readonly latMaxUs: number;
  readonly clatMeanUs: number;
}

/**
 * The per-interval log: completions are summed into intervals of `ns` from the window's start;
 * an interval is written when a completion falls past it (an interval with none is a row of
 * zeros), and the last, partial one at the window's end.
 */
export class IntervalLog {
  private start = 0;
  private end = 0;
  private ios = 0;
  private reads = 0;
  private bytes = 0;
  private latSum = 0;
  private latMax = 0;
  private clatSum = 0;

  private readonly ns: number;
  private readonly emit: (row: IntervalRow) => void;

  constructor(ns: number, emit: (row: IntervalRow) => void) {
    this.ns = ns;
    this.emit = emit;
  }

  /** The window starts at `t`. */
  begin(t: number): void {
    this.start = t;
    this.end = t + this.ns;
  }

  /** One measured I/O completed at `t`. */
  done(t: number, write: boolean, bytes: number, lat: number, clat: number): void {
    while (t > this.end) this.flush(this.end);
    this.ios++;
    if (!write) this.reads++;
    this.bytes += bytes;
    this.latSum += lat;
    this.clatSum += clat;
    if (lat > this.latMax) this.latMax = lat;
  }

  /** The window ends at `t`: the last interval is written, unless it is empty of time. */
  close(t: number): void {
    while (t > this.end) this.flush(this.end);
    if (t > this.end - this.ns) this.flush(t);
  }

  private flush(at: number): void {
    const from = this.end - this.ns;
    const span = at - from;
    const n = this.ios;
    this.emit({
      tMs: (at - this.start) / 1e6,
      ms: span / 1e6,
      ios: n,
      reads: this.reads,
      writes: n - this.reads,
      iops: span > 0 ? (n * 1e9) / span : 0,
      bandwidthMBps: span > 0 ? (this.bytes * 1e3) / span : 0,
      latMeanUs: n > 0 ? this.latSum / n / 1000 : 0,
      latMaxUs: this.latMax / 1000,
      clatMeanUs: n > 0 ? this.clatSum / n / 1000 : 0,
    });
    this.end += this.ns;
    this.ios = 0;
    this.reads = 0;
    this.bytes = 0;
    this.latSum = 0;
    this.latMax = 0;
    this.clatSum = 0;
  }
}

/** The statistics of a run's measured window. */
export class Measurement {
  readonly lat = new LatencyHistogram();
  readonly clat = new LatencyHistogram();
  readonly slat = new LatencyHistogram();
  /** Per direction: reads, then writes. */
  readonly read = new DirectionMeasure();
  readonly write = new DirectionMeasure();
  /** The per-interval log, when asked for. */
  readonly log: IntervalLog | null;
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

  constructor(log: IntervalLog | null = null) {
    this.log = log;
  }

  /** The ramp ends at `t`: the window starts. */
  begin(t: number): void {
    this.measuring = true;
    this.windowStart = t;
    this.qdSystem.restart(t);
    this.qdDevice.restart(t);
    this.log?.begin(t);
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
    const lat = t - io.readyAt;
    const clat = t - io.doorbellAt;
    const slat = io.doorbellAt - io.readyAt;
    this.lat.record(lat);
    this.clat.record(clat);
    this.slat.record(slat);
    const d = io.write ? this.write : this.read;
    d.ios++;
    d.bytes += io.bytes;
    if (!ok) d.errors++;
    d.lat.record(lat);
    d.clat.record(clat);
    d.slat.record(slat);
    this.log?.done(t, io.write, io.bytes, lat, clat);
    if (t > this.lastDone) this.lastDone = t;
  }

  /** Failed measured I/Os by cause (`failureCause`). */
  readonly causes = new Map<string, number>();

  /** A measured I/O failed for `cause`. */
  failed(cause: string): void {
    this.causes.set(cause, (this.causes.get(cause) ?? 0) + 1);
  }

  /** The end of the window: the last measured completion. */
  get windowEnd(): number {
    return Math.max(this.lastDone, this.windowStart);
  }
}
