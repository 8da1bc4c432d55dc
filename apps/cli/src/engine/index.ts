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
  rampOf,
  sizeOf,
} from "./job.ts";
export {
  COST_CATEGORIES,
  type CostCategory,
  type CostEntry,
  type CostTable,
  type CounterRef,
  type PricedResource,
  Pricer,
  RESOURCE_KINDS,
  type ResourceKind,
  costProblems,
  loadCostTable,
} from "./cost.ts";
export {
  DEFAULT_COSTS,
  PROFILES,
  PROFILE_NAMES,
  type PageTableFormatInputs,
  type ProfileName,
  jobCosts,
  pageTableFormat,
  profileCosts,
} from "./profiles.ts";
export { type ResourceReport, Resource, ResourceSet } from "./resources.ts";
export { DeviceTiming, LatencyDistribution } from "./device-time.ts";
export { type IntervalRow } from "./measure.ts";
export { type DirectionReport } from "./results.ts";
export { runCsvHeader, runCsvRow } from "./csv.ts";
export { DEVICE_PRESETS, DEVICE_PRESET_NAMES, type DevicePresetName } from "./devices.ts";
export { jobProblems } from "./job-check.ts";
export {
  DEFAULT_PERCENTILES,
  REPORT_PERCENTILES,
  percentileList,
  DepthHistogram,
  LatencyHistogram,
  type LatencySummary,
  TimeAverage,
} from "./stats.ts";
export {
  type Machine,
  type MachineOptions,
  type NvmeUnit,
  ioQueuesOf,
  buildMachine,
  effectiveIommuMode,
  counterGetter,
  counterRef,
  counterSources,
  knownCounters,
  machineProblems,
  snapshotCounters,
} from "./machine.ts";
export {
  type BoundBy,
  type CpuReport,
  type Percentiles,
  type RunOptions,
  type RunResult,
  runJob,
} from "./run.ts";
export {
  VALIDATION_ROLES,
  VALIDATION_SET_URL,
  type ValidationLeaf,
  type ValidationOutcome,
  type ValidationRole,
  type ValidationRow,
  type ValidationRowInput,
  type ValidationSet,
  ValidationSetError,
  type ValidationSource,
  formatValidationError,
  formatValidationValue,
  loadValidationSet,
  parseValidationSet,
  runValidation,
  runValidationRow,
  selectValidationRows,
  sourceLine,
  validationLegend,
  validationMarkdown,
  validationSetSchema,
  validationText,
} from "./validate.ts";
