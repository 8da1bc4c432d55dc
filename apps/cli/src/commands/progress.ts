/**
 * Progress on a terminal: one stderr line, redrawn at most a few times a second, with the share
 * done, the rate and the time left, and cleared when the work ends. Nothing at all when stderr
 * is not a terminal or the output is JSON (`CommandIo.progress` false). The wall clock here is
 * the user's, not the model's: it says how long the host takes, never what is simulated.
 */
import type { CommandIo } from "./common.ts";

/** Redraws at most this often, ms. */
const REDRAW_MS = 250;

/** A progress line: `update` as work goes, `end` to clear it. */
export interface Progress {
  /** `done` of `total` units (`total` -1 when unknown); `what` names the current part. */
  update(done: number, total: number, what?: string): void;
  /** Clears the line. */
  end(): void;
}

/** Seconds for humans: "0.4 s", "12 s", "3 min 5 s". */
function secondsText(s: number): string {
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** A rate for humans: "51.2K", "1.3M". */
function rateText(r: number): string {
  if (r >= 1e6) return `${(r / 1e6).toFixed(1)}M`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)}K`;
  return r.toFixed(0);
}

/**
 * The progress line of `label` counting `unit`s ("I/Os", "cells"), or null when `io` wants
 * none. `now` is the wall clock in ms (injected for tests).
 */
export function progressLine(
  io: CommandIo,
  label: string,
  unit: string,
  now: () => number = () => Date.now(),
): Progress | null {
  if (!io.progress) return null;
  const t0 = now();
  let last = t0;
  let drawn = false;
  return {
    update(done, total, what) {
      const t = now();
      if (t - last < REDRAW_MS && done < total) return;
      last = t;
      const secs = (t - t0) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const parts = [`${label}:`];
      if (what !== undefined) parts.push(what);
      if (total > 0) {
        parts.push(`${Math.floor((100 * done) / total)}%`, `${done}/${total} ${unit}`);
        if (rate > 0 && done < total) parts.push(`ETA ${secondsText((total - done) / rate)}`);
      } else parts.push(`${done} ${unit}`);
      if (rate > 0) parts.push(`${rateText(rate)} ${unit}/s`);
      io.stderr(`\r\x1b[K${parts.join("  ")}`);
      drawn = true;
    },
    end() {
      if (drawn) io.stderr("\r\x1b[K");
    },
  };
}
