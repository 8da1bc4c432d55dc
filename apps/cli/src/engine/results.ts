/**
 * What a run reports, and how the report's summaries are made from what the run measured:
 * fio's latency statistics (`slat`, `clat`, `lat`), the achieved queue depth, CPU time by
 * category, the shared resources lock_stat style, and the bound of the run.
 */
import type { CostCategory, CostTable } from "./cost.ts";
import type { Job } from "./job.ts";
import type { ResourceReport } from "./resources.ts";
import type { LatencySummary } from "./stats.ts";

/** Latency percentiles in microseconds (of `lat`). */
export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** What bounds the run: the busiest CPU, resource or device part, or the closed loop itself. */
export interface BoundBy {
  /** "CPU 3", "iommu-invalidation-queue", "device bandwidth", "queue depth × latency", … */
  readonly resource: string;
  /** 0..1: busy time over measured time (for the queue, achieved over configured depth). */
  readonly utilisation: number;
  /**
   * When the closed loop is the bound (nothing saturated): the busiest CPU, resource or device
   * part all the same, which is what would bound the run with more depth or a faster device.
   */
  readonly busiest?: { readonly resource: string; readonly utilisation: number };
}

/** One CPU's share of the run. */
export interface CpuReport {
  readonly cpu: number;
  /** Measured I/Os this CPU submitted (and that completed). */
  readonly ios: number;
  readonly iops: number;
  /** Busy time over measured time, waits for shared resources included (%). */
  readonly busyPct: number;
  /** Of which waiting for a shared resource another CPU held (%). */
  readonly waitPct: number;
}

/** What a run reports. */
export interface RunResult {
  readonly job: Job;
  /** Measured I/Os (after the ramp). */
  readonly ios: number;
  readonly reads: number;
  readonly writes: number;
  readonly bytes: number;
  /** I/Os run during the ramp and left out of every statistic. */
  readonly rampIos: number;
  /** Measured simulated time: from the end of the ramp to the last measured completion (ns). */
  readonly simulatedNs: number;
  readonly iops: number;
  readonly bandwidthMBps: number;
  readonly perCpu: readonly CpuReport[];
  /** CPU ns per I/O: total (waits included) and by category (`wait`: waits for resources). */
  readonly cpuNsPerIo: number;
  readonly cpuNsPerIoByCategory: Readonly<Record<CostCategory, number>>;
  /** fio's latencies: `slat` ready → doorbell, `clat` doorbell → completion handled, `lat` both. */
  readonly lat: LatencySummary;
  readonly clat: LatencySummary;
  readonly slat: LatencySummary;
  /**
   * The IOMMU mode the device really got: `asked` is the job's, `effective` differs when Linux
   * forces another (an untrusted device, caching mode), `reason` says why (null when not).
   */
  readonly iommu: {
    readonly asked: string;
    readonly effective: string;
    readonly reason: string | null;
  };
  /** The percentiles the reports print (`--percentiles`); the summaries carry fio's list too. */
  readonly percentiles: readonly number[];
  /** fio's per-direction sections (null when the run had no I/O of that direction). */
  readonly read: DirectionReport | null;
  readonly write: DirectionReport | null;
  /** `lat` percentiles in µs (the short form the tables print). */
  readonly latencyUs: Percentiles;
  /** `lat` histogram: bucket upper bounds (µs) and counts. */
  readonly latencyHistogram: {
    readonly upperUs: readonly number[];
    readonly counts: readonly number[];
  };
  /** `lat` CDF for plots: (µs, fraction ≤). */
  readonly latencyCdf: readonly { readonly us: number; readonly fraction: number }[];
  /**
   * Achieved queue depth: `mean`, the time-average of I/Os in flight from ready to completion
   * (IOPS × mean `lat`, Little's law); `deviceMean`, from doorbell to completion (IOPS × mean
   * `clat`); `configured`, iodepth × CPUs; `distribution`, fio's "IO depths" (per CPU, sampled at
   * each submission, %).
   */
  readonly qd: {
    readonly mean: number;
    readonly deviceMean: number;
    readonly configured: number;
    readonly distribution: Readonly<Record<string, number>>;
  };
  /** The shared resources, per kind. */
  readonly resources: readonly ResourceReport[];
  /** What bounds the run. */
  readonly boundBy: BoundBy;
  /** Device side: data-pipe and command-pipeline utilisation, IOMMU walk time per I/O. */
  readonly device: {
    readonly bandwidthUtilisation: number;
    readonly commandUtilisation: number;
    readonly walkNsPerIo: number;
  };
  /** Per-I/O means of every event counter that moved during the measured window. */
  readonly perIo: Readonly<Record<string, number>>;
  /**
   * The gauges at the end of the measured window (levels such as `iova.liveRanges` or
   * `fq.pending`, high-water marks such as `nvmehost.peakInflightBytes`), summed over the
   * machine's controllers where each has its own.
   */
  readonly gauges: Readonly<Record<string, number>>;
  /** Host memory per in-flight I/O, bytes (iod + descriptors + vec arrays + scatterlists). */
  readonly hostMemoryPerIo: number;
  readonly iotlbHitRate: number | null;
  /**
   * The IOMMU page tables at the end of the run (null without a paging domain): tables linked
   * (roots included, every controller's) and the memory they hold.
   */
  readonly pageTables: { readonly tables: number; readonly bytes: number } | null;
  /**
   * Lazy mode: time from unmap to invalidation (µs) and stale IOTLB hits; the ranges whose
   * window was recorded and their distribution in log-spaced bins (ten per decade; only the
   * bins that hold a range). Strict: zero, no ranges, no bins.
   */
  readonly exposure: {
    readonly mode: "lazy" | "strict";
    readonly maxUs: number;
    readonly p99Us: number;
    readonly staleHits: number;
    readonly ranges: number;
    readonly histogram: readonly {
      readonly lowUs: number;
      readonly highUs: number;
      readonly count: number;
    }[];
  } | null;
  readonly faults: number;
  readonly errors: number;
  /** The failed measured I/Os by cause (block status, and the NVMe status when the device failed it). */
  readonly errorCauses: Readonly<Record<string, number>>;
  readonly verify: {
    readonly enabled: boolean;
    readonly checkedBytes: number;
    readonly mismatches: number;
    readonly ok: boolean;
  };
  readonly debugReports: readonly string[];
  readonly costTable: CostTable;
  /** The simulator's own speed (varies from run to run; not part of the model's results). */
  readonly simulator: { readonly wallMs: number; readonly iosPerSecond: number };
}

/** One direction of a run, as fio's "read" or "write" section. */
export interface DirectionReport {
  readonly ios: number;
  readonly ioBytes: number;
  readonly iops: number;
  readonly bandwidthMBps: number;
  readonly errors: number;
  readonly lat: LatencySummary;
  readonly clat: LatencySummary;
  readonly slat: LatencySummary;
}

/** What the bound is chosen from. */
export interface BoundCandidates {
  readonly cpuBusy: readonly number[];
  readonly resources: readonly ResourceReport[];
  readonly bandwidth: number;
  readonly commands: number;
  readonly qdMean: number;
  readonly qdConfigured: number;
}

/** A part that is busy at least this much bounds the run. */
const SATURATED = 0.85;

/**
 * The bound: the busiest of the CPUs, the shared resources and the device's data pipe and
 * command pipeline when one is saturated; otherwise the closed loop (queue depth × latency).
 */
export function boundOf(c: BoundCandidates): BoundBy {
  let best: BoundBy = { resource: "queue depth × latency", utilisation: 0 };
  const consider = (resource: string, u: number) => {
    if (u > best.utilisation) best = { resource, utilisation: u };
  };
  c.cpuBusy.forEach((b, i) => consider(`CPU ${i}`, b));
  for (const r of c.resources) consider(r.name, r.utilisation);
  consider("device bandwidth", c.bandwidth);
  consider("device command rate", c.commands);
  if (best.utilisation >= SATURATED) return best;
  return {
    resource: "queue depth × latency",
    utilisation: c.qdConfigured > 0 ? Math.min(1, c.qdMean / c.qdConfigured) : 0,
    ...(best.utilisation > 0 ? { busiest: best } : {}),
  };
}

/** The short percentile form of a latency summary. */
export function shortPercentiles(s: LatencySummary): Percentiles {
  const p = s.percentilesUs;
  return {
    p50: p["50"] ?? 0,
    p90: p["90"] ?? 0,
    p99: p["99"] ?? 0,
    p999: p["99.9"] ?? 0,
    max: s.maxUs,
    mean: s.meanUs,
  };
}
