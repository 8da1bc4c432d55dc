/**
 * The HTML report of a sweep: a line chart of each chosen metric against one swept parameter,
 * one line per combination of the other swept parameters' values (IOPS against `machine.cpus`,
 * one line per `iommu.mode`: the scaling curve), and the table of every point.
 */
import { fixed, si } from "./format.ts";
import { type XScale, esc, lineChart, xScaleFor } from "./html-charts.ts";
import { page, tableHtml } from "./html-page.ts";
import type { Grid, SweepLine } from "./sweep.ts";

/** A metric a sweep chart can draw: its label (with unit) and how a line gives it. */
interface SweepMetric {
  readonly label: string;
  readonly of: (l: SweepLine) => number;
}

/** The metrics of a sweep line by name (as in the JSON lines); `perIo.<counter>` besides. */
export const SWEEP_METRICS: Readonly<Record<string, SweepMetric>> = {
  iops: { label: "IOPS", of: (l) => l.iops },
  bandwidthMBps: { label: "bandwidth, MB/s", of: (l) => l.bandwidthMBps },
  cpuNsPerIo: { label: "CPU time per I/O, ns", of: (l) => l.cpuNsPerIo },
  latMeanUs: { label: "mean lat, µs", of: (l) => l.latMeanUs },
  clatMeanUs: { label: "mean clat, µs", of: (l) => l.clatMeanUs },
  latencyP50Us: { label: "p50 lat, µs", of: (l) => l.latencyP50Us },
  latencyP99Us: { label: "p99 lat, µs", of: (l) => l.latencyP99Us },
  qdMean: { label: "achieved queue depth", of: (l) => l.qdMean },
  boundUtilisation: {
    label: "utilisation of what bounds the run",
    of: (l) => l.boundUtilisation,
  },
  hostMemoryPerIo: { label: "host memory per I/O, bytes", of: (l) => l.hostMemoryPerIo },
};

/** The metrics drawn when none is asked for. */
export const DEFAULT_SWEEP_METRICS = ["iops", "cpuNsPerIo", "latencyP99Us"] as const;

/** The metric `name` names: one of `SWEEP_METRICS`, or `perIo.<counter>` (events per I/O). */
export function sweepMetric(name: string): SweepMetric {
  const m = SWEEP_METRICS[name];
  if (m !== undefined) return m;
  const counter = name.slice("perIo.".length);
  return { label: `${counter} per I/O`, of: (l) => l.perIo[counter] ?? 0 };
}

/**
 * The swept parameter a sweep chart puts on its x axis by default: the first one whose values
 * are all numbers, else the first one.
 */
export function defaultSweepX(grid: Grid): string {
  const keys = Object.keys(grid.vary);
  return (
    keys.find((k) => (grid.vary[k] ?? []).every((v) => typeof v === "number")) ?? keys[0] ?? ""
  );
}

/** A varied value as a label: a string or number as is, anything else as JSON. */
function valueText(v: unknown): string {
  return typeof v === "string" || typeof v === "number" ? String(v) : JSON.stringify(v);
}

/** What `sweepHtml` draws. */
export interface SweepHtmlOptions {
  /** The swept parameter on the x axis (a key of `grid.vary`); default `defaultSweepX`. */
  readonly x?: string;
  /** The metrics, one chart each; default `DEFAULT_SWEEP_METRICS`. */
  readonly metrics?: readonly string[];
}

/** The HTML report of a sweep of `grid` whose points gave `lines`. */
export function sweepHtml(
  grid: Grid,
  lines: readonly SweepLine[],
  o: SweepHtmlOptions = {},
): string {
  const keys = Object.keys(grid.vary);
  const xKey = o.x ?? defaultSweepX(grid);
  const others = keys.filter((k) => k !== xKey);
  const metrics = o.metrics ?? DEFAULT_SWEEP_METRICS;
  const xValues = (grid.vary[xKey] ?? []).map((v) => (typeof v === "number" ? v : valueText(v)));
  const scale: XScale = xScaleFor(xValues);
  const xOf = (l: SweepLine): number | string => {
    const v = l.params[xKey];
    return scale === "category" ? valueText(v) : (v as number);
  };
  // One series per combination of the other parameters, in the grid's order.
  const groups = new Map<string, SweepLine[]>();
  for (const l of lines) {
    const label = others.map((k) => `${k}=${valueText(l.params[k])}`).join(", ");
    const g = groups.get(label) ?? [];
    g.push(l);
    groups.set(label, g);
  }
  const charts = metrics.map((name, i) => {
    const m = sweepMetric(name);
    const series = [...groups.entries()].map(([label, ls]) => ({
      label: label === "" ? m.label : label,
      points: ls.map((l) => ({ x: xOf(l), y: l.error === undefined ? m.of(l) : Number.NaN })),
    }));
    return `<h2>${esc(m.label)} against ${esc(xKey)}</h2>${lineChart(`sweep-chart-${i}`, series, xKey, m.label, scale)}`;
  });
  const failed = lines.filter((l) => l.error !== undefined).length;
  const body = [
    `<h1>dmasim sweep</h1>`,
    `<p>${lines.length} points; swept: ${keys.map((k) => `<code>${esc(k)}</code> ${esc((grid.vary[k] ?? []).map(valueText).join(", "))}`).join("; ")}. The x axis is <code>${esc(xKey)}</code>${others.length > 0 ? `, one line per value of ${others.map((k) => `<code>${esc(k)}</code>`).join(" × ")}` : ""}.${failed > 0 ? ` ${failed} point${failed === 1 ? "" : "s"} failed and break${failed === 1 ? "s" : ""} its line.` : ""}</p>`,
    Object.keys(grid.base).length > 0
      ? `<p>Base job: <code>${esc(JSON.stringify(grid.base))}</code></p>`
      : "",
    ...charts,
    `<h2>Every point</h2>`,
    tableHtml(
      [...keys, "IOPS", "CPU ns/IO", "p99 µs", "bound by", "verify"],
      lines.map((l) => [
        ...keys.map((k) => valueText(l.params[k])),
        si(l.iops),
        fixed(l.cpuNsPerIo, 1),
        fixed(l.latencyP99Us, 1),
        l.error === undefined ? `${l.boundBy} (${fixed(100 * l.boundUtilisation, 0)} %)` : "-",
        l.error !== undefined ? `error: ${l.error}` : l.verifyOk ? "ok" : "FAILED",
      ]),
    ),
  ].join("\n");
  return page("dmasim sweep", body);
}
