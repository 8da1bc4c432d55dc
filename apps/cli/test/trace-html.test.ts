/**
 * The step-through page of one I/O in headless Chromium: every step reached with the keyboard,
 * a link to each, and the same PTE, PRP and CQE values as `trace --json`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseJob } from "../src/engine/job.ts";
import { traceHtml } from "../src/engine/trace-html.ts";
import { traceIo } from "../src/engine/trace.ts";
import type { TracePte, TraceTable } from "../src/engine/trace-view.ts";
import { OUT_DIR, PHONE, openReport, overflowPx, screenshot, withBrowser } from "./browser.ts";

describe("trace --html in headless Chromium", () => {
  it("steps through every stage with the keyboard and shows the values trace --json has", async () => {
    const job = parseJob({
      iommu: { mode: "strict" },
      workload: { bs: "12k", buffers: "scattered" },
    });
    const steps = traceIo(job);
    const json = { job, steps: steps.map((s) => ({ step: s.step, data: s.data })) };
    const file = join(OUT_DIR, "trace.html");
    writeFileSync(file, traceHtml([{ kernel: job.kernel, steps }], json));
    const data = (name: string) => steps.find((s) => s.step === name)?.data;
    await withBrowser(async (browser) => {
      const { page, errors, requests } = await openReport(browser, file);
      const names = steps.map((s) => s.step);
      expect(names).toEqual([
        "kernel",
        "bvecs",
        "physical segments",
        "DMA mapping",
        "IOVA allocation",
        "page tables",
        "command",
        "PRP list",
        "controller walk",
        "completion",
        "teardown",
      ]);
      // One step shows at a time; the right arrow walks through every one, in order, and the
      // address bar links to the step shown.
      const visible = async () =>
        page.locator("section.step:not([hidden])").getAttribute("data-step");
      expect(await page.locator("section.step:not([hidden])").count()).toBe(1);
      for (let i = 0; i < names.length; i++) {
        expect(await visible()).toBe(names[i]);
        expect(await page.locator("#pos").textContent()).toBe(
          `step ${i + 1} of ${names.length}: ${names[i]}`,
        );
        if (i > 0) expect(new URL(page.url()).hash).toBe(`#step-${i + 1}`);
        await page.keyboard.press("ArrowRight");
      }
      expect(await visible()).toBe("teardown"); // the last step stays
      await page.keyboard.press("ArrowLeft");
      expect(await visible()).toBe("completion");
      await page.keyboard.press("Home");
      expect(await visible()).toBe("kernel");
      await page.keyboard.press("End");
      expect(await visible()).toBe("teardown");
      // A link to a step opens it; the buttons step too.
      await page.locator('nav.toc a[href="#step-6"]').click();
      expect(await visible()).toBe("page tables");
      await page.locator("#next").click();
      expect(await visible()).toBe("command");
      await page.locator("#prev").click();
      // The page tables: each level's table, the PTE values as the JSON has them.
      const tables = (data("page tables") as { tables: TraceTable[] }).tables;
      expect(tables.length).toBe(4);
      const shownPtes = await page.locator("table.ptes td.pte").allTextContents();
      expect(shownPtes).toEqual(tables.flatMap((t) => t.entries.map((e: TracePte) => e.pte)));
      expect(await page.locator("tr.written").count()).toBe(
        tables.flatMap((t) => t.entries).filter((e) => e.written).length,
      );
      // Each entry's fields, as the format decodes them, folded under it.
      const leaf = tables[3]?.entries[0];
      const leafRow = page.locator("table.ptes").nth(3).locator("tr").nth(1);
      await leafRow.locator("summary").click();
      expect(await leafRow.locator("table.pte-fields tr td:first-child").allTextContents()).toEqual(
        leaf?.fields.map((f) => f.name),
      );
      await screenshot(page, "trace-page-tables");
      // The PRP list: its entries as the JSON decodes them.
      // A new hash is shown on its hashchange event, which may come after goto returns.
      await page.goto(`${page.url().split("#")[0]}#step-8`);
      await expect.poll(visible).toBe("PRP list");
      const prp = (data("PRP list") as { prpEntries: { addr: number }[] }).prpEntries;
      expect(prp.length).toBe(2);
      const prpCells = await page.locator("table.prp-entries tr td:nth-child(4)").allTextContents();
      expect(prpCells).toEqual(prp.map((e) => `0x${e.addr.toString(16)}`));
      // The command and the completion, field by field.
      await page.locator('nav.toc a[href="#step-7"]').click();
      const sqe = (data("command") as { fields: { text: string }[] }).fields;
      expect(await page.locator("table.sqe tr td:nth-child(5)").allTextContents()).toEqual(
        sqe.map((f) => f.text),
      );
      await screenshot(page, "trace-command");
      await page.locator('nav.toc a[href="#step-10"]').click();
      const cqe = (data("completion") as { fields: { name: string; text: string }[] }).fields;
      expect(await page.locator("table.cqe tr td:nth-child(5)").allTextContents()).toEqual(
        cqe.map((f) => f.text),
      );
      expect(cqe.find((f) => f.name === "SC")?.text).toMatch(/Successful Completion/);
      // The device's accesses, one row each.
      await page.locator('nav.toc a[href="#step-9"]').click();
      const acc = (data("controller walk") as { accesses: unknown[] }).accesses;
      expect(await page.locator("table.accesses tr").count()).toBe(1 + acc.length);
      await screenshot(page, "trace-walk");
      // The JSON the page carries is trace --json's.
      const embedded: unknown = JSON.parse(
        (await page.locator("#trace-json").textContent()) ?? "null",
      );
      expect(embedded).toEqual(JSON.parse(JSON.stringify(json)));
      // At a phone's width nothing scrolls sideways.
      const phone = await openReport(browser, file, PHONE);
      for (const n of [6, 7, 9]) {
        await phone.page.goto(`${phone.page.url().split("#")[0]}#step-${n}`);
        await phone.page.locator(`section#step-${n}:not([hidden])`).waitFor();
        expect(await overflowPx(phone.page)).toBeLessThanOrEqual(0);
      }
      expect([...errors, ...phone.errors]).toEqual([]);
      expect(requests).toEqual([]);
    });
  });
});
