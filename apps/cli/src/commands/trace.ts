/** `dmasim trace`: one I/O, step by step. */
import { parseAddress } from "@dmasim/bvec";
import { InvalidArgumentError } from "commander";
import { type TraceStep, TraceSplitError, traceDifferences, traceIo } from "../engine/trace.ts";
import { traceHtml } from "../engine/trace-html.ts";
import {
  type CommandIo,
  type JobOptions,
  UsageError,
  checkWritable,
  loadJob,
  writeOut,
} from "./common.ts";

/** Options of `trace`. */
export interface TraceCommandOptions extends Omit<JobOptions, "kernel"> {
  /** One Linux release, or two to show what changes between them. */
  kernel?: string[];
  /** Attach dma-debug, as `run --debug`. */
  debug?: boolean;
  buf?: { phys: number; len: number }[];
  write?: boolean;
  offset?: number;
  json?: boolean;
  /** Write the step-through HTML page here. */
  html?: string;
}

/** Parses `--buf ADDR:LEN` (hex or decimal, `_` allowed), accumulating. */
export function bufOption(
  v: string,
  prev: { phys: number; len: number }[] | undefined,
): { phys: number; len: number }[] {
  const m = /^([^:]+):([^:]+)$/.exec(v.trim());
  if (!m)
    throw new InvalidArgumentError(`expected ADDR:LEN such as 0x1_2345_6000:8192, got "${v}".`);
  let phys: number;
  let len: number;
  try {
    phys = parseAddress(m[1] ?? "");
    len = parseAddress(m[2] ?? "");
  } catch (e) {
    throw new InvalidArgumentError(`${(e as Error).message}.`);
  }
  if (len === 0) throw new InvalidArgumentError(`buffer length must be positive in "${v}".`);
  return [...(prev ?? []), { phys, len }];
}

/** Runs the command. */
export function trace(opts: TraceCommandOptions, io: CommandIo): number {
  const kernels: (string | undefined)[] = opts.kernel ?? [undefined];
  if (kernels.length > 2)
    throw new UsageError(
      `--kernel ${kernels.join(",")}: trace takes one release, or two to compare`,
    );
  if (opts.html !== undefined) checkWritable(opts.html, "--html");
  const jobs = kernels.map((kernel) => loadJob(undefined, { ...opts, kernel }));
  const traces = jobs.map((job) => {
    try {
      return {
        job,
        steps: traceIo(job, {
          ...(opts.buf ? { bufs: opts.buf } : {}),
          write: opts.write ?? false,
          offset: opts.offset ?? 0,
          debug: opts.debug ?? false,
        }),
      };
    } catch (e) {
      // Comparing releases, an I/O that one of them splits is itself the difference.
      if (e instanceof TraceSplitError && jobs.length > 1) {
        const step: TraceStep = {
          step: "request",
          lines: [`  Linux ${job.kernel}: ${e.message}`],
          data: { split: true, message: e.message },
        };
        return { job, steps: [step] };
      }
      throw e;
    }
  });
  if (traces.every((t) => t.steps.length === 1 && t.steps[0]?.step === "request"))
    throw new UsageError(
      `every release splits this I/O: ${(traces[0]?.steps[0]?.data as { message: string }).message}`,
    );
  const [t0, t1] = traces as [(typeof traces)[number], (typeof traces)[number] | undefined];
  const differences = t1 === undefined ? undefined : traceDifferences(t0.steps, t1.steps);
  const stepsJson = (steps: TraceStep[]) => steps.map((s) => ({ step: s.step, data: s.data }));
  const body =
    t1 === undefined
      ? { job: t0.job, steps: stepsJson(t0.steps) }
      : {
          traces: traces.map((t) => ({
            kernel: t.job.kernel,
            job: t.job,
            steps: stepsJson(t.steps),
          })),
          differences,
        };
  if (opts.html !== undefined)
    writeOut(
      opts.html,
      traceHtml(
        traces.map((t) => ({ kernel: t.job.kernel, steps: t.steps })),
        body,
        differences,
      ),
    );
  if (opts.json) {
    io.stdout(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const bold = (s: string) => (io.color ? `\u001b[1m${s}\u001b[22m` : s);
  for (const t of traces) {
    if (t1 !== undefined) io.stdout(`${bold(`== Linux ${t.job.kernel} ==`)}\n\n`);
    for (const s of t.steps) io.stdout(`${bold(s.step)}\n${s.lines.join("\n")}\n\n`);
  }
  if (t1 !== undefined && differences !== undefined) {
    io.stdout(`${bold(`what changes from Linux ${t0.job.kernel} to ${t1.job.kernel}`)}\n`);
    if (differences.length === 0) io.stdout("  nothing: every step is the same\n");
    for (const d of differences) {
      io.stdout(`  ${d.step}:\n`);
      for (const l of d.only0) io.stdout(`    - ${l.trim()}\n`);
      for (const l of d.only1) io.stdout(`    + ${l.trim()}\n`);
    }
  }
  return 0;
}
