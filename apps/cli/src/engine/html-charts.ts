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

/** One CDF series: its label and its points (µs, fraction of I/Os at or below). */
export interface CdfSeries {
  readonly label: string;
  readonly points: readonly { readonly us: number; readonly fraction: number }[];
}

/** A latency label for an axis tick: "1 µs", "100 µs", "10 ms". */
function timeTick(us: number): string {
  if (us >= 1e6) return `${us / 1e6} s`;
  if (us >= 1e3) return `${us / 1e3} ms`;
  return `${us} µs`;
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
  const left = 56;
  const right = 16;
  const top = 12;
  const bottom = 44 + Math.ceil(series.length / 4) * 16;
  const all = series.flatMap((s) => s.points.map((p) => p.us)).filter((u) => u > 0);
  const lo = Math.floor(Math.log10(Math.min(...all, 1)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all, 10))));
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const x = (us: number) => left + ((Math.log10(Math.max(us, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const y = (f: number) => top + (1 - f) * plotH;
  const grid: string[] = [];
  for (let d = lo; d <= hi; d++) {
    const gx = x(10 ** d).toFixed(1);
    grid.push(
      `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${top + plotH}" stroke="#e5e5e5"/><text x="${gx}" y="${top + plotH + 14}" font-size="10" text-anchor="middle">${esc(timeTick(10 ** d))}</text>`,
    );
  }
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
  const legend = series
    .map((s, i) => {
      const lx = left + (i % 4) * 210;
      const ly = height - bottom + 30 + Math.floor(i / 4) * 16;
      return `<rect x="${lx}" y="${ly}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/><text x="${lx + 14}" y="${ly + 9}" font-size="11">${esc(s.label)}</text>`;
    })
    .join("");
  const axes = `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#888"/><line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#888"/><text class="x-label" x="${left + plotW / 2}" y="${top + plotH + 30}" font-size="11" text-anchor="middle">latency (lat), log scale</text><text class="y-label" x="12" y="${top + plotH / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${top + plotH / 2})">I/Os at or below</text>`;
  return `<svg id="${esc(id)}" data-series="${series.length}" viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="latency CDF">${grid.join("")}${axes}${lines}${legend}</svg>`;
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
