/** `dmasim trace`: one I/O, step by step. */
import { parseAddress } from "@dmasim/bvec";
import { InvalidArgumentError } from "commander";
import { traceIo } from "../engine/trace.ts";
import { type CommandIo, type JobOptions, UsageError, loadJob } from "./common.ts";

/** Options of `trace`. */
export interface TraceCommandOptions extends JobOptions {
  buf?: { phys: number; len: number }[];
  write?: boolean;
  offset?: number;
  json?: boolean;
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
  const job = loadJob(undefined, opts);
  let steps;
  try {
    steps = traceIo(job, {
      ...(opts.buf ? { bufs: opts.buf } : {}),
      write: opts.write ?? false,
      offset: opts.offset ?? 0,
    });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  if (opts.json) {
    io.stdout(
      `${JSON.stringify({ job, steps: steps.map((s) => ({ step: s.step, data: s.data })) }, null, 2)}\n`,
    );
  } else {
    for (const s of steps)
      io.stdout(`${io.color ? `\u001b[1m${s.step}\u001b[22m` : s.step}\n${s.lines.join("\n")}\n\n`);
  }
  return 0;
}
