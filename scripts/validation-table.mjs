#!/usr/bin/env node
// Rewrites the table of docs/validation.md (between <!-- validate:table:start --> and
// <!-- validate:table:end -->) with what `dmasim validate --markdown` prints now. It runs the CLI
// from its TypeScript sources through tsx (as the tests do), so no build is needed and the table
// is the one apps/cli/test/validate.test.ts compares against. `--check` writes nothing and exits
// 1 when the table is out of date.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const cli = join(root, "apps", "cli", "src", "main.ts");
const docs = join(root, "docs", "validation.md");
const START = "<!-- validate:table:start -->\n";
const END = "<!-- validate:table:end -->";
const check = process.argv.includes("--check");

const t0 = performance.now();
const table = execFileSync(
  process.execPath,
  ["--conditions=@dmasim/source", "--import", "tsx", cli, "validate", "--markdown"],
  {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  },
);
const seconds = ((performance.now() - t0) / 1000).toFixed(1);
const text = readFileSync(docs, "utf8");
const a = text.indexOf(START);
const b = text.indexOf(END, a);
if (a < 0 || b < 0) {
  console.error(`validation-table: ${docs} has no ${START.trim()} … ${END} section`);
  process.exit(2);
}
const next = text.slice(0, a + START.length) + table + text.slice(b);
if (next === text) {
  console.log(`validation-table: docs/validation.md is up to date (${seconds} s)`);
} else if (check) {
  console.error(
    "validation-table: docs/validation.md is out of date; run scripts/validation-table.mjs",
  );
  process.exit(1);
} else {
  writeFileSync(docs, next);
  console.log(`validation-table: docs/validation.md table rewritten (${seconds} s)`);
}
