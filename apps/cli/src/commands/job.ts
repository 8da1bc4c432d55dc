/** `dmasim job --print [job.json]`: the effective job, every default filled in. */
import { effectiveIommuMode, forcedModeReason } from "../engine/machine.ts";
import { type CommandIo, type JobOptions, loadJob } from "./common.ts";

/**
 * Prints the job as `run` would run it: the file (or the built-in default job) with the options
 * applied and every default written out; the IOMMU mode the device really gets is added as
 * `effective` when it differs from the one asked for.
 */
export function printJob(file: string | undefined, opts: JobOptions, io: CommandIo): number {
  const job = loadJob(file, opts);
  const reason = forcedModeReason(job);
  const out =
    reason === null
      ? job
      : { ...job, effective: { iommuMode: effectiveIommuMode(job), because: reason } };
  io.stdout(`${JSON.stringify(out, null, 2)}\n`);
  return 0;
}
