/**
 * The engine's speed against the number of CPUs, host ns per simulated I/O, in a process of its
 * own. `engine/cpus-64` against `engine/cpus-1` shows that per-event work does not grow with the
 * number of CPUs: each of the 64 CPUs runs a quarter of the one CPU's I/Os (5000), so every CPU
 * is past its warm-up for most of its I/Os as the one CPU is (a CPU's first few hundred I/Os
 * take fresh IOVAs from the tree while its flush queue fills; that share is larger on the 64
 * CPUs, which only makes their figure worse). `engine/cpus-64/same-total` spreads the one
 * CPU's 20 000 I/Os over 64 CPUs instead: most of them are then each CPU's first ones,
 * simulated work the one-CPU run does not have. Both ratios are interleaved (timed in
 * alternating rounds with cpus-1).
 */
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { parseJob, runJob } from "../src/engine/index.ts";

/** I/Os of the one-CPU run: enough that building the machine is amortised. */
const CPU_IOS = 20000;
/** I/Os per CPU of the 64-CPU run (320 000 in all, about 6 s a run, so 3 rounds). */
const PER_CPU_IOS_64 = 5000;
/** A fast device, so that the CPUs, not the device, set the pace. */
const fast = (cpus: number, ios: number) =>
  parseJob({
    machine: { cpus },
    controller: { latencyUs: 10, bandwidthMBps: 1e6 },
    workload: { rw: "randread", bs: "4k", iodepth: 8, ios, verify: false },
  });
const cpus1 = fast(1, CPU_IOS);
const cpus64 = fast(64, 64 * PER_CPU_IOS_64);
const cpus64SameTotal = fast(64, CPU_IOS);

export default defineBenchmarks([
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
    ops: 64 * PER_CPU_IOS_64,
    baseline: "engine/cpus-1/per-io",
    interleaved: 3,
    note: "64 CPUs at QD8 each, 5000 I/Os each, every CPU mostly past its warm-up (target: at most 2x cpus-1)",
    fn: () => {
      runJob(cpus64);
    },
  },
  {
    name: "engine/cpus-64/same-total/per-io",
    ops: CPU_IOS,
    baseline: "engine/cpus-1/per-io",
    interleaved: 9,
    note: "cpus-1's I/Os spread over 64 CPUs: mostly each CPU's cold first I/Os",
    fn: () => {
      runJob(cpus64SameTotal);
    },
  },
]);
