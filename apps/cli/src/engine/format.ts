/** Small formatting helpers for reports: aligned tables, units, optional colour. */
import { styleText } from "node:util";

/** Formats a number with a unit prefix (K, M, G). */
export function si(n: number, digits = 3): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toPrecision(digits)}G`;
  if (a >= 1e6) return `${(n / 1e6).toPrecision(digits)}M`;
  if (a >= 1e3) return `${(n / 1e3).toPrecision(digits)}K`;
  return a >= 100 || n === 0 ? n.toFixed(0) : n.toPrecision(digits);
}

/** Formats a number of nanoseconds / microseconds to a fixed precision. */
export function fixed(n: number, digits = 1): string {
  return n.toFixed(digits);
}

/** Bytes in binary units. */
export function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

/** Renders rows as an aligned table; numeric-looking cells align right. */
export function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  color = false,
): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = (s: string) => /^[-+]?[\d.]+[KMG%x]?$/i.test(s) || s === "-";
  // A column aligns right only when every cell in it is a number.
  const right = head.map(
    (_, i) => i > 0 && rows.length > 0 && rows.every((r) => numeric(r[i] ?? "")),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const h = line(head);
  return [color ? styleText("bold", h) : h, ...rows.map(line)].join("\n");
}

/** Bold/dim/colour only when `color`. */
export function paint(color: boolean, style: Parameters<typeof styleText>[0], s: string): string {
  return color ? styleText(style, s) : s;
}
