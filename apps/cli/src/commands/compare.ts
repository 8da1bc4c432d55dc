/** `dmasim compare [job.json]`: the same workload across IOMMU modes and mapping styles. */
import { compareHtml } from "../engine/html.ts";
import { type CompareCell, formatCompare, kernelDifferences } from "../engine/report.ts";
import { runCsvHeader, runCsvRow } from "../engine/csv.ts";
import { runJob } from "../engine/run.ts";
import { progressLine } from "./progress.ts";
import {
  type CommandIo,
  type JobOptions,
  checkWritable,
  loadCosts,
  loadJob,
  writeOut,
} from "./common.ts";

/** The IOMMU modes and mapping styles. */
export const IOMMU_MODES = ["none", "passthrough", "strict", "lazy"] as const;
export const MAPPINGS = ["two-step", "per-segment", "scatterlist"] as const;

/** Options of `compare`. */
export interface CompareOptions extends Omit<JobOptions, "iommu" | "mapping" | "kernel"> {
  iommu?: (typeof IOMMU_MODES)[number][];
  mapping?: (typeof MAPPINGS)[number][];
  /** Several Linux releases: each cell runs under each (`--kernel 6.18,6.19`). */
  kernel?: string[];
  json?: boolean;
  csv?: boolean;
  html?: string;
  costs?: string;
  percentiles?: number[];
}

/** Runs the matrix; returns the exit code (1 when a cell failed verification). */
export function compare(file: string | undefined, opts: CompareOptions, io: CommandIo): number {
  const modes = opts.iommu ?? [...IOMMU_MODES];
  const mappings = opts.mapping ?? [...MAPPINGS];
  if (opts.html !== undefined) checkWritable(opts.html, "--html");
  const kernels: (string | undefined)[] = opts.kernel ?? [undefined];
  const byKernel = opts.kernel !== undefined;
  const first = loadJob(file, {
    ...opts,
    kernel: kernels[0],
    iommu: modes[0] ?? "lazy",
    mapping: mappings[0] ?? "two-step",
  });
  const costs = loadCosts(opts.costs, first.machine.profile);
  // Every job is checked before the first one runs.
  const jobs = modes.flatMap((mode) =>
    mappings.flatMap((mapping) =>
      kernels.map((kernel) => ({
        mode,
        mapping,
        job: loadJob(file, { ...opts, kernel, iommu: mode, mapping }),
      })),
    ),
  );
  const cells: CompareCell[] = [];
  const progress = opts.json || opts.csv ? null : progressLine(io, "compare", "I/Os");
  for (const [i, { mode, mapping, job }] of jobs.entries()) {
    const what = `cell ${i + 1}/${jobs.length} ${byKernel ? `${job.kernel} ` : ""}${mode} / ${mapping}`;
    cells.push({
      iommu: mode,
      mapping,
      ...(byKernel ? { kernel: job.kernel } : {}),
      result: runJob(job, {
        costs,
        ...(opts.percentiles ? { percentiles: opts.percentiles } : {}),
        ...(progress ? { onProgress: (d: number, t: number) => progress.update(d, t, what) } : {}),
      }),
    });
  }
  progress?.end();
  if (opts.json) {
    const base = cells[0]?.result.cpuNsPerIo ?? 0;
    io.stdout(
      `${JSON.stringify(
        {
          cells: cells.map((c) => ({
            ...(c.kernel !== undefined ? { kernel: c.kernel } : {}),
            iommu: c.iommu,
            mapping: c.mapping,
            cpuRatioToFirst: base > 0 ? c.result.cpuNsPerIo / base : null,
            result: { ...c.result, costTable: undefined },
          })),
          costTable: costs,
          ...(byKernel ? { kernelDifferences: kernelDifferences(cells) } : {}),
        },
        null,
        2,
      )}\n`,
    );
  } else if (opts.csv) {
    const ps = cells[0]?.result.percentiles ?? [];
    io.stdout(`${runCsvHeader(ps)}\n`);
    for (const c of cells) io.stdout(`${runCsvRow(c.result, ps)}\n`);
  } else {
    io.stdout(formatCompare(cells, io.color));
  }
  if (opts.html !== undefined) writeOut(opts.html, compareHtml(cells));
  return cells.every((c) => c.result.verify.ok && c.result.faults === 0) ? 0 : 1;
}
