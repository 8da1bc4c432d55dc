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
      for (const id of ["latency-chart", "cpu-chart"]) {
        const rects = await page.locator(`svg#${id} rect`).count();
        expect(rects).toBeGreaterThan(0);
        const box = await page.locator(`svg#${id}`).boundingBox();
        expect(box?.width ?? 0).toBeGreaterThan(100);
        expect(box?.height ?? 0).toBeGreaterThan(20);
      }
      await page.screenshot({ path: join(outDir, "report.png"), fullPage: true });
      await page.goto(pathToFileURL(cmpFile).href);
      expect(await page.locator("svg#compare-chart rect").count()).toBeGreaterThan(2);
      await page.screenshot({ path: join(outDir, "compare.png"), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
