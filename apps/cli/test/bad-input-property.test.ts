import fc from "fast-check";
import { describe, it } from "vitest";
import { JobError, machineProblems, parseJob, runJob } from "../src/engine/index.ts";

/**
 * Jobs from plausible values with, now and then, a wild one (a string for a number, 2^53, a
 * negative): each is refused with a JobError (exit 2 in the CLI) or runs to the end. Anything
 * else thrown is a bug the CLI would show as exit 70.
 */
const weird = fc.constantFrom<unknown>(
  0,
  1,
  -1,
  0.5,
  3,
  7,
  24,
  31,
  32,
  48,
  64,
  512,
  4096,
  65536,
  1e9,
  2 ** 53,
  "4k",
  "0",
  "1m",
  "64m",
  "x",
  null,
  true,
  {},
);
const pick = <T>(xs: T[]) => fc.constantFrom(...xs);
const jobArb = fc.record(
  {
    iommu: fc.record(
      {
        mode: pick(["none", "passthrough", "strict", "lazy"]),
        granule: fc.oneof(
          { arbitrary: pick([4096, 16384, 65536]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        iotlbEntries: fc.oneof(
          { arbitrary: pick([1, 4, 256]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        iotlbWays: fc.oneof(
          { arbitrary: pick([1, 2, 4, 3]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        addressBits: fc.oneof(
          { arbitrary: pick([32, 39, 48]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
      },
      { requiredKeys: [] },
    ),
    device: fc.record(
      {
        trusted: fc.boolean(),
        dmaMaskBits: fc.oneof(
          { arbitrary: pick([24, 28, 32, 40, 64]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        swiotlbMiB: fc.oneof(
          { arbitrary: pick([0, 1, 4, 64]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        coherent: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    machine: fc.record(
      {
        cpus: fc.oneof({ arbitrary: pick([1, 2, 4]), weight: 12 }, { arbitrary: weird, weight: 1 }),
        memoryGiB: fc.oneof(
          { arbitrary: pick([0.1, 0.25, 1, 4]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        pageSize: fc.oneof(
          { arbitrary: pick([4096, 16384, 65536]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        controllers: fc.oneof(
          { arbitrary: pick([1, 2]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
      },
      { requiredKeys: [] },
    ),
    controller: fc.record(
      {
        sgl: pick(["none", "byte", "dword"]),
        mdts: fc.oneof({ arbitrary: pick([0, 1, 5]), weight: 12 }, { arbitrary: weird, weight: 1 }),
        lbaSize: fc.oneof(
          { arbitrary: pick([512, 4096]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        namespaceGiB: fc.oneof(
          { arbitrary: pick([0.0001, 0.001, 0.25]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        queueDepth: fc.oneof(
          { arbitrary: pick([2, 3, 16, 1024]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        ioQueues: fc.oneof(
          { arbitrary: pick([1, 2]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        latencyUs: fc.oneof(
          { arbitrary: pick([0, 1, 80]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        latencyDist: pick(["fixed", "uniform", "lognormal"]),
        bandwidthMBps: fc.oneof(
          { arbitrary: pick([1, 100, 3500]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        maxIops: fc.oneof(
          { arbitrary: pick([1, 1000]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
      },
      { requiredKeys: [] },
    ),
    workload: fc.record(
      {
        rw: pick(["read", "write", "randrw"]),
        bs: fc.oneof(
          {
            arbitrary: pick(["512", "4k", "64k", "1m", "4m", { min: "4k", max: "64k" }]),
            weight: 12,
          },
          { arbitrary: weird, weight: 1 },
        ),
        iodepth: fc.oneof(
          { arbitrary: pick([1, 8, 64]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        buffers: pick(["contiguous", "scattered", "offset", "hugepage"]),
        bufferOffset: fc.oneof(
          { arbitrary: pick([0, 4, 512, 4092]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        batchSubmit: fc.oneof(
          { arbitrary: pick([1, 4]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
        ramp: fc.oneof(
          { arbitrary: pick([0, 5, "1us"]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
      },
      { requiredKeys: [] },
    ),
    host: fc.record(
      {
        mapping: pick(["two-step", "per-segment", "scatterlist"]),
        completion: pick(["interrupt", "poll"]),
        sglThresholdKiB: fc.oneof(
          { arbitrary: pick([0, 32]), weight: 12 },
          { arbitrary: weird, weight: 1 },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

describe("bad input never reaches exit 70 (fast-check)", () => {
  it("refuses a job with a JobError or runs it, and never throws anything else", () => {
    fc.assert(
      fc.property(jobArb, (input) => {
        const job = { ...input, workload: { ...(input.workload ?? {}), ios: 30 } };
        let parsed;
        try {
          parsed = parseJob(job);
        } catch (e) {
          if (e instanceof JobError) return;
          throw e;
        }
        if (machineProblems(parsed).length > 0) return;
        // A valid but long ramp (up to 10^8 I/Os) is checked above; the run keeps it short.
        const ramp = parsed.workload.ramp;
        const run =
          typeof ramp === "number" && ramp > 64
            ? parseJob({ ...job, workload: { ...job.workload, ramp: 64 } })
            : parsed;
        try {
          runJob(run);
        } catch (e) {
          if (!(e instanceof JobError)) throw e;
        }
      }),
      // FC_RUNS=1000 searches harder than CI affords.
      { numRuns: Number(process.env.FC_RUNS ?? 80) },
    );
  });
});
