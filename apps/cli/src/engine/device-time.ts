/**
 * Device-side time: how long a controller takes from fetching a command to posting its
 * completion. Each controller has a command pipeline (at most `controller.maxIops` commands a
 * second), media latency drawn from a distribution, and a bandwidth-limited data pipe; the DMA
 * translations of a command that missed the IOTLB add the IOMMU's page walk (priced from the
 * walk's memory reads by the cost table's device entries) to that command's time before its
 * transfer.
 */
import type { Rng } from "@dmasim/bvec";
import type { Job } from "./job.ts";

/** z of the 99th percentile of the standard normal distribution. */
const Z99 = 2.3263478740408408;

/** Media latency per command: fixed, uniform jitter around the value, or lognormal. */
export class LatencyDistribution {
  private readonly kind: "fixed" | "uniform" | "lognormal";
  private readonly p50: number;
  private readonly jitter: number;
  private readonly mu: number;
  private readonly sigma: number;
  private readonly rng: Rng;
  private spare = Number.NaN;

  constructor(job: Job, rng: Rng) {
    const c = job.controller;
    this.kind = c.latencyUs === 0 ? "fixed" : c.latencyDist;
    this.p50 = c.latencyUs * 1000;
    this.jitter = c.latencyJitterPct / 100;
    const p99 = (c.latencyP99Us ?? 2 * c.latencyUs) * 1000;
    this.mu = Math.log(Math.max(this.p50, 1e-9));
    this.sigma = Math.max(0, Math.log(Math.max(p99, this.p50) / Math.max(this.p50, 1e-9)) / Z99);
    this.rng = rng;
  }

  /** The median latency, ns. */
  get medianNs(): number {
    return this.p50;
  }

  /** One latency, ns. */
  sample(): number {
    switch (this.kind) {
      case "fixed":
        return this.p50;
      case "uniform":
        return this.p50 * (1 + this.jitter * (2 * this.rng.nextFloat() - 1));
      case "lognormal":
        return Math.exp(this.mu + this.sigma * this.normal());
    }
  }

  /** A standard normal deviate (Marsaglia's polar method, two per round). */
  private normal(): number {
    if (!Number.isNaN(this.spare)) {
      const z = this.spare;
      this.spare = Number.NaN;
      return z;
    }
    for (;;) {
      const u = 2 * this.rng.nextFloat() - 1;
      const v = 2 * this.rng.nextFloat() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const f = Math.sqrt((-2 * Math.log(s)) / s);
        this.spare = v * f;
        return u * f;
      }
    }
  }
}

/**
 * A data pipe that moves one transfer at a time, in the order transfers become ready (not the
 * order commands were fetched: a command whose media access is slow must not hold back the ones
 * behind it). It keeps the future busy intervals, sorted, and gives each new transfer the first
 * gap at or after its ready time that fits it.
 */
export class DataPipe {
  private starts = new Float64Array(64);
  private ends = new Float64Array(64);
  /** Live intervals are [head, tail). */
  private head = 0;
  private tail = 0;

  /** Reserves `len` ns from the first gap at or after `ready`; returns the transfer's end. */
  reserve(now: number, ready: number, len: number): number {
    const s = this.starts;
    const e = this.ends;
    // Forget intervals that ended before now.
    while (this.head < this.tail && (e[this.head] as number) <= now) this.head++;
    // The first interval that ends after `ready`.
    let lo = this.head;
    let hi = this.tail;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1; // eslint-disable-line no-bitwise -- array indices
      if ((e[mid] as number) <= ready) lo = mid + 1;
      else hi = mid;
    }
    let t = ready;
    let i = lo;
    for (; i < this.tail; i++) {
      if ((s[i] as number) >= t + len) break;
      const end = e[i] as number;
      if (end > t) t = end;
    }
    this.insert(i, t, t + len);
    return t + len;
  }

  private insert(i: number, start: number, end: number): void {
    if (this.tail === this.starts.length) {
      // Compact to the front, growing when more than half is live.
      const live = this.tail - this.head;
      if (live * 2 > this.starts.length) {
        const s = new Float64Array(this.starts.length * 2);
        const e = new Float64Array(this.starts.length * 2);
        s.set(this.starts.subarray(this.head, this.tail));
        e.set(this.ends.subarray(this.head, this.tail));
        this.starts = s;
        this.ends = e;
      } else {
        // In place: no new arrays for a pipe whose live intervals stay few.
        this.starts.copyWithin(0, this.head, this.tail);
        this.ends.copyWithin(0, this.head, this.tail);
      }
      i -= this.head;
      this.head = 0;
      this.tail = live;
    }
    // Shift the later intervals up by one (a few at most, usually none: a plain loop costs less
    // than copyWithin's call).
    const s = this.starts;
    const e = this.ends;
    for (let k = this.tail; k > i; k--) {
      s[k] = s[k - 1] as number;
      e[k] = e[k - 1] as number;
    }
    s[i] = start;
    e[i] = end;
    this.tail++;
  }
}

/** The time state of one controller. */
interface ControllerTime {
  /** When the command pipeline can take the next command. */
  cmdFree: number;
  readonly pipe: DataPipe;
  /** Busy time of the data pipe and of the command pipeline, ns. */
  pipeBusy: number;
  cmdBusy: number;
  /** IOMMU walk time added to transfers, ns. */
  walkNs: number;
  commands: number;
}

/** The device-time model of every controller of a machine. */
export class DeviceTiming {
  private readonly latency: LatencyDistribution;
  private readonly bytesPerNs: number;
  private readonly cmdNs: number;
  private readonly units: ControllerTime[] = [];

  constructor(job: Job, rng: Rng) {
    this.latency = new LatencyDistribution(job, rng);
    this.bytesPerNs = (job.controller.bandwidthMBps * 1e6) / 1e9;
    this.cmdNs = job.controller.maxIops === undefined ? 0 : 1e9 / job.controller.maxIops;
    for (let u = 0; u < job.machine.controllers; u++)
      this.units.push({
        cmdFree: 0,
        pipe: new DataPipe(),
        pipeBusy: 0,
        cmdBusy: 0,
        walkNs: 0,
        commands: 0,
      });
  }

  /**
   * A command with `bytes` of data fetched by controller `unit` at `now`, whose translations took
   * `walkNs` of IOMMU walks: the time from `now` until its completion is posted. A command
   * without data (a flush) completes after the command pipeline only.
   */
  serviceNs(unit: number, now: number, bytes: number, walkNs: number): number {
    const t = this.units[unit] as ControllerTime;
    t.commands++;
    const start = Math.max(now, t.cmdFree);
    t.cmdFree = start + this.cmdNs;
    t.cmdBusy += this.cmdNs;
    if (bytes === 0) return t.cmdFree - now;
    // The IOMMU's walks delay this command's DMA; they do not hold the data pipe, which moves
    // other commands' data meanwhile (the walker runs beside the transfers).
    const ready = start + this.latency.sample() + walkNs;
    const xfer = bytes / this.bytesPerNs;
    const end = t.pipe.reserve(now, ready, xfer);
    t.pipeBusy += xfer;
    t.walkNs += walkNs;
    return end - now;
  }

  /** Busy time of each controller's data pipe and command pipeline so far, ns. */
  busy(unit: number): { pipeNs: number; cmdNs: number; walkNs: number; commands: number } {
    const t = this.units[unit] as ControllerTime;
    return { pipeNs: t.pipeBusy, cmdNs: t.cmdBusy, walkNs: t.walkNs, commands: t.commands };
  }
}
