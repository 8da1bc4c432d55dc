/**
 * Sweeps: a grid of job variations (`vary` maps a dotted job path to the values to try) run on
 * a pool of worker threads, one JSON line per job.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { z } from "zod";
import { type JobInput, mergeJob, parseJob } from "./job.ts";
import { runJob } from "./run.ts";

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

/** Runs one grid point (in a worker or inline). */
export function runPoint(p: GridPoint): SweepLine {
  try {
    const r = runJob(parseJob(p.job));
    return {
      index: p.index,
      params: p.params,
      iops: r.iops,
      cpuNsPerIo: r.cpuNsPerIo,
      latencyP50Us: r.latencyUs.p50,
      latencyP99Us: r.latencyUs.p99,
      bandwidthMBps: r.bandwidthMBps,
      hostMemoryPerIo: r.hostMemoryPerIo,
      verifyOk: r.verify.ok,
      perIo: r.perIo,
    };
  } catch (e) {
    return {
      index: p.index,
      params: p.params,
      iops: 0,
      cpuNsPerIo: 0,
      latencyP50Us: 0,
      latencyP99Us: 0,
      bandwidthMBps: 0,
      hostMemoryPerIo: 0,
      verifyOk: false,
      perIo: {},
      error: (e as Error).message,
    };
  }
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
