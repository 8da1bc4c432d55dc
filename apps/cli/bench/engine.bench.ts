/** The engine's own speed: the default job, per simulated I/O (host ns). */
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { DEFAULT_JOB, parseJob, runJob } from "../src/engine/index.ts";

const IOS = 4000;
const job = parseJob({ ...DEFAULT_JOB, workload: { ...DEFAULT_JOB.workload, ios: IOS } });
const strict = parseJob({
  ...DEFAULT_JOB,
  iommu: { mode: "strict" },
  workload: { ...DEFAULT_JOB.workload, ios: IOS },
});

export default defineBenchmarks([
  {
    name: "engine/default-job/per-io",
    ops: IOS,
    note: "dmasim run's default job (lazy, two-step, 4 KiB randrw, verified), host ns per simulated I/O",
    fn: () => {
      runJob(job);
    },
  },
  {
    name: "engine/strict-job/per-io",
    ops: IOS,
    note: "the same job with a strict IOMMU",
    fn: () => {
      runJob(strict);
    },
  },
]);
