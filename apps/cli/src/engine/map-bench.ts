/**
 * The kernel's `dma_map_benchmark` (kernel/dma/map_benchmark.c + tools/dma/dma_map_benchmark)
 * on the simulated machine: threads loop map → optional transfer delay → unmap of a buffer of
 * `granule` pages, each thread on its own CPU. A map or unmap costs what the cost model prices,
 * plus its acquisitions of the shared resources (the IOMMU's invalidation queue, the IOVA tree
 * lock, …), which the threads contend for on the simulated clock exactly as the workload engine's
 * CPUs do: with many threads in strict mode they queue on the one invalidation queue. Latencies
 * are sampled into 100 ns units with integer division as the kernel does (anything under 100 ns
 * counts as 0); the exact means in ns are reported beside them. The run lasts `seconds` of
 * simulated time, or stops at `maxLoops` map/unmap loops in total and says so.
 */
import {
  DMA_DIRECTION,
  type DmaDirection,
  SgTable,
  dmaMapPhys,
  dmaMapSgtable,
  dmaUnmapPhys,
  dmaUnmapSgtable,
} from "@dmasim/dma-core";
import { type CostTable, Pricer } from "./cost.ts";
import { JobError } from "./errors.ts";
import { parseJob } from "./job.ts";
import { buildMachine, counterRef, counterSources, effectiveIommuMode } from "./machine.ts";
import { type ProfileName, jobCosts } from "./profiles.ts";
import { ResourceSet } from "./resources.ts";
import { Timeline, Timelines } from "./timeline.ts";

/** Options, as the user tool takes them. */
export interface MapBenchOptions {
  readonly threads: number;
  readonly seconds: number;
  readonly node: number;
  readonly bits: number;
  readonly dir: 0 | 1 | 2;
  readonly delayNs: number;
  readonly granule: number;
  readonly mode: 0 | 1;
  readonly iommu: "none" | "passthrough" | "strict" | "lazy";
  /** The hardware profile whose costs price the run (default intel-vtd). */
  readonly profile?: ProfileName;
  /** The whole cost table (default: the profile's). */
  readonly costs?: CostTable;
  /** Stop after this many map/unmap loops in total (the simulated time may then be shorter). */
  readonly maxLoops?: number;
  readonly now?: () => number;
}

/** The results (the kernel's struct map_benchmark, plus exact figures and the simulator's speed). */
export interface MapBenchResult {
  readonly avgMap100ns: number;
  readonly mapStddev: number;
  readonly avgUnmap100ns: number;
  readonly unmapStddev: number;
  /** Exact means and standard deviations, ns. */
  readonly avgMapNs: number;
  readonly mapStddevNs: number;
  readonly avgUnmapNs: number;
  readonly unmapStddevNs: number;
  readonly loops: number;
  /** Simulated seconds the slowest thread ran. */
  readonly simulatedSeconds: number;
  /** Map+unmap loops per thread per simulated second. */
  readonly loopsPerThreadPerSecond: number;
  /** Why it stopped: its `seconds` ran out, or the loop cap was reached first. */
  readonly stoppedBy: "seconds" | "maxLoops";
  /** Time threads waited for shared resources, per loop, by resource kind (ns). */
  readonly waitNsPerLoop: Readonly<Record<string, number>>;
  readonly lines: readonly [string, string, string];
  /** The simulator's wall-clock time per map+unmap (host ns; not a model figure). */
  readonly hostNsPerOp: number;
}

const DIR_NAMES = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE"] as const;

/** Validates options with the user tool's ranges. */
export function checkMapBenchOptions(o: MapBenchOptions): void {
  const range = (v: number, lo: number, hi: number, what: string) => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new JobError([`invalid ${what} ${v}, must be in ${lo}-${hi}`]);
  };
  range(o.threads, 1, 1024, "number of threads");
  range(o.seconds, 1, 300, "test seconds");
  // The simulated machine has one NUMA node (0); -1 asks for no preference.
  if (o.node !== -1 && o.node !== 0)
    throw new JobError([
      `invalid numa node ${o.node}: the simulated machine has node 0 only (or -1)`,
    ]);
  range(o.bits, 20, 64, "dma mask bit");
  range(o.dir, 0, 2, "dma direction");
  range(o.delayNs, 0, 10_000_000, "transmit delay");
  range(o.granule, 1, 1024, "granule size");
}

function isqrt(n: number): number {
  return Math.floor(Math.sqrt(Math.max(0, n)));
}

const MAP = 0;
const UNMAP = 1;

/** One benchmark thread: its timeline, buffer and where it is in its map/unmap loop. */
class Thread extends Timeline {
  readonly cpu: number;
  readonly buf: number;
  readonly sg: SgTable | null;
  addr = 0;
  /** The operation in progress or next: MAP or UNMAP. */
  stage = MAP;
  done = false;

  constructor(id: number, cpu: number, buf: number, sg: SgTable | null) {
    super(id);
    this.cpu = cpu;
    this.buf = buf;
    this.sg = sg;
  }
}

/** Runs the benchmark. */
export function runMapBench(o: MapBenchOptions): MapBenchResult {
  checkMapBenchOptions(o);
  const wall = o.now ?? (() => performance.now());
  const t0 = wall();
  const profile = o.profile ?? "intel-vtd";
  const job = parseJob({
    machine: { cpus: Math.min(64, o.threads), profile },
    iommu: { mode: o.iommu },
    device: { dmaMaskBits: o.bits },
    workload: { ios: 1 },
  });
  const m = buildMachine(job);
  m.dev.setMaskBits(o.bits);
  const sources = counterSources(m);
  const pricer = new Pricer(o.costs ?? jobCosts(job, effectiveIommuMode(job)), (n) =>
    counterRef(m, sources, n),
  );
  const res = new ResourceSet(job, Math.ceil(o.threads / job.machine.cpus));
  const ps = m.memory.pageSize;
  const size = o.granule * ps;
  const dir = o.dir as DmaDirection;
  const threads: Thread[] = Array.from({ length: o.threads }, (_, t) => {
    const order = Math.ceil(Math.log2(o.granule));
    const sg = o.mode === 1 ? new SgTable(o.granule) : null;
    let buf = 0;
    if (sg) {
      const pages = m.memory.allocScattered(o.granule, 1000 + t);
      pages.forEach((p, i) => {
        const e = sg.sgl[i];
        if (e) {
          e.phys = p * ps;
          e.length = ps;
        }
      });
      sg.origNents = o.granule;
    } else {
      buf = m.memory.allocPages(order) * ps;
    }
    return new Thread(t, t % job.machine.cpus, buf, sg);
  });
  const limit = o.seconds * 1e9;
  const maxLoops = o.maxLoops ?? Infinity;
  let loops = 0;
  let stoppedBy: "seconds" | "maxLoops" = "seconds";
  let sumMap = 0;
  let sumSqMap = 0;
  let sumUnmap = 0;
  let sumSqUnmap = 0;
  let sumMapNs = 0;
  let sumSqMapNs = 0;
  let sumUnmapNs = 0;
  let sumSqUnmapNs = 0;
  let endTime = 0;

  // Each thread is a timeline whose pieces of work alternate map and unmap (with the transfer
  // delay between them); their resource acquisitions contend with the other threads'.
  const tl = new Timelines<Thread>(m.clock, pricer, threads, {
    hasWork: (th) => !th.done,
    start: (th, t) => {
      if (th.stage === MAP && (t >= limit || loops >= maxLoops)) {
        if (t < limit) stoppedBy = "maxLoops";
        th.done = true;
        endTime = Math.max(endTime, t);
        return false;
      }
      m.dev.cpu = th.cpu;
      if (th.stage === MAP) {
        if (dir !== DMA_DIRECTION.FROM_DEVICE) {
          if (th.sg) for (const e of th.sg.sgl) m.memory.fill(e.phys, e.length, 0x66);
          else m.memory.fill(th.buf, size, 0x66);
        }
        if (th.sg) dmaMapSgtable(m.dev, th.sg, dir);
        else th.addr = dmaMapPhys(m.dev, th.buf, size, dir);
      } else if (th.sg) dmaUnmapSgtable(m.dev, th.sg, dir);
      else dmaUnmapPhys(m.dev, th.addr, size, dir);
      tl.plan(th, t, tl.price(), tl.counts, (k) => res.instance(k, 0, th.cpu, 1));
      return true;
    },
    finish: (th) => {
      const ns = th.cursor - th.segStart;
      const v = Math.floor(ns / 100);
      if (th.stage === MAP) {
        sumMap += v;
        sumSqMap += v * v;
        sumMapNs += ns;
        sumSqMapNs += ns * ns;
        th.stage = UNMAP;
        th.cursor += o.delayNs;
      } else {
        sumUnmap += v;
        sumSqUnmap += v * v;
        sumUnmapNs += ns;
        sumSqUnmapNs += ns * ns;
        th.stage = MAP;
        loops++;
      }
    },
    clockEvent: (t) => {
      m.clock.advanceTo(t);
      // Work done by timers is not part of any thread's latencies.
      tl.price();
    },
    drained: () => false,
  });
  for (const th of threads) tl.wake(th, 0);
  tl.run();
  const n = Math.max(1, loops);
  const avgMap = Math.floor(sumMap / n);
  const avgUnmap = Math.floor(sumUnmap / n);
  const mapStd = isqrt(Math.floor(sumSqMap / n) - avgMap * avgMap);
  const unmapStd = isqrt(Math.floor(sumSqUnmap / n) - avgUnmap * avgUnmap);
  const mean = (s: number) => s / n;
  const std = (s: number, sq: number) => Math.sqrt(Math.max(0, sq / n - (s / n) ** 2));
  const lines: [string, string, string] = [
    `dma mapping benchmark(${o.mode === 1 ? "SG_MODE" : "SINGLE_MODE"}): threads:${o.threads} seconds:${o.seconds} node:${o.node} dir:${DIR_NAMES[o.dir]} granule:${o.granule}`,
    `average map latency(us):${(avgMap / 10).toFixed(1)} standard deviation:${(mapStd / 10).toFixed(1)}`,
    `average unmap latency(us):${(avgUnmap / 10).toFixed(1)} standard deviation:${(unmapStd / 10).toFixed(1)}`,
  ];
  const waits: Record<string, number> = {};
  for (const r of res.instances()) waits[r.kind] = (waits[r.kind] ?? 0) + r.waitNs / n;
  const wallNs = (wall() - t0) * 1e6;
  const seconds = endTime / 1e9;
  return {
    avgMap100ns: avgMap,
    mapStddev: mapStd,
    avgUnmap100ns: avgUnmap,
    unmapStddev: unmapStd,
    avgMapNs: mean(sumMapNs),
    mapStddevNs: std(sumMapNs, sumSqMapNs),
    avgUnmapNs: mean(sumUnmapNs),
    unmapStddevNs: std(sumUnmapNs, sumSqUnmapNs),
    loops,
    simulatedSeconds: seconds,
    loopsPerThreadPerSecond: seconds > 0 ? loops / o.threads / seconds : 0,
    stoppedBy,
    waitNsPerLoop: waits,
    lines,
    hostNsPerOp: loops > 0 ? wallNs / loops : 0,
  };
}
