import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { compareHtml, runHtml } from "../src/engine/html.ts";
import { parseJob, runJob } from "../src/engine/index.ts";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "test-results");
/** Debian's chromium; the tests never download a browser. */
const CHROMIUM = process.env.DMASIM_CHROMIUM ?? "/usr/bin/chromium";

describe("HTML reports in headless Chromium", () => {
  it("has Debian's chromium installed (CI installs it)", () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
  });

  it("renders the run and compare charts with no console errors", async () => {
    mkdirSync(outDir, { recursive: true });
    const r = runJob(parseJob({ workload: { ios: 800, bs: "16k" } }));
    const s = runJob(parseJob({ workload: { ios: 800, bs: "16k" }, iommu: { mode: "strict" } }));
    const runFile = join(outDir, "report.html");
    const cmpFile = join(outDir, "compare.html");
    writeFileSync(runFile, runHtml(r));
    writeFileSync(
      cmpFile,
      compareHtml([
        { iommu: "lazy", mapping: "two-step", result: r },
        { iommu: "strict", mapping: "two-step", result: s },
      ]),
    );
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(pathToFileURL(runFile).href);
      for (const id of ["latency-cdf", "cpu-chart", "cpu-busy-chart"]) {
        const box = await page.locator(`svg#${id}`).boundingBox();
        expect(box?.width ?? 0).toBeGreaterThan(100);
        expect(box?.height ?? 0).toBeGreaterThan(20);
        expect(await page.locator(`svg#${id} .x-label`).count()).toBe(1);
      }
      // The CDF: one line per series, a log time axis with its decades labelled.
      expect(await page.locator("svg#latency-cdf path.series").count()).toBe(1);
      expect(await page.locator("svg#latency-cdf .y-label").count()).toBe(1);
      expect(await page.locator("svg#latency-cdf text", { hasText: "100 µs" }).count()).toBe(1);
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
      // Counters grouped by layer, bvec first.
      expect(await page.locator("h3").allInnerTexts()).toEqual(
        expect.arrayContaining(["bvec", "iommu", "dma-core", "nvme"]),
      );
      await page.screenshot({ path: join(outDir, "report.png"), fullPage: true });
      await page.goto(pathToFileURL(cmpFile).href);
      expect(await page.locator("svg#compare-chart rect").count()).toBeGreaterThan(2);
      // IOPS and CPU per I/O side by side, one bar per cell with its value; the CDFs overlaid.
      for (const id of ["compare-iops", "compare-cpu"]) {
        expect(await page.locator(`svg#${id} rect`).count()).toBe(2);
        expect(await page.locator(`svg#${id} text.value`).count()).toBe(2);
      }
      expect(await page.locator("svg#compare-cdf path.series").count()).toBe(2);
      const cmpText = await page.locator("body").innerText();
      expect(cmpText).toContain("exposure window");
      expect(cmpText).toContain("0 (strict)");
      expect(cmpText).toContain("IOMMU mode the device got");
      await page.screenshot({ path: join(outDir, "compare.png"), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
