/**
 * CSV output (RFC 4180): one line per run for `run --csv` and `compare --csv`, with the same
 * columns, so that runs of different commands can be concatenated and compared in a
 * spreadsheet. Latencies are µs, bandwidth MB/s, CPU time ns per I/O.
 */
import { effectiveIommuMode } from "./machine.ts";
import { boundText } from "./report.ts";
import type { RunResult } from "./results.ts";
import type { LatencySummary } from "./stats.ts";

/** One CSV field, quoted when it holds a comma, a quote or a line break. */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

const latencyColumns = (name: string, percentiles: readonly number[]) => [
  `${name}_min_us`,
  `${name}_mean_us`,
  `${name}_stdev_us`,
  ...percentiles.map((p) => `${name}_p${p}_us`),
  `${name}_max_us`,
];

const latencyValues = (s: LatencySummary | undefined, percentiles: readonly number[]) =>
  s === undefined
    ? latencyColumns("", percentiles).map(() => "")
    : [
        s.minUs,
        s.meanUs,
        s.stdevUs,
        ...percentiles.map((p) => s.percentilesUs[String(p)] ?? 0),
        s.maxUs,
      ].map((v) => v.toFixed(2));

/** The header line of `runCsvRow`'s lines (no line break). */
export function runCsvHeader(percentiles: readonly number[]): string {
  return [
    "name",
    "kernel",
    "iommu",
    "iommu_effective",
    "mapping",
    "rw",
    "bs",
    "iodepth",
    "cpus",
    "ios",
    "reads",
    "writes",
    "iops",
    "bandwidth_mbps",
    "read_iops",
    "write_iops",
    "cpu_ns_per_io",
    "qd_mean",
    "bound_by",
    ...latencyColumns("lat", percentiles),
    ...latencyColumns("clat", percentiles),
    ...latencyColumns("slat", percentiles),
    ...latencyColumns("read_lat", percentiles),
    ...latencyColumns("write_lat", percentiles),
    "errors",
    "verify",
  ]
    .map(csvField)
    .join(",");
}

/** One run as a CSV line (no line break), in `runCsvHeader`'s columns. */
export function runCsvRow(r: RunResult, percentiles: readonly number[]): string {
  const j = r.job;
  const bs =
    typeof j.workload.bs === "object" ? JSON.stringify(j.workload.bs) : String(j.workload.bs);
  return [
    j.name,
    j.kernel,
    j.iommu.mode,
    effectiveIommuMode(j),
    j.host.mapping,
    j.workload.rw,
    bs,
    String(j.workload.iodepth),
    String(j.machine.cpus),
    String(r.ios),
    String(r.reads),
    String(r.writes),
    r.iops.toFixed(0),
    r.bandwidthMBps.toFixed(1),
    (r.read?.iops ?? 0).toFixed(0),
    (r.write?.iops ?? 0).toFixed(0),
    r.cpuNsPerIo.toFixed(1),
    r.qd.mean.toFixed(2),
    boundText(r.boundBy),
    ...latencyValues(r.lat, percentiles),
    ...latencyValues(r.clat, percentiles),
    ...latencyValues(r.slat, percentiles),
    ...latencyValues(r.read?.lat, percentiles),
    ...latencyValues(r.write?.lat, percentiles),
    String(r.errors),
    r.verify.enabled ? (r.verify.ok ? "ok" : "FAILED") : "off",
  ]
    .map(csvField)
    .join(",");
}
