/** `dmasim run [job.json]`: runs a job and reports. */
import { runHtml } from "../engine/html.ts";
import { formatRun } from "../engine/report.ts";
import { runJob } from "../engine/run.ts";
import {
  type CommandIo,
  type JobOptions,
  loadCosts,
  loadJob,
  progressPrinter,
  checkWritable,
  writeOut,
} from "./common.ts";

/** Options of `run`. */
export interface RunCommandOptions extends JobOptions {
  json?: boolean;
  html?: string;
  costs?: string;
  debug?: boolean;
}

/** Runs the command; returns the exit code (1 when verification failed or faults occurred). */
export function run(file: string | undefined, opts: RunCommandOptions, io: CommandIo): number {
  if (opts.html !== undefined) checkWritable(opts.html, "--html");
  const job = loadJob(file, opts);
  const costs = loadCosts(opts.costs, job.machine.profile);
  const progress = progressPrinter(io, "run");
  const r = runJob(job, {
    costs,
    debug: opts.debug ?? false,
    ...(progress ? { onProgress: progress } : {}),
  });
  if (progress) io.stderr("\n");
  if (opts.json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
  else io.stdout(formatRun(r, io.color));
  if (opts.html !== undefined) writeOut(opts.html, runHtml(r));
  return r.verify.ok && r.faults === 0 && r.debugReports.length === 0 ? 0 : 1;
}
