/**
 * The validation set: published measurements of the Linux DMA mapping stack, each with the
 * replay that reproduces its setup on the simulated machine (apps/cli/validation/set.json,
 * described row by row in docs/validation.md). Calibration rows are the figures the cost tables of
 * profiles.ts may be set from; validation rows are predicted from those tables and never fitted.
 * `runValidation` replays rows and reports simulated against published with the signed error
 * `(simulated - published) / published`, whatever it comes out as.
 *
 * A replay is a workload run (`{ run: job }`, optionally over a named base job of the set) whose
 * `metric` is a field of its RunResult, a dma_map_benchmark run (`{ mapBench: options }`) whose
 * metric is a field of its MapBenchResult, or the ratio of two such replays (`{ ratio: [a, b] }`,
 * the same metric of each) for figures published as ratios.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { COST_CATEGORIES, RESOURCE_KINDS } from "./cost.ts";
import { paint, si, table } from "./format.ts";
import { type Job, JobError, mergeJob, parseJob } from "./job.ts";
import { type MapBenchOptions, type MapBenchResult, runMapBench } from "./map-bench.ts";
import { PROFILE_NAMES, type ProfileName } from "./profiles.ts";
import type { ResourceReport } from "./resources.ts";
import type { RunResult } from "./results.ts";
import { runJob } from "./run.ts";

/** Where the shipped set lives: from src/engine/ (tests) and dist/engine/ (the built CLI) alike. */
export const VALIDATION_SET_URL = new URL("../../validation/set.json", import.meta.url);

/** The two roles of a row. */
export const VALIDATION_ROLES = ["calibration", "validation"] as const;
/** A row's role: a calibration figure may set cost entries; a validation figure never does. */
export type ValidationRole = (typeof VALIDATION_ROLES)[number];

/** Metrics of a workload run, by path into RunResult. */
const RUN_FIELDS: Readonly<Record<string, (r: RunResult) => number>> = {
  iops: (r) => r.iops,
  bandwidthMBps: (r) => r.bandwidthMBps,
  cpuNsPerIo: (r) => r.cpuNsPerIo,
  hostMemoryPerIo: (r) => r.hostMemoryPerIo,
  "lat.meanUs": (r) => r.lat.meanUs,
  "clat.meanUs": (r) => r.clat.meanUs,
  "slat.meanUs": (r) => r.slat.meanUs,
  "latencyUs.p50": (r) => r.latencyUs.p50,
  "latencyUs.p99": (r) => r.latencyUs.p99,
  "qd.mean": (r) => r.qd.mean,
  "device.walkNsPerIo": (r) => r.device.walkNsPerIo,
  "device.commandUtilisation": (r) => r.device.commandUtilisation,
};

/** Fields of `resources[kind]`; the per-acquisition ones are derived (lock_stat's hold/acquire). */
const RESOURCE_FIELDS: Readonly<Record<string, (q: ResourceReport, ios: number) => number>> = {
  acquisitions: (q) => q.acquisitions,
  contended: (q) => q.contended,
  utilisation: (q) => q.utilisation,
  waitNsPerIo: (q) => q.waitNsPerIo,
  holdNsPerIo: (q) => q.holdNsPerIo,
  maxWaitNs: (q) => q.maxWaitNs,
  holdNsPerAcquisition: (q, ios) => (q.holdNsPerIo * ios) / q.acquisitions,
  waitNsPerAcquisition: (q, ios) => (q.waitNsPerIo * ios) / q.acquisitions,
};

/** Metrics of a dma_map_benchmark run: fields of MapBenchResult. */
const MAP_BENCH_FIELDS: Readonly<Record<string, (r: MapBenchResult) => number>> = {
  /** What the kernel's tool prints: the mean of 100-ns-floored samples, in µs. */
  printedMapUs: (r) => r.avgMap100ns / 10,
  printedUnmapUs: (r) => r.avgUnmap100ns / 10,
  avgMapNs: (r) => r.avgMapNs,
  avgUnmapNs: (r) => r.avgUnmapNs,
  mapStddevNs: (r) => r.mapStddevNs,
  unmapStddevNs: (r) => r.unmapStddevNs,
  loopsPerThreadPerSecond: (r) => r.loopsPerThreadPerSecond,
};

const RESOURCE_METRIC = /^resources\[([a-z-]+)\]\.(\w+)$/;
const CATEGORY_METRIC = /^cpuNsPerIoByCategory\.([a-z-]+)$/;

/** The reader of a run metric, or why there is none. */
function runMetric(metric: string): ((r: RunResult) => number) | string {
  const field = RUN_FIELDS[metric];
  if (field) return field;
  const cat = CATEGORY_METRIC.exec(metric);
  if (cat) {
    const c = COST_CATEGORIES.find((x) => x === cat[1]);
    if (c === undefined) return `unknown cost category "${cat[1]}"`;
    return (r) => r.cpuNsPerIoByCategory[c];
  }
  const res = RESOURCE_METRIC.exec(metric);
  if (res) {
    const kind = RESOURCE_KINDS.find((k) => k === res[1]);
    if (kind === undefined) return `unknown resource "${res[1]}"`;
    const f = RESOURCE_FIELDS[res[2] ?? ""];
    if (!f)
      return `unknown resource field "${res[2]}" (${Object.keys(RESOURCE_FIELDS).join(", ")})`;
    return (r) => {
      const q = r.resources.find((x) => x.name === kind);
      return q === undefined ? Number.NaN : f(q, r.ios);
    };
  }
  return `not a run metric (${Object.keys(RUN_FIELDS).join(", ")}, cpuNsPerIoByCategory.<category>, resources[<kind>].<field>)`;
}

const sourceSchema = z
  .object({
    author: z.string().min(1),
    date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected YYYY-MM-DD"),
    title: z.string().min(1),
    /** The mailing list(s) it was posted to. */
    list: z.string().min(1).optional(),
    messageId: z.string().min(3).optional(),
    url: z.url().optional(),
  })
  .strict()
  .refine((s) => s.messageId !== undefined || s.url !== undefined, {
    message: "a source needs a messageId or a url",
  });

const mapBenchSchema = z
  .object({
    profile: z.enum(PROFILE_NAMES),
    iommu: z.enum(["none", "passthrough", "strict", "lazy"]).default("strict"),
    threads: z.number().int().min(1).max(1024).default(1),
    seconds: z.number().int().min(1).max(300).default(1),
    granule: z.number().int().min(1).max(1024).default(1),
    mode: z.union([z.literal(0), z.literal(1)]).default(0),
    dir: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
    bits: z.number().int().min(20).max(64).default(32),
    node: z.number().int().min(-1).default(-1),
    delayNs: z.number().int().min(0).max(10_000_000).default(0),
    maxLoops: z.number().int().min(1).max(1e8).optional(),
  })
  .strict();

const jobObject = z.record(z.string(), z.unknown());
const runReplaySchema = z.object({ run: jobObject, base: z.string().min(1).optional() }).strict();
const mapBenchReplaySchema = z.object({ mapBench: mapBenchSchema }).strict();
const leafSchema = z.union([runReplaySchema, mapBenchReplaySchema]);
const replaySchema = z.union([
  runReplaySchema,
  mapBenchReplaySchema,
  z.object({ ratio: z.tuple([leafSchema, leafSchema]) }).strict(),
]);

const rowSchema = z
  .object({
    id: z.string().regex(/^[A-Z]\d+[a-z]?$/, 'expected an id such as "C1a" or "P3"'),
    role: z.enum(VALIDATION_ROLES),
    /** The key of its entry in `sources`. */
    source: z.string().min(1),
    /** What the source measured, in its words where possible. */
    setup: z.string().min(1),
    /** What the replay assumes where the source is silent. */
    assumptions: z.string().min(1),
    published: z.number().positive(),
    unit: z.string().min(1),
    metric: z.string().min(1),
    replay: replaySchema,
  })
  .strict();

/** The file format of set.json. */
export const validationSetSchema = z
  .object({
    description: z.string().optional(),
    /** Where the figures come from, by key. */
    sources: z.record(z.string(), sourceSchema),
    /** Named jobs a run replay may start from (`base`); its `run` is merged over them. */
    bases: z.record(z.string(), jobObject).default({}),
    rows: z.array(rowSchema).min(1),
  })
  .strict();

/** A row as written in set.json. */
export type ValidationRowInput = z.input<typeof rowSchema>;
/** Where a published figure comes from. */
export type ValidationSource = z.infer<typeof sourceSchema>;

/** One side of a replay, ready to run. */
export type ValidationLeaf =
  | { readonly kind: "run"; readonly job: Job; readonly read: (r: RunResult) => number }
  | {
      readonly kind: "mapBench";
      readonly options: MapBenchOptions;
      readonly read: (r: MapBenchResult) => number;
    };

/** A row of the set, checked and ready to replay. */
export interface ValidationRow {
  readonly id: string;
  readonly role: ValidationRole;
  readonly source: ValidationSource;
  readonly setup: string;
  readonly assumptions: string;
  readonly published: number;
  readonly unit: string;
  /** The metric path, as written. */
  readonly metric: string;
  /** One replay, or the two of a ratio (numerator first). */
  readonly replay: readonly [ValidationLeaf] | readonly [ValidationLeaf, ValidationLeaf];
  readonly profile: ProfileName;
}

/** The set, checked. */
export interface ValidationSet {
  readonly description: string;
  readonly rows: readonly ValidationRow[];
}

/** An invalid set: one line per problem, naming the row and field. */
export class ValidationSetError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ValidationSetError";
    this.problems = problems;
  }
}

type LeafInput = z.infer<typeof leafSchema>;

/** Checks a parsed set and prepares its replays: jobs parsed, metrics resolved. */
export function parseValidationSet(input: unknown): ValidationSet {
  const r = validationSetSchema.safeParse(input);
  if (!r.success) {
    throw new ValidationSetError(
      r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(set)"}: ${i.message}`),
    );
  }
  const { sources, bases, rows } = r.data;
  const problems: string[] = [];
  const seen = new Set<string>();
  const out: ValidationRow[] = [];
  for (const row of rows) {
    const at = `row ${row.id}`;
    if (seen.has(row.id)) problems.push(`${at}: duplicate id`);
    seen.add(row.id);
    const source = sources[row.source];
    if (source === undefined) {
      problems.push(`${at}: unknown source "${row.source}"`);
      continue;
    }
    const leaf = (l: LeafInput, where: string): ValidationLeaf | null => {
      if ("mapBench" in l) {
        const read = MAP_BENCH_FIELDS[row.metric];
        if (!read) {
          problems.push(
            `${where}: metric "${row.metric}" is not a map-bench metric (${Object.keys(MAP_BENCH_FIELDS).join(", ")})`,
          );
          return null;
        }
        const { maxLoops, ...o } = l.mapBench;
        return {
          kind: "mapBench",
          options: { ...o, ...(maxLoops !== undefined ? { maxLoops } : {}) },
          read,
        };
      }
      const read = runMetric(row.metric);
      if (typeof read === "string") {
        problems.push(`${where}: metric "${row.metric}": ${read}`);
        return null;
      }
      let merged = l.run;
      if (l.base !== undefined) {
        const base = bases[l.base];
        if (base === undefined) {
          problems.push(`${where}: unknown base job "${l.base}"`);
          return null;
        }
        merged = mergeJob(base, l.run);
      }
      const machine = merged.machine as Record<string, unknown> | undefined;
      if (machine?.profile === undefined) {
        problems.push(`${where}: the job must name machine.profile`);
        return null;
      }
      try {
        return { kind: "run", job: parseJob(merged), read };
      } catch (e) {
        if (!(e instanceof JobError)) throw e;
        for (const p of e.problems) problems.push(`${where}: job: ${p}`);
        return null;
      }
    };
    const leaves =
      "ratio" in row.replay
        ? [leaf(row.replay.ratio[0], `${at} ratio[0]`), leaf(row.replay.ratio[1], `${at} ratio[1]`)]
        : [leaf(row.replay, at)];
    const ok = leaves.filter((x): x is ValidationLeaf => x !== null);
    if (ok.length !== leaves.length) continue;
    const profiles = new Set(
      ok.map((l) =>
        l.kind === "run" ? l.job.machine.profile : (l.options.profile as ProfileName),
      ),
    );
    if (profiles.size > 1) {
      problems.push(`${at}: the two sides of a ratio use different profiles`);
      continue;
    }
    out.push({
      id: row.id,
      role: row.role,
      source,
      setup: row.setup,
      assumptions: row.assumptions,
      published: row.published,
      unit: row.unit,
      metric: row.metric,
      replay: ok as [ValidationLeaf] | [ValidationLeaf, ValidationLeaf],
      profile: [...profiles][0] as ProfileName,
    });
  }
  if (problems.length > 0) throw new ValidationSetError(problems);
  return { description: r.data.description ?? "", rows: out };
}

/** Reads and checks the set shipped with dmasim (or the file at `url`). */
export function loadValidationSet(url: URL = VALIDATION_SET_URL): ValidationSet {
  return parseValidationSet(JSON.parse(readFileSync(url, "utf8")) as unknown);
}

/** Which rows `ids` names: an exact id, or a group ("C1" for C1a, C1b, C1c); `unknown` lists the rest. */
export function selectValidationRows(
  set: ValidationSet,
  ids: readonly string[] | undefined,
): { readonly rows: readonly ValidationRow[]; readonly unknown: readonly string[] } {
  if (ids === undefined) return { rows: set.rows, unknown: [] };
  const chosen = new Set<string>();
  const unknown: string[] = [];
  for (const id of ids) {
    const exact = set.rows.filter((r) => r.id === id);
    const group = set.rows.filter((r) => r.id.length === id.length + 1 && r.id.startsWith(id));
    const hit = exact.length > 0 ? exact : group.filter((r) => /[a-z]$/.test(r.id));
    if (hit.length === 0) unknown.push(id);
    for (const r of hit) chosen.add(r.id);
  }
  return { rows: set.rows.filter((r) => chosen.has(r.id)), unknown };
}

/** What one row came out as. */
export interface ValidationOutcome {
  readonly id: string;
  readonly role: ValidationRole;
  readonly profile: ProfileName;
  /** The metric as shown: the path, with " ratio" for a ratio of two replays. */
  readonly metric: string;
  readonly unit: string;
  readonly published: number;
  readonly simulated: number;
  /** (simulated - published) / published. */
  readonly error: number;
  /** Author, list, date, title and Message-ID or URL, on one line. */
  readonly source: string;
  /** Author and date: the short form the markdown table cites. */
  readonly cite: string;
}

/** The source on one line. */
export function sourceLine(s: ValidationSource): string {
  const where = s.messageId !== undefined ? `Message-ID <${s.messageId}>` : (s.url ?? "");
  const who = s.list === undefined ? s.author : `${s.author} (${s.list})`;
  return [who, s.date, `"${s.title}"`, where].filter((x) => x !== "").join(", ");
}

function runLeaf(l: ValidationLeaf): number {
  return l.kind === "run" ? l.read(runJob(l.job)) : l.read(runMapBench(l.options));
}

/** Replays one row. */
export function runValidationRow(row: ValidationRow): ValidationOutcome {
  const [a, b] = row.replay;
  const simulated = b === undefined ? runLeaf(a) : runLeaf(a) / runLeaf(b);
  if (!Number.isFinite(simulated))
    throw new Error(
      `validation row ${row.id}: metric "${row.metric}" came out as ${simulated} (nothing measured?)`,
    );
  return {
    id: row.id,
    role: row.role,
    profile: row.profile,
    metric: b === undefined ? row.metric : `${row.metric} ratio`,
    unit: row.unit,
    published: row.published,
    simulated,
    error: (simulated - row.published) / row.published,
    source: sourceLine(row.source),
    cite: `${row.source.author}, ${row.source.date}`,
  };
}

/** Replays `rows` in order; `onRow` hears of each before it runs. */
export function runValidation(
  rows: readonly ValidationRow[],
  onRow?: (row: ValidationRow, index: number, total: number) => void,
): ValidationOutcome[] {
  return rows.map((row, i) => {
    onRow?.(row, i, rows.length);
    return runValidationRow(row);
  });
}

/** A value as the tables print it, in the row's unit. */
export function formatValidationValue(v: number, unit: string): string {
  if (unit === "ratio") return v.toFixed(3);
  if (unit === "ns") return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return si(v, 3);
}

/** A signed error as a percentage: "+12.3%", "-4.0%". */
export function formatValidationError(e: number): string {
  const pct = (e * 100).toFixed(1);
  return pct.startsWith("-") || /^0\.0$/.test(pct) ? `${pct}%` : `+${pct}%`;
}

const HEAD = ["id", "role", "profile", "metric", "unit", "published", "simulated", "error"];

function cells(o: ValidationOutcome): string[] {
  return [
    o.id,
    o.role,
    o.profile,
    o.metric,
    o.unit,
    formatValidationValue(o.published, o.unit),
    formatValidationValue(o.simulated, o.unit),
    formatValidationError(o.error),
  ];
}

/** The markdown table docs/validation.md holds between its markers. */
export function validationMarkdown(outcomes: readonly ValidationOutcome[]): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const head = [...HEAD, "source"];
  const align = head.map((h) => (["published", "simulated", "error"].includes(h) ? "--:" : "---"));
  const line = (c: readonly string[]) => `| ${c.map(esc).join(" | ")} |`;
  return [
    line(head),
    `|${align.join("|")}|`,
    ...outcomes.map((o) => {
      const c = cells(o);
      c[3] = o.metric.endsWith(" ratio")
        ? `\`${o.metric.slice(0, -" ratio".length)}\` ratio`
        : `\`${o.metric}\``;
      return line([...c, o.cite]);
    }),
  ]
    .join("\n")
    .concat("\n");
}

/**
 * Rows grouped by source, in order: each source line once, after the ids that cite it.
 */
export function validationLegend(outcomes: readonly ValidationOutcome[]): string[] {
  const groups: { ids: string[]; source: string }[] = [];
  for (const o of outcomes) {
    const last = groups.at(-1);
    if (last?.source === o.source) last.ids.push(o.id);
    else groups.push({ ids: [o.id], source: o.source });
  }
  return groups.map((g) => `${g.ids.join(" ")}: ${g.source}`);
}

/** The text report: one aligned table, then the source of each group of rows. */
export function validationText(outcomes: readonly ValidationOutcome[], color = false): string {
  const legend = validationLegend(outcomes).map((l) => paint(color, "dim", l));
  return `${table(HEAD, outcomes.map(cells), color)}\n\n${legend.join("\n")}\n`;
}
