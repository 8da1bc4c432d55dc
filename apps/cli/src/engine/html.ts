/**
 * Self-contained HTML reports with inline SVG charts: no script, no network access needed to
 * view them.
 */
import { COST_CATEGORIES } from "./cost.ts";
import { bytes, fixed, si } from "./format.ts";
import {
  type CompareCell,
  boundText,
  compareJobLine,
  formatCompare,
  jobLine,
  queueDepthText,
  rampText,
  latencyCells,
  latencyColumns,
  resourceTable,
} from "./report.ts";
import { PALETTE, cdfChart, esc, histogramChart, labelledBars, timeTick } from "./html-charts.ts";
import { page, tableHtml } from "./html-page.ts";
import type { RunResult } from "./run.ts";

/** Horizontal stacked bars: one row per series, segments per category. */
export function stackedBars(
  id: string,
  rows: readonly { label: string; parts: readonly number[] }[],
  categories: readonly string[],
  unit: string,
  width = 900,
): string {
  const rowH = 26;
  const left = 190;
  const height = rows.length * rowH + 40 + Math.ceil(categories.length / 6) * 16;
  const max = Math.max(1e-9, ...rows.map((r) => r.parts.reduce((a, b) => a + b, 0)));
  const scale = (width - left - 80) / max;
  const body = rows
    .map((r, i) => {
      let x = left;
      const y = 10 + i * rowH;
      const segs = r.parts
        .map((p, k) => {
          const w = p * scale;
          const s = `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${PALETTE[k % PALETTE.length]}"><title>${esc(categories[k] ?? "")}: ${fixed(p, 1)} ${esc(unit)}</title></rect>`;
          x += w;
          return s;
        })
        .join("");
      const total = r.parts.reduce((a, b) => a + b, 0);
      return `<text x="4" y="${y + 14}" font-size="11">${esc(r.label)}</text>${segs}<text x="${(x + 4).toFixed(1)}" y="${y + 14}" font-size="11">${esc(fixed(total, 0))} ${esc(unit)}</text>`;
    })
    .join("");
  const legendY = 20 + rows.length * rowH;
  const legend = categories
    .map(
      (c, k) =>
        `<rect x="${left + (k % 6) * 115}" y="${legendY + Math.floor(k / 6) * 16}" width="10" height="10" fill="${PALETTE[k % PALETTE.length]}"/><text x="${left + (k % 6) * 115 + 14}" y="${legendY + Math.floor(k / 6) * 16 + 9}" font-size="10">${esc(c)}</text>`,
    )
    .join("");
  return `<svg id="${esc(id)}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="CPU time per I/O by category">${body}${legend}</svg>`;
}

function categories(r: RunResult): { cats: string[]; parts: number[] } {
  const cats = COST_CATEGORIES.filter((c) => r.cpuNsPerIoByCategory[c] > 0);
  return { cats, parts: cats.map((c) => r.cpuNsPerIoByCategory[c]) };
}

/** The layer each counter scope belongs to, for the report's grouping. */
const LAYER_OF: Readonly<Record<string, string>> = {
  memory: "bvec",
  domain: "iommu",
  pgtable: "iommu",
  iova: "iommu",
  fq: "iommu",
  iotlb: "iommu",
  dma: "dma-core",
  devdma: "dma-core",
  swiotlb: "dma-core",
  "pool.small": "dma-core",
  "pool.large": "dma-core",
  nvmehost: "nvme",
  nvmectrl: "nvme",
  "mempool.vec": "nvme",
  "mempool.sg": "nvme",
  engine: "engine",
};

/** The counters per I/O grouped by layer, largest first within each. */
export function countersByLayer(
  perIo: Readonly<Record<string, number>>,
): [string, [string, number][]][] {
  const groups = new Map<string, [string, number][]>();
  for (const [k, v] of Object.entries(perIo)) {
    const scope = k.slice(0, k.lastIndexOf("."));
    const layer = LAYER_OF[scope] ?? "other";
    const g = groups.get(layer) ?? [];
    g.push([k, v]);
    groups.set(layer, g);
  }
  const order = ["bvec", "iommu", "dma-core", "nvme", "engine", "other"];
  return order
    .filter((l) => groups.has(l))
    .map((l) => [l, (groups.get(l) as [string, number][]).sort((x, y) => y[1] - x[1])]);
}

/** The exposure window row: lazy max/p99, or strict's zero and why. */
function exposureText(r: RunResult): string {
  const e = r.exposure;
  if (e === null) return "- (no IOMMU DMA domain)";
  return e.mode === "lazy"
    ? `max ${fixed(e.maxUs, 1)} µs, p99 ${fixed(e.p99Us, 1)} µs (lazy: unmapped memory stays reachable through stale IOTLB entries until the flush); stale IOTLB hits ${e.staleHits}`
    : `0 (strict: every unmap is invalidated before its IOVA is freed); stale IOTLB hits ${e.staleHits}`;
}

/**
 * The exposure-window section: for lazy mode the distribution of the time from unmap to
 * invalidation over the ranges flushed; for strict mode the zero and its proof (an
 * invalidation for every unmap, before the IOVA is freed, and no stale IOTLB hit).
 */
function exposureSection(r: RunResult): string {
  const e = r.exposure;
  const head = `<h2 id="exposure">Exposure window</h2>`;
  if (e === null)
    return `${head}<p>None: the device has no IOMMU DMA domain (mode ${esc(r.iommu.effective)}), so it reaches memory by physical address and nothing is ever unmapped from it.</p>`;
  const per = (k: string) => fixed(r.perIo[k] ?? 0, 3);
  if (e.mode === "strict")
    return `${head}<p>Zero. Strict mode invalidates the IOTLB for every unmap before the IOVA is freed: ${per("domain.unmapCalls")} IOMMU unmaps per I/O, each followed by its IOTLB sync (${per("domain.iotlbSyncs")} per I/O: ${per("iotlb.invalidateRangeCmds")} range and ${per("iotlb.invalidateAllCmds")} whole-domain invalidations), and ${e.staleHits} DMA served from a stale IOTLB entry.</p>`;
  return `${head}<p>Lazy mode leaves an unmapped buffer reachable through stale IOTLB entries until the flush queue's flush: max ${esc(timeTick(e.maxUs))}, p99 ${esc(timeTick(e.p99Us))} over ${e.ranges} ranges; ${e.staleHits} DMA served from a stale entry.</p>${histogramChart(
    "exposure-chart",
    e.histogram.map((b) => ({ low: b.lowUs, high: b.highUs, count: b.count })),
    timeTick,
    "time from unmap to invalidation, log scale",
    "ranges",
  )}`;
}

/** The HTML report of one run. */
export function runHtml(r: RunResult): string {
  const { cats, parts } = categories(r);
  const ramp = rampText(r);
  const res = resourceTable(r);
  const errors =
    r.errors === 0
      ? "0"
      : `${r.errors} (${Object.entries(r.errorCauses)
          .map(([k, v]) => `${v} ${k}`)
          .join("; ")})`;
  const body = [
    `<h1>dmasim run</h1><p>${esc(jobLine(r))}</p>`,
    `<h2>Summary</h2>`,
    tableHtml(
      ["result", "value"],
      [
        ["bound by", boundText(r.boundBy)],
        ["IOPS", si(r.iops)],
        ["bandwidth", `${fixed(r.bandwidthMBps, 1)} MB/s`],
        ...(r.read !== null && r.write !== null
          ? [
              ["read", `${si(r.read.iops)} IOPS, ${fixed(r.read.bandwidthMBps, 1)} MB/s`],
              ["write", `${si(r.write.iops)} IOPS, ${fixed(r.write.bandwidthMBps, 1)} MB/s`],
            ]
          : []),
        ["CPU per I/O", `${fixed(r.cpuNsPerIo, 1)} ns`],
        ["I/Os", `${r.ios} (${r.reads} reads, ${r.writes} writes)`],
        ["queue depth", queueDepthText(r)],
        ...(ramp === null ? [] : [["ramp", ramp]]),
        ["exposure window", exposureText(r)],
        ["IOTLB hit rate", r.iotlbHitRate === null ? "-" : `${fixed(100 * r.iotlbHitRate, 1)} %`],
        ["IOMMU faults", String(r.faults)],
        ["I/O errors", errors],
        ["host memory per I/O", bytes(r.hostMemoryPerIo)],
        [
          "IOMMU page tables",
          r.pageTables === null
            ? "-"
            : `${bytes(r.pageTables.bytes)} (${r.pageTables.tables} tables)`,
        ],
        [
          "verify",
          r.verify.enabled
            ? r.verify.ok
              ? `ok (${bytes(r.verify.checkedBytes)} checked)`
              : `FAILED (${r.verify.mismatches} sectors)`
            : "off",
        ],
      ],
    ),
    `<h2>Latency</h2>`,
    tableHtml(
      ["latency (µs)", ...latencyColumns(r.percentiles)],
      [
        ["slat", ...latencyCells(r.slat, r.percentiles)],
        ["clat", ...latencyCells(r.clat, r.percentiles)],
        ["lat", ...latencyCells(r.lat, r.percentiles)],
      ],
    ),
    cdfChart("latency-cdf", [
      { label: `lat (${r.job.iommu.mode} / ${r.job.host.mapping})`, points: r.latencyCdf },
    ]),
    exposureSection(r),
    `<h2>CPU time per I/O by category</h2>`,
    labelledBars(
      "cpu-chart",
      cats.map((c, i) => ({ label: c, value: parts[i] as number })),
      (v) => `${fixed(v, 1)} ns`,
      "ns of CPU per I/O",
    ),
    `<h2>Busy share per CPU</h2>`,
    labelledBars(
      "cpu-busy-chart",
      r.perCpu.map((c) => ({ label: `CPU ${c.cpu}`, value: c.busyPct })),
      (v) => `${fixed(v, 1)} %`,
      "busy, % of the measured time",
    ),
    `<h2>Shared resources</h2>`,
    tableHtml(res.head, res.rows),
    `<h2>Events per I/O, by layer</h2>`,
    ...countersByLayer(r.perIo).map(
      ([layer, rows]) =>
        `<h3>${esc(layer)}</h3>${tableHtml(
          ["counter", "per I/O"],
          rows.map(([k, v]) => [k, fixed(v, 3)]),
        )}`,
    ),
  ].join("\n");
  return page("dmasim run", body);
}

/** The HTML report of a comparison. */
export function compareHtml(cells: readonly CompareCell[]): string {
  const allCats = COST_CATEGORIES.filter((c) =>
    cells.some((x) => x.result.cpuNsPerIoByCategory[c] > 0),
  );
  const base = cells[0]?.result.cpuNsPerIo ?? 0;
  const label = (c: CompareCell) =>
    `${c.kernel !== undefined ? `${c.kernel} ` : ""}${c.iommu} / ${c.mapping}`;
  const mode = (c: CompareCell) =>
    c.result.iommu.effective === c.iommu
      ? c.iommu
      : `${c.iommu} → ${c.result.iommu.effective} (${c.result.iommu.reason ?? ""})`;
  const exposure = (c: CompareCell) => {
    const e = c.result.exposure;
    if (e === null) return "-";
    return e.mode === "lazy"
      ? `${fixed(e.maxUs, 1)} µs max, ${fixed(e.p99Us, 1)} p99`
      : "0 (strict)";
  };
  const body = [
    `<h1>dmasim compare</h1>${cells[0] ? `<p>${esc(compareJobLine(cells[0].result))}</p>` : ""}`,
    tableHtml(
      [
        "cell",
        "IOMMU mode the device got",
        "IOPS",
        "CPU ns/IO",
        "vs first",
        "bound by",
        "clat mean µs",
        "p99 µs",
        "exposure window",
        "verify",
      ],
      cells.map((c) => [
        label(c),
        mode(c),
        si(c.result.iops),
        fixed(c.result.cpuNsPerIo, 1),
        base > 0 ? `${fixed(c.result.cpuNsPerIo / base, 2)}x` : "-",
        boundText(c.result.boundBy),
        fixed(c.result.clat.meanUs, 1),
        fixed(c.result.latencyUs.p99, 1),
        exposure(c),
        c.result.verify.enabled ? (c.result.verify.ok ? "ok" : "FAILED") : "off",
      ]),
    ),
    `<div class="row" id="charts"><div><h2>IOPS</h2>`,
    labelledBars(
      "compare-iops",
      cells.map((c) => ({ label: label(c), value: c.result.iops })),
      (v) => si(v),
      "IOPS",
      600,
    ),
    `</div><div><h2>CPU time per I/O</h2>`,
    labelledBars(
      "compare-cpu",
      cells.map((c) => ({ label: label(c), value: c.result.cpuNsPerIo })),
      (v) => `${fixed(v, 0)} ns`,
      "ns of CPU per I/O",
      600,
    ),
    `</div></div>`,
    `<h2>Latency</h2>`,
    cdfChart(
      "compare-cdf",
      cells.map((c) => ({ label: label(c), points: c.result.latencyCdf })),
    ),
    `<h2>CPU time per I/O by category</h2>`,
    stackedBars(
      "compare-chart",
      cells.map((c) => ({
        label: label(c),
        parts: allCats.map((k) => c.result.cpuNsPerIoByCategory[k]),
      })),
      allCats,
      "ns",
    ),
    `<h2>The text report</h2><pre>${esc(formatCompare(cells, false))}</pre>`,
  ].join("\n");
  return page("dmasim compare", body);
}
