import { describe, expect, it } from "vitest";
import { cli, tempFile } from "./helpers.ts";

/** Two 2 KiB buffers joined at a sub-page gap: 6.19 forces SGL, 6.18 splits at the virt boundary. */
const GAP = ["--buf", "0x1_2345_6000:2048", "--buf", "0x2_0000_1200:2048"];

describe("kernel versions on the command line", () => {
  it("runs the newest release by default and the one asked for", async () => {
    const d = JSON.parse((await cli("run", "--ios", "50", "--json")).out) as {
      job: { kernel: string };
    };
    expect(d.job.kernel).toBe("7.0");
    const r = JSON.parse((await cli("run", "--ios", "50", "--kernel", "6.18", "--json")).out) as {
      job: { kernel: string };
    };
    expect(r.job.kernel).toBe("6.18");
  });

  it("trace says which release, mode and dma-debug state it traces, dma-debug off as in run", async () => {
    const r = await cli("trace", "--kernel", "6.18");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^kernel\n {2}Linux 6\.18, IOMMU lazy, mapping two-step, dma-debug off\n/,
    );
    const d = await cli("trace", "--debug");
    expect(d.out).toContain("dma-debug on");
  });

  it("trace maps as run does: without dma-debug a coherent direct device records no dma_vec", async () => {
    // Two pages, no IOMMU, PRPs: a production kernel needs nothing to unmap (dma_need_unmap
    // false), so nvme_pci_prp_save_mapping records nothing; dma-debug makes it record both.
    const bufs = ["--iommu", "none", "--buf", "0x1_2345_6000:4096", "--buf", "0x2_0000_0000:4096"];
    const off = await cli("trace", ...bufs);
    expect(off.code).toBe(0);
    expect(off.out).toContain("(nothing to unmap)");
    expect(off.out).toContain("dma_vec records 0");
    expect(off.out).not.toContain("mempool.vec.allocs");
    const on = await cli("trace", "--debug", ...bufs);
    expect(on.out).toContain("dma_vec records 2 (array from the mempool)");
    expect(on.out).toContain("mempool.vec.allocs +1");
  });

  it("trace --kernel a,b traces the same I/O under both and shows what changes", async () => {
    const r = await cli("trace", "--kernel", "6.18,6.19", ...GAP);
    expect(r.code).toBe(0);
    expect(r.out).toContain("== Linux 6.18 ==");
    expect(r.out).toContain("== Linux 6.19 ==");
    const tail = r.out.slice(r.out.indexOf("what changes from Linux 6.18 to 6.19"));
    expect(tail).not.toContain("nothing: every step is the same");
    // 6.18 gives every NVMe queue the 4 KiB virt boundary: the bio splits at the joint.
    expect(tail).toMatch(/- Linux 6\.18: trace follows one request.*virt_boundary 0xfff/);
    // 6.19 keeps one request and, with the gap, sends it as an SGL.
    expect(tail).toMatch(/\+ .*SGL/i);
    const alone = await cli("trace", "--kernel", "6.18", ...GAP);
    expect(alone.code).toBe(2);
    const j = JSON.parse((await cli("trace", "--kernel", "6.18,6.19", ...GAP, "--json")).out) as {
      traces: { kernel: string }[];
      differences: { step: string }[];
    };
    expect(j.traces.map((t) => t.kernel)).toEqual(["6.18", "6.19"]);
    expect(j.differences.length).toBeGreaterThan(0);
  });

  it("compare --kernel runs every cell under each release and lists the counters that change", async () => {
    // 16 KiB pages and granule: 6.18's static IOVA test ((virt_boundary + 1) & merge boundary)
    // fails for NVMe's 4 KiB virt boundary, so each segment is mapped alone; 6.19 coalesces.
    const job = tempFile(
      "kernel-job.json",
      JSON.stringify({
        machine: { pageSize: 16384 },
        iommu: { granule: 16384 },
        workload: { bs: "64k", buffers: "scattered", ios: 200 },
      }),
    );
    const args = [job, "--iommu", "strict", "--mapping", "two-step"];
    const r = await cli("compare", "--kernel", "6.18,6.19", ...args);
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines.find((l) => l.includes("kernel") && l.includes("cmd/IO"))).toBeDefined();
    expect(r.out).toContain("what changes between kernels (strict / two-step), per I/O:");
    expect(r.out).not.toContain("nothing: every counter is the same");
    const j = JSON.parse(
      (await cli("compare", "--kernel", "6.18,6.19", ...args, "--json")).out,
    ) as {
      cells: { kernel: string }[];
      kernelDifferences: { counters: { name: string; values: Record<string, number> }[] }[];
    };
    expect(j.cells.map((c) => c.kernel)).toEqual(["6.18", "6.19"]);
    const counters = j.kernelDifferences[0]?.counters ?? [];
    expect(counters.length).toBeGreaterThan(0);
    for (const c of counters) expect(c.values["6.18"]).not.toBe(c.values["6.19"]);
  });
});
