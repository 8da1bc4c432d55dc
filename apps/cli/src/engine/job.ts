/**
 * Job files: what machine to simulate and what workload to run, validated with a zod schema.
 * Every field has a default, so `{}` is a valid job (the built-in default job).
 */
import { JobError } from "./errors.ts";
import { jobProblems } from "./job-check.ts";
import { type Job, type JobInput, jobSchema, sizeOf } from "./job-schema.ts";

export { type Job, type JobInput, jobSchema, sizeOf };

export { JobError };

/** The value at `path` in `input`, as a message shows it (undefined when missing). */
function shownAt(input: unknown, path: readonly PropertyKey[]): string | undefined {
  let v = input;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  if (v === undefined) return undefined;
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Validates a job object; throws `JobError` with one `path: value: what is allowed` line per
 * problem, the schema's first and then the combinations of fields (job-check.ts).
 */
export function parseJob(input: unknown): Job {
  const r = jobSchema.safeParse(input ?? {});
  if (!r.success) {
    throw new JobError(
      r.error.issues.map((i) => {
        const path = i.path.length ? i.path.join(".") : "(job)";
        const shown = i.code === "unrecognized_keys" ? undefined : shownAt(input ?? {}, i.path);
        return `${path}: ${shown === undefined ? "" : `${shown}: `}${i.message}`;
      }),
    );
  }
  const job = r.data;
  const problems: string[] = [];
  if (job.workload.ios !== undefined && job.workload.seconds !== undefined) {
    problems.push("workload: give either ios or seconds, not both");
  }
  // Linux cannot run a DMA-API domain whose smallest IOMMU page is larger than the CPU page
  // (init_iova_domain: BUG_ON(granule > PAGE_SIZE)); an identity or absent domain has no IOVAs.
  if (
    (job.iommu.mode === "strict" ||
      job.iommu.mode === "lazy" ||
      (job.iommu.mode === "passthrough" && !job.device.trusted)) &&
    job.iommu.granule > job.machine.pageSize
  ) {
    problems.push(
      `iommu.granule: ${job.iommu.granule} is larger than machine.pageSize ${job.machine.pageSize}; a DMA domain's granule must be at most the CPU page (Linux init_iova_domain)`,
    );
  }
  // Caching mode is VT-d's CAP.CM (AMD-Vi's NpCache): an SMMUv3 has no such bit to set.
  if (job.iommu.cachingMode && job.machine.profile === "arm-smmuv3") {
    problems.push(
      "iommu.cachingMode: arm-smmuv3 has no caching-mode bit (VT-d CAP.CM, AMD-Vi NpCache); use profile intel-vtd or amd-vi",
    );
  }
  problems.push(...jobProblems(job, sizeOf));
  if (problems.length > 0) throw new JobError(problems);
  return job;
}

/** The number of I/Os the workload asks for (default 20 000 when neither ios nor seconds is set). */
export function jobIos(job: Job): number | undefined {
  if (job.workload.seconds !== undefined) return undefined;
  return job.workload.ios ?? 20000;
}

/** The ramp of a job: I/Os or nanoseconds of simulated time left out of the statistics. */
export function rampOf(job: Job): { readonly ios: number; readonly ns: number } {
  const r = job.workload.ramp;
  if (typeof r === "number") return { ios: r, ns: 0 };
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s)$/.exec(r);
  if (m === null) throw new JobError([`workload.ramp: ${r} is not a time such as "10ms"`]);
  const unit = { ns: 1, us: 1e3, ms: 1e6, s: 1e9 }[m[2] as "ns" | "us" | "ms" | "s"];
  return { ios: 0, ns: Number(m[1]) * unit };
}

/** Deep-merges `over` into `base` (objects merge, anything else replaces). */
export function mergeJob(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    if (
      v !== null &&
      typeof v === "object" &&
      !Array.isArray(v) &&
      b !== null &&
      typeof b === "object" &&
      !Array.isArray(b)
    ) {
      out[k] = mergeJob(b as Record<string, unknown>, v as Record<string, unknown>);
    } else {
      out[k] = v;
    }
  }
  return out;
}

/**
 * The built-in default job: mixed random 4 KiB I/O over a 256 MiB namespace after a 2000-I/O
 * ramp, lazy IOMMU, two-step mapping, verified.
 */
export const DEFAULT_JOB: JobInput = {
  name: "default",
  // A 256 MiB namespace, as fio's size=256m: the writes of a long run stay in memory.
  controller: { namespaceGiB: 0.25 },
  workload: {
    rw: "randrw",
    rwmixread: 70,
    bs: "4k",
    iodepth: 32,
    ios: 20000,
    ramp: 2000,
    verify: true,
  },
};
