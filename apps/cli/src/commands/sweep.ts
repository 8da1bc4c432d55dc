/** `dmasim sweep grid.json`: a grid of jobs on a worker pool, one JSON line per job. */
import { appendFileSync, writeFileSync } from "node:fs";
import { fixed, si, table } from "../engine/format.ts";
import { JobError, parseJob } from "../engine/job.ts";
import { SWEEP_METRICS, sweepHtml } from "../engine/html-sweep.ts";
import { knownCounters, machineProblems } from "../engine/machine.ts";
import {
  type SweepLine,
  defaultWorkers,
  expandGrid,
  gridSchema,
  runSweep,
  sweepCsvHeader,
  sweepCsvRow,
} from "../engine/sweep.ts";
import { type CommandIo, UsageError, checkWritable, readJson, writeOut } from "./common.ts";
import { progressLine } from "./progress.ts";

/** Options of `sweep`. */
export interface SweepOptions {
  out?: string;
  csv?: boolean;
  workers?: number;
  json?: boolean;
  /** Write the HTML report (line charts against a swept parameter) here. */
  html?: string;
  /** The swept parameter on the HTML charts' x axis. */
  x?: string;
  /** The metrics the HTML report draws. */
  metric?: string[];
}

/** Checks `--x` and `--metric` against the grid and the metric names, before anything runs. */
function checkChartOptions(keys: readonly string[], o: SweepOptions): void {
  if ((o.x !== undefined || o.metric !== undefined) && o.html === undefined)
    throw new UsageError(`--x and --metric shape the HTML report: give --html <file> too`);
  if (o.x !== undefined && !keys.includes(o.x))
    throw new UsageError(`--x ${o.x}: not a swept parameter; the grid varies ${keys.join(", ")}`);
  for (const m of o.metric ?? []) {
    if (m in SWEEP_METRICS) continue;
    if (m.startsWith("perIo.") && knownCounters().has(m.slice("perIo.".length))) continue;
    throw new UsageError(
      `--metric ${m}: not a metric; use ${Object.keys(SWEEP_METRICS).join(", ")}, or perIo.<counter> with a counter \`dmasim run --json\` reports (e.g. perIo.iotlb.misses)`,
    );
  }
}

/** A varied value as the table shows it: a string or number as is, a range or list as JSON. */
export function paramText(v: unknown): string {
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

/** Runs the command; exit 1 when a job failed or did not verify. */
export async function sweep(file: string, o: SweepOptions, io: CommandIo): Promise<number> {
  if (o.out !== undefined) checkWritable(o.out, "--out");
  if (o.html !== undefined) checkWritable(o.html, "--html");
  const raw = readJson(file);
  const g = gridSchema.safeParse(raw);
  if (!g.success)
    throw new UsageError(
      g.error.issues
        .map((i) => `${file}: ${i.path.join(".") || "(grid)"}: ${i.message}`)
        .join("\n"),
    );
  checkChartOptions(Object.keys(g.data.vary), o);
  const points = expandGrid(g.data);
  // Every point is checked before the first one runs.
  for (const p of points) {
    let problems: string[];
    try {
      problems = machineProblems(parseJob(p.job));
    } catch (e) {
      if (!(e instanceof JobError)) throw e;
      problems = e.problems;
    }
    if (problems.length > 0)
      throw new JobError(
        problems.map((x) => `${file}: point ${p.index} ${JSON.stringify(p.params)}: ${x}`),
      );
  }
  if (o.out !== undefined) writeFileSync(o.out, "");
  const progress = o.json && o.out === undefined ? null : progressLine(io, "sweep", "points");
  let done = 0;
  const lines = await runSweep(points, o.workers ?? defaultWorkers(), (l: SweepLine) => {
    const text = `${JSON.stringify(l)}\n`;
    if (o.out !== undefined) appendFileSync(o.out, text);
    else if (o.json) io.stdout(text);
    progress?.update(++done, points.length);
  });
  progress?.end();
  const keys = Object.keys(g.data.vary);
  if (!o.json || o.out !== undefined) {
    if (o.csv) {
      io.stdout(`${sweepCsvHeader(keys)}\n`);
      for (const l of lines) io.stdout(`${sweepCsvRow(keys, l)}\n`);
    } else {
      io.stdout(
        `${table(
          [...keys, "IOPS", "CPU ns/IO", "p99 µs", "verify"],
          lines.map((l) => [
            ...keys.map((k) => paramText(l.params[k])),
            si(l.iops),
            fixed(l.cpuNsPerIo, 1),
            fixed(l.latencyP99Us, 1),
            l.error ? `error: ${l.error}` : l.verifyOk ? "ok" : "FAILED",
          ]),
          io.color,
        )}\n`,
      );
    }
  }
  if (o.html !== undefined)
    writeOut(
      o.html,
      sweepHtml(g.data, lines, {
        ...(o.x !== undefined ? { x: o.x } : {}),
        ...(o.metric !== undefined ? { metrics: o.metric } : {}),
      }),
    );
  return lines.every((l) => l.verifyOk && l.error === undefined) ? 0 : 1;
}
