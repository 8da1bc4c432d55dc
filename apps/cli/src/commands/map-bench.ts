/** `dmasim map-bench`: the kernel's dma_map_benchmark on the simulated machine. */
import { runMapBench } from "../engine/map-bench.ts";
import { type CommandIo, loadCosts } from "./common.ts";

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
  profile?: "intel-vtd" | "amd-vi" | "arm-smmuv3";
  maxLoops?: number;
  json?: boolean;
}

/** Runs the command. */
export function mapBench(o: MapBenchCommandOptions, io: CommandIo): number {
  const r = runMapBench({
    threads: o.threads,
    seconds: o.seconds,
    node: o.node,
    bits: o.bits,
    dir: o.dir as 0 | 1 | 2,
    delayNs: o.delay,
    granule: o.granule,
    mode: o.mode as 0 | 1,
    iommu: o.iommu,
    profile: o.profile ?? "intel-vtd",
    costs: loadCosts(o.costs, o.profile ?? "intel-vtd"),
    ...(o.maxLoops !== undefined ? { maxLoops: o.maxLoops } : {}),
  });
  if (o.json) {
    io.stdout(
      `${JSON.stringify(
        {
          avg_map_100ns: r.avgMap100ns,
          map_stddev: r.mapStddev,
          avg_unmap_100ns: r.avgUnmap100ns,
          unmap_stddev: r.unmapStddev,
          avg_map_ns: r.avgMapNs,
          map_stddev_ns: r.mapStddevNs,
          avg_unmap_ns: r.avgUnmapNs,
          unmap_stddev_ns: r.unmapStddevNs,
          loops: r.loops,
          loops_per_thread_per_second: r.loopsPerThreadPerSecond,
          stopped_by: r.stoppedBy,
          wait_ns_per_loop: r.waitNsPerLoop,
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
    io.stdout(
      `(exact: map ${r.avgMapNs.toFixed(0)} ns, unmap ${r.avgUnmapNs.toFixed(0)} ns; ${r.loops} loops in ${r.simulatedSeconds.toFixed(3)} simulated s${r.stoppedBy === "maxLoops" ? ", stopped by --max-loops" : ""})\n`,
    );
  }
  return 0;
}
