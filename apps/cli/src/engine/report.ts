/** Human-readable reports of runs and comparisons. */
import { COST_CATEGORIES } from "./cost.ts";
import { effectiveIommuMode } from "./machine.ts";
import { bytes, fixed, paint, si, table } from "./format.ts";
import type { RunResult } from "./run.ts";

/** Describes the job in one line. */
export function jobLine(r: RunResult): string {
  const j = r.job;
  const bs =
    typeof j.workload.bs === "object" ? JSON.stringify(j.workload.bs) : String(j.workload.bs);
  const eff = effectiveIommuMode(j);
  const iommu =
    eff === j.iommu.mode
      ? j.iommu.mode
      : `${eff} (asked ${j.iommu.mode}; untrusted devices get a strict domain)`;
  return `${j.name}: ${j.workload.rw} bs=${bs} iodepth=${j.workload.iodepth} cpus=${j.machine.cpus} | IOMMU ${iommu} | ${j.host.mapping} | SGL ${j.controller.sgl} | buffers ${j.workload.buffers}`;
}

/** The job line of a comparison: what all its cells share (not the IOMMU mode or the mapping). */
export function compareJobLine(r: RunResult): string {
  return jobLine(r).replace(/ \| IOMMU [^|]+\| [^|]+\|/, " |");
}

/** The report of one run. */
export function formatRun(r: RunResult, color: boolean): string {
  const out: string[] = [];
  out.push(paint(color, "bold", jobLine(r)));
  out.push("");
  out.push(
    table(
      ["result", "value"],
      [
        ["I/Os", `${r.ios} (${r.reads} reads, ${r.writes} writes)`],
        ["IOPS", si(r.iops)],
        ["bandwidth", `${fixed(r.bandwidthMBps, 1)} MB/s`],
        ["simulated time", `${fixed(r.simulatedNs / 1e6, 3)} ms`],
        ["CPU per I/O", `${fixed(r.cpuNsPerIo, 1)} ns`],
        ["host memory per I/O", bytes(r.hostMemoryPerIo)],
        [
          "IOMMU page tables",
          r.pageTables === null
            ? "-"
            : `${bytes(r.pageTables.bytes)} (${r.pageTables.tables} tables)`,
        ],
        ["IOTLB hit rate", r.iotlbHitRate === null ? "-" : `${fixed(100 * r.iotlbHitRate, 1)}%`],
        ["IOMMU faults", String(r.faults)],
        ["I/O errors", String(r.errors)],
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
      ["latency", "µs"],
      [
        ["p50", fixed(r.latencyUs.p50, 2)],
        ["p90", fixed(r.latencyUs.p90, 2)],
        ["p99", fixed(r.latencyUs.p99, 2)],
        ["p99.9", fixed(r.latencyUs.p999, 2)],
        ["max", fixed(r.latencyUs.max, 2)],
      ],
      color,
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
  if (r.perCpu.length > 1) {
    out.push("");
    out.push(
      table(
        ["cpu", "I/Os", "IOPS", "busy"],
        r.perCpu.map((c) => [String(c.cpu), String(c.ios), si(c.iops), `${fixed(c.busyPct, 1)}%`]),
        color,
      ),
    );
  }
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
  readonly result: RunResult;
}

/** The comparison table, with ratios to the first cell. */
export function formatCompare(cells: readonly CompareCell[], color: boolean): string {
  const base = cells[0]?.result;
  const rows = cells.map((c) => {
    const r = c.result;
    const ratio =
      base && base.cpuNsPerIo > 0 ? `${fixed(r.cpuNsPerIo / base.cpuNsPerIo, 2)}x` : "-";
    return [
      c.iommu,
      c.mapping,
      si(r.iops),
      fixed(r.cpuNsPerIo, 1),
      ratio,
      fixed(r.latencyUs.p99, 1),
      fixed(r.perIo["domain.syncMapCalls"] ?? 0, 2),
      fixed(r.perIo["domain.rangeInvalidations"] ?? 0, 2),
      fixed(r.perIo["pgtable.pteWrites"] ?? 0, 1),
      bytes(r.hostMemoryPerIo),
      r.verify.enabled ? (r.verify.ok ? "ok" : "FAILED") : "off",
    ];
  });
  const head = [
    "iommu",
    "mapping",
    "IOPS",
    "CPU ns/IO",
    "vs first",
    "p99 µs",
    "sync-map/IO",
    "inval/IO",
    "PTE writes/IO",
    "mem/IO",
    "verify",
  ];
  const first = cells[0] ? compareJobLine(cells[0].result) : "";
  return `${paint(color, "bold", first)}\n\n${table(head, rows, color)}\n`;
}
