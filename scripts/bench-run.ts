/**
 * Runs benchmark files (given on the command line) with tinybench and prints one JSON line per
 * case: { name, file, nsPerOp, opsPerSec, baseline?, ratio?, targetNs?, samples }, where nsPerOp
 * is the median sample's time over the case's operations per call.
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
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 2) });
  for (const c of cases) bench.add(c.name, c.fn);
  await bench.run();
  const ns = new Map<string, number>();
  for (const c of cases) {
    const task = bench.getTask(c.name);
    const r = task?.result as
      | { period?: number; latency?: { p50?: number; samplesCount?: number }; error?: unknown }
      | undefined;
    if (r?.error !== undefined)
      throw r.error instanceof Error ? r.error : new Error(String(r.error));
    if (r?.period === undefined) throw new Error(`benchmark ${c.name} produced no result`);
    // The median sample, not the mean: on a shared machine a few samples stretched by another
    // process or a major GC would otherwise move the figure (and every ratio) by tens of percent.
    ns.set(c.name, ((r.latency?.p50 ?? r.period) * 1e6) / (c.ops ?? 1));
  }
  for (const c of cases) {
    const v = ns.get(c.name) as number;
    const base = c.baseline !== undefined ? ns.get(c.baseline) : undefined;
    const line = {
      name: c.name,
      file,
      nsPerOp: Number(v.toFixed(2)),
      opsPerSec: Math.round(1e9 / v),
      ...(c.baseline !== undefined && base !== undefined
        ? { baseline: c.baseline, ratio: Number((v / base).toFixed(3)) }
        : {}),
      ...(c.targetNs !== undefined ? { targetNs: c.targetNs } : {}),
      ...(c.note !== undefined ? { note: c.note } : {}),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}
