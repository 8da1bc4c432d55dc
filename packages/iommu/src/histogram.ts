/**
 * A log-linear histogram of non-negative integers (nanoseconds), for the lazy-mode exposure
 * window: exact below 64, then 64 sub-buckets per power of two (under 1.6 % relative error).
 * Max and count are exact.
 */
import { pow2 } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";

const SUB = 64;

/** Summary of a histogram. */
export interface HistogramSummary {
  readonly count: number;
  readonly maxNs: number;
  readonly meanNs: number;
  readonly p50Ns: number;
  readonly p99Ns: number;
}

function bucketOf(v: number): number {
  if (v < SUB) return v;
  const e = Math.floor(Math.log2(v));
  let sub = Math.floor(v / pow2(e - 6)) - SUB;
  if (sub >= SUB) sub = SUB - 1;
  if (sub < 0) sub = 0;
  return SUB + (e - 6) * SUB + sub;
}

function bucketHigh(b: number): number {
  if (b < SUB) return b;
  const e = Math.floor((b - SUB) / SUB) + 6;
  const sub = (b - SUB) % SUB;
  return (SUB + sub + 1) * pow2(e - 6) - 1;
}

/** One bin of a coarse view of a histogram: the values in [lowNs, highNs) and how many. */
export interface HistogramBin {
  readonly lowNs: number;
  readonly highNs: number;
  readonly count: number;
}

/** A histogram of nanosecond values. */
export class NsHistogram {
  private readonly counts = new Float64Array(SUB + 48 * SUB);
  private n = 0;
  private sum = 0;
  private maxV = 0;

  /** Adds one value. */
  record(ns: number): void {
    const v = ns < 0 ? 0 : Math.floor(ns);
    const b = bucketOf(v);
    this.counts[b] = (this.counts[b] as number) + 1;
    this.n++;
    this.sum += v;
    if (v > this.maxV) this.maxV = v;
  }

  /** Values recorded. */
  get count(): number {
    return this.n;
  }

  /** The value at quantile `q` (0..1), as its bucket's upper bound (never above the max). */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b] as number;
      if (seen >= rank) return Math.min(bucketHigh(b), this.maxV);
    }
    return this.maxV;
  }

  /**
   * The distribution in log-spaced bins, `perDecade` of them per power of ten (bin k holds
   * [10^(k/perDecade), 10^((k+1)/perDecade)) ns; values below 1 ns go in the first bin), only
   * the bins that hold a value, ascending. Each fine bucket is placed by its upper bound (never
   * above the max), as `quantile` reports it.
   */
  bins(perDecade = 10): HistogramBin[] {
    if (!(Number.isInteger(perDecade) && perDecade >= 1 && perDecade <= 100))
      throw new IommuError(
        "EINVAL",
        `bins per decade ${String(perDecade)} is not an integer in 1..100`,
      );
    const byBin = new Map<number, number>();
    for (let b = 0; b < this.counts.length; b++) {
      const n = this.counts[b] as number;
      if (n === 0) continue;
      const v = Math.min(bucketHigh(b), this.maxV);
      // A small epsilon keeps exact powers of ten in their own bin despite rounding in log10.
      const k = v < 1 ? 0 : Math.floor(Math.log10(v) * perDecade + 1e-9);
      byBin.set(k, (byBin.get(k) ?? 0) + n);
    }
    return [...byBin.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([k, count]) => ({
        lowNs: k === 0 ? 0 : 10 ** (k / perDecade),
        highNs: 10 ** ((k + 1) / perDecade),
        count,
      }));
  }

  /** Count, max, mean, p50 and p99. */
  summary(): HistogramSummary {
    return {
      count: this.n,
      maxNs: this.maxV,
      meanNs: this.n === 0 ? 0 : this.sum / this.n,
      p50Ns: this.quantile(0.5),
      p99Ns: this.quantile(0.99),
    };
  }
}
