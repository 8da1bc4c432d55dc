import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_PERCENTILES,
  DepthHistogram,
  LatencyHistogram,
  TimeAverage,
} from "../src/engine/stats.ts";

/** The bound the histogram documents, written out here so that a looser bound fails. */
const REL = 1 / 128;

/** Latencies in ns, with the edges: 0, small integers, powers of two ± 1, 2^32, up to 2^40. */
const edgeArb = fc.constantFrom(
  0,
  1,
  2,
  63,
  64,
  127,
  128,
  255,
  256,
  257,
  511,
  512,
  513,
  1023,
  1024,
  4095,
  4096,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 32 + 1,
  2 ** 40 - 1,
  2 ** 40,
  2 ** 41,
  2 ** 42 - 1,
  2 ** 42,
);
const nsArb = fc.oneof(
  edgeArb,
  fc.integer({ min: 0, max: 100_000 }),
  fc.integer({ min: 0, max: 2 ** 40 }),
  fc.double({ min: 0, max: 2 ** 40, noNaN: true }),
  fc.double({ min: 0, max: 300, noNaN: true }),
);
const valuesArb = fc.array(nsArb, { minLength: 1, maxLength: 300 });
const percentArb = fc.oneof(
  fc.constantFrom(0, 1e-9, 1, 50, 90, 99, 99.9, 99.99, 100),
  fc.double({ min: 0, max: 100, noNaN: true }),
);

function histogramOf(values: readonly number[]): LatencyHistogram {
  const h = new LatencyHistogram();
  for (const v of values) h.record(v);
  return h;
}

/** fio's rank rule on a sorted copy, independently of the implementation. */
function exactPercentile(sorted: readonly number[], p: number): number {
  const x = (p * sorted.length) / 100;
  // Forgive floating-point noise in the product (99.9 % of 1000 is rank 999).
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(x - x * 1e-12)));
  return sorted[rank - 1]!;
}

function sortedCopy(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

describe("LatencyHistogram", () => {
  it("reports every percentile at most max(1 ns, 1/128) above the exact value", () => {
    fc.assert(
      fc.property(valuesArb, fc.array(percentArb, { minLength: 1, maxLength: 5 }), (vs, ps) => {
        const h = histogramOf(vs);
        const sorted = sortedCopy(vs);
        for (const p of ps) {
          const exact = exactPercentile(sorted, p);
          const got = h.percentile(p);
          expect(got).toBeGreaterThanOrEqual(exact);
          // Mathematically strict (< width), but the subtraction may round up to the width.
          expect(got - exact).toBeLessThanOrEqual(Math.max(1, exact * REL));
          if (Number.isInteger(exact) && exact <= 256) expect(got).toBe(exact);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("gives the same values from percentiles() as from percentile() one at a time", () => {
    fc.assert(
      fc.property(valuesArb, (vs) => {
        const h = histogramOf(vs);
        const all = h.percentiles(DEFAULT_PERCENTILES);
        for (const p of DEFAULT_PERCENTILES) expect(all[String(p)]).toBe(h.percentile(p));
      }),
    );
  });

  it("keeps exact count, min, max, mean and population stdev", () => {
    fc.assert(
      fc.property(valuesArb, (vs) => {
        const h = histogramOf(vs);
        const n = vs.length;
        const mean = vs.reduce((s, v) => s + v, 0) / n;
        const variance = vs.reduce((s, v) => s + (v - mean) * (v - mean), 0) / n;
        expect(h.count).toBe(n);
        expect(h.min).toBe(Math.min(...vs));
        expect(h.max).toBe(Math.max(...vs));
        expect(Math.abs(h.mean - mean)).toBeLessThanOrEqual(1e-12 * Math.max(1, h.max));
        expect(Math.abs(h.stdev - Math.sqrt(variance))).toBeLessThanOrEqual(
          1e-9 * Math.max(1, h.max),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("computes stdev without cancellation when the spread is small beside the mean", () => {
    const h = histogramOf([1e12, 1e12 + 1, 1e12 + 2]);
    expect(h.mean).toBe(1e12 + 1);
    expect(h.stdev).toBeCloseTo(Math.sqrt(2 / 3), 9);
    expect(histogramOf([2 ** 40 + 7, 2 ** 40 + 7, 2 ** 40 + 7]).stdev).toBe(0);
  });

  it("matches a hand-computed example of fio's rank rule", () => {
    const h = new LatencyHistogram();
    for (let v = 1; v <= 1000; v++) h.record(v * 1000);
    // rank ceil(p/100 * 1000): values are multiples of 1000, so buckets are at most 1/128 wide.
    expect(h.percentile(50)).toBeGreaterThanOrEqual(500_000);
    expect(h.percentile(50)).toBeLessThan(500_000 * (1 + REL));
    expect(h.percentile(99.9)).toBeGreaterThanOrEqual(999_000);
    expect(h.percentile(99.9)).toBeLessThan(1_000_000);
    expect(h.percentile(100)).toBe(1_000_000);
    expect(h.percentile(0)).toBeGreaterThanOrEqual(1000);
    expect(h.percentile(0)).toBeLessThan(1000 * (1 + REL));

    // 1.1 * 3000 / 100 is 33.00000000000001 in floating point; the rank is still 33.
    const ranked = new LatencyHistogram();
    for (let i = 0; i < 3000; i++) ranked.record(i < 33 ? 1 : 2);
    expect(ranked.percentile(1.1)).toBe(1);
    expect(ranked.percentile(1.2)).toBe(2);

    const small = histogramOf([3, 1, 2, 5, 4]);
    expect(small.percentile(20)).toBe(1);
    expect(small.percentile(21)).toBe(2);
    expect(small.percentile(60)).toBe(3);
    expect(small.percentile(99)).toBe(5);
  });

  it("reports max at p = 100 and at least min at a tiny p", () => {
    fc.assert(
      fc.property(valuesArb, (vs) => {
        const h = histogramOf(vs);
        expect(h.percentile(100)).toBe(Math.max(...vs));
        expect(h.percentile(0)).toBeGreaterThanOrEqual(Math.min(...vs));
        expect(h.percentile(1e-9)).toBeGreaterThanOrEqual(Math.min(...vs));
      }),
    );
  });

  it("uses buckets 1/128 as wide as their power of two up to 2^42 ns", () => {
    for (let e = 8; e <= 41; e++) {
      const lo = 2 ** e;
      const width = 2 ** (e - 7);
      const h = histogramOf([lo, lo + 1, lo + width, lo + width + 1]);
      h.record(2 ** 43); // so that no bucket is clamped to max
      expect(h.buckets().slice(0, 3)).toEqual([
        { upperNs: lo, count: 1 },
        { upperNs: lo + width, count: 2 },
        { upperNs: lo + 2 * width, count: 1 },
      ]);
    }
    expect(histogramOf([2 ** 42, 2 ** 43]).buckets()).toEqual([{ upperNs: 2 ** 43, count: 2 }]);
  });

  it("keeps max exact for values beyond the tracked range", () => {
    const h = histogramOf([10, 2 ** 50, 2 ** 45]);
    expect(h.max).toBe(2 ** 50);
    expect(h.percentile(100)).toBe(2 ** 50);
    expect(h.percentile(50)).toBeLessThanOrEqual(2 ** 50);
    expect(h.percentile(50)).toBeGreaterThanOrEqual(2 ** 42 - 2 ** 34);
    expect(h.buckets().at(-1)).toEqual({ upperNs: 2 ** 50, count: 2 });
  });

  it("throws a RangeError for a percentile outside [0, 100] or not finite", () => {
    const h = histogramOf([1, 2, 3]);
    for (const p of [-1, 101, Number.NaN, Infinity, -Infinity, 100.0001]) {
      expect(() => h.percentile(p)).toThrow(RangeError);
      expect(() => h.percentiles([50, p])).toThrow(RangeError);
    }
    expect(() => new LatencyHistogram().percentile(-1)).toThrow(RangeError);
  });

  it("throws a RangeError when recording a negative or non-finite value", () => {
    const h = new LatencyHistogram();
    for (const v of [-1, -1e-9, Number.NaN, Infinity]) {
      expect(() => h.record(v)).toThrow(RangeError);
    }
    expect(h.count).toBe(0);
  });

  it("keys percentiles as fio prints them", () => {
    const h = histogramOf([100, 200, 300]);
    expect(Object.keys(h.percentiles([50, 99, 99.9, 99.99]))).toEqual([
      "50",
      "99",
      "99.9",
      "99.99",
    ]);
    expect(Object.keys(h.summary().percentilesUs)).toEqual(DEFAULT_PERCENTILES.map(String));
    expect(DEFAULT_PERCENTILES).toEqual([
      1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
    ]);
  });

  it("summarises in microseconds", () => {
    const h = histogramOf([1000, 2000, 3000, 4000]);
    const s = h.summary([50, 100]);
    expect(s.count).toBe(4);
    expect(s.minUs).toBe(1);
    expect(s.maxUs).toBe(4);
    expect(s.meanUs).toBe(2.5);
    expect(s.stdevUs).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(s.percentilesUs["100"]).toBe(4);
    expect(s.percentilesUs["50"]).toBeGreaterThanOrEqual(2);
    expect(s.percentilesUs["50"]).toBeLessThan(2 * (1 + REL));
  });

  it("equals one histogram of everything after a merge", () => {
    fc.assert(
      fc.property(
        fc.array(nsArb, { maxLength: 100 }),
        fc.array(nsArb, { maxLength: 100 }),
        (a, b) => {
          const merged = histogramOf(a);
          merged.merge(histogramOf(b));
          const whole = histogramOf([...a, ...b]);
          expect(merged.count).toBe(whole.count);
          expect(merged.min).toBe(whole.min);
          expect(merged.max).toBe(whole.max);
          expect(merged.mean).toBeCloseTo(whole.mean, 3);
          const scale = Math.max(1, whole.max);
          expect(Math.abs(merged.stdev - whole.stdev)).toBeLessThanOrEqual(1e-9 * scale);
          expect(merged.buckets()).toEqual(whole.buckets());
          expect(merged.percentiles(DEFAULT_PERCENTILES)).toEqual(
            whole.percentiles(DEFAULT_PERCENTILES),
          );
          expect(merged.cdf()).toEqual(whole.cdf());
        },
      ),
    );
  });

  it("doubles every count when merged with itself", () => {
    const h = histogramOf([5, 500, 50_000]);
    h.merge(h);
    expect(h.count).toBe(6);
    expect(h.buckets().map((b) => b.count)).toEqual([2, 2, 2]);
    expect(h.stdev).toBeCloseTo(histogramOf([5, 500, 50_000, 5, 500, 50_000]).stdev, 6);
  });

  it("gives an exact, non-decreasing cdf that ends at (max, 1) within maxPoints", () => {
    fc.assert(
      fc.property(valuesArb, fc.integer({ min: 1, max: 40 }), (vs, maxPoints) => {
        const h = histogramOf(vs);
        const full = h.cdf(100_000);
        const thin = h.cdf(maxPoints);
        expect(thin.length).toBeLessThanOrEqual(maxPoints);
        expect(thin.length).toBe(Math.min(maxPoints, full.length));
        for (const pts of [full, thin]) {
          expect(pts.at(-1)).toEqual({ ns: Math.max(...vs), fraction: 1 });
          for (let i = 1; i < pts.length; i++) {
            expect(pts[i]!.ns).toBeGreaterThan(pts[i - 1]!.ns);
            expect(pts[i]!.fraction).toBeGreaterThan(pts[i - 1]!.fraction);
          }
          for (const { ns, fraction } of pts) {
            expect(fraction).toBe(vs.filter((v) => v <= ns).length / vs.length);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it("thins the cdf to 200 points by default", () => {
    const h = new LatencyHistogram();
    for (let v = 0; v < 100_000; v += 7) h.record(v);
    const pts = h.cdf();
    expect(pts.length).toBe(200);
    expect(pts.at(-1)).toEqual({ ns: h.max, fraction: 1 });
    expect(() => h.cdf(0)).toThrow(RangeError);
    expect(() => h.cdf(1.5)).toThrow(RangeError);
  });

  it("lists the non-empty buckets in order with counts summing to count", () => {
    fc.assert(
      fc.property(valuesArb, (vs) => {
        const bs = histogramOf(vs).buckets();
        expect(bs.reduce((s, b) => s + b.count, 0)).toBe(vs.length);
        for (let i = 1; i < bs.length; i++)
          expect(bs[i]!.upperNs).toBeGreaterThan(bs[i - 1]!.upperNs);
        for (const b of bs) expect(b.count).toBeGreaterThan(0);
        expect(bs.at(-1)!.upperNs).toBeGreaterThanOrEqual(Math.max(...vs));
      }),
    );
    expect(histogramOf([0, 0, 1, 300]).buckets()).toEqual([
      { upperNs: 0, count: 2 },
      { upperNs: 1, count: 1 },
      { upperNs: 300, count: 1 },
    ]);
  });

  it("reports zeros, never NaN, when empty or after reset", () => {
    const fresh = new LatencyHistogram();
    const reset = histogramOf([1, 2, 2 ** 40]);
    reset.reset();
    for (const h of [fresh, reset]) {
      expect([h.count, h.min, h.max, h.mean, h.stdev, h.sum]).toEqual([0, 0, 0, 0, 0, 0]);
      expect(h.percentile(50)).toBe(0);
      expect(h.percentile(100)).toBe(0);
      expect(h.cdf()).toEqual([]);
      expect(h.buckets()).toEqual([]);
      const s = h.summary();
      expect([s.count, s.minUs, s.meanUs, s.stdevUs, s.maxUs]).toEqual([0, 0, 0, 0, 0]);
      expect(Object.values(s.percentilesUs)).toEqual(DEFAULT_PERCENTILES.map(() => 0));
    }
    reset.record(42);
    expect([reset.count, reset.min, reset.max, reset.percentile(50)]).toEqual([1, 42, 42, 42]);
  });
});

describe("DepthHistogram", () => {
  it("counts each depth under the largest fio label at or below it", () => {
    const cases: [number, string][] = [
      [0, "1"],
      [1, "1"],
      [2, "2"],
      [3, "2"],
      [4, "4"],
      [7, "4"],
      [8, "8"],
      [15, "8"],
      [16, "16"],
      [31, "16"],
      [32, "32"],
      [63, "32"],
      [64, ">=64"],
      [1000, ">=64"],
    ];
    for (const [depth, label] of cases) {
      const d = new DepthHistogram();
      d.record(depth);
      const dist = d.distribution();
      expect(Object.keys(dist)).toEqual(["1", "2", "4", "8", "16", "32", ">=64"]);
      for (const [k, v] of Object.entries(dist)) expect(v).toBe(k === label ? 100 : 0);
    }
  });

  it("gives percentages summing to 100 and the mean depth", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1 }), (depths) => {
        const d = new DepthHistogram();
        for (const x of depths) d.record(x);
        const sum = Object.values(d.distribution()).reduce((s, v) => s + v, 0);
        expect(sum).toBeCloseTo(100, 9);
        expect(d.count).toBe(depths.length);
        expect(d.mean).toBeCloseTo(depths.reduce((s, v) => s + v, 0) / depths.length, 9);
      }),
    );
    const d = new DepthHistogram();
    for (const x of [1, 1, 1, 4]) d.record(x);
    expect(d.distribution()).toEqual({
      "1": 75,
      "2": 0,
      "4": 25,
      "8": 0,
      "16": 0,
      "32": 0,
      ">=64": 0,
    });
    expect(d.mean).toBe(1.75);
  });

  it("reports all zeros when empty", () => {
    const d = new DepthHistogram();
    expect(Object.values(d.distribution())).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect([d.count, d.mean]).toEqual([0, 0]);
    expect(() => d.record(-1)).toThrow(RangeError);
  });
});

describe("TimeAverage", () => {
  it("computes the time-weighted mean of a hand-computed step function", () => {
    const t = new TimeAverage();
    t.set(2, 10); // 0 over [0, 10)
    t.set(4, 20); // 2 over [10, 20): 20
    t.set(0, 25); // 4 over [20, 25): 20
    // 0 over [25, 40): total 40 over 40 ns.
    expect(t.mean(40)).toBe(1);
    expect(t.mean(30)).toBeCloseTo(40 / 30, 12);
    expect(t.max).toBe(4);
  });

  it("forgets the past on restart but keeps the current value", () => {
    const t = new TimeAverage(100);
    t.set(8, 100);
    t.set(2, 200);
    t.restart(300); // 2 continues from 300
    t.set(6, 350);
    // 2 over [300, 350) = 100, 6 over [350, 400) = 300: 400 over 100 ns.
    expect(t.mean(400)).toBe(4);
    expect(t.max).toBe(6);
    const u = new TimeAverage();
    u.set(3, 0);
    u.restart(50);
    expect(u.max).toBe(3);
    expect(u.mean(60)).toBe(3);
  });

  it("gives 0 for an empty interval", () => {
    const t = new TimeAverage(10);
    expect(t.mean(10)).toBe(0);
    t.set(5, 10);
    expect(t.mean(10)).toBe(0);
    expect(t.mean(20)).toBe(5);
  });

  it("throws a RangeError when time goes backwards", () => {
    const t = new TimeAverage();
    t.set(1, 100);
    expect(() => t.set(2, 99)).toThrow(RangeError);
    expect(() => t.restart(50)).toThrow(RangeError);
    expect(() => t.mean(99)).toThrow(RangeError);
    expect(() => t.set(2, Number.NaN)).toThrow(RangeError);
    expect(() => t.set(Number.NaN, 200)).toThrow(RangeError);
    // A failed call changes nothing.
    expect(t.mean(200)).toBeCloseTo(0.5, 12);
  });

  it("matches a direct integration of random steps", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 1000 })), {
          minLength: 1,
        }),
        (steps) => {
          const t = new TimeAverage();
          let now = 0;
          let area = 0;
          let value = 0;
          let peak = 0;
          for (const [v, dt] of steps) {
            area += value * dt;
            now += dt;
            t.set(v, now);
            value = v;
            peak = Math.max(peak, v);
          }
          const end = now + 10;
          area += value * 10;
          expect(t.mean(end)).toBeCloseTo(area / end, 9);
          expect(t.max).toBe(peak);
        },
      ),
    );
  });
});
