/**
 * Event counters. Each layer owns a `CounterSet` with a fixed list of names and increments its
 * fields directly (`counters.c.pteWrites++`), which costs no more than a property update.
 * Snapshots and differences let the engine measure what one I/O or one run caused. A few names
 * are gauges instead (a level such as ranges live or slots in use, or a high-water mark): the
 * set says which, since a difference of a gauge is not a count of events.
 */
import { BvecError } from "./errors.ts";

/** A frozen copy of a counter set's values. */
export type CounterSnapshot<K extends string> = Readonly<Record<K, number>>;

/** A fixed set of named event counters, cheap to increment in hot paths. */
export class CounterSet<K extends string> {
  /** The name of the set, e.g. `"iova"` or `"pagetable"`. */
  readonly scope: string;
  /** The counter names, in declaration order. */
  readonly names: readonly K[];
  /** The live values: increment them directly (`set.c.hits++`). */
  readonly c: Record<K, number>;
  /** The names that are gauges (levels or high-water marks), not counts of events. */
  readonly gauges: readonly K[];

  constructor(scope: string, names: readonly K[], gauges: readonly K[] = []) {
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n))
        throw new BvecError("EINVAL", `counter ${JSON.stringify(n)} declared twice in ${scope}`);
      seen.add(n);
    }
    for (const g of gauges) {
      if (!seen.has(g))
        throw new BvecError("EINVAL", `gauge ${JSON.stringify(g)} is not a counter of ${scope}`);
    }
    this.scope = scope;
    this.names = names;
    this.gauges = gauges;
    // Built with JSON.parse so that V8 gives the object fast properties whatever the number of
    // counters (an object filled key by key turns into a slow dictionary past ~16 keys).
    this.c = JSON.parse(`{${names.map((n) => `${JSON.stringify(n)}:0`).join(",")}}`) as Record<
      K,
      number
    >;
  }

  /** A copy of the current values. */
  snapshot(): CounterSnapshot<K> {
    const out = {} as Record<K, number>;
    for (const n of this.names) out[n] = this.c[n];
    return out;
  }

  /** Sets every counter back to 0. */
  reset(): void {
    for (const n of this.names) this.c[n] = 0;
  }
}

/** `after - before`, counter by counter. */
export function diffCounters<K extends string>(
  before: CounterSnapshot<K>,
  after: CounterSnapshot<K>,
): CounterSnapshot<K> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(after) as K[])
    out[k] = after[k] - ((before[k] as number | undefined) ?? 0);
  return out;
}

/** The gauges of several counter sets, as `"scope.name"`. */
export function collectGauges(sets: readonly CounterSet<string>[]): string[] {
  return sets.flatMap((s) => s.gauges.map((g) => `${s.scope}.${g}`));
}

/** Flattens several counter sets into one `{ "scope.name": value }` record. */
export function collectCounters(sets: readonly CounterSet<string>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of sets) for (const n of s.names) out[`${s.scope}.${n}`] = s.c[n] ?? 0;
  return out;
}
