/**
 * SVG charts of the HTML reports that need axes: a latency CDF on a logarithmic time axis, and
 * labelled horizontal bars (one value per row, the value written at the bar's end). Inline
 * SVG, no script; colours from a palette readable by people with the common colour-vision
 * deficiencies (Tableau 10).
 */

/** The series palette. */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];

/** Escapes text for HTML and SVG. */
export function esc(s: string): string {
  return s
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** Where a chart plots: its left and top margins and the plot's size inside them. */
interface Plot {
  readonly left: number;
  readonly top: number;
  readonly w: number;
  readonly h: number;
}

/** The plot of a `width` × `height` chart with `left` and `bottom` margins (right 16, top 12). */
function plotIn(width: number, height: number, left: number, bottom: number): Plot {
  const top = 12;
  return { left, top, w: width - left - 16, h: height - top - bottom };
}

/** The decades a log axis spans for `values` (their positive ones): 10^lo to 10^hi. */
function decades(values: readonly number[]): { lo: number; hi: number } {
  const positive = values.filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...positive, 1)));
  return { lo, hi: Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...positive, 10)))) };
}

/** The x position of `v` on a log axis over decades lo..hi (values below 10^lo at its start). */
function logX(p: Plot, lo: number, hi: number): (v: number) => number {
  return (v) => p.left + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * p.w;
}

/** A vertical grid line and its label under the axis, at each decade. */
function decadeGrid(
  p: Plot,
  lo: number,
  hi: number,
  x: (v: number) => number,
  tick: (v: number) => string,
): string[] {
  const out: string[] = [];
  for (let d = lo; d <= hi; d++) {
    const gx = x(10 ** d).toFixed(1);
    out.push(
      `<line x1="${gx}" y1="${p.top}" x2="${gx}" y2="${p.top + p.h}" stroke="#e5e5e5"/><text x="${gx}" y="${p.top + p.h + 14}" font-size="10" text-anchor="middle">${esc(tick(10 ** d))}</text>`,
    );
  }
  return out;
}

/** The two axes and their labels (`x-label`, `y-label`, the latter turned up the left side). */
function axes(p: Plot, xLabel: string, yLabel: string, xLabelGap = 30): string {
  const bottom = p.top + p.h;
  const mid = p.top + p.h / 2;
  return `<line x1="${p.left}" y1="${bottom}" x2="${p.left + p.w}" y2="${bottom}" stroke="#888"/><line x1="${p.left}" y1="${p.top}" x2="${p.left}" y2="${bottom}" stroke="#888"/><text class="x-label" x="${p.left + p.w / 2}" y="${bottom + xLabelGap}" font-size="11" text-anchor="middle">${esc(xLabel)}</text><text class="y-label" x="12" y="${mid}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${mid})">${esc(yLabel)}</text>`;
}

/** A legend: a swatch in the series' colour and its label, `perRow` to a row `step` apart. */
function legend(
  series: readonly { readonly label: string }[],
  left: number,
  top: number,
  perRow: number,
  step: number,
): string {
  return series
    .map((s, i) => {
      const lx = left + (i % perRow) * step;
      const ly = top + Math.floor(i / perRow) * 16;
      return `<rect x="${lx}" y="${ly}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/><text x="${lx + 14}" y="${ly + 9}" font-size="11">${esc(s.label)}</text>`;
    })
    .join("");
}

/** One CDF series: its label and its points (µs, fraction of I/Os at or below). */
export interface CdfSeries {
  readonly label: string;
  readonly points: readonly { readonly us: number; readonly fraction: number }[];
}

/** A time in µs for an axis tick or a bin edge: "1 µs", "100 µs", "10 ms", "0.1 µs". */
export function timeTick(us: number): string {
  const short = (v: number) => String(Number(v.toPrecision(3)));
  if (us >= 1e6) return `${short(us / 1e6)} s`;
  if (us >= 1e3) return `${short(us / 1e3)} ms`;
  return `${short(us)} µs`;
}

/**
 * Latency CDFs on one chart: x is latency on a log10 axis (decades from the smallest to the
 * largest value), y the fraction of I/Os at or below it (0–100 %), one step line per series,
 * with labelled axes and a legend. `data-series` counts the lines for tests.
 */
export function cdfChart(
  id: string,
  series: readonly CdfSeries[],
  width = 900,
  height = 300,
): string {
  const bottom = 44 + Math.ceil(series.length / 4) * 16;
  const p = plotIn(width, height, 56, bottom);
  const { left, top, w: plotW, h: plotH } = p;
  const { lo, hi } = decades(series.flatMap((s) => s.points.map((q) => q.us)));
  const x = logX(p, lo, hi);
  const y = (f: number) => top + (1 - f) * plotH;
  const grid = decadeGrid(p, lo, hi, x, timeTick);
  for (const f of [0, 0.25, 0.5, 0.75, 0.9, 1]) {
    const gy = y(f).toFixed(1);
    grid.push(
      `<line x1="${left}" y1="${gy}" x2="${left + plotW}" y2="${gy}" stroke="#eee"/><text x="${left - 4}" y="${(y(f) + 3).toFixed(1)}" font-size="10" text-anchor="end">${Math.round(f * 100)}%</text>`,
    );
  }
  const lines = series
    .map((s, i) => {
      let d = "";
      let prev = 0;
      for (const p of s.points) {
        const px = x(p.us).toFixed(1);
        d += d === "" ? `M${px},${y(0).toFixed(1)}` : "";
        d += `L${px},${y(prev).toFixed(1)}L${px},${y(p.fraction).toFixed(1)}`;
        prev = p.fraction;
      }
      return `<path class="series" d="${d}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="2"><title>${esc(s.label)}</title></path>`;
    })
    .join("");
  const legendHtml = legend(series, left, height - bottom + 30, 4, 210);
  const frame = axes(p, "latency (lat), log scale", "I/Os at or below");
  return `<svg id="${esc(id)}" data-series="${series.length}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="latency CDF">${grid.join("")}${frame}${lines}${legendHtml}</svg>`;
}

/**
 * Horizontal bars with their labels on the left and their values at the bar's end (`format`
 * writes a value), for a handful of rows: CPU time by category, busy share per CPU.
 */
export function labelledBars(
  id: string,
  rows: readonly { readonly label: string; readonly value: number }[],
  format: (v: number) => string,
  axisLabel: string,
  width = 900,
): string {
  const rowH = 22;
  const left = 170;
  const height = rows.length * rowH + 34;
  const max = Math.max(1e-9, ...rows.map((r) => r.value));
  const positive = rows.map((r) => r.value).filter((v) => v > 0);
  const min = Math.min(max, ...positive);
  // A range over 10x is drawn on a log scale, so that small bars are not squashed to slivers.
  const log = max / min > 10;
  const span = width - left - 110;
  const floor = Math.log10(min) - 1;
  const widthOf = (v: number) =>
    log
      ? v > 0
        ? ((Math.log10(v) - floor) / (Math.log10(max) - floor)) * span
        : 0
      : (v / max) * span;
  const body = rows
    .map((r, i) => {
      const yy = 6 + i * rowH;
      const w = Math.max(1, widthOf(r.value));
      return `<text x="${left - 6}" y="${yy + 13}" font-size="11" text-anchor="end">${esc(r.label)}</text><rect x="${left}" y="${yy}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${PALETTE[0]}"><title>${esc(r.label)}: ${esc(format(r.value))}</title></rect><text class="value" x="${(left + w + 4).toFixed(1)}" y="${yy + 13}" font-size="11">${esc(format(r.value))}</text>`;
    })
    .join("");
  const label = log ? `${axisLabel} (log scale)` : axisLabel;
  return `<svg id="${esc(id)}" data-series="${rows.length}" data-scale="${log ? "log" : "linear"}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="${esc(label)}">${body}<text class="x-label" x="${left}" y="${height - 6}" font-size="11">${esc(label)}</text></svg>`;
}

/** One bin of a histogram: values in [low, high) and how many. */
export interface HistogramBar {
  readonly low: number;
  readonly high: number;
  readonly count: number;
}

/**
 * A histogram on a log10 x axis (bins drawn from their low to their high edge; `tick` writes
 * an edge) and a linear count axis, with labelled axes. The lazy exposure window's
 * distribution. `data-series` is 1, `data-bins` the bins drawn.
 */
export function histogramChart(
  id: string,
  bins: readonly HistogramBar[],
  tick: (v: number) => string,
  xLabel: string,
  yLabel: string,
  width = 900,
  height = 260,
): string {
  const p = plotIn(width, height, 64, 44);
  const { left, top, h: plotH } = p;
  const { lo, hi } = decades(bins.flatMap((b) => [b.low, b.high]));
  const x = logX(p, lo, hi);
  const maxCount = Math.max(1, ...bins.map((b) => b.count));
  const y = (n: number) => top + (1 - n / maxCount) * plotH;
  const grid = decadeGrid(p, lo, hi, x, tick);
  for (const f of [0, 0.5, 1]) {
    const n = Math.round(f * maxCount);
    grid.push(
      `<text x="${left - 4}" y="${(y(n) + 3).toFixed(1)}" font-size="10" text-anchor="end">${n}</text>`,
    );
  }
  const bars = bins
    .map((b) => {
      const x0 = x(b.low);
      const w = Math.max(1, x(b.high) - x0 - 1);
      return `<rect class="bin" x="${x0.toFixed(1)}" y="${y(b.count).toFixed(1)}" width="${w.toFixed(1)}" height="${(top + plotH - y(b.count)).toFixed(1)}" fill="${PALETTE[0]}"><title>${esc(tick(b.low))} – ${esc(tick(b.high))}: ${b.count}</title></rect>`;
    })
    .join("");
  const frame = axes(p, xLabel, yLabel, 32);
  return `<svg id="${esc(id)}" data-series="1" data-bins="${bins.length}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="${esc(xLabel)}">${grid.join("")}${frame}${bars}</svg>`;
}

/** One line of a line chart: its label and its points (x as a number or a category). */
export interface LineSeries {
  readonly label: string;
  readonly points: readonly { readonly x: number | string; readonly y: number }[];
}

/** How a line chart places x: numbers on a linear or log2 axis, or categories spaced evenly. */
export type XScale = "linear" | "log2" | "category";

/**
 * The x scale that suits a swept parameter's values: categories unless every value is a
 * number, log2 when they are positive and span more than 8×, else linear.
 */
export function xScaleFor(values: readonly (number | string)[]): XScale {
  const nums = values.filter((v): v is number => typeof v === "number");
  if (nums.length !== values.length) return "category";
  const min = Math.min(...nums);
  const max = Math.max(...nums);
  return min > 0 && max / min > 8 ? "log2" : "linear";
}

/** A compact tick label: 1.2k, 3.4M, 0.25. */
function shortNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${Number((v / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

/** "Nice" tick values from 0 to at least `max`: 0, step, 2·step, … with step 1, 2 or 5 × 10^k. */
function niceTicks(max: number, target = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(v);
  if ((out[out.length - 1] as number) < max) out.push(out.length * step);
  return out;
}

/**
 * Lines of a metric against a swept parameter: one polyline with a marker per point for each
 * series, the y axis linear from zero with nice ticks, the x axis as `xScale` says, labelled
 * axes, a legend. A point whose y is not finite (a failed run) breaks its line. `data-series`
 * counts the lines, each `path.series` carries `data-points`.
 */
export function lineChart(
  id: string,
  series: readonly LineSeries[],
  xLabel: string,
  yLabel: string,
  xScale: XScale,
  width = 900,
  height = 340,
): string {
  const bottom = 48 + Math.ceil(series.length / 3) * 16;
  const p = plotIn(width, height, 64, bottom);
  const { left, top, w: plotW, h: plotH } = p;
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))];
  const cats = xScale === "category" ? xs.map(String) : [];
  const nums = xs.filter((v): v is number => typeof v === "number");
  const xmin = xScale === "category" ? 0 : Math.min(...nums);
  const xmax = xScale === "category" ? Math.max(1, cats.length - 1) : Math.max(...nums);
  const pos = (v: number | string): number => {
    if (xScale === "category") {
      const i = cats.indexOf(String(v));
      return cats.length === 1 ? left + plotW / 2 : left + (i / xmax) * plotW;
    }
    const n = v as number;
    if (xmax === xmin) return left + plotW / 2;
    const f =
      xScale === "log2"
        ? (Math.log2(n) - Math.log2(xmin)) / (Math.log2(xmax) - Math.log2(xmin))
        : (n - xmin) / (xmax - xmin);
    return left + f * plotW;
  };
  const ymaxData = Math.max(
    0,
    ...series.flatMap((s) => s.points.map((p) => p.y).filter((y) => Number.isFinite(y))),
  );
  const yTicks = niceTicks(ymaxData);
  const ymax = yTicks[yTicks.length - 1] as number;
  const y = (v: number) => top + (1 - v / ymax) * plotH;
  const grid: string[] = [];
  for (const t of yTicks) {
    const gy = y(t).toFixed(1);
    grid.push(
      `<line x1="${left}" y1="${gy}" x2="${left + plotW}" y2="${gy}" stroke="#eee"/><text x="${left - 4}" y="${(y(t) + 3).toFixed(1)}" font-size="10" text-anchor="end">${esc(shortNumber(t))}</text>`,
    );
  }
  for (const v of xScale === "category" ? cats : nums.sort((a, b) => a - b)) {
    const gx = pos(v).toFixed(1);
    grid.push(
      `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${top + plotH}" stroke="#f0f0f0"/><text x="${gx}" y="${top + plotH + 14}" font-size="10" text-anchor="middle">${esc(typeof v === "number" ? shortNumber(v) : v)}</text>`,
    );
  }
  const lines = series
    .map((s, i) => {
      const colour = PALETTE[i % PALETTE.length] as string;
      const pts = [...s.points].sort((a, b) => pos(a.x) - pos(b.x));
      let d = "";
      let pen = false;
      const marks: string[] = [];
      for (const p of pts) {
        if (!Number.isFinite(p.y)) {
          pen = false;
          continue;
        }
        const px = pos(p.x).toFixed(1);
        const py = y(p.y).toFixed(1);
        d += `${pen ? "L" : "M"}${px},${py}`;
        pen = true;
        marks.push(
          `<circle cx="${px}" cy="${py}" r="3" fill="${colour}"><title>${esc(s.label)}: ${esc(String(p.x))} → ${esc(shortNumber(p.y))}</title></circle>`,
        );
      }
      return `<path class="series" data-points="${marks.length}" d="${d}" fill="none" stroke="${colour}" stroke-width="2"><title>${esc(s.label)}</title></path>${marks.join("")}`;
    })
    .join("");
  const legendHtml = legend(series, left, height - bottom + 36, 3, 280);
  const scaleNote = xScale === "log2" ? " (log scale)" : "";
  const frame = axes(p, xLabel + scaleNote, yLabel);
  return `<svg id="${esc(id)}" data-series="${series.length}" data-scale="${xScale}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="${esc(`${yLabel} against ${xLabel}`)}">${grid.join("")}${frame}${lines}${legendHtml}</svg>`;
}
