import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseJob, runJob } from "../src/engine/index.ts";

/**
 * Small random jobs over the whole configuration space the engine supports (every kernel
 * release; a DMA domain's granule at most the CPU page, as Linux requires).
 */
const jobArb = fc
  .record({
    kernel: fc.constantFrom("6.17", "6.18", "6.19", "7.0"),
    iommu: fc.record({
      mode: fc.constantFrom("none", "passthrough", "strict", "lazy"),
      granule: fc.constantFrom(4096, 16384, 65536),
      freeEmptyTables: fc.boolean(),
      iotlbEntries: fc.constantFrom(4, 256),
      syncMapNeeded: fc.boolean(),
    }),
    device: fc.record({
      trusted: fc.boolean(),
      coherent: fc.boolean(),
      dmaMaskBits: fc.constantFrom(32, 48, 64),
    }),
    controller: fc.record({
      sgl: fc.constantFrom("none", "byte", "dword"),
      mdts: fc.constantFrom(0, 5, 9),
      lbaSize: fc.constantFrom(512, 4096),
      // A small namespace makes reads return data written earlier in the run.
      namespaceGiB: fc.constantFrom(1 / 256, 4),
    }),
    host: fc.record({ mapping: fc.constantFrom("two-step", "per-segment", "scatterlist") }),
    machine: fc.record({
      cpus: fc.integer({ min: 1, max: 2 }),
      pageSize: fc.constantFrom(4096, 16384, 65536),
    }),
    workload: fc.record({
      rw: fc.constantFrom("randread", "randwrite", "randrw", "read", "write"),
      rwmixread: fc.integer({ min: 0, max: 100 }),
      bs: fc.constantFrom("4k", "8k", "64k", "256k", { min: "4k", max: "32k" }, [
        { bs: "4k", weight: 3 },
        { bs: "128k", weight: 1 },
      ]),
      iodepth: fc.integer({ min: 1, max: 8 }),
      ios: fc.integer({ min: 20, max: 120 }),
      buffers: fc.constantFrom("contiguous", "scattered", "offset", "hugepage"),
    }),
    seed: fc.integer({ min: 0, max: 1000 }),
  })
  .filter(
    (j) =>
      j.iommu.granule <= j.machine.pageSize ||
      j.iommu.mode === "none" ||
      (j.iommu.mode === "passthrough" && j.device.trusted),
  );

describe("engine laws (fast-check)", () => {
  it("every valid job completes every I/O, verifies its data, and repeats exactly from its seed", () => {
    fc.assert(
      fc.property(jobArb, (input) => {
        const job = parseJob(input);
        const a = runJob(job);
        expect(a.ios).toBe(job.workload.ios);
        expect(a.errors).toBe(0);
        expect(a.faults).toBe(0);
        expect(a.verify.mismatches).toBe(0);
        expect(a.reads + a.writes).toBe(a.ios);
        expect(a.cpuNsPerIo).toBeGreaterThan(0);
        expect(a.latencyUs.max).toBeGreaterThanOrEqual(a.latencyUs.p50);
        const b = runJob(job);
        expect({ ...b, simulator: null }).toEqual({ ...a, simulator: null });
      }),
      // FC_RUNS=400 searches harder than the 25 runs CI affords.
      { numRuns: Number(process.env.FC_RUNS ?? 25) },
    );
  });
});
