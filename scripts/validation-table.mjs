#!/usr/bin/env node
// Rewrites the table of docs/validation.md (between <!-- validate:table:start --> and
// <!-- validate:table:end -->) with what `dmasim validate --markdown` prints now. It runs the CLI
// from its TypeScript sources through tsx (as the tests do), so no build is needed and the table
// is the one apps/cli/test/validate.test.ts compares against. `--check` writes nothing and exits
// 1 when the table is out of date.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rewriteSection } from "./doc-section.mjs";

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
rewriteSection({
  tool: "validation-table",
  docs,
  start: START,
  end: END,
  body: table,
  check,
  note: ` (${seconds} s)`,
});
