/** `dmasim run [job.json]`: runs a job and reports. */
import { runHtml } from "../engine/html.ts";
import { formatRun } from "../engine/report.ts";
import { runCsvHeader, runCsvRow } from "../engine/csv.ts";
import type { IntervalRow } from "../engine/measure.ts";
import { runJob } from "../engine/run.ts";
import { progressLine } from "./progress.ts";
import {
  type CommandIo,
  type JobOptions,
  loadCosts,
  loadJob,
  UsageError,
  checkWritable,
  writeOut,
} from "./common.ts";

/** Options of `run`. */
export interface RunCommandOptions extends JobOptions {
  json?: boolean;
  csv?: boolean;
  html?: string;
  costs?: string;
  debug?: boolean;
  percentiles?: number[];
  log?: string;
  /** The log's interval, ns. */
  logInterval?: number;
}

/** Runs the command; returns the exit code (1 when verification failed or faults occurred). */
export function run(file: string | undefined, opts: RunCommandOptions, io: CommandIo): number {
  if (opts.html !== undefined) checkWritable(opts.html, "--html");
  if (opts.log !== undefined) checkWritable(opts.log, "--log");
  else if (opts.logInterval !== undefined)
    throw new UsageError("--log-interval: give --log <file> to write the log to");
  const job = loadJob(file, opts);
  const costs = loadCosts(opts.costs, job.machine.profile);
  const progress = opts.json || opts.csv ? null : progressLine(io, "run", "I/Os");
  const log: string[] = [];
  const r = runJob(job, {
    costs,
    debug: opts.debug ?? false,
    ...(progress
      ? { onProgress: (done: number, total: number) => progress.update(done, total) }
      : {}),
    ...(opts.percentiles ? { percentiles: opts.percentiles } : {}),
    ...(opts.log !== undefined
      ? {
          log: {
            intervalNs: opts.logInterval ?? 1e6,
            emit: (row: IntervalRow) => log.push(JSON.stringify(row)),
          },
        }
      : {}),
  });
  progress?.end();
  if (opts.json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
  else if (opts.csv) io.stdout(`${runCsvHeader(r.percentiles)}\n${runCsvRow(r, r.percentiles)}\n`);
  else io.stdout(formatRun(r, io.color));
  if (opts.log !== undefined) writeOut(opts.log, log.length > 0 ? `${log.join("\n")}\n` : "");
  if (opts.html !== undefined) writeOut(opts.html, runHtml(r));
  return r.verify.ok && r.faults === 0 && r.debugReports.length === 0 ? 0 : 1;
}
