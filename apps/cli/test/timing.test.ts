import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type JobInput,
  type ResourceKind,
  type ResourceReport,
  type RunResult,
  parseJob,
  runJob,
} from "../src/engine/index.ts";
import { ResourceSet } from "../src/engine/resources.ts";

/** Runs a job given as a job file would give it. */
function run(input: JobInput): RunResult {
  return runJob(parseJob(input));
}

/** The report of resource `kind`; fails the test when the run does not list it. */
function resource(r: RunResult, kind: ResourceKind): ResourceReport {
  const found = r.resources.find((x) => x.name === kind);
  if (found === undefined) throw new Error(`the report lists no ${kind}`);
  return found;
}

/** |a - b| relative to b. */
function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** A fast controller: the CPUs and the IOMMU, not the media, decide the rate. */
const FAST = { latencyUs: 10, bandwidthMBps: 1e6 } as const;

/** The most I/Os a property run asks for (the simulator runs some 10⁴–10⁵ I/Os a second). */
const MAX_IOS = 12_000;

/** Random jobs over the timing model's configuration space (before `ios` is sized). */
const timingJobArb = fc
  .record({
    seed: fc.integer({ min: 0, max: 1000 }),
    mode: fc.constantFrom("none", "passthrough", "strict", "lazy"),
    mapping: fc.constantFrom("two-step", "per-segment", "scatterlist"),
    completion: fc.constantFrom("interrupt", "poll"),
    cpus: fc.integer({ min: 1, max: 8 }),
    queueFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    controllers: fc.integer({ min: 1, max: 3 }),
    iodepth: fc.integer({ min: 1, max: 64 }),
    bs: fc.constantFrom("4k", "16k", "128k"),
    latencyDist: fc.constantFrom("fixed", "uniform", "lognormal"),
    latencyUs: fc.integer({ min: 0, max: 100 }),
    bandwidthMBps: fc.constantFrom(500, 3500, 20000, 1e6),
    maxIops: fc.option(fc.constantFrom(100_000, 500_000, 2_000_000), { nil: undefined }),
    rampPerSlot: fc.constantFrom(0, 2, 20),
    batchSubmit: fc.integer({ min: 1, max: 8 }),
    rw: fc.constantFrom("randread", "randrw"),
  })
  .map((g) => {
    // Slot buffers are materialised up front: keep 128 KiB jobs to 64 slots so the run stays fast.
    const iodepth =
      g.bs === "128k" ? Math.min(g.iodepth, Math.max(1, Math.floor(64 / g.cpus))) : g.iodepth;
    const slots = g.cpus * iodepth;
    // Without a ramp the window holds every I/O's whole life, and Little's law is exact. With
    // one, the ramp's I/Os still in flight when the window opens count in the depth but not in
    // the latencies: about slots / (2 × ios) of the total, so a ramp only when ios ≥ 60 × slots.
    const ios = Math.min(MAX_IOS, Math.max(1500, 60 * slots));
    const ramp = 60 * slots <= MAX_IOS ? g.rampPerSlot * slots : 0;
    const controller: NonNullable<JobInput["controller"]> = {
      latencyUs: g.latencyUs,
      latencyDist: g.latencyDist,
      bandwidthMBps: g.bandwidthMBps,
      ioQueues: 1 + Math.floor(g.queueFraction * (g.cpus - 1)),
    };
    if (g.maxIops !== undefined) controller.maxIops = g.maxIops;
    const job: JobInput = {
      seed: g.seed,
      machine: { cpus: g.cpus, controllers: g.controllers },
      iommu: { mode: g.mode },
      controller,
      host: { mapping: g.mapping, completion: g.completion },
      workload: {
        rw: g.rw,
        bs: g.bs,
        iodepth,
        ios,
        ramp,
        batchSubmit: g.batchSubmit,
        verify: false,
      },
    };
    return job;
  });

/**
 * A CPU-bound closed loop (one CPU, fio's iodepth_batch_submit 4): slots freed while the CPU is
 * busy wait in its ready list, some of them from before the end of the ramp to after it.
 */
const RAMP_STARVED_JOB: JobInput = {
  iommu: { mode: "none" },
  controller: { latencyUs: 0, bandwidthMBps: 20000 },
  workload: { rw: "randread", iodepth: 32, ios: 2000, ramp: 1000, batchSubmit: 4, verify: false },
};

/** Little's law over a run's measured window, for `lat` (ready → handled) and `clat`. */
function expectLittle(r: RunResult): void {
  expect(relErr((r.iops * r.lat.meanUs) / 1e6, r.qd.mean), "IOPS × lat vs qd.mean").toBeLessThan(
    0.02,
  );
  expect(
    relErr((r.iops * r.clat.meanUs) / 1e6, r.qd.deviceMean),
    "IOPS × clat vs qd.deviceMean",
  ).toBeLessThan(0.02);
}

describe("engine timing: Little's law", () => {
  it("gives IOPS × mean latency = mean queue depth for lat and clat, and lat = slat + clat, whatever the job", () => {
    fc.assert(
      fc.property(timingJobArb, (input) => {
        const r = run(input);
        expect(r.ios).toBe(input.workload?.ios);
        expect(r.errors).toBe(0);
        expectLittle(r);
        expect(relErr(r.slat.meanUs + r.clat.meanUs, r.lat.meanUs)).toBeLessThan(0.001);
        // The achieved depth can never exceed what the job configured.
        expect(r.qd.mean).toBeLessThanOrEqual(r.qd.configured * (1 + 1e-9));
        expect(r.qd.deviceMean).toBeLessThanOrEqual(r.qd.mean * (1 + 1e-9));
      }),
      // The example first: the ramp's own starved slots (see the ramp tests).
      { numRuns: 20, examples: [[RAMP_STARVED_JOB]] },
    );
  });
});

describe("engine timing: CPUs", () => {
  it("shares the work evenly when 32 symmetric CPUs each have their own queue", () => {
    const r = run({
      machine: { cpus: 32 },
      iommu: { iotlbEntries: 4096 },
      controller: FAST,
      workload: {
        rw: "randread",
        bs: "4k",
        iodepth: 2,
        ios: 32 * 300,
        ramp: 32 * 20,
        verify: false,
      },
    });
    expect(r.perCpu).toHaveLength(32);
    const meanIos = r.ios / 32;
    const meanBusy = r.perCpu.reduce((a, c) => a + c.busyPct, 0) / 32;
    expect(meanBusy).toBeGreaterThan(0);
    for (const c of r.perCpu) {
      expect(relErr(c.ios, meanIos), `CPU ${c.cpu} ios`).toBeLessThan(0.1);
      expect(relErr(c.busyPct, meanBusy), `CPU ${c.cpu} busy`).toBeLessThan(0.1);
    }
    // The old engine charged every CPU's doorbells to CPU 0.
    const busiestOther = Math.max(...r.perCpu.slice(1).map((c) => c.busyPct));
    expect((r.perCpu[0] as { busyPct: number }).busyPct).toBeLessThan(busiestOther * 1.1);
  });
});

describe("engine timing: the invalidation queue", () => {
  /** 4 KiB random reads on a fast device, 4 slots per CPU: the CPUs and the IOMMU set the rate. */
  const scaling = (
    mode: "strict" | "lazy",
    cpus: number,
    profile: "intel-vtd" | "arm-smmuv3" = "intel-vtd",
  ) =>
    run({
      machine: { cpus, profile },
      iommu: { mode },
      controller: FAST,
      workload: {
        rw: "randread",
        bs: "4k",
        iodepth: 4,
        ios: 1000 * cpus,
        ramp: 100 * cpus,
        verify: false,
      },
    });

  it("makes strict mode sublinear once the queue saturates while lazy scales near-linearly", () => {
    const strict = [1, 2, 4, 8, 16].map((c) => scaling("strict", c));
    const lazy = [1, 8].map((c) => scaling("lazy", c));
    const [s1, , , s8, s16] = strict as [RunResult, RunResult, RunResult, RunResult, RunResult];
    const [l1, l8] = lazy as [RunResult, RunResult];
    const iq = (r: RunResult) => resource(r, "iommu-invalidation-queue");

    // One CPU: the closed loop bounds the run, the queue is far from busy.
    expect(iq(s1).utilisation).toBeLessThan(0.5);
    expect(iq(s1).waitNsPerIo).toBe(0);
    // 16 CPUs: the one queue is the bound, and the CPUs wait for it.
    const top = iq(s16);
    expect(top.instances).toBe(1);
    expect(top.utilisation).toBeGreaterThan(0.9);
    expect(top.waitNsPerIo).toBeGreaterThan(0);
    expect(s16.boundBy.resource).toBe("iommu-invalidation-queue");
    // A saturated server's throughput is 1 / its hold time per I/O.
    expect(relErr((s16.iops * top.holdNsPerIo) / 1e9, top.utilisation)).toBeLessThan(0.05);
    // So past saturation more CPUs buy nothing.
    const strictRatio = s16.iops / s1.iops;
    expect(strictRatio).toBeLessThan(6);
    expect(s16.iops).toBeLessThan(s8.iops * 1.1);
    // Lazy mode batches its invalidations: 8 CPUs get at least 6 times one CPU's rate (the
    // model gives about 8; its flush-queue timer hardly uses the queue).
    const lazyRatio = l8.iops / l1.iops;
    expect(lazyRatio).toBeGreaterThanOrEqual(6);
    expect(lazyRatio).toBeGreaterThan(strictRatio);
    expect(iq(l8).utilisation).toBeLessThan(0.1);
    expect(l8.boundBy.resource).not.toBe("iommu-invalidation-queue");
  });

  it("saturates the queue later on SMMUv3, whose CMD_SYNC is cheaper than VT-d's wait", () => {
    const arm = scaling("strict", 8, "arm-smmuv3");
    const intel = scaling("strict", 8);
    expect(resource(arm, "iommu-invalidation-queue").utilisation).toBeLessThan(0.9);
    expect(resource(intel, "iommu-invalidation-queue").utilisation).toBeGreaterThan(0.9);
    expect(arm.iops).toBeGreaterThan(1.5 * intel.iops);
  });
});

describe("engine timing: the device", () => {
  it("lengthens device time when the IOTLB cannot hold the job's translations", () => {
    // 128 KiB scattered reads: 32 pages a command, more than 16 IOTLB entries hold. The CPUs are
    // not saturated, so the device's extra time shows in clat instead of hiding behind them.
    const reach = (iotlbEntries: number) =>
      run({
        machine: { cpus: 2 },
        iommu: { mode: "lazy", iotlbEntries },
        controller: { latencyUs: 20, latencyDist: "fixed", bandwidthMBps: 1e6 },
        workload: {
          rw: "randread",
          bs: "128k",
          buffers: "scattered",
          iodepth: 4,
          ios: 1500,
          ramp: 200,
          verify: false,
        },
      });
    const small = reach(16);
    const large = reach(4096);
    expect(small.iotlbHitRate as number).toBeLessThan(large.iotlbHitRate as number);
    expect(small.device.walkNsPerIo).toBeGreaterThan(large.device.walkNsPerIo * 1.05);
    // The extra walks are the commands' own time: clat grows by about as much (0.95 of it here).
    const walkUs = (small.device.walkNsPerIo - large.device.walkNsPerIo) / 1000;
    const clatUs = small.clat.meanUs - large.clat.meanUs;
    expect(clatUs).toBeGreaterThan(0.5 * walkUs);
    expect(clatUs).toBeLessThan(1.5 * walkUs);
  });

  it("gives p99 = p50 with fixed media latency and p99 / p50 ≈ 3 with a lognormal of that spread", () => {
    const dist = (latencyDist: "fixed" | "lognormal") =>
      run({
        controller: { latencyUs: 100, latencyDist, latencyP99Us: 300 },
        workload: { rw: "randread", iodepth: 1, ios: 3000, verify: false },
      }).clat.percentilesUs;
    const fixed = dist("fixed");
    expect(relErr(fixed["99"] as number, fixed["50"] as number)).toBeLessThan(0.02);
    const lognormal = dist("lognormal");
    const ratio = (lognormal["99"] as number) / (lognormal["50"] as number);
    expect(ratio).toBeGreaterThan(3 * 0.75);
    expect(ratio).toBeLessThan(3 * 1.25);
  });
});

describe("engine timing: shared resources", () => {
  const KINDS: readonly ResourceKind[] = [
    "iommu-invalidation-queue",
    "iova-tree-lock",
    "rcache-depot-lock",
    "fq-lock",
    "swiotlb-area-lock",
    "nvme-sq-lock",
  ];
  const queues = (ioQueues: number | undefined, swiotlbMiB = 64) =>
    run({
      machine: { cpus: 4 },
      device: { swiotlbMiB },
      controller: ioQueues === undefined ? FAST : { ...FAST, ioQueues },
      workload: { rw: "randread", bs: "4k", iodepth: 8, ios: 4000, ramp: 400, verify: false },
    });

  it("lists every kind with its wait, and contends for the SQ lock only when CPUs share a queue", () => {
    const shared = queues(1);
    expect(shared.resources.map((x) => x.name).sort()).toEqual([...KINDS].sort());
    for (const x of shared.resources) {
      expect(x.waitNsPerIo, x.name).toBeGreaterThanOrEqual(0);
      expect(x.maxWaitNs, x.name).toBeGreaterThanOrEqual(0);
      expect(x.utilisation, x.name).toBeLessThanOrEqual(1);
    }
    const sq = resource(shared, "nvme-sq-lock");
    expect(sq.instances).toBe(1);
    expect(sq.acquisitions).toBeGreaterThanOrEqual(shared.ios);
    expect(sq.contended).toBeGreaterThan(0);
    expect(sq.waitNsPerIo).toBeGreaterThan(0);
    expect(sq.maxWaitNs).toBeGreaterThan(0);

    const own = resource(queues(undefined), "nvme-sq-lock");
    expect(own.instances).toBe(4);
    expect(own.acquisitions).toBeGreaterThanOrEqual(shared.ios);
    expect(own.contended).toBe(0);
    expect(own.waitNsPerIo).toBe(0);
    expect(own.maxWaitNs).toBe(0);
  });

  it("marks exactly the instances one CPU alone takes as exclusive (taken without ordering)", () => {
    const exclusive = (input: JobInput, perCpu = 1) =>
      new ResourceSet(parseJob(input), perCpu)
        .instances()
        .filter((r) => r.exclusive)
        .map((r) => r.name);
    // 4 CPUs on 3 queues: CPUs 0 and 1 share SQ 1, CPUs 2 and 3 have SQ 2 and SQ 3 to themselves.
    const four = { machine: { cpus: 4 }, controller: { ioQueues: 3 }, device: { swiotlbMiB: 64 } };
    expect(exclusive(four).sort()).toEqual(
      [
        "SWIOTLB area 0 lock",
        "SWIOTLB area 1 lock",
        "SWIOTLB area 2 lock",
        "SWIOTLB area 3 lock",
        "nvme0 SQ 2 lock",
        "nvme0 SQ 3 lock",
        "nvme0 flush-queue lock (CPU 0)",
        "nvme0 flush-queue lock (CPU 1)",
        "nvme0 flush-queue lock (CPU 2)",
        "nvme0 flush-queue lock (CPU 3)",
      ].sort(),
    );
    // One flush queue per domain is shared; two threads per CPU share everything.
    expect(exclusive({ ...four, iommu: { singleQueue: true } })).not.toContain(
      "nvme0 flush-queue lock",
    );
    expect(exclusive(four, 2)).toEqual([]);
    // An 8 MiB pool is two 4 MiB blocks: two areas, each shared by two of the four CPUs.
    const small = new ResourceSet(parseJob({ ...four, device: { swiotlbMiB: 8 } })).instances();
    const areas = small.filter((r) => r.kind === "swiotlb-area-lock");
    expect(areas.map((r) => [r.name, r.exclusive])).toEqual([
      ["SWIOTLB area 0 lock", false],
      ["SWIOTLB area 1 lock", false],
    ]);
    // On one CPU nothing is shared.
    const one = new ResourceSet(parseJob({ machine: { cpus: 1 } })).instances();
    expect(one.every((r) => r.exclusive)).toBe(true);
  });

  it("has no SWIOTLB area lock without a SWIOTLB pool", () => {
    const names = queues(undefined, 0).resources.map((x) => x.name);
    expect(names).not.toContain("swiotlb-area-lock");
    expect(names).toHaveLength(KINDS.length - 1);
  });

  it("shares one invalidation queue between controllers that each have their own IOVA tree", () => {
    const controllers = (n: number) =>
      run({
        machine: { cpus: 4, controllers: n },
        iommu: { mode: "strict" },
        controller: FAST,
        workload: { rw: "randread", bs: "4k", iodepth: 8, ios: 6000, ramp: 600, verify: false },
      });
    const four = controllers(4);
    const iq = resource(four, "iommu-invalidation-queue");
    expect(iq.instances).toBe(1);
    // Every controller's strict unmap waits on the one queue.
    const unmaps = (four.perIo["dma.unmaps"] ?? 0) * four.ios;
    expect(unmaps).toBeGreaterThanOrEqual(four.ios);
    expect(relErr(iq.acquisitions, unmaps)).toBeLessThan(0.01);
    expect(iq.utilisation).toBeGreaterThan(0.9);
    expect(four.boundBy.resource).toBe("iommu-invalidation-queue");
    expect(resource(four, "iova-tree-lock").instances).toBe(4);
    expect(resource(four, "rcache-depot-lock").instances).toBe(4);
    expect(resource(four, "nvme-sq-lock").instances).toBe(16);
    // So four controllers go no faster than one: the queue is the bound either way.
    const one = controllers(1);
    expect(resource(one, "iova-tree-lock").instances).toBe(1);
    expect(four.iops).toBeLessThan(one.iops * 1.1);
  });
});

describe("engine timing: runs", () => {
  it("repeats a run exactly from its seed, and a different seed gives different numbers", () => {
    const job = (seed: number) =>
      parseJob({
        seed,
        machine: { cpus: 4 },
        iommu: { mode: "lazy" },
        workload: { rw: "randrw", iodepth: 8, ios: 3000, ramp: 300, verify: true },
      });
    const strip = (r: RunResult) => JSON.stringify({ ...r, simulator: null });
    const a = runJob(job(7));
    const b = runJob(job(7));
    expect(a.verify.ok).toBe(true);
    expect(a.verify.checkedBytes).toBeGreaterThan(0);
    expect(strip(b)).toBe(strip(a));
    const c = runJob(job(8));
    expect(c.lat.meanUs).not.toBe(a.lat.meanUs);
    expect(c.iops).not.toBe(a.iops);
  });

  it("leaves a ramp of I/Os out of the statistics", () => {
    const r = run({ workload: { rw: "randread", ramp: 500, ios: 2000, verify: false } });
    expect(r.ios).toBe(2000);
    expect(r.rampIos).toBe(500);
    expect(r.lat.count).toBe(2000);
    expect(r.reads).toBe(2000);
  });

  it("leaves the I/Os of a time ramp out of the statistics", () => {
    const r = run({ workload: { rw: "randread", ramp: "1ms", ios: 2000, verify: false } });
    expect(r.ios).toBe(2000);
    expect(r.lat.count).toBe(2000);
    expect(r.rampIos).toBeGreaterThan(0);
    // About one millisecond's worth of I/Os at the run's rate.
    expect(relErr(r.rampIos, r.iops * 1e-3)).toBeLessThan(0.3);
  });

  it("keeps the ramp's time out of lat when slots freed during the ramp wait past its end", () => {
    const r = run(RAMP_STARVED_JOB);
    expect(r.ios).toBe(2000);
    expect(r.rampIos).toBe(1000);
    expectLittle(r);
  });

  it("charges interrupts to the irq category and polling to none, and polling answers sooner at QD1", () => {
    const completion = (mode: "interrupt" | "poll") =>
      run({
        controller: { ...FAST, latencyDist: "fixed" },
        host: { completion: mode },
        workload: { rw: "randread", iodepth: 1, ios: 2000, verify: false },
      });
    const irq = completion("interrupt");
    const poll = completion("poll");
    expect(irq.cpuNsPerIoByCategory.irq).toBeGreaterThan(0);
    expect(poll.cpuNsPerIoByCategory.irq).toBe(0);
    expect(poll.clat.meanUs).toBeLessThan(irq.clat.meanUs);
    expect(poll.iops).toBeGreaterThan(irq.iops);
  });
});
