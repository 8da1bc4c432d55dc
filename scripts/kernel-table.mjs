#!/usr/bin/env node
// Rewrites the gate table of docs/kernel-versions.md (between <!-- kernel:table:start --> and
// <!-- kernel:table:end -->) from KERNEL_GATES in packages/bvec/src/kernel.ts, which
// packages/bvec/test/kernel.test.ts compares against. `--check` writes nothing and exits 1 when
// the table is out of date. Runs the TypeScript source through tsx: no build needed.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const docs = join(root, "docs", "kernel-versions.md");
const START = "<!-- kernel:table:start -->\n";
const END = "<!-- kernel:table:end -->";
const check = process.argv.includes("--check");
const src = join(root, "packages", "bvec", "src", "kernel.ts");
const table = execFileSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--input-type=module",
    "-e",
    `import { kernelGatesMarkdown } from ${JSON.stringify(src)}; process.stdout.write(kernelGatesMarkdown());`,
  ],
  { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
);
const text = readFileSync(docs, "utf8");
const a = text.indexOf(START);
const b = text.indexOf(END, a);
if (a < 0 || b < 0) {
  console.error(`kernel-table: ${docs} has no ${START.trim()} … ${END} section`);
  process.exit(2);
}
const next = text.slice(0, a + START.length) + table + text.slice(b);
if (next === text) console.log("kernel-table: docs/kernel-versions.md is up to date");
else if (check) {
  console.error(
    "kernel-table: docs/kernel-versions.md is out of date: run node scripts/kernel-table.mjs",
  );
  process.exit(1);
} else {
  writeFileSync(docs, next);
  console.log("kernel-table: docs/kernel-versions.md rewritten");
}
