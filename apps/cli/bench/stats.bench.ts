/** The engine's statistics: recording latencies (called per simulated I/O) and summarising. */
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { LatencyHistogram } from "../src/engine/stats.ts";

const RECORDS = 10_000;

/** Deterministic latency-like values: mostly 5–50 µs, a tail up to about 10 ms, a few small. */
function latencies(n: number, seed: number): Float64Array {
  const out = new Float64Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 16807) % 2147483647; // Park–Miller: exact in doubles
    const u = s / 2147483647;
    out[i] = Math.round(5000 * Math.exp(u * u * 7.6));
  }
  return out;
}

const values = latencies(RECORDS, 1);
const recording = new LatencyHistogram();

const full = new LatencyHistogram();
for (const v of latencies(100_000, 2)) full.record(v);

export default defineBenchmarks([
  {
    name: "stats/histogram-record/1",
    ops: RECORDS,
    note: "LatencyHistogram.record of one latency (count, min, max, sum, Welford variance, bucket)",
    fn: () => {
      for (let i = 0; i < RECORDS; i++) recording.record(values[i]!);
    },
  },
  {
    name: "stats/histogram-percentiles/17",
    note: "LatencyHistogram.summary with fio's 17 default percentiles over 100 000 values",
    fn: () => {
      if (full.summary().count !== 100_000) throw new Error("lost values");
    },
  },
]);
