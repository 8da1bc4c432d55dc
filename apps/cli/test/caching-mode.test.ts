import { describe, expect, it } from "vitest";
import { type JobInput, JobError, parseJob, runJob } from "../src/engine/index.ts";
import { buildMachine, effectiveIommuMode, forcedModeReason } from "../src/engine/machine.ts";
import { jobLine } from "../src/engine/report.ts";

const job = (iommu: Record<string, unknown>, machine: Record<string, unknown> = {}) =>
  parseJob({
    machine,
    iommu,
    controller: { namespaceGiB: 1 / 64 },
    workload: { rw: "randread", bs: "4k", iodepth: 4, ios: 600, ramp: 100 },
  } satisfies JobInput);

const VTD_CM = "caching mode (virtualised VT-d): IOMMU batching disallowed";

describe("iommu.cachingMode (a virtualised IOMMU)", () => {
  it("intel-vtd: lazy becomes strict, with no flush queue and two invalidations per 4 KiB I/O", () => {
    const j = job({ mode: "lazy", cachingMode: true });
    expect(effectiveIommuMode(j)).toBe("strict");
    expect(forcedModeReason(j)).toBe(VTD_CM);
    const m = buildMachine(j);
    expect(m.domain?.isLazy).toBe(false);
    expect(m.dev.cookie?.fq).toBeNull();
    const r = runJob(j);
    expect(r.perIo["fq.queued"]).toBeUndefined();
    expect(r.exposure?.mode).toBe("strict");
    // The unmap's range invalidation, as strict, plus the one caching mode adds on map (per
    // I/O within the measured window, so about 1 each).
    const strict = runJob(job({ mode: "strict" }));
    expect(r.perIo["domain.rangeInvalidations"]).toBe(strict.perIo["domain.rangeInvalidations"]);
    expect(r.perIo["domain.rangeInvalidations"]).toBeCloseTo(1, 1);
    expect(r.perIo["domain.syncMapFlushes"]).toBeCloseTo(1, 1);
    expect(strict.perIo["domain.syncMapFlushes"]).toBeUndefined();
    const lazy = runJob(job({ mode: "lazy" }));
    expect(lazy.perIo["fq.queued"]).toBeCloseTo(1, 1);
    expect(lazy.perIo["domain.rangeInvalidations"]).toBeUndefined();
  });

  it("the report says the mode was forced and why", () => {
    const r = runJob(job({ mode: "lazy", cachingMode: true }));
    expect(jobLine(r)).toContain(`IOMMU strict (asked lazy; ${VTD_CM})`);
    // The JSON's iommu field, as for an untrusted device.
    expect(r.iommu).toEqual({ asked: "lazy", effective: "strict", reason: VTD_CM });
    const plain = runJob(job({ mode: "lazy" }));
    expect(jobLine(plain)).toContain("IOMMU lazy |");
  });

  it("leaves strict and passthrough as asked (iommu_set_dma_strict only affects lazy)", () => {
    expect(forcedModeReason(job({ mode: "strict", cachingMode: true }))).toBeNull();
    const pt = job({ mode: "passthrough", cachingMode: true });
    expect(effectiveIommuMode(pt)).toBe("passthrough");
    expect(forcedModeReason(pt)).toBeNull();
  });

  it("an untrusted device is reported for that reason first", () => {
    const j = parseJob({ iommu: { mode: "lazy", cachingMode: true }, device: { trusted: false } });
    expect(forcedModeReason(j)).toBe("untrusted devices get a strict domain");
  });

  it("amd-vi: NpCache makes Linux use strict mode too", () => {
    const j = job({ mode: "lazy", cachingMode: true }, { profile: "amd-vi" });
    expect(effectiveIommuMode(j)).toBe("strict");
    expect(forcedModeReason(j)).toBe(
      "NpCache (virtualised AMD-Vi): strict mode due to virtualization",
    );
    expect(buildMachine(j).dev.cookie?.fq).toBeNull();
  });

  it("arm-smmuv3 has no such bit: the job is refused in one line", () => {
    let err: unknown;
    try {
      parseJob({ machine: { profile: "arm-smmuv3" }, iommu: { cachingMode: true } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JobError);
    expect((err as JobError).problems).toHaveLength(1);
    expect((err as JobError).problems[0]).toMatch(/^iommu\.cachingMode: arm-smmuv3 has no/);
    expect(() => parseJob({ machine: { profile: "arm-smmuv3" } })).not.toThrow();
  });
});

describe("machine.hz reaches the flush queue", () => {
  it("the lazy domain's flush queue ticks at the job's HZ", () => {
    for (const hz of [100, 250, 300, 1000] as const) {
      const m = buildMachine(job({ mode: "lazy" }, { hz }));
      expect(m.dev.cookie?.fq?.hz).toBe(hz);
    }
  });

  it("at HZ=250 a timer flush comes 12-16 ms after the arm, not at 10 ms", () => {
    // Queue depth 1: far fewer than 255 unmaps per timer period, so the timer does the flushing.
    const j = parseJob({
      iommu: { mode: "lazy" },
      controller: { namespaceGiB: 1 / 64, latencyDist: "fixed" },
      workload: { rw: "randread", bs: "4k", iodepth: 1, ios: 400, ramp: 0 },
    });
    const r = runJob(j);
    expect(r.perIo["fq.timerFlushes"] ?? 0).toBeGreaterThan(0);
    expect(r.exposure?.mode).toBe("lazy");
    expect(r.exposure?.maxUs ?? 0).toBeGreaterThan(12_000);
    expect(r.exposure?.maxUs ?? Infinity).toBeLessThanOrEqual(16_000);
  });
});
