import { describe, expect, it } from "vitest";
import { compareHtml, runHtml } from "../src/engine/html.ts";
import { labelledBars } from "../src/engine/html-charts.ts";
import { type JobInput, type RunResult, parseJob, runJob } from "../src/engine/index.ts";
import { formatCompare, formatRun, jobLine } from "../src/engine/report.ts";
import type { LatencySummary } from "../src/engine/stats.ts";
import {
  SWEEP_CSV_COLUMNS,
  type SweepLine,
  runPoint,
  sweepCsvHeader,
  sweepCsvRow,
  sweepLineOf,
} from "../src/engine/sweep.ts";

/** A small run: verification off, a few hundred I/Os. */
function small(over: JobInput = {}): RunResult {
  const w = over.workload ?? {};
  return runJob(parseJob({ ...over, workload: { ios: 400, ramp: 0, verify: false, ...w } }));
}

/** The cells of the report line that starts with `label` (followed by whitespace). */
function rowOf(text: string, label: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith(`${label} `));
  expect(line, `no row "${label}" in\n${text}`).toBeDefined();
  return (line ?? "").slice(label.length).trim().split(/\s+/);
}

/** A percentage as the report prints a bound: "92.1 %". */
function pct(u: number): string {
  return `${(100 * u).toFixed(1)} %`;
}

/** The latency columns fio prints, from the summary, two decimals. */
function fioCells(s: LatencySummary): string[] {
  const p = s.percentilesUs;
  return [s.minUs, s.meanUs, s.stdevUs, p["50"], p["90"], p["99"], p["99.9"], s.maxUs].map((v) =>
    (v ?? Number.NaN).toFixed(2),
  );
}

// Four CPUs sharing one I/O queue: their submissions meet on nvmeq->sq_lock.
const SHARED_QUEUE: JobInput = {
  machine: { cpus: 4 },
  controller: { ioQueues: 1 },
  workload: { ios: 600, ramp: 100 },
};

describe("formatRun", () => {
  const r = small({ workload: { ramp: 100 } });
  const text = formatRun(r, false);

  it("names the bound with its percentage right after IOPS and bandwidth", () => {
    const lines = text.split("\n");
    const at = (label: string) => lines.findIndex((l) => l.startsWith(`${label} `));
    const busiest = r.boundBy.busiest;
    expect(rowOf(text, "bound by").join(" ")).toBe(
      `${r.boundBy.resource} (${pct(r.boundBy.utilisation)}${busiest ? `; busiest: ${busiest.resource} at ${pct(busiest.utilisation)}` : ""})`,
    );
    expect(text).toMatch(/^bound by\s+\S.* \(\d+\.\d %(; busiest: .+ at \d+\.\d %)?\)$/m);
    expect(at("bound by")).toBe(at("bandwidth") + 1);
    expect(at("bandwidth")).toBe(at("IOPS") + 1);
  });

  it("prints the achieved queue depth of the configured one, and the device side", () => {
    expect(rowOf(text, "queue depth").join(" ")).toBe(
      `${r.qd.mean.toFixed(1)} of ${r.qd.configured} (device side ${r.qd.deviceMean.toFixed(1)})`,
    );
    expect(r.qd.configured).toBe(32);
  });

  it("prints slat, clat and lat rows with fio's columns, matching the result", () => {
    expect(rowOf(text, "latency (µs)")).toEqual([
      "min",
      "mean",
      "stdev",
      "p50",
      "p90",
      "p99",
      "p99.9",
      "max",
    ]);
    expect(rowOf(text, "slat")).toEqual(fioCells(r.slat));
    expect(rowOf(text, "clat")).toEqual(fioCells(r.clat));
    expect(rowOf(text, "lat")).toEqual(fioCells(r.lat));
    // The rows are what they say: lat covers slat and clat.
    expect(r.lat.meanUs).toBeCloseTo(r.slat.meanUs + r.clat.meanUs, 6);
  });

  it("says what a ramp of I/Os left out, and says nothing without a ramp", () => {
    expect(r.rampIos).toBe(100);
    expect(rowOf(text, "ramp").join(" ")).toBe(
      "first 100 I/Os run and left out of every statistic",
    );
    expect(formatRun(small(), false)).not.toMatch(/^ramp /m);
  });

  it("says what a ramp of simulated time left out, with the I/Os it held", () => {
    const t = small({ workload: { ramp: "200us" } });
    expect(t.rampIos).toBeGreaterThan(0);
    expect(formatRun(t, false)).toContain(
      `first 200us (${t.rampIos} I/Os) run and left out of every statistic`,
    );
  });

  it("lists only the shared resources that were acquired", () => {
    const acquired = r.resources.filter((x) => x.acquisitions > 0).map((x) => x.name);
    expect(acquired).toContain("nvme-sq-lock");
    for (const x of r.resources) {
      if (x.acquisitions > 0) expect(text).toMatch(new RegExp(`^${x.name} `, "m"));
      else expect(text).not.toMatch(new RegExp(`^${x.name} `, "m"));
    }
  });

  it("prints the device rows and the per-CPU table with wait", () => {
    expect(rowOf(text, "device data pipe").join(" ")).toBe(
      `${pct(r.device.bandwidthUtilisation)} busy of 3500 MB/s`,
    );
    expect(rowOf(text, "IOMMU walk per I/O").join(" ")).toBe(
      `${r.device.walkNsPerIo.toFixed(1)} ns`,
    );
    expect(r.device.walkNsPerIo).toBeGreaterThan(0);
    expect(text).not.toMatch(/^device commands/m);
    expect(rowOf(text, "cpu")).toEqual(["I/Os", "IOPS", "busy", "wait"]);
  });

  it("prints the command pipeline when the controller has a command rate", () => {
    const m = small({ controller: { maxIops: 200000 } });
    expect(rowOf(formatRun(m, false), "device commands").join(" ")).toBe(
      `${pct(m.device.commandUtilisation)} of 200K IOPS`,
    );
    expect(m.device.commandUtilisation).toBeGreaterThan(0);
  });

  it("prints the contended nvme-sq-lock lock_stat style when CPUs share a queue", () => {
    const s = runJob(
      parseJob({ ...SHARED_QUEUE, workload: { ...SHARED_QUEUE.workload, verify: false } }),
    );
    const out = formatRun(s, false);
    const sq = s.resources.find((x) => x.name === "nvme-sq-lock");
    expect(sq?.contended ?? 0).toBeGreaterThan(0);
    if (sq === undefined) return;
    expect(rowOf(out, "shared resource")).toEqual([
      "instances",
      "acq/IO",
      "contended",
      "util",
      "hold",
      "ns/IO",
      "wait",
      "ns/IO",
      "max",
      "wait",
      "µs",
      "busiest",
    ]);
    expect(rowOf(out, "nvme-sq-lock")).toEqual([
      "1",
      (sq.acquisitions / s.ios).toFixed(3),
      `${((100 * sq.contended) / sq.acquisitions).toFixed(1)}%`,
      `${(100 * sq.utilisation).toFixed(1)}%`,
      sq.holdNsPerIo.toFixed(1),
      sq.waitNsPerIo.toFixed(1),
      (sq.maxWaitNs / 1000).toFixed(2),
    ]);
    expect(sq.acquisitions / s.ios).toBeCloseTo(1, 6);
    // The flush-queue locks are one per CPU: the row names the busiest.
    const fq = s.resources.find((x) => x.name === "fq-lock");
    expect(fq?.instances).toBe(4);
    expect(rowOf(out, "fq-lock").slice(-5).join(" ")).toBe(fq?.busiest);
    // The per-CPU table: a row per CPU, busy and wait as the result has them.
    for (const c of s.perCpu)
      expect(rowOf(out, String(c.cpu)).slice(-2)).toEqual([
        `${c.busyPct.toFixed(1)}%`,
        `${c.waitPct.toFixed(1)}%`,
      ]);
    expect(out).toContain(`(${pct(s.boundBy.utilisation)}`);
  });
});

describe("jobLine", () => {
  it("names the profile and the completion mode, and no controllers or queues by default", () => {
    const line = jobLine(small());
    expect(line).toContain("| profile intel-vtd | completion interrupt");
    expect(line).not.toMatch(/controllers|I\/O queue/);
  });

  it("names controllers and shared I/O queues when not the defaults", () => {
    const line = jobLine(
      small({
        machine: { cpus: 4, profile: "arm-smmuv3", controllers: 2 },
        controller: { ioQueues: 2 },
        host: { completion: "poll" },
        workload: { ios: 200 },
      }),
    );
    expect(line).toContain(
      "| profile arm-smmuv3 | completion poll | 2 controllers | 2 I/O queues per controller for 4 CPUs",
    );
  });
});

describe("formatCompare", () => {
  it("adds the bound and the clat mean, and stays within 120 columns", () => {
    const a = small();
    const b = small({ iommu: { mode: "strict" } });
    const text = formatCompare(
      [
        { iommu: "passthrough", mapping: "scatterlist", result: a },
        { iommu: "strict", mapping: "per-segment", result: b },
      ],
      false,
    );
    for (const l of text.split("\n")) expect(l.length, l).toBeLessThanOrEqual(120);
    const head = rowOf(text, "iommu");
    expect(head.slice(0, 7)).toEqual(["mapping", "IOPS", "CPU", "ns/IO", "vs", "first", "bound"]);
    expect(head).toContain("clat");
    // After the iommu mode: mapping, IOPS, CPU ns/IO, vs first, the bound ("qd 96%"), clat mean.
    const row = rowOf(text, "strict");
    expect(row[0]).toBe("per-segment");
    expect(row[5]).toBe(`${(100 * b.boundBy.utilisation).toFixed(0)}%`);
    if (b.boundBy.resource === "queue depth × latency") expect(row[4]).toBe("qd");
    expect(row[6]).toBe(b.clat.meanUs.toFixed(1));
  });
});

describe("HTML reports", () => {
  it("puts the bound, queue depth, latencies and shared resources in the run page", () => {
    const r = small();
    const html = runHtml(r);
    expect(html).toContain(`<td>bound by</td><td>${r.boundBy.resource} (`);
    expect(html).toContain("<td>queue depth</td>");
    // The latency table: clat's min, mean, stdev, p50, p90, p99, p99.9, max.
    expect(html).toContain(
      `<td>clat</td><td>${r.clat.minUs.toFixed(2)}</td><td>${r.clat.meanUs.toFixed(2)}</td>`,
    );
    expect(html).toContain(`<td>${(r.clat.percentilesUs["99"] ?? 0).toFixed(2)}</td>`);
    expect(html).toContain("<h2>Shared resources</h2>");
    expect(html).toContain("<td>nvme-sq-lock</td>");
    expect(html).not.toMatch(/<script|https?:\/\//);
    const cmp = compareHtml([{ iommu: "lazy", mapping: "two-step", result: r }]);
    expect(cmp).toContain("<th>bound by</th>");
    expect(cmp).toContain(`(${pct(r.boundBy.utilisation)}`);
  });
});

describe("HTML charts", () => {
  it("draws bars on a log scale when their values span more than 10x", () => {
    const lin = labelledBars(
      "a",
      [
        { label: "x", value: 10 },
        { label: "y", value: 50 },
      ],
      String,
      "ns",
    );
    expect(lin).toContain('data-scale="linear"');
    const log = labelledBars(
      "b",
      [
        { label: "x", value: 10 },
        { label: "y", value: 5000 },
      ],
      String,
      "ns",
    );
    expect(log).toContain('data-scale="log"');
    expect(log).toContain("ns (log scale)");
    // On the log scale the small bar keeps a visible share of the large one's width.
    const widths = [...log.matchAll(/<rect [^>]*width="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(widths[0]).toBeGreaterThan((widths[1] ?? 0) / 10);
  });
});

describe("sweep rows", () => {
  it("carries the latency means, the queue depth and the bound", () => {
    const r = small({ machine: { cpus: 2 } });
    const l = sweepLineOf(3, { "machine.cpus": 2 }, r);
    expect(l).toMatchObject({
      index: 3,
      latMeanUs: r.lat.meanUs,
      clatMeanUs: r.clat.meanUs,
      qdMean: r.qd.mean,
      boundBy: r.boundBy.resource,
      boundUtilisation: r.boundBy.utilisation,
    });
    expect(l.boundBy.length).toBeGreaterThan(0);
    const keys = ["machine.cpus"];
    const head = sweepCsvHeader(keys).split(",");
    const row = sweepCsvRow(keys, l).split(",");
    expect(row).toHaveLength(head.length);
    const cell = (c: (typeof SWEEP_CSV_COLUMNS)[number]) => row[head.indexOf(c)];
    expect(cell("lat_mean_us")).toBe(r.lat.meanUs.toFixed(2));
    expect(cell("clat_mean_us")).toBe(r.clat.meanUs.toFixed(2));
    expect(cell("qd_mean")).toBe(r.qd.mean.toFixed(1));
    expect(cell("bound_by")).toBe(r.boundBy.resource);
    expect(cell("bound_utilisation")).toBe(r.boundBy.utilisation.toFixed(3));
    expect(row[0]).toBe("2");
  });

  it("fills the new fields from a grid point, and quotes CSV fields that need it", () => {
    const l = runPoint({
      index: 0,
      params: { "iommu.mode": "strict" },
      job: { iommu: { mode: "strict" }, workload: { ios: 200, verify: false } },
    });
    expect(l.error).toBeUndefined();
    expect(l.latMeanUs).toBeGreaterThan(l.clatMeanUs);
    expect(l.qdMean).toBeGreaterThan(0);
    expect(l.boundUtilisation).toBeGreaterThan(0);
    const bad: SweepLine = { ...l, error: 'a, "b"' };
    expect(sweepCsvRow(["iommu.mode"], bad)).toMatch(/^"strict",.*,"a, ""b"""$/);
  });
});
