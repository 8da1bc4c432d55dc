/** What a caller can ask of a run besides its job (`runJob`'s options). */
import type { CostTable } from "./cost.ts";
import type { Machine } from "./machine.ts";
import type { IntervalRow } from "./measure.ts";

/** Options of a run. */
export interface RunOptions {
  /** The whole cost table (default: the job's `machine.profile`). */
  readonly costs?: CostTable;
  /** Attach dma-debug and report its findings. */
  readonly debug?: boolean;
  /** Called now and then with progress (completed, total or -1 for time-bound runs). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Host wall clock in ms, injected (defaults to performance.now). */
  readonly now?: () => number;
  /**
   * Called once with the machine before the first I/O: to configure the controller's fault
   * injection, attach instrumentation, or tamper with a device model to see what the report
   * makes of it. The run releases the machine's namespaces when it returns (their data reads
   * as zeros afterwards): their host memory goes to the next runs of the process.
   */
  readonly setup?: (m: Machine) => void;
  /**
   * The percentiles the result's summaries carry besides fio's default list and the report
   * prints (default 50, 90, 99, 99.9), as fio's `percentile_list`.
   */
  readonly percentiles?: readonly number[];
  /**
   * A per-interval log of the measured window: every `intervalNs` of simulated time, one row
   * (IOPS, bandwidth, latency) to `emit`, as fio's `log_avg_msec` logs.
   */
  readonly log?: { readonly intervalNs: number; readonly emit: (row: IntervalRow) => void };
}
