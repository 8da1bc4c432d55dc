/** `dmasim map-bench`: the kernel's dma_map_benchmark on the simulated machine. */
import { runMapBench } from "../engine/map-bench.ts";
import { type CommandIo, UsageError, loadCosts } from "./common.ts";

/** Options, as tools/dma/dma_map_benchmark takes them. */
export interface MapBenchCommandOptions {
  threads: number;
  seconds: number;
  node: number;
  bits: number;
  dir: number;
  delay: number;
  granule: number;
  mode: number;
  iommu: "none" | "passthrough" | "strict" | "lazy";
  costs?: string;
  maxLoops?: number;
  json?: boolean;
}

/** Runs the command. */
export function mapBench(o: MapBenchCommandOptions, io: CommandIo): number {
  let r;
  try {
    r = runMapBench({
      threads: o.threads,
      seconds: o.seconds,
      node: o.node,
      bits: o.bits,
      dir: o.dir as 0 | 1 | 2,
      delayNs: o.delay,
      granule: o.granule,
      mode: o.mode as 0 | 1,
      iommu: o.iommu,
      costs: loadCosts(o.costs),
      ...(o.maxLoops !== undefined ? { maxLoops: o.maxLoops } : {}),
    });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  if (o.json) {
    io.stdout(
      `${JSON.stringify(
        {
          avg_map_100ns: r.avgMap100ns,
          map_stddev: r.mapStddev,
          avg_unmap_100ns: r.avgUnmap100ns,
          unmap_stddev: r.unmapStddev,
          loops: r.loops,
          simulated_seconds: r.simulatedSeconds,
          lines: r.lines,
          simulator_host_ns_per_map_unmap: r.hostNsPerOp,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout(`${r.lines.join("\n")}\n`);
  }
  return 0;
}
