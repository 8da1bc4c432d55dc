import { describe, expect, it } from "vitest";
import { cli, tempFile } from "./helpers.ts";

describe("bad input gets one clear line and exit code 2", () => {
  it.each([
    [
      ["run", "--iodepth", "x"],
      "error: option '--iodepth <n>' argument 'x' is invalid. expected an integer, got \"x\".",
    ],
    [
      ["run", "--iodepth", "0"],
      "error: option '--iodepth <n>' argument '0' is invalid. expected 1..4096, got 0.",
    ],
    [
      ["run", "--iommu", "fast"],
      "error: option '--iommu <mode>' argument 'fast' is invalid. expected one of none, passthrough, strict, lazy, got \"fast\".",
    ],
    [
      ["run", "--ios", "5", "--seconds", "1"],
      "error: option '--ios <n>' cannot be used with option '--seconds <s>'",
    ],
    [["run", "--bogus"], "error: unknown option '--bogus'"],
    [
      ["compare", "--iommu", "strict,warp"],
      "error: option '--iommu <modes>' argument 'strict,warp' is invalid. \"warp\" is not one of none, passthrough, strict, lazy.",
    ],
    [
      ["map-bench", "-t", "0"],
      "error: option '-t, --threads <n>' argument '0' is invalid. expected 1..1024, got 0.",
    ],
    [
      ["map-bench", "-b", "19"],
      "error: option '-b, --bits <n>' argument '19' is invalid. expected 20..64, got 19.",
    ],
    [
      ["trace", "--buf", "zz"],
      "error: option '--buf <addr:len>' argument 'zz' is invalid. expected ADDR:LEN such as 0x1_2345_6000:8192, got \"zz\".",
    ],
    [
      ["run", "--kernel", "6.1"],
      "error: option '--kernel <version>' argument '6.1' is invalid. expected one of 6.17, 6.18, 6.19, 7.0, got \"6.1\".",
    ],
    [
      ["trace", "--kernel", "6.18,6.20"],
      "error: option '--kernel <versions>' argument '6.18,6.20' is invalid. \"6.20\" is not one of 6.17, 6.18, 6.19, 7.0.",
    ],
    [
      ["trace", "--kernel", "6.17,6.18,6.19"],
      "dmasim: --kernel 6.17,6.18,6.19: trace takes one release, or two to compare",
    ],
    [
      ["run", "--granule", "16384"],
      "dmasim: job: iommu.granule: 16384 is larger than machine.pageSize 4096; a DMA domain's granule must be at most the CPU page (Linux init_iova_domain)",
    ],
    [["sweep"], "error: missing required argument 'grid'"],
    [["frobnicate"], "error: unknown command 'frobnicate'"],
  ])("dmasim %j", async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.err.trim().split("\n")[0]).toBe(message);
  });

  it("names a missing job file", async () => {
    const r = await cli("run", "/nonexistent/job.json");
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe("dmasim: /nonexistent/job.json: cannot read (ENOENT)");
  });

  it("names invalid JSON", async () => {
    const p = tempFile("bad.json", "{ nope");
    const r = await cli("run", p);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^dmasim: ${p.replaceAll("/", "\\/")}: invalid JSON: `));
  });

  it("gives one line per schema problem, naming the path", async () => {
    const p = tempFile(
      "job.json",
      JSON.stringify({ workload: { bs: "4q", iodepth: 0 }, iommu: { mode: "warp" }, extra: 1 }),
    );
    const r = await cli("run", p);
    expect(r.code).toBe(2);
    const lines = r.err.trim().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines).toContain(
      `dmasim: ${p}: workload.bs: "4q": expected a size such as 4096, "4k", "128K" or "0x1000"`,
    );
    expect(lines).toContain(
      `dmasim: ${p}: workload.iodepth: 0: Too small: expected number to be >=1`,
    );
    expect(lines).toContain(
      `dmasim: ${p}: iommu.mode: "warp": Invalid option: expected one of "none"|"passthrough"|"strict"|"lazy"`,
    );
    expect(lines).toContain(`dmasim: ${p}: (job): Unrecognized key: "extra"`);
  });

  it("refuses a cost file with an unknown entry or a bad value", async () => {
    const p = tempFile("costs.json", JSON.stringify({ "iotlb.rangeInvalidation": -1 }));
    const r = await cli("run", "--ios", "10", "--costs", p);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${p}: costs.iotlb.rangeInvalidation`);
    const q = tempFile("costs.json", JSON.stringify({ "no.such": 5 }));
    const s = await cli("run", "--ios", "10", "--costs", q);
    expect(s.code).toBe(2);
    expect(s.err.trim()).toBe(
      `dmasim: ${q}: costs.no.such: unknown cost entry (a new entry needs counters and a category)`,
    );
  });

  it("refuses a trace buffer outside RAM", async () => {
    const r = await cli("trace", "--buf", "0x9000_0000:4096");
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(
      "dmasim: --buf 0x90000000:4096 is not inside RAM of the simulated machine (RAM 0x100000-0x80000000, 0x100000000-0x480100000)",
    );
  });

  it("refuses a grid with a bad job in it", async () => {
    const p = tempFile("grid.json", JSON.stringify({ vary: { "workload.iodepth": [4, 0] } }));
    const r = await cli("sweep", p, "--workers", "0");
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(
      `dmasim: ${p}: point 1 {"workload.iodepth":0}: workload.iodepth: 0: Too small: expected number to be >=1`,
    );
  });
});
