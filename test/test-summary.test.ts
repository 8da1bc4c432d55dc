/**
 * The closing line CI reads, summed from every package's vitest JSON report: each failed test
 * counts once, a file that failed to load counts once, a package with tests and no report or no
 * test run fails.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const script = join(dirname(fileURLToPath(import.meta.url)), "..", "scripts", "test-summary.mjs");
const temps: string[] = [];

afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

/** A repository whose packages left these reports (undefined: tests and no report). */
function summarize(reports: Record<string, object | undefined>): { out: string; code: number } {
  const root = mkdtempSync(join(tmpdir(), "dmasim-summary-"));
  temps.push(root);
  for (const [dir, report] of Object.entries(reports)) {
    mkdirSync(join(root, dir, "test"), { recursive: true });
    if (report === undefined) continue;
    mkdirSync(join(root, dir, "test-results"), { recursive: true });
    writeFileSync(join(root, dir, "test-results", "vitest.json"), JSON.stringify(report));
  }
  const r = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
  return { out: r.stdout, code: r.status ?? -1 };
}

const passing = (n: number) => ({
  success: true,
  numPassedTests: n,
  numFailedTests: 0,
  numFailedTestSuites: 0,
  testResults: [{ status: "passed", assertionResults: [{ status: "passed" }] }],
});

describe("test-summary", () => {
  it("counts a failed test once, however many describe blocks hold it", () => {
    const r = summarize({
      "packages/a": passing(4),
      "apps/b": {
        numPassedTests: 5,
        numFailedTests: 1,
        numFailedTestSuites: 3,
        testResults: [{ status: "failed", assertionResults: [{ status: "failed" }] }],
      },
    });
    expect(r.out.trim().split("\n").at(-1)).toBe("tests: 9 passed, 1 failed");
    expect(r.code).toBe(1);
  });

  it("counts a file that did not load, and a package with tests but no report", () => {
    const r = summarize({
      "packages/a": {
        numPassedTests: 2,
        numFailedTests: 0,
        numFailedTestSuites: 1,
        testResults: [
          { status: "failed", assertionResults: [] },
          { status: "passed", assertionResults: [{ status: "passed" }] },
        ],
      },
      "packages/c": undefined,
    });
    expect(r.out).toContain("problem: packages/c: has a test directory but no test report");
    expect(r.out.trim().split("\n").at(-1)).toBe("tests: 2 passed, 2 failed");
    expect(r.code).toBe(1);
  });

  it("fails a package whose run found no test file", () => {
    const r = summarize({
      "packages/a": passing(3),
      "packages/b": { ...passing(0), success: false, testResults: [] },
    });
    expect(r.out).toContain("problem: packages/b: vitest ran no test file");
    expect(r.out.trim().split("\n").at(-1)).toBe("tests: 3 passed, 1 failed");
    expect(r.code).toBe(1);
  });

  it("passes when every test passed", () => {
    const r = summarize({ "packages/a": passing(3), "apps/b": passing(1) });
    expect(r.out.trim().split("\n").at(-1)).toBe("tests: 4 passed, 0 failed");
    expect(r.code).toBe(0);
  });
});
