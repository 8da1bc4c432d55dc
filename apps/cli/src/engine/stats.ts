/**
 * The statistics the workload engine reports, in the style of fio: a latency histogram with
 * percentiles, the "IO depths" distribution and a time-weighted average (the achieved mean
 * queue depth).
 *
 * Everything here is fixed-memory: a run of a million I/Os keeps no per-I/O arrays. The
 * `record` and `set` methods are called several times per simulated I/O, so they allocate
 * nothing and touch only preallocated typed arrays and plain fields.
 */

/** Linear sub-buckets per power of two: the relative width of a bucket is at most 1/128. */
export const LATENCY_SUB_BUCKETS = 128;

/**
 * The largest value the latency histogram resolves, in ns (2^42 ns, about 73 minutes). Larger
 * values are counted in the top bucket; `max` stays exact and is what a percentile that falls
 * in that bucket reports.
 */
export const LATENCY_MAX_TRACKED_NS = 4398046511104;
/** log2(LATENCY_MAX_TRACKED_NS) - 1: the exponent of the top power-of-two range. */
const TOP_EXPONENT = 41;

/**
 * The error bound of `LatencyHistogram.percentile` (and everything built on it): the reported
 * value `r` of an exact percentile `v` (up to `LATENCY_MAX_TRACKED_NS`) satisfies
 * `v <= r <= v + max(1, v * LATENCY_RELATIVE_ERROR)` (strictly below but for rounding), and
 * `r === v` when `v` is an integer up to 256 ns or is the maximum.
 */
export const LATENCY_RELATIVE_ERROR = 1 / LATENCY_SUB_BUCKETS;

/** fio's default percentile list (`percentile_list`). */
export const DEFAULT_PERCENTILES: readonly number[] = Object.freeze([
  1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
]);

/** The percentiles the reports print unless asked for others (`--percentiles`). */
export const REPORT_PERCENTILES: readonly number[] = Object.freeze([50, 90, 99, 99.9]);

/** fio's default list with `extra` added, ascending, each once. */
export function percentileList(extra: readonly number[]): number[] {
  return [...new Set([...DEFAULT_PERCENTILES, ...extra])].sort((a, b) => a - b);
}

/** A latency distribution summarised as fio prints it, in microseconds. */
export interface LatencySummary {
  /** Values recorded. */
  readonly count: number;
  /** Smallest value (exact), 0 when empty. */
  readonly minUs: number;
  /** Mean (exact), 0 when empty. */
  readonly meanUs: number;
  /** Population standard deviation, 0 when empty. */
  readonly stdevUs: number;
  /** Largest value (exact), 0 when empty. */
  readonly maxUs: number;
  /** Percentiles keyed as fio prints them (`"50"`, `"99.9"`), 0 when empty. */
  readonly percentilesUs: Readonly<Record<string, number>>;
}

// Bucket layout. Bucket 0 holds exactly 0. Bucket i >= 1 holds the values v in (lo, hi], where
// j = ceil(v) - 1 is laid out HdrHistogram-style: j < 256 in unit buckets; j in [2^e, 2^(e+1))
// for e >= 8 in 128 buckets of width 2^(e-7). Upper-inclusive buckets make every integer up to
// 256 exact and make a bucket's upper bound an honest "at or below" for a CDF.
const SUB = LATENCY_SUB_BUCKETS;
const TWO_POW_32 = 4294967296;
/** Index of the top bucket (values above `LATENCY_MAX_TRACKED_NS` land here too). */
const TOP = 1 + SUB * (TOP_EXPONENT - 7) + 2 * SUB - 1;
const BUCKETS = TOP + 1;

/** POW2[k] = 2^k for k in [0, 64). */
const POW2 = new Float64Array(64);
/** The inclusive upper bound of each bucket, in ns. */
const UPPER = new Float64Array(BUCKETS);
{
  let p = 1;
  for (let k = 0; k < POW2.length; k++, p *= 2) POW2[k] = p;
  for (let i = 1; i < BUCKETS; i++) {
    const l = i - 1;
    if (l < 2 * SUB) {
      UPPER[i] = l + 1;
    } else {
      const q = Math.floor(l / SUB);
      UPPER[i] = (l - SUB * q + SUB + 1) * (POW2[q - 1] as number);
    }
  }
}

/** The bucket of a finite non-negative value. No allocation. */
function bucketOf(ns: number): number {
  if (ns <= 0) return 0;
  const j = Math.ceil(ns) - 1;
  if (j < 2 * SUB) return j + 1;
  if (j >= LATENCY_MAX_TRACKED_NS) return TOP;
  // floor(log2 j) through clz32, which truncates its argument to 32 bits (not an operator).
  const e = j < TWO_POW_32 ? 31 - Math.clz32(j) : 63 - Math.clz32(j / TWO_POW_32);
  return 1 + SUB * (e - 7) + Math.floor(j / (POW2[e - 7] as number));
}

/** Throws unless `p` is a percentage in [0, 100]. */
function checkPercent(p: number): void {
  if (!(p >= 0 && p <= 100)) {
    throw new RangeError(`percentile must be a number in [0, 100], got ${String(p)}`);
  }
}

/**
 * fio's rank rule: the ceil(p/100 * count)-th smallest value, at least the first. The product
 * is computed as p * count / 100 and forgiven a relative error of 1e-12, so that 1.1 % of 3000
 * is rank 33, not the 34 that the rounded product 33.00000000000001 would give.
 */
function rankOf(p: number, count: number): number {
  const x = (p * count) / 100;
  const rank = Math.ceil(x - x * 1e-12);
  return rank < 1 ? 1 : rank > count ? count : rank;
}

/**
 * A log-linear histogram of non-negative values in nanoseconds (HdrHistogram-style: 128 linear
 * sub-buckets per power of two, integers up to 256 ns exact), backed by one preallocated
 * `Float64Array` of 4 609 counts covering 0 .. 2^42 ns. It keeps the exact count, min, max and
 * sum, and the variance by Welford's update (a running sum of squares loses every digit of a
 * small spread around a large mean).
 *
 * A percentile is reported as its bucket's upper bound (`max` in the bucket of `max`), so it is
 * never below the exact value and exceeds it by at most max(1 ns, value / 128); see
 * `LATENCY_RELATIVE_ERROR`.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  private n = 0;
  private total = 0;
  private lo = Infinity;
  private hi = -Infinity;
  private runMean = 0;
  private m2 = 0;

  /**
   * Records one value. Throws a `RangeError` for a negative or non-finite value. Allocates
   * nothing.
   */
  record(ns: number): void {
    if (!(ns >= 0 && ns <= Number.MAX_VALUE)) {
      throw new RangeError(`latency must be finite and non-negative, got ${String(ns)}`);
    }
    const b = bucketOf(ns);
    this.counts[b] = (this.counts[b] as number) + 1;
    const n = this.n + 1;
    this.n = n;
    this.total += ns;
    if (ns < this.lo) this.lo = ns;
    if (ns > this.hi) this.hi = ns;
    const d = ns - this.runMean;
    this.runMean += d / n;
    this.m2 += d * (ns - this.runMean);
  }

  /** Values recorded. */
  get count(): number {
    return this.n;
  }

  /** The smallest value recorded (exact), 0 when empty. */
  get min(): number {
    return this.n === 0 ? 0 : this.lo;
  }

  /** The largest value recorded (exact), 0 when empty. */
  get max(): number {
    return this.n === 0 ? 0 : this.hi;
  }

  /** The sum of the values recorded, 0 when empty. */
  get sum(): number {
    return this.total;
  }

  /** The mean, 0 when empty. */
  get mean(): number {
    return this.n === 0 ? 0 : this.total / this.n;
  }

  /** The population standard deviation (as fio reports it), 0 when empty. */
  get stdev(): number {
    return this.n === 0 || this.m2 <= 0 ? 0 : Math.sqrt(this.m2 / this.n);
  }

  /**
   * The value at or below which `p` % of the recorded values fall: the value of rank
   * ceil(p/100 × count) (at least 1), reported as its bucket's upper bound, or as `max` in the
   * bucket that holds `max`. So `percentile(100) === max` and every percentile is at least
   * `min`. 0 when empty. Throws a `RangeError` unless `p` is in [0, 100].
   */
  percentile(p: number): number {
    checkPercent(p);
    if (this.n === 0) return 0;
    const rank = rankOf(p, this.n);
    const last = bucketOf(this.hi);
    let cum = 0;
    for (let i = bucketOf(this.lo); i < last; i++) {
      cum += this.counts[i] as number;
      if (cum >= rank) return UPPER[i] as number;
    }
    return this.hi;
  }

  /**
   * Several percentiles in one pass, keyed as fio prints them (`String(p)`: `"50"`, `"99.9"`).
   * Keys that look like integers come first in ascending order (a JavaScript object's rule), then
   * the others in list order. Throws a `RangeError` if any `p` is outside [0, 100].
   */
  percentiles(list: readonly number[]): Record<string, number> {
    for (const p of list) checkPercent(p);
    const out: Record<string, number> = {};
    if (this.n === 0) {
      for (const p of list) out[String(p)] = 0;
      return out;
    }
    const order = list.map((p) => ({ key: String(p), rank: rankOf(p, this.n) }));
    order.sort((a, b) => a.rank - b.rank);
    const last = bucketOf(this.hi);
    let i = bucketOf(this.lo);
    let cum = this.counts[i] as number;
    for (const { key, rank } of order) {
      while (cum < rank && i < last) {
        i++;
        cum += this.counts[i] as number;
      }
      out[key] = i >= last ? this.hi : (UPPER[i] as number);
    }
    // Insert in list order so that non-integer keys keep the caller's order.
    const ordered: Record<string, number> = {};
    for (const p of list) {
      const k = String(p);
      ordered[k] = out[k] as number;
    }
    return ordered;
  }

  /**
   * The cumulative distribution at the non-empty buckets: each point's `fraction` is exactly the
   * fraction of recorded values ≤ `ns`. Thinned to at most `maxPoints` points (default 200),
   * evenly in bucket order (so roughly evenly on a log axis), always keeping the last point,
   * which is `{ ns: max, fraction: 1 }`. Empty when nothing was recorded. Throws a `RangeError`
   * unless `maxPoints` is a positive integer.
   */
  cdf(maxPoints = 200): { ns: number; fraction: number }[] {
    if (!(Number.isInteger(maxPoints) && maxPoints >= 1)) {
      throw new RangeError(`maxPoints must be a positive integer, got ${String(maxPoints)}`);
    }
    const all: { ns: number; fraction: number }[] = [];
    if (this.n === 0) return all;
    const last = bucketOf(this.hi);
    let cum = 0;
    for (let i = bucketOf(this.lo); i <= last; i++) {
      const c = this.counts[i] as number;
      if (c === 0) continue;
      cum += c;
      all.push({ ns: i === last ? this.hi : (UPPER[i] as number), fraction: cum / this.n });
    }
    const k = all.length;
    if (k <= maxPoints) return all;
    const out: { ns: number; fraction: number }[] = [];
    for (let j = 0; j < maxPoints - 1; j++) {
      out.push(
        all[Math.floor((j * (k - 1)) / (maxPoints - 1))] as { ns: number; fraction: number },
      );
    }
    out.push(all[k - 1] as { ns: number; fraction: number });
    return out;
  }

  /**
   * The non-empty buckets in order, each with its inclusive upper bound in ns (the top bucket's
   * is at least `max`, since it also holds values beyond the tracked range).
   */
  buckets(): { upperNs: number; count: number }[] {
    const out: { upperNs: number; count: number }[] = [];
    if (this.n === 0) return out;
    const last = bucketOf(this.hi);
    for (let i = bucketOf(this.lo); i <= last; i++) {
      const c = this.counts[i] as number;
      if (c === 0) continue;
      const upper = UPPER[i] as number;
      out.push({ upperNs: i === TOP ? Math.max(upper, this.hi) : upper, count: c });
    }
    return out;
  }

  /** Adds every value recorded in `other` to this histogram, as if recorded here. */
  merge(other: LatencyHistogram): void {
    const nb = other.n;
    if (nb === 0) return;
    const na = this.n;
    const n = na + nb;
    const d = other.runMean - this.runMean;
    const m2 = this.m2 + other.m2 + ((d * d * na) / n) * nb;
    const mean = this.runMean + (d * nb) / n;
    for (let i = 0; i < BUCKETS; i++) {
      this.counts[i] = (this.counts[i] as number) + (other.counts[i] as number);
    }
    this.n = n;
    this.total += other.total;
    if (other.lo < this.lo) this.lo = other.lo;
    if (other.hi > this.hi) this.hi = other.hi;
    this.runMean = mean;
    this.m2 = m2;
  }

  /** Forgets everything recorded (for the end of a ramp-up period). */
  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.total = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
    this.runMean = 0;
    this.m2 = 0;
  }

  /** The summary fio prints, in microseconds, with percentiles from `list` (fio's default). */
  summary(list: readonly number[] = DEFAULT_PERCENTILES): LatencySummary {
    const ps = this.percentiles(list);
    const percentilesUs: Record<string, number> = {};
    for (const k of Object.keys(ps)) percentilesUs[k] = (ps[k] as number) / 1000;
    return {
      count: this.n,
      minUs: this.min / 1000,
      meanUs: this.mean / 1000,
      stdevUs: this.stdev / 1000,
      maxUs: this.max / 1000,
      percentilesUs,
    };
  }
}

/** fio's "IO depths" labels, in order. */
export const DEPTH_LABELS: readonly string[] = Object.freeze([
  "1",
  "2",
  "4",
  "8",
  "16",
  "32",
  ">=64",
]);

/**
 * fio's "IO depths" distribution: samples of the number of I/Os in flight (the caller samples at
 * each submission), counted under the largest of fio's labels 1, 2, 4, 8, 16, 32, >=64 that is
 * ≤ the depth (depth 0 counts under "1").
 */
export class DepthHistogram {
  private readonly counts = new Float64Array(DEPTH_LABELS.length);
  private n = 0;
  private total = 0;

  /** Counts one sample. Throws a `RangeError` for a negative or non-finite depth. */
  record(depth: number): void {
    if (!(depth >= 0 && depth <= Number.MAX_VALUE)) {
      throw new RangeError(`depth must be finite and non-negative, got ${String(depth)}`);
    }
    // Labels are powers of two: the label index is floor(log2 depth) up to 64 (clz32 truncates
    // the depth to an integer, which does not change floor(log2)).
    const b = depth < 2 ? 0 : depth >= 64 ? 6 : 31 - Math.clz32(depth);
    this.counts[b] = (this.counts[b] as number) + 1;
    this.n++;
    this.total += depth;
  }

  /** Samples counted. */
  get count(): number {
    return this.n;
  }

  /** The mean sampled depth, 0 when empty. */
  get mean(): number {
    return this.n === 0 ? 0 : this.total / this.n;
  }

  /**
   * The percentage of samples under each label, in label order; they sum to 100 (up to
   * floating-point rounding) when there are samples, and are all 0 when there are none.
   */
  distribution(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < DEPTH_LABELS.length; i++) {
      out[DEPTH_LABELS[i] as string] =
        this.n === 0 ? 0 : ((this.counts[i] as number) * 100) / this.n;
    }
    return out;
  }

  /** Forgets every sample. */
  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.total = 0;
  }
}

/**
 * The time-weighted mean of a step function of simulated time (the achieved mean queue depth).
 * The value is 0 from the start until the first `set`.
 */
export class TimeAverage {
  private startNs: number;
  private lastNs: number;
  private value = 0;
  private area = 0;
  private peak = 0;

  /** Starts the average at `startNs` with value 0. */
  constructor(startNs = 0) {
    if (!Number.isFinite(startNs)) {
      throw new RangeError(`start time must be finite, got ${String(startNs)}`);
    }
    this.startNs = startNs;
    this.lastNs = startNs;
  }

  /**
   * Records that the value becomes `value` at `atNs`. Throws a `RangeError` if `atNs` is before
   * the previous change (times never go backwards) or either argument is not finite.
   */
  set(value: number, atNs: number): void {
    if (!(atNs >= this.lastNs && atNs <= Number.MAX_VALUE)) this.backwards(atNs);
    if (!Number.isFinite(value)) {
      throw new RangeError(`value must be finite, got ${String(value)}`);
    }
    this.area += this.value * (atNs - this.lastNs);
    this.lastNs = atNs;
    this.value = value;
    if (value > this.peak) this.peak = value;
  }

  /**
   * Forgets everything before `atNs` but keeps the current value (for the end of a ramp-up
   * period). Throws a `RangeError` if `atNs` is before the last change.
   */
  restart(atNs: number): void {
    if (!(atNs >= this.lastNs && atNs <= Number.MAX_VALUE)) this.backwards(atNs);
    this.startNs = atNs;
    this.lastNs = atNs;
    this.area = 0;
    this.peak = this.value;
  }

  /**
   * The time-average over [start, endNs], 0 for an empty interval. Throws a `RangeError` if
   * `endNs` is before the last change.
   */
  mean(endNs: number): number {
    if (!(endNs >= this.lastNs && endNs <= Number.MAX_VALUE)) this.backwards(endNs);
    const span = endNs - this.startNs;
    if (span <= 0) return 0;
    return (this.area + this.value * (endNs - this.lastNs)) / span;
  }

  /** The largest value held since the start (or the last restart), at least the current one. */
  get max(): number {
    return this.peak;
  }

  /** The current value. */
  get current(): number {
    return this.value;
  }

  private backwards(atNs: number): never {
    throw new RangeError(
      `time must be finite and not before ${this.lastNs} ns, got ${String(atNs)}`,
    );
  }
}
