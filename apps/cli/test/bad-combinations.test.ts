import { describe, expect, it } from "vitest";
import { buildMachine, parseJob } from "../src/engine/index.ts";
import { cli, tempFile } from "./helpers.ts";

/**
 * Jobs whose every field is valid but whose combination no run could honour: each is refused
 * before any work, with one line naming the field, its value and what is allowed, exit 2.
 */
const cases: [string, Record<string, unknown>, string][] = [
  [
    "a block-size range with max below min",
    { workload: { bs: { min: "64k", max: "4k" } } },
    "workload.bs: max 4096 is below min 65536; give min <= max",
  ],
  [
    "a block size that is not a multiple of the LBA size",
    { controller: { lbaSize: 4096 }, workload: { bs: "2k" } },
    "workload.bs: 2048 is not a multiple of the 4096-byte LBA size (controller.lbaSize)",
  ],
  [
    "a block size larger than the namespace",
    { controller: { namespaceGiB: 1 / 1024 }, workload: { bs: "2m" } },
    "workload.bs: 2097152 exceeds the 1 MiB namespace (controller.namespaceGiB 0.0009765625)",
  ],
  [
    "buffers that cannot fit in RAM",
    { machine: { memoryGiB: 1, cpus: 64 }, workload: { bs: "1m", iodepth: 64 } },
    "machine.memoryGiB: 1 cannot hold the I/O buffers: 4096 slots (machine.cpus 64 × workload.iodepth 64) of 1 MiB take 4 GiB besides the 64 MiB SWIOTLB pool; give at least 6, or fewer slots",
  ],
  [
    "a bounce buffer that does not fit below 4 GiB",
    { machine: { memoryGiB: 0.5 }, device: { swiotlbMiB: 1024 } },
    "device.swiotlbMiB: 1024 does not fit in the 512 MiB of RAM below 4 GiB (machine.memoryGiB 0.5); give at most 496",
  ],
  [
    "IOTLB ways that do not divide the entries",
    { iommu: { iotlbEntries: 256, iotlbWays: 3 } },
    "iommu.iotlbWays: 3 does not divide iommu.iotlbEntries 256; give a divisor such as 2",
  ],
  [
    "a buffer offset outside the page",
    { workload: { buffers: "offset", bufferOffset: 5000 } },
    "workload.bufferOffset: 5000 is not inside one 4096-byte page; give 0..4092 (a multiple of 4)",
  ],
  [
    "contiguous buffers larger than the largest buddy block",
    { workload: { buffers: "contiguous", bs: "8m" } },
    "workload.buffers: contiguous buffers of 8 MiB exceed the largest contiguous block (4 MiB); use scattered or hugepage, or bs <= 4 MiB",
  ],
  [
    "a lognormal p99 below its median",
    { controller: { latencyUs: 80, latencyP99Us: 20 } },
    "controller.latencyP99Us: 20 is below the median controller.latencyUs 80; give at least 80",
  ],
  [
    "a 24-bit device without an IOMMU (its mappings would fail forever)",
    { iommu: { mode: "none" }, device: { dmaMaskBits: 24 } },
    "device.dmaMaskBits: 24 does not reach the SWIOTLB pool (below 0x5000000), so every bounce under iommu.mode none would fail; give dmaMaskBits >= 27 or an IOMMU (strict or lazy)",
  ],
  [
    "a 32-bit device without an IOMMU or a SWIOTLB pool",
    { iommu: { mode: "passthrough" }, device: { dmaMaskBits: 32, swiotlbMiB: 0 } },
    "device.dmaMaskBits: 32 does not reach RAM up to 0x480100000 and device.swiotlbMiB is 0, so iommu.mode passthrough has nothing to bounce through; give dmaMaskBits >= 35, a SWIOTLB pool, or an IOMMU (strict or lazy)",
  ],
];

describe("combinations no run could honour", () => {
  it.each(cases)("refuses %s before any work, in one line", async (_what, job, line) => {
    const p = tempFile("job.json", JSON.stringify(job));
    const r = await cli("run", p);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err.trim()).toBe(`dmasim: ${p}: ${line}`);
  });

  it("refuses them from the engine API too, with the same line", () => {
    expect(() => parseJob(cases[0]?.[1])).toThrow(cases[0]?.[2]);
  });

  it("accepts the same fields in combinations that work", async () => {
    // More I/O queues than CPUs: Linux creates one per CPU at most, and so does the model.
    const q = tempFile(
      "job.json",
      JSON.stringify({ machine: { cpus: 2 }, controller: { ioQueues: 4 }, workload: { ios: 50 } }),
    );
    expect((await cli("run", q)).code).toBe(0);
    const r = await cli("run", "--ios", "50", "--iommu", "strict", "--memory-gib", "1");
    expect(r.code).toBe(0);
    const ok = tempFile(
      "job.json",
      JSON.stringify({
        iommu: { mode: "none" },
        device: { dmaMaskBits: 28 },
        workload: { ios: 50, buffers: "offset", bufferOffset: 4092 },
      }),
    );
    expect((await cli("run", ok)).code).toBe(0);
  });

  it("refuses a cost entry that names no counter, or a cost that is not finite", async () => {
    const p = tempFile(
      "costs.json",
      JSON.stringify({ "my.entry": { ns: 5, counters: ["iova.nosuch"], category: "iova" } }),
    );
    const r = await cli("run", "--ios", "10", "--costs", p);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      new RegExp(
        `^dmasim: ${p}: costs\\.my\\.entry\\.counters: "iova\\.nosuch" is not a counter; scope iova has `,
      ),
    );
    expect(r.err.trim().split("\n")).toHaveLength(1);
    const q = tempFile("costs.json", '{"iotlb.rangeInvalidation": 1e999}');
    const s = await cli("run", "--ios", "10", "--costs", q);
    expect(s.code).toBe(2);
    expect(s.err.trim()).toBe(
      `dmasim: ${q}: costs.iotlb.rangeInvalidation: Infinity is not a finite number of ns >= 0`,
    );
  });

  it("refuses a trace buffer on a page the driver already uses, and a misaligned offset", async () => {
    // The admin submission queue the driver allocated at bring-up (ASQ, without an IOMMU a
    // physical address).
    const m = buildMachine(parseJob({ iommu: { mode: "none" } }));
    const asq = m.ctrl.readReg32(0x28) + m.ctrl.readReg32(0x2c) * 2 ** 32;
    const r = await cli("trace", "--iommu", "none", "--buf", `0x${asq.toString(16)}:4096`);
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(
      `dmasim: --buf 0x${asq.toString(16)}:4096: page 0x${asq.toString(16)} is already in use by the machine (the driver's queues and descriptors, page tables or the SWIOTLB pool); choose free RAM`,
    );
    const s = await cli("trace", "--offset", "3");
    expect(s.code).toBe(2);
    expect(s.err.trim()).toBe(
      "dmasim: --offset 3: give a multiple of the 512-byte LBA size with offset + 4096 bytes within the 268435456-byte namespace",
    );
  });

  it("refuses a NUMA node the machine does not have", async () => {
    const r = await cli("map-bench", "-n", "5");
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(
      "dmasim: invalid numa node 5: the simulated machine has node 0 only (or -1)",
    );
  });

  it("checks every sweep point, at the machine level too, before the first runs", async () => {
    const p = tempFile(
      "grid.json",
      JSON.stringify({
        base: { iommu: { mode: "none" }, workload: { ios: 10 } },
        vary: { "device.dmaMaskBits": [64, 24] },
      }),
    );
    const r = await cli("sweep", p, "--workers", "0");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err.trim()).toMatch(
      new RegExp(
        `^dmasim: ${p}: point 1 \\{"device.dmaMaskBits":24\\}: device.dmaMaskBits: 24 does not reach`,
      ),
    );
  });

  it.each([
    [
      ["run", "--html", "/nonexistent-dir/r.html"],
      "--html /nonexistent-dir/r.html: cannot write (ENOENT)",
    ],
    [["compare", "--html", "/"], "--html /: cannot write (it is a directory)"],
  ])("checks an output path before the run: %j", async (argv, line) => {
    const r = await cli(...argv, "--ios", "100000");
    expect(r.code).toBe(2);
    // A report on stdout would mean the check came after the run.
    expect(r.out).toBe("");
    expect(r.err.trim()).toBe(`dmasim: ${line}`);
  });

  it("checks sweep --out before the first point", async () => {
    const p = tempFile("grid.json", JSON.stringify({ vary: { "workload.iodepth": [4] } }));
    const r = await cli("sweep", p, "--workers", "0", "--out", "/nonexistent-dir/x.jsonl");
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe("dmasim: --out /nonexistent-dir/x.jsonl: cannot write (ENOENT)");
  });
});
