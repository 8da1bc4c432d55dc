import { describe, expect, it } from "vitest";
import { DEVICE_PRESETS } from "../src/engine/devices.ts";
import { cli, tempFile } from "./helpers.ts";

interface PrintedJob {
  controller: { latencyUs: number; latencyP99Us?: number; bandwidthMBps: number };
  workload: { rw: string; rwmixread: number; iodepth: number; verify: boolean };
  iommu: { mode: string; iotlbEntries: number };
  machine: { cpus: number };
  effective?: { iommuMode: string; because: string };
}

async function printed(...argv: string[]): Promise<PrintedJob> {
  const r = await cli("job", "--print", ...argv);
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as PrintedJob;
}

describe("job --print and the options people reach for", () => {
  it("prints the effective job with every default", async () => {
    const j = await printed();
    expect(j.workload).toMatchObject({ rw: "randrw", rwmixread: 70, iodepth: 32, verify: true });
    // The schema's default device is the tlc preset (its p99 the default twice the median).
    expect(j.controller).toMatchObject({
      latencyUs: DEVICE_PRESETS.tlc.latencyUs,
      bandwidthMBps: DEVICE_PRESETS.tlc.bandwidthMBps,
    });
    expect(DEVICE_PRESETS.tlc.latencyP99Us).toBe(2 * DEVICE_PRESETS.tlc.latencyUs);
    expect(j.iommu).toMatchObject({ mode: "lazy", iotlbEntries: 256 });
    expect(j.effective).toBeUndefined();
  });

  it("applies a job file, then the options over it", async () => {
    const p = tempFile(
      "job.json",
      JSON.stringify({ machine: { cpus: 4 }, iommu: { mode: "strict" } }),
    );
    const j = await printed(p, "--rwmixread", "30", "--iotlb-entries", "64");
    expect(j.machine.cpus).toBe(4);
    expect(j.iommu).toMatchObject({ mode: "strict", iotlbEntries: 64 });
    expect(j.workload.rwmixread).toBe(30);
  });

  it("says which IOMMU mode the device really gets", async () => {
    const j = await printed("--untrusted", "--iommu", "passthrough");
    expect(j.effective).toEqual({
      iommuMode: "strict",
      because: "untrusted devices get a strict domain",
    });
  });

  it("sets a device preset, and an explicit latency replaces the preset's with its default tail", async () => {
    const fast = await printed("--device", "fast");
    expect(fast.controller).toMatchObject({
      latencyUs: 10,
      latencyP99Us: 20,
      bandwidthMBps: 14000,
    });
    const own = await printed("--device", "fast", "--latency-us", "50");
    expect(own.controller.latencyUs).toBe(50);
    expect(own.controller.latencyP99Us).toBeUndefined();
    expect(own.controller.bandwidthMBps).toBe(14000);
  });

  it("shows CPU cost in IOPS on the fast device: strict < lazy < none", async () => {
    const iops = async (mode: string) => {
      const r = await cli(
        "run",
        "--device",
        "fast",
        "--rw",
        "randread",
        "--iommu",
        mode,
        "--ios",
        "4000",
        "--json",
      );
      expect(r.code).toBe(0);
      return JSON.parse(r.out) as { iops: number; boundBy: { resource: string } };
    };
    const [strict, lazy, none] = [await iops("strict"), await iops("lazy"), await iops("none")];
    expect(strict.iops).toBeLessThan(lazy.iops);
    expect(lazy.iops).toBeLessThan(none.iops);
    expect(strict.boundBy.resource).toMatch(/^CPU/);
    expect(lazy.boundBy.resource).toMatch(/^CPU/);
  });

  it("runs a mixed job with the asked read share", async () => {
    const r = await cli("run", "--rwmixread", "20", "--ios", "2000", "--json");
    const j = JSON.parse(r.out) as { reads: number; writes: number };
    expect(j.reads / (j.reads + j.writes)).toBeGreaterThan(0.15);
    expect(j.reads / (j.reads + j.writes)).toBeLessThan(0.25);
  });

  it("says in compare and in the JSON which mode the device really got, and why rows are equal", async () => {
    const r = await cli(
      "compare",
      "--untrusted",
      "--iommu",
      "strict,lazy",
      "--ios",
      "200",
      "--rw",
      "randread",
      "--buffers",
      "contiguous",
    );
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^lazy\*\s+two-step\s/m);
    expect(r.out).toMatch(/^strict\s+two-step\s/m);
    expect(r.out).toContain(
      "lazy*: the device gets strict (untrusted devices get a strict domain)",
    );
    expect(r.out).toContain("every I/O was one segment");
    const j = await cli("run", "--untrusted", "--ios", "100", "--json");
    expect((JSON.parse(j.out) as { iommu: unknown }).iommu).toEqual({
      asked: "lazy",
      effective: "strict",
      reason: "untrusted devices get a strict domain",
    });
    const scattered = await cli("compare", "--iommu", "lazy", "--ios", "200", "--bs", "64k");
    expect(scattered.out).not.toContain("every I/O was one segment");
  });

  it("injects controller faults from the command line or a job file", async () => {
    const r = await cli(
      "run",
      "--ios",
      "1000",
      "--json",
      "--inject",
      "failCommand:status=0x4004,every=50",
    );
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { errors: number; errorCauses: Record<string, number> };
    expect(j.errors).toBe(20);
    expect(j.errorCauses).toEqual({ "BLK_STS_IOERR: NVMe Data Transfer Error (DNR)": 20 });
    const p = tempFile(
      "job.json",
      JSON.stringify({
        controller: { faults: { failCommand: { status: 0x4004, nth: 5 } } },
        workload: { ios: 300 },
      }),
    );
    const f = JSON.parse((await cli("run", p, "--json")).out) as { errors: number };
    expect(f.errors).toBe(1);
    const bad = await cli("run", "--inject", "failCommand:stauts=4");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('"stauts=4" in "failCommand:stauts=4": failCommand takes status=N');
  });

  it("shows ranges and lists of a sweep readably in its table", async () => {
    const p = tempFile(
      "grid.json",
      JSON.stringify({
        base: { workload: { ios: 100 } },
        vary: { "workload.bs": ["4k", { min: "4k", max: "16k" }] },
      }),
    );
    const r = await cli("sweep", p, "--workers", "0");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\{"min":"4k","max":"16k"\}\s+\S+\s/m);
    expect(r.out).not.toContain("[object Object]");
  });
});
