/** Human-readable reports of runs and comparisons. */
import { COST_CATEGORIES } from "./cost.ts";
import { effectiveIommuMode, forcedModeReason, ioQueuesOf } from "./machine.ts";
import { bytes, fixed, paint, si, table } from "./format.ts";
import type { DirectionReport } from "./results.ts";
import type { BoundBy, RunResult } from "./run.ts";
import type { LatencySummary } from "./stats.ts";

/** Describes the job in one line. */
export function jobLine(r: RunResult): string {
  const j = r.job;
  const bs =
    typeof j.workload.bs === "object" ? JSON.stringify(j.workload.bs) : String(j.workload.bs);
  const eff = effectiveIommuMode(j);
  const why = forcedModeReason(j);
  const iommu = why === null ? j.iommu.mode : `${eff} (asked ${j.iommu.mode}; ${why})`;
  const extra: string[] = [`profile ${j.machine.profile}`, `completion ${j.host.completion}`];
  if (j.machine.controllers > 1) extra.push(`${j.machine.controllers} controllers`);
  const queues = ioQueuesOf(j);
  if (queues < j.machine.cpus)
    extra.push(
      `${queues} I/O queue${queues === 1 ? "" : "s"}${j.machine.controllers > 1 ? " per controller" : ""} for ${j.machine.cpus} CPUs`,
    );
  return `${j.name}: ${j.workload.rw} bs=${bs} iodepth=${j.workload.iodepth} cpus=${j.machine.cpus} | IOMMU ${iommu} | ${j.host.mapping} | SGL ${j.controller.sgl} | buffers ${j.workload.buffers} | ${extra.join(" | ")}`;
}

/** The job line of a comparison: what all its cells share (not the IOMMU mode or the mapping). */
export function compareJobLine(r: RunResult): string {
  return jobLine(r).replace(/ \| IOMMU [^|]+\| [^|]+\|/, " |");
}

/** A fraction (0..1) as a percentage with one decimal: "92.1 %". */
export function percent(u: number): string {
  return `${fixed(100 * u, 1)} %`;
}

/** The bound of a run: "CPU 0 (92.1 %)", "queue depth × latency (99.8 %)". */
export function boundText(b: BoundBy): string {
  const busiest =
    b.busiest === undefined
      ? ""
      : `; busiest: ${b.busiest.resource} at ${percent(b.busiest.utilisation)}`;
  return `${b.resource} (${percent(b.utilisation)}${busiest})`;
}

const SHORT_BOUND: Readonly<Record<string, string>> = {
  "queue depth × latency": "qd",
  "device bandwidth": "dev-bw",
  "device command rate": "dev-cmd",
  "iommu-invalidation-queue": "inval-q",
  "iova-tree-lock": "iova-tree",
  "rcache-depot-lock": "depot",
  "fq-lock": "fq-lock",
  "swiotlb-area-lock": "swiotlb",
  "nvme-sq-lock": "sq-lock",
};

/** The bound in a few characters, for tables: "qd 100%", "CPU0 92%", "inval-q 97%". */
export function shortBound(b: BoundBy): string {
  const name = SHORT_BOUND[b.resource] ?? b.resource.replace(/^CPU /, "CPU");
  return `${name} ${fixed(100 * b.utilisation, 0)}%`;
}

/** What the ramp left out, or null without one: "first 2000 I/Os" / "first 10ms (3620 I/Os)". */
export function rampText(r: RunResult): string | null {
  if (r.rampIos <= 0) return null;
  const ramp = r.job.workload.ramp;
  const what =
    typeof ramp === "number" ? `first ${r.rampIos} I/Os` : `first ${ramp} (${r.rampIos} I/Os)`;
  return `${what} run and left out of every statistic`;
}

/** The queue depth achieved: "31.9 of 32 (device side 31.7)". */
export function queueDepthText(r: RunResult): string {
  return `${fixed(r.qd.mean, 1)} of ${r.qd.configured} (device side ${fixed(r.qd.deviceMean, 1)})`;
}

/** The latency columns the reports print, fio's order: min, mean, stdev, the percentiles, max. */
export function latencyColumns(percentiles: readonly number[]): string[] {
  return ["min", "mean", "stdev", ...percentiles.map((p) => `p${p}`), "max"];
}

/** One latency row in µs, two decimals, in `latencyColumns` order. */
export function latencyCells(s: LatencySummary, percentiles: readonly number[]): string[] {
  const p = (k: number) => s.percentilesUs[String(k)] ?? 0;
  return [s.minUs, s.meanUs, s.stdevUs, ...percentiles.map(p), s.maxUs].map((v) => fixed(v, 2));
}

/** fio's "IO depths" line: the share of submissions at each depth bucket, "1=0.1%, …, 32=98.3%". */
export function depthsText(r: RunResult): string {
  return Object.entries(r.qd.distribution)
    .map(([k, v]) => `${k}=${fixed(v, 1)}%`)
    .join(", ");
}

/** A direction's row in the result table: "14.0K IOPS, 57.3 MB/s (2000 I/Os)". */
function directionText(d: DirectionReport): string {
  return `${si(d.iops)} IOPS, ${fixed(d.bandwidthMBps, 1)} MB/s (${d.ios} I/Os${d.errors > 0 ? `, ${d.errors} failed` : ""})`;
}

/** The device rows: data pipe, command pipeline (with `controller.maxIops`), IOMMU walks. */
export function deviceRows(r: RunResult): string[][] {
  const several = r.job.machine.controllers > 1;
  const rows = [
    [
      "device data pipe",
      `${percent(r.device.bandwidthUtilisation)} busy of ${r.job.controller.bandwidthMBps} MB/s${several ? " (busiest controller)" : ""}`,
    ],
  ];
  const maxIops = r.job.controller.maxIops;
  if (maxIops !== undefined)
    rows.push([
      "device commands",
      `${percent(r.device.commandUtilisation)} of ${si(maxIops)} IOPS${several ? " (busiest controller)" : ""}`,
    ]);
  rows.push(["IOMMU walk per I/O", `${fixed(r.device.walkNsPerIo, 1)} ns`]);
  return rows;
}

/**
 * The shared resources table, lock_stat style: the kinds acquired at all, with acquisitions per
 * I/O, contended share, utilisation of the busiest instance (named when a kind has several),
 * hold and wait time per I/O and the longest wait.
 */
export function resourceTable(r: RunResult): { head: string[]; rows: string[][] } {
  const kinds = r.resources.filter((x) => x.acquisitions > 0);
  const several = kinds.some((x) => x.instances > 1);
  const head = [
    "shared resource",
    "instances",
    "acq/IO",
    "contended",
    "util",
    "hold ns/IO",
    "wait ns/IO",
    "max wait µs",
    ...(several ? ["busiest"] : []),
  ];
  const rows = kinds.map((x) => [
    x.name,
    String(x.instances),
    fixed(r.ios > 0 ? x.acquisitions / r.ios : 0, 3),
    `${fixed((100 * x.contended) / x.acquisitions, 1)}%`,
    `${fixed(100 * x.utilisation, 1)}%`,
    fixed(x.holdNsPerIo, 1),
    fixed(x.waitNsPerIo, 1),
    fixed(x.maxWaitNs / 1000, 2),
    ...(several ? [x.instances > 1 ? x.busiest : ""] : []),
  ]);
  return { head, rows };
}

/** The report of one run. */
export function formatRun(r: RunResult, color: boolean): string {
  const out: string[] = [];
  out.push(paint(color, "bold", jobLine(r)));
  out.push("");
  const ramp = rampText(r);
  out.push(
    table(
      ["result", "value"],
      [
        ["I/Os", `${r.ios} (${r.reads} reads, ${r.writes} writes)`],
        ...(ramp === null ? [] : [["ramp", ramp]]),
        ["IOPS", si(r.iops)],
        ["bandwidth", `${fixed(r.bandwidthMBps, 1)} MB/s`],
        ["bound by", paint(color, "bold", boundText(r.boundBy))],
        ...(r.read !== null && r.write !== null
          ? [
              ["read", directionText(r.read)],
              ["write", directionText(r.write)],
            ]
          : []),
        ["queue depth", queueDepthText(r)],
        ["IO depths", depthsText(r)],
        ["simulated time", `${fixed(r.simulatedNs / 1e6, 3)} ms`],
        ["CPU per I/O", `${fixed(r.cpuNsPerIo, 1)} ns`],
        ...deviceRows(r),
        ["host memory per I/O", bytes(r.hostMemoryPerIo)],
        [
          "IOMMU page tables",
          r.pageTables === null
            ? "-"
            : `${bytes(r.pageTables.bytes)} (${r.pageTables.tables} tables)`,
        ],
        ["IOTLB hit rate", r.iotlbHitRate === null ? "-" : `${fixed(100 * r.iotlbHitRate, 1)}%`],
        ["IOMMU faults", String(r.faults)],
        [
          "I/O errors",
          r.errors === 0
            ? "0"
            : `${r.errors} (${Object.entries(r.errorCauses)
                .map(([k, v]) => `${v} ${k}`)
                .join("; ")})`,
        ],
        [
          "verify",
          r.verify.enabled
            ? r.verify.ok
              ? `ok (${bytes(r.verify.checkedBytes)} checked)`
              : paint(
                  color,
                  "red",
                  r.errors > 0
                    ? `FAILED: ${r.errors} I/Os failed${r.verify.mismatches > 0 ? `, ${r.verify.mismatches} sectors differ` : ""}`
                    : `FAILED: ${r.verify.mismatches} sectors differ`,
                )
            : "off",
        ],
      ],
      color,
    ),
  );
  out.push("");
  out.push(
    table(
      ["latency (µs)", ...latencyColumns(r.percentiles)],
      [
        ["slat", ...latencyCells(r.slat, r.percentiles)],
        ["clat", ...latencyCells(r.clat, r.percentiles)],
        ["lat", ...latencyCells(r.lat, r.percentiles)],
        // A mixed job also gets fio's per-direction rows.
        ...(r.read !== null && r.write !== null
          ? (["read", "write"] as const).flatMap((dir) => {
              const d = r[dir] as DirectionReport;
              return [
                [`${dir} clat`, ...latencyCells(d.clat, r.percentiles)],
                [`${dir} lat`, ...latencyCells(d.lat, r.percentiles)],
              ];
            })
          : []),
      ],
      color,
    ),
  );
  out.push(
    paint(
      color,
      "dim",
      "slat: ready to doorbell; clat: doorbell to completion handled; lat: ready to completion handled",
    ),
  );
  out.push("");
  const res = resourceTable(r);
  out.push(table(res.head, res.rows, color));
  out.push(
    paint(
      color,
      "dim",
      "util: time the busiest instance was held over the measured time; wait: time CPUs spun for it",
    ),
  );
  out.push("");
  const cats = COST_CATEGORIES.filter((c) => r.cpuNsPerIoByCategory[c] > 0);
  out.push(
    table(
      ["CPU time per I/O", "ns", "share"],
      cats.map((c) => [
        c,
        fixed(r.cpuNsPerIoByCategory[c], 1),
        `${fixed((100 * r.cpuNsPerIoByCategory[c]) / Math.max(1e-9, r.cpuNsPerIo), 1)}%`,
      ]),
      color,
    ),
  );
  out.push("");
  const interesting = [
    "iova.allocRcacheHit",
    "iova.allocTree",
    "pgtable.pteWrites",
    "pgtable.tablePagesAllocated",
    "domain.syncMapCalls",
    "domain.rangeInvalidations",
    "domain.flushAlls",
    "fq.queued",
    "dma.maps",
    "dma.iovaLinks",
    "dma.iovaSyncs",
    "swiotlb.bouncedBytesToDevice",
    "nvmehost.sqDoorbells",
    "nvmehost.prpCommands",
    "nvmehost.sglCommands",
    "nvmehost.smallDescriptors",
    "nvmehost.largeDescriptors",
    "nvmehost.vecArrays",
    "nvmehost.sgTables",
    "nvmectrl.descriptorReads",
    "devdma.reads",
    "iotlb.misses",
  ].filter((k) => r.perIo[k] !== undefined);
  out.push(
    table(
      ["events per I/O", "mean"],
      interesting.map((k) => [k, fixed(r.perIo[k] ?? 0, 3)]),
      color,
    ),
  );
  if (r.exposure) {
    out.push("");
    out.push(
      r.exposure.mode === "lazy"
        ? `lazy exposure window: max ${fixed(r.exposure.maxUs, 1)} µs, p99 ${fixed(r.exposure.p99Us, 1)} µs; stale IOTLB hits ${r.exposure.staleHits}`
        : `exposure window: none (strict: every unmap is invalidated before its IOVA is freed); stale IOTLB hits ${r.exposure.staleHits}`,
    );
  }
  out.push("");
  out.push(
    table(
      ["cpu", "I/Os", "IOPS", "busy", "wait"],
      r.perCpu.map((c) => [
        String(c.cpu),
        String(c.ios),
        si(c.iops),
        `${fixed(c.busyPct, 1)}%`,
        `${fixed(c.waitPct, 1)}%`,
      ]),
      color,
    ),
  );
  for (const d of r.debugReports.slice(0, 10)) out.push(paint(color, "yellow", `dma-debug: ${d}`));
  out.push("");
  out.push(
    paint(
      color,
      "dim",
      `simulator: ${si(r.simulator.iosPerSecond)} simulated I/Os per host second (${fixed(r.simulator.wallMs, 0)} ms)`,
    ),
  );
  return out.join("\n") + "\n";
}

/** One cell of a comparison. */
export interface CompareCell {
  readonly iommu: string;
  readonly mapping: string;
  /** The Linux release of the cell, when `compare --kernel` compares several. */
  readonly kernel?: string;
  readonly result: RunResult;
}

/**
 * What changes between kernel versions for the same IOMMU mode and mapping: per group of cells
 * that differ only in their kernel, the per-I/O counters whose values differ, largest relative
 * change first (at most `limit` per group).
 */
export function kernelDifferences(
  cells: readonly CompareCell[],
  limit = 10,
): {
  iommu: string;
  mapping: string;
  counters: { name: string; values: Record<string, number> }[];
}[] {
  const groups = new Map<string, CompareCell[]>();
  for (const c of cells) {
    if (c.kernel === undefined) continue;
    const k = `${c.iommu}\u0000${c.mapping}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [c]);
    else g.push(c);
  }
  const out = [];
  for (const g of groups.values()) {
    if (g.length < 2) continue;
    const names = new Set(g.flatMap((c) => Object.keys(c.result.perIo)));
    const diffs: { name: string; values: Record<string, number>; spread: number }[] = [];
    for (const name of names) {
      const vals = g.map((c) => c.result.perIo[name] ?? 0);
      const lo = Math.min(...vals);
      const hi = Math.max(...vals);
      if (hi - lo <= 1e-9 * Math.max(1, Math.abs(hi))) continue;
      diffs.push({
        name,
        values: Object.fromEntries(g.map((c, i) => [c.kernel as string, vals[i] as number])),
        spread: (hi - lo) / Math.max(Math.abs(hi), Math.abs(lo), 1e-12),
      });
    }
    diffs.sort((a, b) => b.spread - a.spread || a.name.localeCompare(b.name));
    const first = g[0] as CompareCell;
    out.push({
      iommu: first.iommu,
      mapping: first.mapping,
      counters: diffs.slice(0, limit).map(({ name, values }) => ({ name, values })),
    });
  }
  return out;
}

/** The comparison table, with ratios to the first cell. */
export function formatCompare(cells: readonly CompareCell[], color: boolean): string {
  const base = cells[0]?.result;
  const kernels = new Set(cells.map((c) => c.kernel ?? ""));
  const byKernel = kernels.size > 1;
  const rows = cells.map((c) => {
    const r = c.result;
    const ratio =
      base && base.cpuNsPerIo > 0 ? `${fixed(r.cpuNsPerIo / base.cpuNsPerIo, 2)}x` : "-";
    return [
      ...(byKernel ? [c.kernel ?? "", fixed(r.perIo["nvmehost.submitted"] ?? 0, 2)] : []),
      effectiveIommuMode(r.job) === c.iommu ? c.iommu : `${c.iommu}*`,
      c.mapping,
      si(r.iops),
      fixed(r.cpuNsPerIo, 1),
      ratio,
      shortBound(r.boundBy),
      fixed(r.clat.meanUs, 1),
      fixed(r.latencyUs.p99, 1),
      fixed(r.perIo["domain.syncMapCalls"] ?? 0, 2),
      fixed(r.perIo["domain.rangeInvalidations"] ?? 0, 2),
      fixed(r.perIo["pgtable.pteWrites"] ?? 0, 1),
      bytes(r.hostMemoryPerIo),
      r.verify.enabled ? (r.verify.ok ? "ok" : "FAILED") : "off",
    ];
  });
  const head = [
    ...(byKernel ? ["kernel", "cmd/IO"] : []),
    "iommu",
    "mapping",
    "IOPS",
    "CPU ns/IO",
    "vs first",
    "bound",
    "clat µs",
    "p99 µs",
    "sync/IO",
    "inval/IO",
    "PTE/IO",
    "mem/IO",
    "verify",
  ];
  const first = cells[0] ? compareJobLine(cells[0].result) : "";
  const legend = [
    "bound: what limits the run (qd: queue depth × latency); clat µs: mean; p99 µs: of lat",
    "sync/IO: sync-map calls; inval/IO: range invalidations; PTE/IO: PTE writes; mem/IO: host memory",
  ];
  // A row whose device got another mode than asked is marked "*", with the reason below.
  const forced = new Set(
    cells
      .filter((c) => effectiveIommuMode(c.result.job) !== c.iommu)
      .map(
        (c) =>
          `${c.iommu}*: the device gets ${effectiveIommuMode(c.result.job)} (${forcedModeReason(c.result.job) ?? ""})`,
      ),
  );
  legend.push(...forced);
  // Rows that differ only in the mapping style but not in what they cost: every I/O was one
  // segment, which every style maps alone (nvme_pci_setup_data_simple, dma_map_phys).
  const single = cells.filter((c) => (c.result.perIo["nvmehost.singleSegment"] ?? 0) >= 1);
  if (single.length === cells.length && new Set(cells.map((c) => c.mapping)).size > 1)
    legend.push(
      "every I/O was one segment, which every mapping style maps with one dma_map_phys",
      "(nvme_pci_setup_data_simple): rows of the same mode cost the same",
    );
  const legendText = legend.map((l) => paint(color, "dim", l));
  let changes = "";
  if (byKernel) {
    for (const g of kernelDifferences(cells)) {
      const lines = g.counters.map(
        (d) =>
          `  ${d.name}: ${Object.entries(d.values)
            .map(([k, v]) => `${k} ${fixed(v, 3)}`)
            .join(", ")}`,
      );
      changes += `\n${paint(color, "bold", `what changes between kernels (${g.iommu} / ${g.mapping}), per I/O:`)}\n${
        lines.length > 0 ? lines.join("\n") : "  nothing: every counter is the same"
      }\n`;
    }
  }
  return `${paint(color, "bold", first)}\n\n${table(head, rows, color)}\n${legendText.join("\n")}\n${changes}`;
}
