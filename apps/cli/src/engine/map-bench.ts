/**
 * The kernel's `dma_map_benchmark` (kernel/dma/map_benchmark.c + tools/dma/dma_map_benchmark)
 * on the simulated machine: threads loop map → optional transfer delay → unmap of a buffer of
 * `granule` pages; latencies are the cost model's CPU time, in simulated time, sampled into
 * 100 ns units with integer division as the kernel does (anything under 100 ns counts as 0).
 */
import { checkInt } from "@dmasim/bvec";
import {
  DMA_DIRECTION,
  type DmaDirection,
  SgTable,
  dmaMapPhys,
  dmaMapSgtable,
  dmaUnmapPhys,
  dmaUnmapSgtable,
} from "@dmasim/dma-core";
import { type CostTable, DEFAULT_COSTS, Pricer } from "./cost.ts";
import { parseJob } from "./job.ts";
import { buildMachine, counterRef, counterSources } from "./machine.ts";

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
  readonly costs?: CostTable;
  /** Stop after this many map/unmap loops in total (the simulated time may be shorter). */
  readonly maxLoops?: number;
  readonly now?: () => number;
}

/** The results (the kernel's struct map_benchmark, plus the simulator's own speed). */
export interface MapBenchResult {
  readonly avgMap100ns: number;
  readonly mapStddev: number;
  readonly avgUnmap100ns: number;
  readonly unmapStddev: number;
  readonly loops: number;
  readonly simulatedSeconds: number;
  readonly lines: readonly [string, string, string];
  /** The simulator's wall-clock time per map+unmap (host ns; not a model figure). */
  readonly hostNsPerOp: number;
}

const DIR_NAMES = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE"] as const;

/** Validates options with the user tool's ranges. */
export function checkMapBenchOptions(o: MapBenchOptions): void {
  const range = (v: number, lo: number, hi: number, what: string) => {
    checkInt(v - lo, what);
    if (v < lo || v > hi) throw new RangeError(`invalid ${what} ${v}, must be in ${lo}-${hi}`);
  };
  range(o.threads, 1, 1024, "number of threads");
  range(o.seconds, 1, 300, "test seconds");
  if (o.node < -1) throw new RangeError(`invalid numa node ${o.node}`);
  range(o.bits, 20, 64, "dma mask bit");
  range(o.dir, 0, 2, "dma direction");
  range(o.delayNs, 0, 10_000_000, "transmit delay");
  range(o.granule, 1, 1024, "granule size");
}

function isqrt(n: number): number {
  return Math.floor(Math.sqrt(Math.max(0, n)));
}

/** Runs the benchmark. */
export function runMapBench(o: MapBenchOptions): MapBenchResult {
  checkMapBenchOptions(o);
  const wall = o.now ?? (() => performance.now());
  const t0 = wall();
  const job = parseJob({
    machine: { cpus: Math.min(64, o.threads) },
    iommu: { mode: o.iommu },
    device: { dmaMaskBits: o.bits },
    workload: { ios: 1 },
  });
  const m = buildMachine(job);
  m.dev.setMaskBits(o.bits);
  const sources = counterSources(m);
  const pricer = new Pricer(o.costs ?? DEFAULT_COSTS, (n) => counterRef(m, sources, n));
  const ps = m.memory.pageSize;
  const size = o.granule * ps;
  const dir = o.dir as DmaDirection;
  const threads = Array.from({ length: o.threads }, (_, t) => {
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
    return { id: t, buf, sg, time: 0 };
  });
  const limit = o.seconds * 1e9;
  const maxLoops = o.maxLoops ?? 200_000;
  let loops = 0;
  let sumMap = 0;
  let sumSqMap = 0;
  let sumUnmap = 0;
  let sumSqUnmap = 0;
  let last = pricer.total();
  for (;;) {
    let progressed = false;
    for (const th of threads) {
      if (th.time >= limit || loops >= maxLoops) continue;
      progressed = true;
      m.dev.cpu = th.id % job.machine.cpus;
      if (dir !== DMA_DIRECTION.FROM_DEVICE) {
        if (th.sg) for (const e of th.sg.sgl) m.memory.fill(e.phys, e.length, 0x66);
        else m.memory.fill(th.buf, size, 0x66);
      }
      // Work done by timers since the last sample is not part of this thread's latencies.
      last = pricer.total();
      let addr = 0;
      if (th.sg) dmaMapSgtable(m.dev, th.sg, dir);
      else addr = dmaMapPhys(m.dev, th.buf, size, dir);
      const mapNs = pricer.total() - last;
      last = pricer.total();
      if (th.sg) dmaUnmapSgtable(m.dev, th.sg, dir);
      else dmaUnmapPhys(m.dev, addr, size, dir);
      const unmapNs = pricer.total() - last;
      last = pricer.total();
      const map100 = Math.floor(mapNs / 100);
      const unmap100 = Math.floor(unmapNs / 100);
      sumMap += map100;
      sumSqMap += map100 * map100;
      sumUnmap += unmap100;
      sumSqUnmap += unmap100 * unmap100;
      loops++;
      th.time += mapNs + o.delayNs + unmapNs;
    }
    if (!progressed) break;
    const minTime = Math.min(...threads.map((t) => t.time));
    if (minTime > m.clock.now) m.clock.advanceTo(Math.round(minTime));
  }
  const avgMap = Math.floor(sumMap / loops);
  const avgUnmap = Math.floor(sumUnmap / loops);
  const mapStd = isqrt(Math.floor(sumSqMap / loops) - avgMap * avgMap);
  const unmapStd = isqrt(Math.floor(sumSqUnmap / loops) - avgUnmap * avgUnmap);
  const lines: [string, string, string] = [
    `dma mapping benchmark(${o.mode === 1 ? "SG_MODE" : "SINGLE_MODE"}): threads:${o.threads} seconds:${o.seconds} node:${o.node} dir:${DIR_NAMES[o.dir]} granule:${o.granule}`,
    `average map latency(us):${(avgMap / 10).toFixed(1)} standard deviation:${(mapStd / 10).toFixed(1)}`,
    `average unmap latency(us):${(avgUnmap / 10).toFixed(1)} standard deviation:${(unmapStd / 10).toFixed(1)}`,
  ];
  const wallNs = (wall() - t0) * 1e6;
  return {
    avgMap100ns: avgMap,
    mapStddev: mapStd,
    avgUnmap100ns: avgUnmap,
    unmapStddev: unmapStd,
    loops,
    simulatedSeconds: Math.min(...threads.map((t) => t.time)) / 1e9,
    lines,
    hostNsPerOp: loops > 0 ? wallNs / loops : 0,
  };
}
