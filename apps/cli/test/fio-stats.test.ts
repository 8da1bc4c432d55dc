import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type IntervalRow, parseJob, runJob } from "../src/engine/index.ts";
import { cli, tempFile } from "./helpers.ts";

const mixed = parseJob({ workload: { rw: "randrw", rwmixread: 60, ios: 3000, ramp: 500 } });

/** Splits a CSV line on commas outside quotes. */
function csvCells(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

describe("fio-familiar statistics", () => {
  it("splits a mixed job into read and write sections that add up to the whole", () => {
    const r = runJob(mixed);
    const rd = r.read;
    const wr = r.write;
    if (rd === null || wr === null) throw new Error("a mixed job has both directions");
    expect(rd.ios + wr.ios).toBe(r.ios);
    expect(rd.ios).toBe(r.reads);
    expect(rd.ioBytes + wr.ioBytes).toBe(r.bytes);
    expect(rd.iops + wr.iops).toBeCloseTo(r.iops, 6);
    // The whole's mean latency is the I/O-weighted mean of the directions'.
    expect((rd.lat.meanUs * rd.ios + wr.lat.meanUs * wr.ios) / r.ios).toBeCloseTo(r.lat.meanUs, 6);
    expect(Math.min(rd.lat.minUs, wr.lat.minUs)).toBe(r.lat.minUs);
    expect(Math.max(rd.clat.maxUs, wr.clat.maxUs)).toBe(r.clat.maxUs);
    expect(runJob(parseJob({ workload: { rw: "randread", ios: 200 } })).write).toBeNull();
  });

  it("carries the percentiles asked for, besides fio's list", () => {
    const r = runJob(mixed, { percentiles: [12.5, 99.99] });
    expect(r.percentiles).toEqual([12.5, 99.99]);
    for (const s of [r.lat, r.clat, r.slat, r.read?.lat]) {
      expect(s?.percentilesUs["12.5"]).toBeGreaterThan(0);
      expect(s?.percentilesUs["99.99"]).toBeGreaterThanOrEqual(s?.percentilesUs["99"] ?? Infinity);
      expect(s?.percentilesUs["50"]).toBeGreaterThan(0);
    }
    expect(runJob(mixed).percentiles).toEqual([50, 90, 99, 99.9]);
  });

  it("logs every measured I/O in one interval of the window, and the intervals tile it", () => {
    const rows: IntervalRow[] = [];
    const r = runJob(mixed, { log: { intervalNs: 500_000, emit: (x) => rows.push(x) } });
    expect(rows.reduce((n, x) => n + x.ios, 0)).toBe(r.ios);
    expect(rows.reduce((n, x) => n + x.writes, 0)).toBe(r.writes);
    expect(rows.reduce((n, x) => n + x.ms, 0)).toBeCloseTo(r.simulatedNs / 1e6, 6);
    expect(rows.at(-1)?.tMs).toBeCloseTo(r.simulatedNs / 1e6, 6);
    for (const x of rows.slice(0, -1)) expect(x.ms).toBe(0.5);
    for (const x of rows) if (x.ios > 0) expect(x.latMaxUs).toBeGreaterThanOrEqual(x.latMeanUs);
  });

  it("prints run and compare as CSV with one header and the same columns", async () => {
    const run = await cli("run", "--ios", "300", "--csv", "--percentiles", "50,99.99");
    expect(run.code).toBe(0);
    const [head, row, ...rest] = run.out.trim().split("\n");
    expect(rest).toHaveLength(0);
    const h = csvCells(head as string);
    expect(h).toContain("lat_p99.99_us");
    expect(h).toContain("read_lat_mean_us");
    expect(csvCells(row as string)).toHaveLength(h.length);
    const cmp = await cli("compare", "--ios", "200", "--iommu", "none,strict", "--csv");
    expect(cmp.code).toBe(0);
    const lines = cmp.out.trim().split("\n");
    expect(lines).toHaveLength(1 + 2 * 3);
    const plain = await cli("run", "--ios", "300", "--csv");
    expect(lines[0]).toBe(plain.out.split("\n")[0]);
    for (const l of lines.slice(1))
      expect(csvCells(l)).toHaveLength(csvCells(lines[0] as string).length);
  });

  it("writes the interval log as JSON Lines, and wants a file for it", async () => {
    const p = tempFile("log.jsonl", "");
    const r = await cli("run", "--ios", "2000", "--log", p, "--log-interval", "1ms");
    expect(r.code).toBe(0);
    const rows = readFileSync(p, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as IntervalRow);
    expect(rows.reduce((n, x) => n + x.ios, 0)).toBe(2000);
    const bad = await cli("run", "--log-interval", "1ms");
    expect(bad.code).toBe(2);
    expect(bad.err.trim()).toBe("dmasim: --log-interval: give --log <file> to write the log to");
    const tiny = await cli("run", "--log", p, "--log-interval", "5ns");
    expect(tiny.code).toBe(2);
  });

  it("prints per-direction rows and fio's IO depths in the text report", async () => {
    const r = await cli("run", "--ios", "500", "--percentiles", "50,99.99");
    expect(r.out).toMatch(/^read\s+\S+ IOPS, [\d.]+ MB\/s \(\d+ I\/Os\)$/m);
    expect(r.out).toMatch(/^IO depths\s+1=[\d.]+%, 2=.*32=[\d.]+%, >=64=[\d.]+%$/m);
    expect(r.out).toMatch(/^latency \(µs\)\s+min\s+mean\s+stdev\s+p50\s+p99\.99\s+max$/m);
    expect(r.out).toMatch(/^write lat\s/m);
  });
});
