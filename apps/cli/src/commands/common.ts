/** Helpers shared by the commands: option parsing, job loading, errors with exit codes. */
import { accessSync, constants, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { SimError } from "@dmasim/bvec";
import { InvalidArgumentError } from "commander";
import { type CostTable, costProblems, loadCostTable } from "../engine/cost.ts";
import { DEVICE_PRESETS, type DevicePresetName } from "../engine/devices.ts";
import { knownCounters, machineProblems } from "../engine/machine.ts";
import { type ProfileName, profileCosts } from "../engine/profiles.ts";
import { DEFAULT_JOB, type Job, JobError, mergeJob, parseJob } from "../engine/job.ts";

/** Where a command writes, and whether colour and progress are wanted. */
export interface CommandIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Colour on stdout (a terminal). */
  readonly color: boolean;
  /** Progress on stderr (a terminal). */
  readonly progress: boolean;
}

/** A usage or input error of the command line: one line per problem, exit code 2. */
export class UsageError extends SimError<"EUSAGE"> {
  constructor(message: string) {
    super("EUSAGE", message);
  }
}

/** A parser for an integer option within [min, max]. */
export function intOption(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(`expected an integer, got "${v}".`);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${n}.`);
    return n;
  };
}

/** A parser for a positive number option. */
export function numberOption(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n))
      throw new InvalidArgumentError(`expected a number, got "${v}".`);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${n}.`);
    return n;
  };
}

/** A parser for a comma-separated list of percentiles (each in [0, 100], as fio's percentile_list). */
export function percentilesOption(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (p === "" || !Number.isFinite(n) || n < 0 || n > 100)
      throw new InvalidArgumentError(`"${p}" is not a percentile in 0..100 (e.g. 50,99,99.99).`);
    if (!out.includes(n)) out.push(n);
  }
  return out.sort((a, b) => a - b);
}

/** A parser for a time such as "1ms", "500us", "2s" (ns returned), for intervals. */
export function timeOption(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s)$/.exec(v.trim());
  const unit = m ? { ns: 1, us: 1e3, ms: 1e6, s: 1e9 }[m[2] as "ns" | "us" | "ms" | "s"] : 0;
  const ns = m ? Number(m[1]) * unit : 0;
  if (!m || ns < 1000)
    throw new InvalidArgumentError(
      `expected a time of at least 1us such as "1ms" or "500us", got "${v}".`,
    );
  return ns;
}

/** The fault kinds `--inject` takes and the keys of each (job field `controller.faults`). */
export const INJECT_KINDS = {
  failCommand: ["status", "nth", "every", "fraction", "seed"],
  corruptDescriptor: ["nth"],
  failDmaRead: ["nth"],
  delay: ["ns"],
} as const;

/**
 * A parser for one `--inject KIND:KEY=VALUE,...` (repeatable: each adds to the plan), e.g.
 * `failCommand:status=0x4004,every=100`; values are numbers (decimal or 0x hex).
 */
export function injectOption(
  v: string,
  prev: Record<string, unknown> = {},
): Record<string, unknown> {
  const allowed = Object.entries(INJECT_KINDS)
    .map(([k, keys]) => `${k}:${keys.join("|")}=N`)
    .join(", ");
  const m = /^([A-Za-z]+):(.+)$/.exec(v.trim());
  const kind = m?.[1] as keyof typeof INJECT_KINDS | undefined;
  if (m === null || kind === undefined || !(kind in INJECT_KINDS))
    throw new InvalidArgumentError(`expected KIND:KEY=VALUE,... with ${allowed}, got "${v}".`);
  const fields: Record<string, number> = {};
  for (const part of (m[2] as string).split(",")) {
    const [key, value] = part.split("=").map((x) => x.trim());
    const n = value === undefined || value === "" ? NaN : Number(value);
    if (
      key === undefined ||
      !(INJECT_KINDS[kind] as readonly string[]).includes(key) ||
      !Number.isFinite(n)
    )
      throw new InvalidArgumentError(
        `"${part}" in "${v}": ${kind} takes ${INJECT_KINDS[kind].map((k) => `${k}=N`).join(", ")}.`,
      );
    fields[key] = n;
  }
  if (kind === "delay") return { ...prev, delayNs: fields.ns };
  return { ...prev, [kind]: fields };
}

/** A parser for one of a set of words. */
export function choiceOption<T extends string>(choices: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(choices as readonly string[]).includes(v))
      throw new InvalidArgumentError(`expected one of ${choices.join(", ")}, got "${v}".`);
    return v as T;
  };
}

/** A parser for a comma-separated list of words from a set. */
export function listOption<T extends string>(choices: readonly T[]): (v: string) => T[] {
  return (v) => {
    const parts = v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    if (parts.length === 0) throw new InvalidArgumentError("expected a comma-separated list.");
    for (const p of parts)
      if (!(choices as readonly string[]).includes(p))
        throw new InvalidArgumentError(`"${p}" is not one of ${choices.join(", ")}.`);
    return parts as T[];
  };
}

/** Reads and parses a JSON file; errors name the file. */
export function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(
      `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UsageError(`${path}: invalid JSON: ${(e as Error).message}`);
  }
}

/** Job options common to run, compare and trace. */
export interface JobOptions {
  kernel?: string | undefined;
  iommu?: string;
  mapping?: string;
  rw?: string;
  bs?: string;
  iodepth?: number;
  ios?: number;
  seconds?: number;
  cpus?: number;
  seed?: number;
  buffers?: string;
  sgl?: string;
  mdts?: number;
  latencyUs?: number;
  granule?: number;
  pageTable?: string;
  memoryGib?: number;
  untrusted?: boolean;
  verify?: boolean;
  profile?: string;
  controllers?: number;
  ioQueues?: number;
  completion?: string;
  ramp?: string;
  bandwidthMbps?: number;
  maxIops?: number;
  iotlbEntries?: number;
  rwmixread?: number;
  device?: DevicePresetName;
  inject?: Record<string, unknown>;
}

/** Turns command-line options into a partial job (they override the job file). */
export function overrides(o: JobOptions): Record<string, unknown> {
  const job: Record<string, Record<string, unknown>> = {
    machine: {},
    iommu: {},
    device: {},
    controller: {},
    host: {},
    workload: {},
  };
  const set = (section: string, key: string, v: unknown) => {
    if (v !== undefined) (job[section] as Record<string, unknown>)[key] = v;
  };
  set("iommu", "mode", o.iommu);
  set("iommu", "granule", o.granule);
  set("iommu", "format", o.pageTable);
  set("host", "mapping", o.mapping);
  if (o.device !== undefined) {
    const d = DEVICE_PRESETS[o.device];
    set("controller", "latencyUs", d.latencyUs);
    // An explicit --latency-us replaces the preset's latency and its tail.
    if (o.latencyUs === undefined) set("controller", "latencyP99Us", d.latencyP99Us);
    set("controller", "bandwidthMBps", d.bandwidthMBps);
  }
  set("workload", "rw", o.rw);
  set("workload", "rwmixread", o.rwmixread);
  set("workload", "bs", o.bs);
  set("workload", "iodepth", o.iodepth);
  if (o.ios !== undefined) {
    set("workload", "ios", o.ios);
    set("workload", "seconds", undefined);
  }
  if (o.seconds !== undefined) set("workload", "seconds", o.seconds);
  set("machine", "cpus", o.cpus);
  set("machine", "memoryGiB", o.memoryGib);
  set("workload", "buffers", o.buffers);
  set("controller", "sgl", o.sgl);
  set("controller", "mdts", o.mdts);
  set("controller", "latencyUs", o.latencyUs);
  set("machine", "profile", o.profile);
  set("machine", "controllers", o.controllers);
  set("controller", "ioQueues", o.ioQueues);
  set("host", "completion", o.completion);
  if (o.ramp !== undefined) set("workload", "ramp", /^\d+$/.test(o.ramp) ? Number(o.ramp) : o.ramp);
  set("controller", "bandwidthMBps", o.bandwidthMbps);
  set("controller", "maxIops", o.maxIops);
  set("iommu", "iotlbEntries", o.iotlbEntries);
  set("controller", "faults", o.inject);
  if (o.untrusted) set("device", "trusted", false);
  if (o.verify === false) set("workload", "verify", false);
  const out: Record<string, unknown> = {};
  if (o.seed !== undefined) out.seed = o.seed;
  if (o.kernel !== undefined) out.kernel = o.kernel;
  for (const [k, v] of Object.entries(job)) if (Object.keys(v).length > 0) out[k] = v;
  return out;
}

/** Loads a job (file or the built-in default), applies overrides, validates. */
export function loadJob(file: string | undefined, opts: JobOptions): Job {
  const base =
    file === undefined
      ? (DEFAULT_JOB as Record<string, unknown>)
      : (readJson(file) as Record<string, unknown>);
  if (base === null || typeof base !== "object" || Array.isArray(base))
    throw new UsageError(`${file ?? "job"}: a job file holds one JSON object`);
  let merged = mergeJob(base, overrides(opts));
  // --seconds replaces a file's ios and --ios a file's seconds.
  const w = merged.workload as Record<string, unknown> | undefined;
  if (w && opts.seconds !== undefined) delete w.ios;
  if (w && opts.ios !== undefined) delete w.seconds;
  if (w && file === undefined && opts.seconds !== undefined) delete w.ios;
  merged = { ...merged };
  let job: Job;
  try {
    job = parseJob(merged);
  } catch (e) {
    if (e instanceof JobError) throw new JobError(e.problems.map((p) => `${file ?? "job"}: ${p}`));
    throw e;
  }
  const problems = machineProblems(job);
  if (problems.length > 0) throw new JobError(problems.map((p) => `${file ?? "job"}: ${p}`));
  return job;
}

/** Loads the cost table: the profile's, or a user file over it. */
export function loadCosts(file: string | undefined, profile: ProfileName = "intel-vtd"): CostTable {
  const base = profileCosts(profile);
  if (file === undefined) return base;
  try {
    const table = loadCostTable(readJson(file), base);
    const problems = costProblems(table, knownCounters());
    if (problems.length > 0) throw new JobError(problems);
    return table;
  } catch (e) {
    if (e instanceof JobError) throw new JobError(e.problems.map((p) => `${file}: ${p}`));
    throw e;
  }
}

/**
 * Checks, before any work, that `path` can be written: its directory exists and is writable,
 * and the path is not a directory nor a file we may not write. A usage error when it cannot.
 */
export function checkWritable(path: string, option: string): void {
  const fail = (why: string) => {
    throw new UsageError(`${option} ${path}: cannot write (${why})`);
  };
  let st;
  try {
    st = statSync(path);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) fail("it is a directory");
  try {
    accessSync(st ? path : dirname(resolve(path)), constants.W_OK);
  } catch (e) {
    fail((e as NodeJS.ErrnoException).code ?? String(e));
  }
}

/** Writes a file, as a usage error when it cannot. */
export function writeOut(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (e) {
    throw new UsageError(
      `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
}
