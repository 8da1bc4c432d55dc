import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_COSTS, type RunResult } from "../src/engine/index.ts";
import { cli, tempFile } from "./helpers.ts";

describe("dmasim run", () => {
  it("runs the default job and prints a report", async () => {
    const r = await cli("run", "--ios", "2000");
    expect(r.code).toBe(0);
    expect(r.out).toContain("default: randrw bs=4k iodepth=32 cpus=1 | IOMMU lazy | two-step");
    expect(r.out).toMatch(/verify\s+ok/);
    expect(r.out).toMatch(/CPU per I\/O\s+[\d.]+ ns/);
    expect(r.out).toContain("lazy exposure window");
    expect(r.out).toMatch(/simulated I\/Os per host second/);
  });

  it("prints JSON with --json, with overrides from the command line over the job file", async () => {
    const job = tempFile(
      "job.json",
      JSON.stringify({
        name: "mine",
        workload: { bs: "8k", iodepth: 4, ios: 500 },
        iommu: { mode: "strict" },
      }),
    );
    const r = await cli("run", job, "--iodepth", "2", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as RunResult;
    expect(j.job.name).toBe("mine");
    expect(j.job.iommu.mode).toBe("strict");
    expect(j.job.workload.iodepth).toBe(2);
    expect(j.ios).toBe(500);
    expect(j.bytes).toBe(500 * 8192);
    expect(j.verify.ok).toBe(true);
    expect(j.perIo["domain.rangeInvalidations"]).toBeCloseTo(1, 5);
    expect(j.exposure).toEqual({
      mode: "strict",
      maxUs: 0,
      p99Us: 0,
      staleHits: 0,
      ranges: 0,
      histogram: [],
    });
    expect(j.latencyUs.p99).toBeGreaterThan(j.job.controller.latencyUs);
  });

  it("gives identical results for the same job and seed", async () => {
    const a = JSON.parse(
      (await cli("run", "--ios", "1500", "--bs", "16k", "--cpus", "2", "--json")).out,
    ) as Record<string, unknown>;
    const b = JSON.parse(
      (await cli("run", "--ios", "1500", "--bs", "16k", "--cpus", "2", "--json")).out,
    ) as Record<string, unknown>;
    delete a.simulator;
    delete b.simulator;
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    const c = JSON.parse(
      (await cli("run", "--ios", "1500", "--bs", "16k", "--cpus", "2", "--seed", "9", "--json"))
        .out,
    ) as Record<string, unknown>;
    delete c.simulator;
    expect(JSON.stringify(c)).not.toBe(JSON.stringify(a));
  });

  it("measures the lazy exposure window, bounded by the 10 ms flush-queue timer", async () => {
    const r = JSON.parse((await cli("run", "--ios", "3000", "--json")).out) as RunResult;
    expect(r.exposure?.mode).toBe("lazy");
    expect(r.exposure?.maxUs ?? 0).toBeGreaterThan(0);
    // 10 ms is 3 jiffies at HZ=250; the timer wheel fires it at the 4th tick: at most 16 ms.
    expect(r.exposure?.maxUs ?? Infinity).toBeLessThanOrEqual(16_000);
    expect(r.exposure?.p99Us ?? Infinity).toBeLessThanOrEqual(r.exposure?.maxUs ?? 0);
  });

  it("runs for simulated seconds and across several CPUs", async () => {
    const r = JSON.parse(
      (await cli("run", "--seconds", "0.002", "--cpus", "2", "--json")).out,
    ) as RunResult;
    expect(r.simulatedNs).toBeGreaterThanOrEqual(2e6);
    expect(r.perCpu).toHaveLength(2);
    expect(r.perCpu.every((c) => c.ios > 0)).toBe(true);
  });

  it("applies a user cost table", async () => {
    const costs = tempFile("costs.json", JSON.stringify({ "block.submit": 1000 }));
    const base = JSON.parse((await cli("run", "--ios", "300", "--json")).out) as RunResult;
    const r = JSON.parse(
      (await cli("run", "--ios", "300", "--json", "--costs", costs)).out,
    ) as RunResult;
    const was = DEFAULT_COSTS["block.submit"]?.ns ?? 0;
    expect(r.cpuNsPerIoByCategory.block - base.cpuNsPerIoByCategory.block).toBeCloseTo(
      1000 - was,
      0,
    );
  });

  it("exits 1 when I/Os fail: an untrusted device with no bounce buffers and sub-page buffers", async () => {
    const job = tempFile(
      "fail.json",
      JSON.stringify({
        device: { trusted: false, swiotlbMiB: 0 },
        iommu: { mode: "strict" },
        workload: { buffers: "offset", ios: 50 },
      }),
    );
    const r = await cli("run", job);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/I\/O errors\s+50/);
    expect(r.out).toContain("FAILED: 50 I/Os failed");
  });

  it("gives an untrusted device a strict domain, as Linux does, and says so", async () => {
    const r = await cli("run", "--untrusted", "--ios", "200", "--buffers", "offset");
    expect(r.code).toBe(0);
    expect(r.out).toContain("IOMMU strict (asked lazy; untrusted devices get a strict domain)");
    expect(r.out).toMatch(/swiotlb\.bouncedBytesToDevice\s+[1-9]/);
  });

  it("keeps emptied page tables as Linux does, or frees them at once with iommu.freeEmptyTables", async () => {
    const perIo = async (freeEmptyTables: boolean) => {
      const job = tempFile(
        "tables.json",
        JSON.stringify({
          iommu: { mode: "lazy", freeEmptyTables },
          workload: { rw: "randread", bs: "128k", iodepth: 1, ios: 400, buffers: "scattered" },
        }),
      );
      const r = await cli("run", job, "--json");
      expect(r.code).toBe(0);
      const out = JSON.parse(r.out) as {
        job: { iommu: { freeEmptyTables: boolean } };
        perIo: Record<string, number>;
        pageTables: { tables: number; bytes: number };
      };
      expect(out.job.iommu.freeEmptyTables).toBe(freeEmptyTables);
      expect(out.pageTables.bytes).toBe(out.pageTables.tables * 4096);
      tables.push(out.pageTables.tables);
      return out.perIo;
    };
    const tables: number[] = [];
    const linux = await perIo(false);
    const eager = await perIo(true);
    // Linux keeps the tables the run used; eager freeing leaves those of the queue rings.
    expect(tables[0]).toBeGreaterThan(tables[1] as number);
    // Linux: the tables of the first I/Os serve every later one.
    expect(linux["pgtable.tablePagesAllocated"] ?? 0).toBeLessThan(0.05);
    expect(linux["pgtable.tablePagesFreed"] ?? 0).toBe(0);
    // Eager: most I/Os empty a leaf table at unmap, and a later map allocates one again.
    expect(eager["pgtable.tablePagesAllocated"]).toBeGreaterThan(0.5);
    expect(eager["pgtable.tablePagesFreed"]).toBeGreaterThan(0.5);
    expect(eager["pgtable.pteWrites"]).toBeGreaterThan(linux["pgtable.pteWrites"] as number);
  });

  it("writes an HTML report with charts", async () => {
    const html = tempFile("x.html", "");
    const r = await cli("run", "--ios", "300", "--html", html);
    expect(r.code).toBe(0);
    const text = readFileSync(html, "utf8");
    expect(text).toContain('<svg id="latency-cdf"');
    expect(text).toContain('<svg id="cpu-chart"');
    expect(text).not.toMatch(/<script|https?:\/\//);
  });
});

describe("dmasim compare", () => {
  it("orders strict > lazy > passthrough in CPU per I/O, verifies every cell, and shows ratios", async () => {
    const r = await cli("compare", "--ios", "1500", "--bs", "64k", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      cells: { iommu: string; mapping: string; cpuRatioToFirst: number; result: RunResult }[];
    };
    expect(j.cells).toHaveLength(12);
    const cell = (i: string, m: string) =>
      j.cells.find((c) => c.iommu === i && c.mapping === m)?.result as RunResult;
    for (const m of ["two-step", "per-segment", "scatterlist"]) {
      expect(cell("strict", m).cpuNsPerIo).toBeGreaterThan(cell("lazy", m).cpuNsPerIo);
      expect(cell("lazy", m).cpuNsPerIo).toBeGreaterThan(cell("passthrough", m).cpuNsPerIo);
    }
    for (const c of j.cells) expect(c.result.verify.ok).toBe(true);
    // The two-step path links every segment and syncs once per I/O; the scatterlist path pays per segment.
    expect(cell("lazy", "two-step").perIo["domain.syncMapCalls"]).toBeCloseTo(1, 5);
    expect(cell("lazy", "two-step").perIo["dma.iovaLinks"]).toBeGreaterThan(4);
    expect(cell("lazy", "scatterlist").cpuNsPerIoByCategory.scatterlist).toBeGreaterThan(0);
    expect(cell("lazy", "scatterlist").cpuNsPerIo).toBeGreaterThan(
      cell("lazy", "two-step").cpuNsPerIo,
    );
    // Per-segment mapping pays an IOVA allocation and a sync per segment, and in strict mode an
    // invalidation per segment; without an IOMMU it is the two-step driver's own path.
    const perSeg = cell("strict", "per-segment").perIo;
    expect(perSeg["dma.iovaLinks"] ?? 0).toBe(0);
    expect(perSeg["domain.syncMapCalls"]).toBeGreaterThan(4);
    expect(perSeg["domain.rangeInvalidations"]).toBeGreaterThan(4);
    expect(cell("strict", "per-segment").cpuNsPerIo).toBeGreaterThan(
      cell("strict", "two-step").cpuNsPerIo,
    );
    expect(cell("none", "per-segment").cpuNsPerIo).toBeCloseTo(
      cell("none", "two-step").cpuNsPerIo,
      5,
    );
    expect(j.cells[0]?.cpuRatioToFirst).toBe(1);
  });

  it("prints a table for a chosen matrix", async () => {
    const r = await cli(
      "compare",
      "--iommu",
      "strict,lazy",
      "--mapping",
      "two-step",
      "--ios",
      "500",
    );
    expect(r.code).toBe(0);
    const rows = r.out.trim().split("\n");
    expect(rows.filter((l) => /^(strict|lazy)\s+two-step/.test(l))).toHaveLength(2);
    expect(r.out).toContain("vs first");
  });

  it("writes the compare matrix as HTML", async () => {
    const html = tempFile("c.html", "");
    expect(
      (await cli("compare", "--iommu", "none,strict", "--ios", "300", "--html", html)).code,
    ).toBe(0);
    const text = readFileSync(html, "utf8");
    expect(text).toContain('<svg id="compare-chart"');
    // The heading names what the cells share, not the first cell's IOMMU mode or mapping.
    expect(text).toContain("<p>default: randrw bs=4k iodepth=32 cpus=1 | SGL byte");
    expect(text).not.toContain("| IOMMU none |");
  });
});

describe("dmasim trace", () => {
  it("traces one I/O from bvecs to teardown", async () => {
    const r = await cli("trace", "--iommu", "strict", "--bs", "16k", "--buffers", "scattered");
    expect(r.code).toBe(0);
    for (const s of [
      "bvecs",
      "physical segments",
      "DMA mapping",
      "command",
      "PRP list",
      "controller walk",
      "completion",
      "teardown",
    ])
      expect(r.out).toContain(`${s}\n`);
    expect(r.out).toMatch(/two-step IOVA \(one range 0x[0-9a-f]+ \+ 0x4000\)/);
    // The default machine (intel-vtd, Linux 7.0) maps through VT-d's x86-64 first-stage table,
    // whose leaf level generic_pt numbers 0.
    expect(r.out).toMatch(/PTE L0\[\d+\] iova 0x[0-9a-f]+ →/);
    expect(r.out).toContain("domain.rangeInvalidations +1");
  });

  it("writes the step-through page, for one release or two", async () => {
    const html = tempFile("trace.html", "");
    const r = await cli("trace", "--iommu", "strict", "--html", html);
    expect(r.code).toBe(0);
    expect(r.out).toContain("page tables\n");
    const one = readFileSync(html, "utf8");
    expect(one.match(/<section class="step"/g)).toHaveLength(11);
    expect(one).toContain('<script type="application/json" id="trace-json">');
    const two = await cli("trace", "--kernel", "6.18,6.19", "--html", html, "--json");
    expect(two.code).toBe(0);
    const page = readFileSync(html, "utf8");
    expect(page.match(/<section class="step"/g)).toHaveLength(23);
    expect(page).toContain("what changes from Linux 6.18 to 6.19");
  });

  it("takes explicit buffers and prints JSON", async () => {
    const r = await cli(
      "trace",
      "--iommu",
      "none",
      "--sgl",
      "none",
      "--buf",
      "0x1_0000_1000:4096",
      "--buf",
      "0x1_0000_8000:8192",
      "--json",
    );
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { steps: { step: string; data: unknown }[] };
    const bv = j.steps.find((s) => s.step === "bvecs")?.data as { phys: number; len: number }[];
    expect(bv).toEqual([
      { page: 0x100001, offset: 0, len: 4096, phys: 0x100001000 },
      { page: 0x100008, offset: 0, len: 8192, phys: 0x100008000 },
    ]);
    const walk = j.steps.find((s) => s.step === "controller walk")?.data as {
      accesses: { kind: string; translated: boolean }[];
      transfers: { addr: number; len: number; phys: { phys: number; len: number }[] }[];
    };
    expect(walk.transfers.map((w) => w.addr)).toEqual([0x100001000, 0x100008000, 0x100009000]);
    expect(walk.transfers[1]?.phys).toEqual([{ phys: 0x100008000, len: 4096 }]);
    // The device fetched the command, moved the data and posted the completion, all direct.
    expect(walk.accesses.map((a) => a.kind)).toEqual([
      "SQ entry fetch",
      "PRP list read",
      "data write",
      "data write",
      "data write",
      "CQ entry post",
    ]);
    expect(walk.accesses.every((a) => !a.translated)).toBe(true);
    const alloc = j.steps.find((s) => s.step === "IOVA allocation")?.data as { source: unknown };
    expect(alloc.source).toBeNull();
  });

  /** The leaf PTEs of a trace that map its data (not the descriptor pages), by IOVA. */
  async function dataLeaves(...args: string[]): Promise<number[]> {
    const r = await cli("trace", ...args, "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { steps: { step: string; data: unknown }[] };
    const mapped = (
      j.steps.find((s) => s.step === "DMA mapping")?.data as {
        mapped: { addr: number; len: number }[];
      }
    ).mapped;
    const tables = (
      j.steps.find((s) => s.step === "page tables")?.data as {
        tables: { entries: { kind: string; iova: number }[] }[];
      }
    ).tables;
    return tables
      .flatMap((t) => t.entries)
      .filter(
        (e) =>
          e.kind !== "table" &&
          mapped.some((m) => e.iova >= m.addr - 4095 && e.iova < m.addr + m.len),
      )
      .map((e) => e.iova);
  }

  it("shows the PTEs of every mapping path: per segment and scatterlist", async () => {
    const per = await cli("trace", "--iommu", "strict", "--mapping", "per-segment", "--bs", "16k");
    expect(per.code).toBe(0);
    expect(per.out).toContain("path: per-segment dma_map_phys (4 segments)");
    expect(per.out).toMatch(/PTE L\d\[\d+\] iova 0x[0-9a-f]+ →/);
    const perArgs = ["--iommu", "strict", "--mapping", "per-segment", "--bs", "16k"];
    expect(new Set(await dataLeaves(...perArgs)).size).toBe(4);
    expect(per.out).toContain("domain.rangeInvalidations +4");
    const sg = await cli("trace", "--iommu", "lazy", "--mapping", "scatterlist", "--bs", "16k");
    expect(sg.code).toBe(0);
    expect(sg.out).toContain("path: scatterlist (dma_map_sgtable: 1 DMA segment)");
    expect(
      await dataLeaves("--iommu", "lazy", "--mapping", "scatterlist", "--bs", "16k"),
    ).toHaveLength(4);
    // Per-segment SGL: no records are kept (the unmap reads the SGL), so the trace reads it too.
    const bufs = ["--buf", "0x1_0000_0000:65536", "--buf", "0x1_0010_0000:65536"];
    const seg = await cli("trace", "--iommu", "strict", "--mapping", "per-segment", ...bufs);
    expect(seg.code).toBe(0);
    expect(seg.out).toContain(
      "path: per-segment dma_map_phys (2 segments, read back from the SGL)",
    );
    expect(await dataLeaves("--iommu", "strict", "--mapping", "per-segment", ...bufs)).toHaveLength(
      32,
    );
  });

  it("refuses an I/O the queue limits would split, naming the limit", async () => {
    const r = await cli("trace", "--bs", "2m", "--buffers", "hugepage");
    expect(r.code).toBe(2);
    expect(r.err).toContain("would be split after 131072 bytes");
    expect(r.err).toContain("max_sectors 256 = 131072 bytes");
    // A gap inside a page splits at the virt boundary without an SGL-capable controller.
    const gap = await cli(
      "trace",
      "--iommu",
      "strict",
      "--sgl",
      "none",
      "--buf",
      "0x1_2345_6000:2048",
      "--buf",
      "0x2_0000_1000:2048",
    );
    expect(gap.code).toBe(2);
    expect(gap.err).toContain("would be split after 2048 bytes");
    expect(gap.err).toContain("virt_boundary 0xfff");
  });
});

describe("dmasim map-bench", () => {
  it("prints the three lines of dma_map_benchmark", async () => {
    const r = await cli("map-bench", "-t", "2", "-s", "1", "-g", "4", "--max-loops", "2000");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    // The kernel tool's three lines, then the exact figures the 100 ns units round away.
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatch(
      /^\(exact: map \d+ ns, unmap \d+ ns; \d+ loops in [\d.]+ simulated s, stopped by --max-loops\)$/,
    );
    expect(lines[0]).toBe(
      "dma mapping benchmark(SINGLE_MODE): threads:2 seconds:1 node:-1 dir:BIDIRECTIONAL granule:4",
    );
    expect(lines[1]).toMatch(/^average map latency\(us\):\d+\.\d standard deviation:\d+\.\d$/);
    expect(lines[2]).toMatch(/^average unmap latency\(us\):\d+\.\d standard deviation:\d+\.\d$/);
  });

  it("reports strict unmap as the expensive half, in 100 ns units, and adds host timing in JSON", async () => {
    const r = JSON.parse(
      (await cli("map-bench", "-s", "1", "--max-loops", "3000", "--json")).out,
    ) as {
      avg_map_100ns: number;
      avg_unmap_100ns: number;
      simulator_host_ns_per_map_unmap: number;
      loops: number;
    };
    expect(r.loops).toBe(3000);
    expect(r.avg_unmap_100ns).toBeGreaterThan(r.avg_map_100ns);
    expect(Number.isInteger(r.avg_map_100ns)).toBe(true);
    expect(r.simulator_host_ns_per_map_unmap).toBeGreaterThan(0);
    const sg = await cli(
      "map-bench",
      "-s",
      "1",
      "-m",
      "1",
      "-g",
      "8",
      "-d",
      "2",
      "--max-loops",
      "500",
    );
    expect(sg.out.split("\n")[0]).toBe(
      "dma mapping benchmark(SG_MODE): threads:1 seconds:1 node:-1 dir:FROM_DEVICE granule:8",
    );
  });
});

describe("dmasim sweep", () => {
  it("runs a grid, one JSON line per job, and summarises as CSV", async () => {
    const grid = tempFile(
      "grid.json",
      JSON.stringify({
        base: { workload: { ios: 300 } },
        vary: { "iommu.mode": ["strict", "lazy"], "workload.bs": ["4k", "16k"] },
      }),
    );
    const out = tempFile("out.jsonl", "");
    const r = await cli("sweep", grid, "--workers", "0", "--out", out, "--csv");
    expect(r.code).toBe(0);
    const lines = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as { index: number; params: Record<string, unknown>; verifyOk: boolean },
      );
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    expect(lines[1]?.params).toEqual({ "iommu.mode": "strict", "workload.bs": "16k" });
    expect(lines.every((l) => l.verifyOk)).toBe(true);
    const csv = r.out.trim().split("\n");
    expect(csv[0]).toBe(
      "iommu.mode,workload.bs,iops,cpu_ns_per_io,p50_us,p99_us,mb_s,lat_mean_us,clat_mean_us,qd_mean,bound_by,bound_utilisation,verify,error",
    );
    expect(csv).toHaveLength(5);
  });

  it("writes an HTML report of the chosen metrics against the chosen parameter", async () => {
    const grid = tempFile(
      "grid.json",
      JSON.stringify({
        base: { workload: { ios: 200 } },
        vary: { "iommu.mode": ["strict", "lazy"], "machine.cpus": [1, 2] },
      }),
    );
    const html = tempFile("sweep.html", "");
    const r = await cli(
      "sweep",
      grid,
      "--workers",
      "0",
      "--html",
      html,
      "--metric",
      "qdMean,perIo.iotlb.misses",
    );
    expect(r.code).toBe(0);
    const page = readFileSync(html, "utf8");
    // machine.cpus is the first numeric parameter: the x axis, one line per iommu.mode.
    expect(page).toContain("achieved queue depth against machine.cpus");
    expect(page).toContain("iotlb.misses per I/O against machine.cpus");
    expect(page.match(/<svg id="sweep-chart-\d" data-series="2"/g)).toHaveLength(2);
    const byMode = tempFile("sweep2.html", "");
    expect(
      (await cli("sweep", grid, "--workers", "0", "--html", byMode, "--x", "iommu.mode")).code,
    ).toBe(0);
    expect(readFileSync(byMode, "utf8")).toContain('data-scale="category"');
  });

  it("refuses a chart option that names nothing, before running", async () => {
    const grid = tempFile("grid.json", JSON.stringify({ vary: { "iommu.mode": ["strict"] } }));
    const html = tempFile("x.html", "");
    const bad = await cli("sweep", grid, "--html", html, "--x", "machine.cpus");
    expect(bad.code).toBe(2);
    expect(bad.err.trim()).toBe(
      "dmasim: --x machine.cpus: not a swept parameter; the grid varies iommu.mode",
    );
    const metric = await cli("sweep", grid, "--html", html, "--metric", "perIo.no.such");
    expect(metric.code).toBe(2);
    expect(metric.err).toMatch(/^dmasim: --metric perIo\.no\.such: not a metric; use iops, /);
    const noHtml = await cli("sweep", grid, "--metric", "iops");
    expect(noHtml.code).toBe(2);
    expect(noHtml.err.trim()).toBe(
      "dmasim: --x and --metric shape the HTML report: give --html <file> too",
    );
  });
});
