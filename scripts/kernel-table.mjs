#!/usr/bin/env node
// Rewrites the gate table of docs/kernel-versions.md (between <!-- kernel:table:start --> and
// <!-- kernel:table:end -->) from KERNEL_GATES in packages/bvec/src/kernel.ts, which
// packages/bvec/test/kernel.test.ts compares against. `--check` writes nothing and exits 1 when
// the table is out of date. Runs the TypeScript source through tsx: no build needed.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rewriteSection } from "./doc-section.mjs";

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
rewriteSection({ tool: "kernel-table", docs, start: START, end: END, body: table, check });
