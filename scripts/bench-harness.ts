/**
 * The benchmark harness every package's `bench/*.bench.ts` uses. A bench file default-exports
 * `defineBenchmarks([...])`; `pnpm bench` (scripts/bench.mjs) runs them with tinybench and
 * reports ns per operation.
 *
 * A case's `fn` performs `ops` operations per call (default 1), so that operations of a few
 * nanoseconds are timed in batches and the per-call timer overhead does not swamp them.
 * `baseline` names another case of the same file measured in the same run; the report gives
 * the ratio case / baseline.
 */
export interface BenchCase {
  /** `<area>/<op>/<size>`, e.g. `iova/alloc+free/rcache-hit`. */
  readonly name: string;
  /** Performs `ops` operations. */
  readonly fn: () => void;
  /** Operations per call of `fn` (default 1). */
  readonly ops?: number;
  /** The name of a case in the same file to compare with. */
  readonly baseline?: string;
  /** A target in ns/op, reported beside the figure. */
  readonly targetNs?: number;
  /** What the figure means, for BENCHMARKS.md. */
  readonly note?: string;
  /**
   * Rounds in which this case and its `baseline` are timed alternately (after one warm-up
   * round): the ratio is then the median of this case's rounds over the median of the
   * baseline's, taken in the same rounds, so both see the same host load and the same JIT
   * state instead of whichever the order of the file gave them.
   */
  readonly interleaved?: number;
}

/** Declares the benchmarks of one file. */
export function defineBenchmarks(cases: readonly BenchCase[]): readonly BenchCase[] {
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.name)) throw new Error(`benchmark ${c.name} is declared twice`);
    seen.add(c.name);
  }
  for (const c of cases) {
    if (c.interleaved !== undefined && c.baseline === undefined) {
      throw new Error(`benchmark ${c.name} is interleaved but names no baseline`);
    }
    if (c.baseline !== undefined && !seen.has(c.baseline)) {
      throw new Error(
        `benchmark ${c.name} names baseline ${c.baseline}, which is not in the same file`,
      );
    }
  }
  return cases;
}
