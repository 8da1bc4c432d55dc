import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compareHtml, runHtml } from "../src/engine/html.ts";
import { sweepHtml } from "../src/engine/html-sweep.ts";
import { parseJob, runJob } from "../src/engine/index.ts";
import { expandGrid, gridSchema, runPoint } from "../src/engine/sweep.ts";
import {
  CHROMIUM,
  OUT_DIR,
  PHONE,
  openReport,
  overflowPx,
  screenshot,
  withBrowser,
} from "./browser.ts";

describe("HTML reports in headless Chromium", () => {
  it("has Debian's chromium installed (CI installs it)", () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
  });

  it("renders the run, compare and sweep pages with their charts, no console errors, at 1400 px and a phone's width", async () => {
    const r = runJob(parseJob({ workload: { ios: 800, bs: "16k" } }));
    const s = runJob(parseJob({ workload: { ios: 800, bs: "16k" }, iommu: { mode: "strict" } }));
    const runFile = join(OUT_DIR, "report.html");
    const strictFile = join(OUT_DIR, "report-strict.html");
    const cmpFile = join(OUT_DIR, "compare.html");
    const sweepFile = join(OUT_DIR, "sweep.html");
    writeFileSync(runFile, runHtml(r));
    writeFileSync(strictFile, runHtml(s));
    writeFileSync(
      cmpFile,
      compareHtml([
        { iommu: "lazy", mapping: "two-step", result: r },
        { iommu: "strict", mapping: "two-step", result: s },
      ]),
    );
    const grid = gridSchema.parse({
      base: { workload: { ios: 300 } },
      vary: { "machine.cpus": [1, 2, 4], "iommu.mode": ["strict", "lazy"] },
    });
    const lines = expandGrid(grid).map(runPoint);
    writeFileSync(sweepFile, sweepHtml(grid, lines, { metrics: ["iops", "perIo.iotlb.misses"] }));
    await withBrowser(async (browser) => {
      // run, lazy.
      const { page, errors, requests } = await openReport(browser, runFile);
      for (const id of ["latency-cdf", "exposure-chart", "cpu-chart", "cpu-busy-chart"]) {
        const box = await page.locator(`svg#${id}`).boundingBox();
        expect(box?.width ?? 0).toBeGreaterThan(100);
        expect(box?.height ?? 0).toBeGreaterThan(20);
        expect(await page.locator(`svg#${id} .x-label`).count()).toBe(1);
      }
      // The CDF: one line per series, a log time axis with its decades labelled.
      expect(await page.locator("svg#latency-cdf path.series").count()).toBe(1);
      expect(await page.locator("svg#latency-cdf .y-label").count()).toBe(1);
      expect(await page.locator("svg#latency-cdf text", { hasText: "100 µs" }).count()).toBe(1);
      // The lazy exposure window: one bar per bin of the histogram, on a log time axis.
      const bins = r.exposure?.histogram.length ?? 0;
      expect(bins).toBeGreaterThan(3);
      expect(await page.locator("svg#exposure-chart rect.bin").count()).toBe(bins);
      expect(await page.locator("svg#exposure-chart .y-label").textContent()).toBe("ranges");
      // One labelled bar per CPU category with its value written, one per CPU.
      const cats = Object.values(r.cpuNsPerIoByCategory).filter((v) => v > 0).length;
      expect(await page.locator("svg#cpu-chart rect").count()).toBe(cats);
      expect(await page.locator("svg#cpu-chart text.value").count()).toBe(cats);
      expect(await page.locator("svg#cpu-busy-chart rect").count()).toBe(r.perCpu.length);
      // The summary answers the questions: the bound, the exposure window, IOTLB hit rate.
      const text = await page.locator("body").innerText();
      expect(text).toContain("exposure window");
      expect(text).toMatch(/bound by\s+\S/);
      expect(text).toContain("IOTLB hit rate");
      expect(text).toContain("Shared resources");
      // Counters grouped by layer, bvec first.
      expect(await page.locator("h3").allInnerTexts()).toEqual(
        expect.arrayContaining(["bvec", "iommu", "dma-core", "nvme"]),
      );
      await screenshot(page, "run");
      // run, strict: the window is zero, with the invalidations that prove it and no chart.
      const strict = await openReport(browser, strictFile);
      const strictText = await strict.page.locator("#exposure + p").innerText();
      const proof =
        /^Zero\. .* ([\d.]+) IOMMU unmaps per I\/O, each followed by its IOTLB sync \(([\d.]+) per I\/O: .* 0 DMA served from a stale IOTLB entry/.exec(
          strictText,
        );
      expect(proof, strictText).not.toBeNull();
      expect(Number(proof?.[1])).toBeGreaterThan(0.99);
      expect(proof?.[2]).toBe(proof?.[1]);
      expect(await strict.page.locator("svg#exposure-chart").count()).toBe(0);
      // compare.
      const cmp = await openReport(browser, cmpFile);
      expect(await cmp.page.locator("svg#compare-chart rect").count()).toBeGreaterThan(2);
      // IOPS and CPU per I/O side by side, one bar per cell with its value; the CDFs overlaid.
      for (const id of ["compare-iops", "compare-cpu"]) {
        expect(await cmp.page.locator(`svg#${id} rect`).count()).toBe(2);
        expect(await cmp.page.locator(`svg#${id} text.value`).count()).toBe(2);
      }
      expect(await cmp.page.locator("svg#compare-cdf path.series").count()).toBe(2);
      const cmpText = await cmp.page.locator("body").innerText();
      expect(cmpText).toContain("exposure window");
      expect(cmpText).toContain("0 (strict)");
      expect(cmpText).toContain("IOMMU mode the device got");
      await screenshot(cmp.page, "compare");
      // sweep: a chart per metric, one line per iommu.mode, a point per machine.cpus value.
      const sw = await openReport(browser, sweepFile);
      for (const id of ["sweep-chart-0", "sweep-chart-1"]) {
        expect(await sw.page.locator(`svg#${id}`).getAttribute("data-series")).toBe("2");
        const paths = sw.page.locator(`svg#${id} path.series`);
        const pts = [
          await paths.nth(0).getAttribute("data-points"),
          await paths.nth(1).getAttribute("data-points"),
        ];
        expect(pts).toEqual(["3", "3"]);
        expect(await sw.page.locator(`svg#${id} .x-label`).textContent()).toBe("machine.cpus");
      }
      expect(await sw.page.locator("svg#sweep-chart-0 .y-label").textContent()).toBe("IOPS");
      expect(await sw.page.locator("svg#sweep-chart-1 .y-label").textContent()).toBe(
        "iotlb.misses per I/O",
      );
      expect(
        await sw.page.locator("svg#sweep-chart-0 text", { hasText: "iommu.mode=lazy" }).count(),
      ).toBe(1);
      expect(await sw.page.locator("table tr").count()).toBe(1 + lines.length);
      await screenshot(sw.page, "sweep");
      // Every page at a phone's width: nothing scrolls sideways but a table in its own box.
      for (const f of [runFile, strictFile, cmpFile, sweepFile]) {
        const phone = await openReport(browser, f, PHONE);
        expect(await overflowPx(phone.page), f).toBeLessThanOrEqual(0);
        expect(phone.errors).toEqual([]);
      }
      for (const x of [{ errors, requests }, strict, cmp, sw]) {
        expect(x.errors).toEqual([]);
        expect(x.requests).toEqual([]);
      }
    });
  });
});
