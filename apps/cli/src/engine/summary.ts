/**
 * The summary of a run: the report's figures from what the run measured (counters, histograms,
 * time averages, resource and device busy times) over the measured window.
 */
import { COST_CATEGORIES, type CostCategory, type CostTable } from "./cost.ts";
import type { DeviceTiming } from "./device-time.ts";
import type { Job } from "./job.ts";
import {
  type Machine,
  counterSources,
  effectiveIommuMode,
  forcedModeReason,
  gaugeNames,
} from "./machine.ts";
import type { ResourceReport } from "./resources.ts";
import type { HistogramBin, HistogramSummary } from "@dmasim/iommu";
import { type DirectionReport, type RunResult, boundOf, shortPercentiles } from "./results.ts";
import type { DirectionMeasure, Measurement } from "./measure.ts";
import { percentileList } from "./stats.ts";
import type { Verifier } from "./verify.ts";

/** What the end of the measured window captured. */
export interface WindowEnd {
  readonly counters: Readonly<Record<string, number>>;
  readonly cat: Readonly<Record<CostCategory, number>>;
  readonly device: readonly ReturnType<DeviceTiming["busy"]>[];
  readonly resources: readonly ResourceReport[];
  /** The lazy exposure window of the ranges flushed so far (null without a flush queue). */
  readonly exposure: HistogramSummary | null;
  /** Its distribution in log-spaced bins. */
  readonly exposureBins: readonly HistogramBin[];
}

/** What a run measured, for its summary. */
export interface Measured {
  readonly job: Job;
  readonly m: Machine;
  readonly costs: CostTable;
  /** Counters, CPU time by category and device busy times at the start of the window. */
  readonly startCounters: Readonly<Record<string, number>>;
  readonly startCat: Readonly<Record<CostCategory, number>>;
  readonly startDevice: readonly ReturnType<DeviceTiming["busy"]>[];
  readonly cpus: readonly {
    readonly id: number;
    readonly ios: number;
    readonly busyNs: number;
    readonly waitNs: number;
  }[];
  readonly mx: Measurement;
  readonly end: WindowEnd;
  readonly verifier: Verifier | null;
  readonly windowEnd: number;
  readonly measuredNs: number;
  readonly slots: number;
  readonly completed: number;
  /** Host wall time of the run, ms. */
  readonly wallMs: number;
  /** The percentiles asked for (the summaries carry fio's list besides). */
  readonly percentiles: readonly number[];
}

/** fio's per-direction section: I/Os, bytes, IOPS, bandwidth and the three latencies. */
function directionOf(
  d: DirectionMeasure,
  measuredNs: number,
  list: readonly number[],
): DirectionReport | null {
  if (d.ios === 0) return null;
  return {
    ios: d.ios,
    ioBytes: d.bytes,
    iops: measuredNs > 0 ? (d.ios * 1e9) / measuredNs : 0,
    bandwidthMBps: measuredNs > 0 ? (d.bytes * 1e3) / measuredNs : 0,
    errors: d.errors,
    lat: d.lat.summary(list),
    clat: d.clat.summary(list),
    slat: d.slat.summary(list),
  };
}

/** Builds the run's report from what it measured. */
export function summarise(x: Measured): RunResult {
  const { job, m, costs, startCounters, startCat, startDevice, cpus } = x;
  const { mx, verifier, windowEnd, measuredNs, slots, completed } = x;
  const { lat, clat, slat, depths, qdSystem, qdDevice, counted, rampIos, reads, writes } = mx;
  const { errors } = mx;
  const bytesDone = mx.bytes;
  const units = () => m.units.map((u) => u.index);
  const ps = m.memory.pageSize;

  const endCounters = x.end.counters;
  const endCat = x.end.cat;
  const gaugeSet = gaugeNames(counterSources(m));
  const perIo: Record<string, number> = {};
  const gauges: Record<string, number> = {};
  for (const [k, v] of Object.entries(endCounters)) {
    if (gaugeSet.has(k)) {
      gauges[k] = v;
      continue;
    }
    const d = v - (startCounters[k] ?? 0);
    if (d !== 0 && counted > 0) perIo[k] = d / counted;
  }
  const resources = x.end.resources;
  const waitTotal = cpus.reduce((a, c) => a + c.waitNs, 0);
  const byCat = Object.fromEntries(
    COST_CATEGORIES.map((c) => [
      c,
      counted > 0 ? (c === "wait" ? waitTotal : endCat[c] - startCat[c]) / counted : 0,
    ]),
  ) as Record<CostCategory, number>;
  const cpuNsPerIo = Object.values(byCat).reduce((a, b) => a + b, 0);
  const devBusy = units().map((u) => {
    const b = x.end.device[u] as ReturnType<DeviceTiming["busy"]>;
    const s = startDevice[u] as typeof b;
    return { pipe: b.pipeNs - s.pipeNs, cmd: b.cmdNs - s.cmdNs, walk: b.walkNs - s.walkNs };
  });
  const util = (x: number) => (measuredNs > 0 ? Math.min(1, x / measuredNs) : 0);
  const bandwidth = Math.max(0, ...devBusy.map((d) => util(d.pipe)));
  const commands = Math.max(0, ...devBusy.map((d) => util(d.cmd)));
  const qdMean = qdSystem.mean(windowEnd);
  const cpuBusy = cpus.map((c) => util(c.busyNs));
  const list = percentileList(x.percentiles);
  const latSummary = lat.summary(list);
  const us = (ns: number) => ns / 1000;
  const fq = m.dev.cookie?.fq;
  // The exposure of the ranges flushed within the window; when none was, of those the flush
  // queue's timer flushed after it.
  const atEnd = x.end.exposure !== null && x.end.exposure.count > 0;
  const exposure = fq ? (atEnd ? x.end.exposure : fq.exposure()) : null;
  const exposureBins = fq ? (atEnd ? x.end.exposureBins : fq.exposureBins()) : [];
  const iotlb = m.iotlb?.counters.c;
  const delta = (k: string) => (endCounters[k] ?? 0) - (startCounters[k] ?? 0);
  const hostMem =
    (m.host.mapping === "two-step" ? 190 : 184) +
    (counted > 0
      ? (delta("nvmehost.smallDescriptors") * 256 +
          delta("nvmehost.largeDescriptors") * 4096 +
          delta("nvmehost.vecArrays") * m.host.vecPool.objectBytes +
          delta("nvmehost.sgTables") * m.host.sgPool.objectBytes) /
        counted
      : 0);
  const wallMs = x.wallMs;
  const debugReports = m.units.flatMap((u) =>
    u.debug ? u.debug.errors.map((r) => `${r.class}: ${r.message}`) : [],
  );
  const tables = m.units.reduce(
    (a, u) =>
      u.domain?.pgtable
        ? {
            tables: a.tables + u.domain.pgtable.tablePages,
            bytes: a.bytes + u.domain.pgtable.tableMemoryPages * ps,
          }
        : a,
    { tables: 0, bytes: 0 },
  );
  const hist = lat.buckets();
  return {
    job,
    ios: counted,
    reads,
    writes,
    bytes: bytesDone,
    rampIos,
    simulatedNs: measuredNs,
    iops: measuredNs > 0 ? (counted * 1e9) / measuredNs : 0,
    bandwidthMBps: measuredNs > 0 ? (bytesDone * 1e3) / measuredNs : 0,
    perCpu: cpus.map((c) => ({
      cpu: c.id,
      ios: c.ios,
      iops: measuredNs > 0 ? (c.ios * 1e9) / measuredNs : 0,
      busyPct: 100 * util(c.busyNs),
      waitPct: 100 * util(c.waitNs),
    })),
    cpuNsPerIo,
    cpuNsPerIoByCategory: byCat,
    lat: latSummary,
    clat: clat.summary(list),
    slat: slat.summary(list),
    errorCauses: Object.fromEntries([...mx.causes].sort((a, b) => b[1] - a[1])),
    iommu: {
      asked: job.iommu.mode,
      effective: effectiveIommuMode(job),
      reason: forcedModeReason(job),
    },
    percentiles: [...x.percentiles],
    read: directionOf(mx.read, measuredNs, list),
    write: directionOf(mx.write, measuredNs, list),
    latencyUs: shortPercentiles(latSummary),
    latencyHistogram: decades(hist),
    latencyCdf: lat.cdf().map((x) => ({ us: us(x.ns), fraction: x.fraction })),
    qd: {
      mean: qdMean,
      deviceMean: qdDevice.mean(windowEnd),
      configured: slots,
      distribution: depths.distribution(),
    },
    resources,
    boundBy: boundOf({
      cpuBusy,
      resources,
      bandwidth,
      commands,
      qdMean,
      qdConfigured: slots,
    }),
    device: {
      bandwidthUtilisation: bandwidth,
      commandUtilisation: commands,
      walkNsPerIo: counted > 0 ? devBusy.reduce((a, d) => a + d.walk, 0) / counted : 0,
    },
    perIo,
    gauges,
    hostMemoryPerIo: hostMem,
    iotlbHitRate: iotlb && iotlb.lookups > 0 ? iotlb.hits / iotlb.lookups : null,
    pageTables: m.domain?.pgtable ? tables : null,
    // Lazy: the flush queue's histogram. Strict: every unmap invalidated before its IOVA was
    // freed, so the window is zero by construction (stale hits are still counted, as proof).
    exposure: exposure
      ? {
          mode: "lazy" as const,
          maxUs: us(exposure.maxNs),
          p99Us: us(exposure.p99Ns),
          staleHits: iotlb?.staleHits ?? 0,
          ranges: exposure.count,
          histogram: exposureBins.map((b) => ({
            lowUs: Number(us(b.lowNs).toPrecision(4)),
            highUs: Number(us(b.highNs).toPrecision(4)),
            count: b.count,
          })),
        }
      : m.dev.cookie !== null
        ? {
            mode: "strict" as const,
            maxUs: 0,
            p99Us: 0,
            staleHits: iotlb?.staleHits ?? 0,
            ranges: 0,
            histogram: [],
          }
        : null,
    faults: m.units.reduce((a, u) => a + (u.domain?.counters.c.faults ?? 0), 0),
    errors,
    verify: {
      enabled: verifier !== null,
      checkedBytes: verifier?.checkedBytes ?? 0,
      mismatches: verifier?.mismatches ?? 0,
      ok: (verifier?.mismatches ?? 0) === 0 && errors === 0,
    },
    debugReports,
    costTable: costs,
    simulator: { wallMs, iosPerSecond: wallMs > 0 ? (completed * 1000) / wallMs : 0 },
  };
}

/**
 * The histogram for charts: the fine buckets gathered into 8 log-spaced buckets per decade from
 * 1 µs (upper bounds rounded to 3 digits), up to the one that holds the largest value.
 */
function decades(fine: readonly { upperNs: number; count: number }[]): {
  upperUs: number[];
  counts: number[];
} {
  const upperUs: number[] = [];
  const counts: number[] = [];
  const last = fine[fine.length - 1];
  if (last === undefined) return { upperUs, counts };
  for (let b = 0; ; b++) {
    const ub = Number((10 ** (b / 8)).toPrecision(3));
    upperUs.push(ub);
    counts.push(0);
    if (ub * 1000 >= last.upperNs) break;
  }
  let i = 0;
  for (const f of fine) {
    while (i < upperUs.length - 1 && f.upperNs > (upperUs[i] as number) * 1000) i++;
    counts[i] = (counts[i] as number) + f.count;
  }
  return { upperUs, counts };
}
