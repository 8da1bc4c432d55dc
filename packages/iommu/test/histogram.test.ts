import { describe, expect, it } from "vitest";
import { NsHistogram } from "../src/index.ts";

describe("NsHistogram", () => {
  it("gives exact small values and percentiles within 1.6 % for large ones", () => {
    const h = new NsHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i * 1000);
    const s = h.summary();
    expect(s.count).toBe(1000);
    expect(s.maxNs).toBe(1_000_000);
    expect(s.meanNs).toBe(500_500);
    expect(Math.abs(s.p99Ns - 990_000) / 990_000).toBeLessThan(0.016);
    expect(Math.abs(s.p50Ns - 500_000) / 500_000).toBeLessThan(0.016);
    const small = new NsHistogram();
    small.record(0);
    small.record(7);
    expect(small.quantile(1)).toBe(7);
    expect(small.quantile(0.5)).toBe(0);
    expect(new NsHistogram().summary().p99Ns).toBe(0);
  });

  it("handles values near 2^53", () => {
    const h = new NsHistogram();
    h.record(2 ** 52);
    expect(h.quantile(0.99)).toBe(2 ** 52);
  });

  it("gives the distribution in log-spaced bins that hold every value once", () => {
    const h = new NsHistogram();
    for (let i = 0; i < 90; i++) h.record(1_000_000); // 1 ms
    for (let i = 0; i < 10; i++) h.record(10_000_000); // 10 ms
    h.record(0);
    const bins = h.bins(10);
    expect(bins.reduce((a, b) => a + b.count, 0)).toBe(101);
    expect(bins[0]).toMatchObject({ lowNs: 0, count: 1 });
    const ms = bins.find((b) => b.lowNs <= 1_000_000 && 1_000_000 < b.highNs);
    expect(ms?.count).toBe(90);
    const tenMs = bins.find((b) => b.lowNs <= 10_000_000 && 10_000_000 < b.highNs);
    expect(tenMs?.count).toBe(10);
    for (let i = 1; i < bins.length; i++)
      expect((bins[i] as { lowNs: number }).lowNs).toBeGreaterThanOrEqual(
        (bins[i - 1] as { highNs: number }).highNs * 0.999999,
      );
    expect(new NsHistogram().bins()).toEqual([]);
    expect(() => h.bins(0)).toThrow(/bins per decade 0/);
  });
});
