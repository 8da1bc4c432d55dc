/**
 * Sweeps: a grid of job variations (`vary` maps a dotted job path to the values to try) run on
 * a pool of worker threads, one JSON line per job.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { z } from "zod";
import { csvField } from "./csv.ts";
import { type JobInput, mergeJob, parseJob } from "./job.ts";
import { type RunResult, runJob } from "./run.ts";

/** A grid file. */
export const gridSchema = z
  .object({
    base: z.record(z.string(), z.unknown()).default({}),
    vary: z.record(z.string(), z.array(z.unknown()).min(1)),
  })
  .strict();
export type Grid = z.infer<typeof gridSchema>;

/** One point of the grid. */
export interface GridPoint {
  readonly index: number;
  readonly params: Record<string, unknown>;
  readonly job: JobInput;
}

/** One line of sweep output. */
export interface SweepLine {
  readonly index: number;
  readonly params: Record<string, unknown>;
  readonly iops: number;
  readonly cpuNsPerIo: number;
  readonly latencyP50Us: number;
  readonly latencyP99Us: number;
  /** Mean `lat` (ready to completion handled) and `clat` (doorbell to completion handled), µs. */
  readonly latMeanUs: number;
  readonly clatMeanUs: number;
  /** Achieved queue depth (time-average of I/Os in flight from ready to completion handled). */
  readonly qdMean: number;
  /** What bounds the run ("CPU 0", "nvme-sq-lock", "queue depth × latency", …) and how busy it is (0..1). */
  readonly boundBy: string;
  readonly boundUtilisation: number;
  readonly bandwidthMBps: number;
  readonly hostMemoryPerIo: number;
  readonly verifyOk: boolean;
  readonly perIo: Record<string, number>;
  readonly error?: string;
}

/** Expands a grid into its points (the cartesian product, in the order the keys are given). */
export function expandGrid(grid: Grid): GridPoint[] {
  const keys = Object.keys(grid.vary);
  let points: Record<string, unknown>[] = [{}];
  for (const k of keys) {
    const next: Record<string, unknown>[] = [];
    for (const p of points) for (const v of grid.vary[k] ?? []) next.push({ ...p, [k]: v });
    points = next;
  }
  return points.map((params, index) => {
    let job: Record<string, unknown> = grid.base;
    for (const [path, v] of Object.entries(params)) {
      const parts = path.split(".");
      const over: Record<string, unknown> = {};
      let cur = over;
      parts.forEach((p, i) => {
        if (i === parts.length - 1) cur[p] = v;
        else {
          const nxt: Record<string, unknown> = {};
          cur[p] = nxt;
          cur = nxt;
        }
      });
      job = mergeJob(job, over);
    }
    return { index, params, job: job };
  });
}

/** The sweep line of a finished run. */
export function sweepLineOf(
  index: number,
  params: Record<string, unknown>,
  r: RunResult,
): SweepLine {
  return {
    index,
    params,
    iops: r.iops,
    cpuNsPerIo: r.cpuNsPerIo,
    latencyP50Us: r.latencyUs.p50,
    latencyP99Us: r.latencyUs.p99,
    latMeanUs: r.lat.meanUs,
    clatMeanUs: r.clat.meanUs,
    qdMean: r.qd.mean,
    boundBy: r.boundBy.resource,
    boundUtilisation: r.boundBy.utilisation,
    bandwidthMBps: r.bandwidthMBps,
    hostMemoryPerIo: r.hostMemoryPerIo,
    verifyOk: r.verify.ok,
    perIo: r.perIo,
  };
}

/** Runs one grid point (in a worker or inline). */
export function runPoint(p: GridPoint): SweepLine {
  try {
    return sweepLineOf(p.index, p.params, runJob(parseJob(p.job)));
  } catch (e) {
    return {
      index: p.index,
      params: p.params,
      iops: 0,
      cpuNsPerIo: 0,
      latencyP50Us: 0,
      latencyP99Us: 0,
      latMeanUs: 0,
      clatMeanUs: 0,
      qdMean: 0,
      boundBy: "",
      boundUtilisation: 0,
      bandwidthMBps: 0,
      hostMemoryPerIo: 0,
      verifyOk: false,
      perIo: {},
      error: (e as Error).message,
    };
  }
}

/** The CSV columns of a sweep after the grid's own keys. */
export const SWEEP_CSV_COLUMNS = [
  "iops",
  "cpu_ns_per_io",
  "p50_us",
  "p99_us",
  "mb_s",
  "lat_mean_us",
  "clat_mean_us",
  "qd_mean",
  "bound_by",
  "bound_utilisation",
  "verify",
  "error",
] as const;

/** A varied value: a string always quoted, anything else as JSON (quoted when it needs it). */
function csvParam(v: unknown): string {
  if (typeof v === "string") return `"${v.replaceAll('"', '""')}"`;
  return csvField(JSON.stringify(v) ?? "");
}

/** The CSV header line of a sweep whose grid varies `keys` (no line break). */
export function sweepCsvHeader(keys: readonly string[]): string {
  return [...keys, ...SWEEP_CSV_COLUMNS].map(csvField).join(",");
}

/**
 * One CSV line of a sweep (no line break): the varied values (strings quoted, anything else as
 * JSON), then `SWEEP_CSV_COLUMNS`.
 */
export function sweepCsvRow(keys: readonly string[], l: SweepLine): string {
  const values = [
    l.iops.toFixed(0),
    l.cpuNsPerIo.toFixed(1),
    l.latencyP50Us.toFixed(2),
    l.latencyP99Us.toFixed(2),
    l.bandwidthMBps.toFixed(1),
    l.latMeanUs.toFixed(2),
    l.clatMeanUs.toFixed(2),
    l.qdMean.toFixed(1),
    l.boundBy,
    l.boundUtilisation.toFixed(3),
    l.verifyOk ? "ok" : "FAILED",
    l.error ?? "",
  ];
  return [...keys.map((k) => csvParam(l.params[k])), ...values.map(csvField)].join(",");
}

/** The default pool size: the machine's cores. */
export function defaultWorkers(): number {
  return availableParallelism();
}

/**
 * Runs every point; `workers` 0 runs inline (also used when running from TypeScript sources,
 * which a worker thread cannot load on Node 20). Lines are delivered in index order.
 */
export async function runSweep(
  points: readonly GridPoint[],
  workers: number,
  onLine: (l: SweepLine) => void,
): Promise<SweepLine[]> {
  const results: (SweepLine | undefined)[] = new Array<SweepLine | undefined>(points.length);
  let nextOut = 0;
  const deliver = () => {
    while (nextOut < points.length && results[nextOut] !== undefined)
      onLine(results[nextOut++] as SweepLine);
  };
  const workerUrl = new URL("./sweep-worker.js", import.meta.url);
  const inline = workers <= 0 || import.meta.url.endsWith(".ts");
  if (inline) {
    for (const p of points) {
      results[p.index] = runPoint(p);
      deliver();
    }
    return results as SweepLine[];
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(workers, points.length) }, async () => {
      const w = new Worker(workerUrl);
      try {
        for (;;) {
          const p = points[next++];
          if (p === undefined) break;
          const line = await new Promise<SweepLine>((resolve, reject) => {
            w.once("message", (m: SweepLine) => resolve(m));
            w.once("error", reject);
            w.postMessage(p);
          });
          results[p.index] = line;
          deliver();
        }
      } finally {
        await w.terminate();
      }
    }),
  );
  return results as SweepLine[];
}
