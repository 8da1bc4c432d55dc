#!/usr/bin/env node
// Regenerates the README's screenshots of the four HTML reports (docs/images/*.png) with the
// built CLI and Debian's chromium: `pnpm run build && node apps/cli/scripts/screenshots.mjs`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "..", "dist", "main.js");
const out = join(here, "..", "..", "..", "docs", "images");
const tmp = mkdtempSync(join(tmpdir(), "dmasim-shots-"));
const dmasim = (...args) => execFileSync(process.execPath, [cli, ...args], { stdio: "ignore" });

const grid = join(tmp, "grid.json");
writeFileSync(
  grid,
  JSON.stringify({
    base: {
      workload: { ios: 3000 },
      controller: { latencyUs: 10, latencyP99Us: 20, bandwidthMBps: 14000 },
    },
    vary: { "machine.cpus": [1, 2, 4, 8], "iommu.mode": ["strict", "lazy", "passthrough"] },
  }),
);
dmasim("run", "--html", join(tmp, "run.html"));
dmasim("compare", "--mapping", "two-step", "--device", "fast", "--html", join(tmp, "compare.html"));
dmasim("sweep", grid, "--html", join(tmp, "sweep.html"), "--metric", "iops");
dmasim("trace", "--iommu", "strict", "--bs", "12k", "--html", join(tmp, "trace.html"));

const browser = await chromium.launch({
  executablePath: process.env.DMASIM_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const shots = [
  ["run", "run.html", "#exposure"],
  ["compare", "compare.html", "#charts"],
  ["sweep", "sweep.html", ""],
  ["trace", "trace.html", "#step-6"],
];
for (const [name, file, hash] of shots) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  await page.goto(pathToFileURL(join(tmp, file)).href + hash);
  await page.screenshot({ path: join(out, `${name}.png`) });
  await page.close();
}
await browser.close();
console.log(`wrote ${shots.map(([n]) => `docs/images/${n}.png`).join(", ")}`);
