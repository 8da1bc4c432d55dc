#!/usr/bin/env node
// Sums the vitest JSON reports of the repository and of every package into the one closing
// line CI reads: "tests: N passed, M failed". Exits 1 when M > 0, N == 0, or a package that
// has tests left no report.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// The repository this script is in, or the one named by its first argument (its tests use that).
const root = process.argv[2] ?? join(fileURLToPath(new URL(".", import.meta.url)), "..");
const dirs = ["."];
for (const group of ["packages", "apps"]) {
  const g = join(root, group);
  if (!existsSync(g)) continue;
  for (const name of readdirSync(g).sort()) dirs.push(`${group}/${name}`);
}

let passed = 0;
let failed = 0;
let skipped = 0;
const problems = [];
for (const dir of dirs) {
  const hasTests = existsSync(join(root, dir, "test"));
  const report = join(root, dir, "test-results", "vitest.json");
  if (!existsSync(report)) {
    if (hasTests) problems.push(`${dir}: has a test directory but no test report`);
    continue;
  }
  const r = JSON.parse(readFileSync(report, "utf8"));
  const p = r.numPassedTests ?? 0;
  // A failed test counts once (vitest's numFailedTestSuites also counts every describe block
  // around it); a file that failed with no failed test in it (it did not load) counts once too.
  const broken = (r.testResults ?? []).filter(
    (t) => t.status === "failed" && !(t.assertionResults ?? []).some((a) => a.status === "failed"),
  ).length;
  const f = (r.numFailedTests ?? 0) + broken;
  // With nothing failed, vitest reports no success only when it found no test file to run.
  if (f === 0 && r.success === false) problems.push(`${dir}: vitest ran no test file`);
  const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(
    `  ${dir.padEnd(20)} ${String(p).padStart(5)} passed ${String(f).padStart(3)} failed ${String(s).padStart(3)} skipped`,
  );
  passed += p;
  failed += f;
  skipped += s;
}
for (const p of problems) console.log(`  problem: ${p}`);
// Skipped or todo tests are not allowed in this project: they count as failures.
failed += skipped + problems.length;
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
