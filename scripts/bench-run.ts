/**
 * Runs benchmark files (given on the command line) with tinybench and prints one JSON line per
 * case: { name, file, nsPerOp, opsPerSec, baseline?, ratio?, interleaved?, baselineNsPerOp?,
 * targetNs?, note? }, where nsPerOp is the median sample's time over the case's operations per
 * call. An `interleaved` case is timed in rounds alternating with its baseline; its ratio and
 * `baselineNsPerOp` come from those rounds (see `BenchCase.interleaved`).
 * Invoked by scripts/bench.mjs under tsx with the @dmasim/source condition.
 */
import { Bench } from "tinybench";
import { pathToFileURL } from "node:url";
import type { BenchCase } from "./bench-harness.ts";

const args = process.argv.slice(2);
const timeIdx = args.indexOf("--time");
const timeMs = timeIdx >= 0 ? Number(args[timeIdx + 1]) : 400;
const files = args.filter((a, i) => !a.startsWith("--") && (timeIdx < 0 || i !== timeIdx + 1));

for (const file of files) {
  const mod = (await import(pathToFileURL(file).href)) as { default: readonly BenchCase[] };
  const cases = mod.default;
  const ns = new Map<string, number>();
  // Every case that is not interleaved (those are timed below, in rounds with their baseline).
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 2) });
  const plain = cases.filter((c) => c.interleaved === undefined);
  for (const c of plain) bench.add(c.name, c.fn);
  await bench.run();
  for (const c of plain) {
    const task = bench.getTask(c.name);
    const r = task?.result as
      | { period?: number; latency?: { p50?: number; samplesCount?: number }; error?: unknown }
      | undefined;
    if (r?.error !== undefined)
      throw r.error instanceof Error
        ? r.error
        : new Error(`benchmark ${c.name} failed`, { cause: r.error });
    if (r?.period === undefined) throw new Error(`benchmark ${c.name} produced no result`);
    // The median sample, not the mean: on a shared machine a few samples stretched by another
    // process or a major GC would otherwise move the figure (and every ratio) by tens of percent.
    ns.set(c.name, ((r.latency?.p50 ?? r.period) * 1e6) / (c.ops ?? 1));
  }
  /** Interleaved cases: their figure and their baseline's, from the same rounds. */
  const pairs = new Map<string, { ns: number; baseNs: number }>();
  for (const c of cases) {
    if (c.interleaved === undefined) continue;
    const b = cases.find((x) => x.name === c.baseline) as BenchCase;
    const mine: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round <= c.interleaved; round++) {
      const tb = timeFor(b);
      const tc = timeFor(c);
      if (round === 0) continue; // the warm-up round
      theirs.push(tb);
      mine.push(tc);
    }
    pairs.set(c.name, { ns: median(mine), baseNs: median(theirs) });
    ns.set(c.name, median(mine));
  }
  for (const c of cases) {
    const v = ns.get(c.name) as number;
    const pair = pairs.get(c.name);
    const base = pair?.baseNs ?? (c.baseline !== undefined ? ns.get(c.baseline) : undefined);
    const line = {
      name: c.name,
      file,
      nsPerOp: Number(v.toFixed(2)),
      opsPerSec: Math.round(1e9 / v),
      ...(c.baseline !== undefined && base !== undefined
        ? { baseline: c.baseline, ratio: Number((v / base).toFixed(3)) }
        : {}),
      ...(pair !== undefined
        ? { interleaved: c.interleaved, baselineNsPerOp: Number(pair.baseNs.toFixed(2)) }
        : {}),
      ...(c.targetNs !== undefined ? { targetNs: c.targetNs } : {}),
      ...(c.note !== undefined ? { note: c.note } : {}),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}

/**
 * Host ns per operation of one timing of `c`: its `fn` called again and again until at least
 * 20 ms have passed (once, for a case that takes longer), over the operations done.
 */
function timeFor(c: BenchCase): number {
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    c.fn();
    calls++;
    t = performance.now();
  } while (t - t0 < 20);
  return ((t - t0) * 1e6) / (calls * (c.ops ?? 1));
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
