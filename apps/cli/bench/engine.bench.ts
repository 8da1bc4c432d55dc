/**
 * The engine's own speed, host ns per simulated I/O, beside a same-run baseline: the NVMe
 * package's `io/4k-read/lazy/new` (one 4 KiB read end to end through the driver and the
 * controller, no engine) measured in the same process. Each job's ratio is interleaved: the job
 * and the baseline are timed in alternating rounds, so that the one measured first in a fresh
 * process (whose code the JIT has so far seen run one machine) has no edge over the other.
 * The CPU-count pair is in engine-cpus.bench.ts, a process of its own, because what a process
 * ran before moves these figures by up to 2x.
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
    interleaved: 9,
    note: "dmasim run's default job (lazy, two-step, 4 KiB randrw, verified), host ns per simulated I/O",
    fn: () => {
      runJob(job);
    },
  },
  {
    name: "engine/randread-job/per-io",
    ops: IOS + RAMP,
    baseline: "engine/baseline/io-4k-read-lazy",
    interleaved: 9,
    note: "the default job with random reads only",
    fn: () => {
      runJob(randread);
    },
  },
  {
    name: "engine/strict-job/per-io",
    ops: IOS + RAMP,
    baseline: "engine/baseline/io-4k-read-lazy",
    interleaved: 9,
    note: "the default job with a strict IOMMU",
    fn: () => {
      runJob(strict);
    },
  },
]);
