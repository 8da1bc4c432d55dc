/**
 * The cost model: prices the events the packages count. Counting stays in the packages; pricing
 * happens only here. A cost entry prices one or more counters in nanoseconds, and says where the
 * time is spent: on the CPU that did the work (the default), inside a shared resource the CPU
 * holds or waits on (`resource`), or on the device (`on: "device"`, added to the command's
 * service time). The tables of each hardware profile, with their sources, are in profiles.ts; a
 * user can replace any entry with a JSON file.
 */
import { z } from "zod";
import { JobError } from "./errors.ts";

/**
 * Cost categories, for the per-I/O breakdown. `wait` is not priced by any entry: it is the
 * time CPUs spent waiting for a shared resource another CPU held.
 */
export const COST_CATEGORIES = [
  "block",
  "irq",
  "doorbell",
  "dma-api",
  "iova",
  "pagetable",
  "iotlb",
  "flush-queue",
  "bounce",
  "cache",
  "descriptors",
  "scatterlist",
  "wait",
] as const;
/** A cost category. */
export type CostCategory = (typeof COST_CATEGORIES)[number];

/**
 * The shared resources the engine models as contended servers on the simulated clock (see
 * resources.ts for what each stands for and how many of it a machine has).
 */
export const RESOURCE_KINDS = [
  "iommu-invalidation-queue",
  "iova-tree-lock",
  "rcache-depot-lock",
  "fq-lock",
  "swiotlb-area-lock",
  "nvme-sq-lock",
] as const;
/** A kind of shared resource. */
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** One priced event. */
export interface CostEntry {
  /** Nanoseconds per event (or per byte when `perByte`). */
  readonly ns: number;
  /** The counters that count the event, as `scope.name` (summed). */
  readonly counters: readonly string[];
  readonly category: CostCategory;
  readonly perByte?: boolean;
  /**
   * Each event is one acquisition of this shared resource, held for `ns`: a lock's critical
   * section, or the hardware's service time of an invalidation the CPU waits for. The CPU is busy
   * for the hold and for any wait before it.
   */
  readonly resource?: ResourceKind;
  /** "device": the time is the device's (an IOMMU walk on an IOTLB miss), not a CPU's. */
  readonly on?: "cpu" | "device";
  /** Where the number comes from. */
  readonly source: string;
}

/** A cost table: name → entry. */
export type CostTable = Readonly<Record<string, CostEntry>>;

const entrySchema = z
  .object({
    ns: z.number().min(0),
    counters: z.array(z.string()).min(1).optional(),
    category: z.enum(COST_CATEGORIES).optional(),
    perByte: z.boolean().optional(),
    resource: z.enum(RESOURCE_KINDS).optional(),
    on: z.enum(["cpu", "device"]).optional(),
    source: z.string().optional(),
  })
  .strict();

/**
 * The problems of a cost table: a counter no part of the machine counts (it would price
 * nothing, silently), or a cost that is not a finite number. `known` is every counter name
 * (`knownCounters()` in machine.ts).
 */
export function costProblems(table: CostTable, known: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [name, e] of Object.entries(table)) {
    if (!Number.isFinite(e.ns) || e.ns < 0)
      out.push(`costs.${name}.ns: ${e.ns} is not a finite number of ns >= 0`);
    for (const c of e.counters)
      if (!known.has(c)) {
        const scope = c.slice(0, c.lastIndexOf("."));
        const inScope = [...known].filter((k) => k.startsWith(`${scope}.`));
        out.push(
          `costs.${name}.counters: "${c}" is not a counter; ${
            inScope.length > 0
              ? `scope ${scope} has ${inScope.map((k) => k.slice(scope.length + 1)).join(", ")}`
              : `the scopes are ${[...new Set([...known].map((k) => k.slice(0, k.lastIndexOf("."))))].join(", ")}`
          }`,
        );
      }
  }
  return out;
}

/** Validates a user cost file and merges it over `base` (a bare number sets `ns`). */
export function loadCostTable(input: unknown, base: CostTable): CostTable {
  const schema = z.record(
    z.string(),
    z.union([z.number().min(0), entrySchema], {
      error: (iss) =>
        typeof iss.input === "number"
          ? `${iss.input} is not a finite number of ns >= 0`
          : "expected a number of ns, or an entry {ns, counters, category, perByte?, resource?, on?, source?}",
    }),
  );
  const r = schema.safeParse(input);
  if (!r.success) {
    throw new JobError(r.error.issues.map((i) => `costs.${i.path.join(".")}: ${i.message}`));
  }
  const out: Record<string, CostEntry> = { ...base };
  for (const [k, v] of Object.entries(r.data)) {
    const prev = out[k];
    if (typeof v === "number") {
      if (!prev)
        throw new JobError([
          `costs.${k}: unknown cost entry (a new entry needs counters and a category)`,
        ]);
      out[k] = { ...prev, ns: v, source: `${prev.source} (overridden)` };
    } else {
      const counters = v.counters ?? prev?.counters;
      const category = v.category ?? prev?.category;
      if (!counters || !category)
        throw new JobError([`costs.${k}: a new entry needs counters and a category`]);
      out[k] = {
        ns: v.ns,
        counters,
        category,
        ...(v.perByte !== undefined
          ? { perByte: v.perByte }
          : prev?.perByte !== undefined
            ? { perByte: prev.perByte }
            : {}),
        ...((v.resource ?? prev?.resource) !== undefined
          ? { resource: (v.resource ?? prev?.resource) as ResourceKind }
          : {}),
        ...((v.on ?? prev?.on) !== undefined ? { on: v.on ?? prev?.on ?? "cpu" } : {}),
        source: v.source ?? prev?.source ?? "user",
      };
    }
  }
  return out;
}

/** Where a live counter is read: `target[key]`. */
export interface CounterRef {
  readonly target: Readonly<Record<string, number>>;
  readonly key: string;
}

/** One resource-holding entry of a table, as the pricer counts it. */
export interface PricedResource {
  /** The entry's name in the table. */
  readonly name: string;
  readonly kind: ResourceKind;
  /** Hold (or service) time of one acquisition, ns. */
  readonly ns: number;
  readonly category: CostCategory;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

type Targets = readonly Readonly<Record<string, number>>[];

/**
 * A price as a literal of the compiled sums: a number's shortest decimal form reads back as the
 * same double (parenthesised, so that an exponent or a sign stays one operand).
 */
function priceLiteral(ns: number): string {
  return `(${Object.is(ns, -0) ? "-0" : String(ns)})`;
}

/** Compiled sums kept at most. */
const COMPILED_KEPT = 64;
/**
 * The sums compiled lately, by their source: a process that runs many jobs with one cost table
 * (a sweep, a validation set, the benchmarks) makes each sum once. Each run binds its own counter
 * sets by calling the kept function, and the closures it returns share the JIT's feedback and
 * optimized code with the earlier runs' (a function made anew each run starts cold: interpreted
 * for its first thousands of calls).
 */
const compiledSums = new Map<string, (t: Targets) => unknown>();

/** `new Function(...params, body)`, made once per source. */
function compiled(params: readonly string[], body: string): (t: Targets) => unknown {
  const key = `${params.join(",")}\n${body}`;
  const kept = compiledSums.get(key);
  if (kept !== undefined) return kept;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- built from counter names checked above
  const f = new Function(...params, body) as (t: Targets) => unknown;
  if (compiledSums.size >= COMPILED_KEPT)
    compiledSums.delete(compiledSums.keys().next().value as string);
  compiledSums.set(key, f);
  return f;
}

/**
 * A compiled pricer over live counters. The engine asks for totals several times per simulated
 * I/O, so each sum is compiled into one function of plain property reads (one object per counter
 * set, one literal key per term) rather than a loop of computed-key lookups; the terms and their
 * order are the table's. A counter name may resolve to several counter sets (one per controller),
 * which are summed.
 *
 * - `cpu()`: CPU ns of everything counted so far by entries that hold no resource;
 * - `counts(out)`: for each resource entry (`resources[i]`), the events counted so far;
 * - `device()`: device ns of everything counted so far (entries `on: "device"`);
 * - `byCategory()`: CPU ns by category, resource holds included (waits are the engine's).
 */
export class Pricer {
  readonly table: CostTable;
  /** The resource-holding entries, in table order; `counts` fills one slot each. */
  readonly resources: readonly PricedResource[];
  private readonly terms: { get: () => number; ns: number; category: number }[] = [];
  private readonly cpuSum: () => number;
  private readonly deviceSum: () => number;
  private readonly countInto: (out: Float64Array) => void;

  constructor(table: CostTable, lookup: (name: string) => readonly CounterRef[]) {
    this.table = table;
    const targets: Readonly<Record<string, number>>[] = [];
    const cpuParts: string[] = [];
    const deviceParts: string[] = [];
    const countParts: string[] = [];
    const resources: PricedResource[] = [];
    const read = (ref: CounterRef): string => {
      let ti = targets.indexOf(ref.target);
      if (ti < 0) ti = targets.push(ref.target) - 1;
      return IDENT.test(ref.key)
        ? `(t${ti}.${ref.key} ?? 0)`
        : `(t${ti}[${JSON.stringify(ref.key)}] ?? 0)`;
    };
    for (const [name, e] of Object.entries(table)) {
      const reads: string[] = [];
      for (const c of e.counters) {
        for (const ref of lookup(c)) {
          const { target, key } = ref;
          reads.push(read(ref));
          if (e.on !== "device")
            this.terms.push({
              get: () => target[key] ?? 0,
              ns: e.ns,
              category: COST_CATEGORIES.indexOf(e.category),
            });
        }
      }
      if (reads.length === 0) continue;
      const sum = reads.join(" + ");
      if (e.on === "device") {
        deviceParts.push(`(${sum}) * ${priceLiteral(e.ns)}`);
      } else if (e.resource !== undefined) {
        countParts.push(`o[${resources.length}] = ${sum};`);
        resources.push({ name, kind: e.resource, ns: e.ns, category: e.category });
      } else {
        cpuParts.push(`(${sum}) * ${priceLiteral(e.ns)}`);
      }
    }
    this.resources = resources;
    // Each counter set is a variable of the closure (`t0`, `t1`, ...) and each price a literal
    // (a number's decimal form reads back as the same double), so a term is one property read
    // and one multiplication: no array loads on the way.
    const bind = targets.map((_, i) => `const t${i} = t[${i}];`).join(" ");
    const sumOf = (parts: string[]) =>
      (
        compiled(["t"], `${bind} return () => 0${parts.map((p) => ` + ${p}`).join("")};`) as (
          t: Targets,
        ) => () => number
      )(targets);
    this.cpuSum = sumOf(cpuParts);
    this.deviceSum = sumOf(deviceParts);
    this.countInto = (
      compiled(["t"], `${bind} return (o) => { ${countParts.join(" ")} };`) as (
        t: Targets,
      ) => (o: Float64Array) => void
    )(targets);
  }

  /** CPU ns of everything counted so far by entries that hold no resource. */
  cpu(): number {
    return this.cpuSum();
  }

  /** Device ns of everything counted so far. */
  device(): number {
    return this.deviceSum();
  }

  /** Fills `out[i]` with the events counted so far by `resources[i]`. */
  counts(out: Float64Array): void {
    this.countInto(out);
  }

  /** CPU ns of everything counted so far, resource holds included. */
  total(): number {
    let t = 0;
    for (const x of this.terms) t += x.get() * x.ns;
    return t;
  }

  /** CPU ns by category of everything counted so far (resource holds included; `wait` is 0). */
  byCategory(): Record<CostCategory, number> {
    const out = Object.fromEntries(COST_CATEGORIES.map((c) => [c, 0])) as Record<
      CostCategory,
      number
    >;
    for (const t of this.terms) {
      const cat = COST_CATEGORIES[t.category] as CostCategory;
      out[cat] += t.get() * t.ns;
    }
    return out;
  }
}
