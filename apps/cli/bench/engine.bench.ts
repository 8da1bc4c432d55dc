/**
 * The engine's own speed, host ns per simulated I/O, beside a same-run baseline: the NVMe
 * package's `io/4k-read/lazy/new` (one 4 KiB read end to end through the driver and the
 * controller, no engine) measured in the same process. `engine/cpus-64` against `engine/cpus-1`
 * shows that per-event work does not grow with the number of CPUs.
 */
import nvmeIo from "../../../packages/nvme/bench/io.bench.ts";
import { type BenchCase, defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { DEFAULT_JOB, type JobInput, parseJob, runJob } from "../src/engine/index.ts";

/** The default job as `dmasim run` runs it: 20 000 measured I/Os after a 2000-I/O ramp. */
const job = parseJob(DEFAULT_JOB);
const IOS = job.workload.ios as number;
const RAMP = job.workload.ramp as number;
const strict = parseJob({ ...DEFAULT_JOB, iommu: { mode: "strict" } });
const randread = parseJob({
  ...DEFAULT_JOB,
  workload: { ...DEFAULT_JOB.workload, rw: "randread" } satisfies JobInput["workload"],
});
/** I/Os of the CPU-count pair: enough that building 64 CPUs' queues and buffers is amortised. */
const CPU_IOS = 20000;
/** A fast device, so that the CPUs, not the device, set the pace. */
const fast = (cpus: number) =>
  parseJob({
    machine: { cpus },
    controller: { latencyUs: 10, bandwidthMBps: 1e6 },
    workload: { rw: "randread", bs: "4k", iodepth: 8, ios: CPU_IOS, verify: false },
  });
const cpus1 = fast(1);
const cpus64 = fast(64);

const base = nvmeIo.find((c) => c.name === "io/4k-read/lazy/new") as BenchCase;

export default defineBenchmarks([
  {
    name: "engine/baseline/io-4k-read-lazy",
    ops: base.ops ?? 1,
    note: "the nvme package's io/4k-read/lazy/new, measured in this run as the baseline",
    fn: base.fn,
  },
  {
    name: "engine/default-job/per-io",
    ops: IOS + RAMP,
    baseline: "engine/baseline/io-4k-read-lazy",
    note: "dmasim run's default job (lazy, two-step, 4 KiB randrw, verified), host ns per simulated I/O",
    fn: () => {
      runJob(job);
    },
  },
  {
    name: "engine/randread-job/per-io",
    ops: IOS + RAMP,
    baseline: "engine/baseline/io-4k-read-lazy",
    note: "the default job with random reads only",
    fn: () => {
      runJob(randread);
    },
  },
  {
    name: "engine/strict-job/per-io",
    ops: IOS + RAMP,
    baseline: "engine/baseline/io-4k-read-lazy",
    note: "the default job with a strict IOMMU",
    fn: () => {
      runJob(strict);
    },
  },
  {
    name: "engine/cpus-1/per-io",
    ops: CPU_IOS,
    note: "4 KiB random reads on a fast device, 1 CPU at QD8",
    fn: () => {
      runJob(cpus1);
    },
  },
  {
    name: "engine/cpus-64/per-io",
    ops: CPU_IOS,
    baseline: "engine/cpus-1/per-io",
    note: "the same I/Os from 64 CPUs at QD8 each (target: at most 2x cpus-1)",
    fn: () => {
      runJob(cpus64);
    },
  },
]);
