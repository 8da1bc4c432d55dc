/**
 * The dmasim workload engine, for library use: job files, machine building, the cost model,
 * the discrete-event run, traces and reports. The CLI is a thin layer over these.
 */
export {
  DEFAULT_JOB,
  type Job,
  JobError,
  type JobInput,
  jobIos,
  jobSchema,
  mergeJob,
  parseJob,
  sizeOf,
} from "./job.ts";
export {
  COST_CATEGORIES,
  type CostCategory,
  type CostEntry,
  type CostTable,
  type CounterRef,
  DEFAULT_COSTS,
  Pricer,
  loadCostTable,
} from "./cost.ts";
export {
  type Machine,
  type MachineOptions,
  buildMachine,
  effectiveIommuMode,
  counterGetter,
  counterRef,
  counterSources,
  snapshotCounters,
} from "./machine.ts";
export { type Percentiles, type RunOptions, type RunResult, runJob } from "./run.ts";
