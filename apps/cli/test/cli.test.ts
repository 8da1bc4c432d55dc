import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { EXIT, runCli } from "../src/cli.ts";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(here, "..", "package.json"), "utf8")) as {
  version: string;
};

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) },
    out: () => out.join(""),
    err: () => err.join(""),
  };
}

describe("dmasim CLI", () => {
  it("prints help with no arguments", async () => {
    const c = capture();
    expect(await runCli([], c.io)).toBe(EXIT.OK);
    expect(c.out()).toContain("Usage: dmasim");
    expect(c.out()).toContain("executable model of the Linux DMA mapping stack");
  });

  it("prints help for --help and the version for --version", async () => {
    const h = capture();
    expect(await runCli(["--help"], h.io)).toBe(EXIT.OK);
    expect(h.out()).toContain("--version");
    const v = capture();
    expect(await runCli(["--version"], v.io)).toBe(EXIT.OK);
    expect(v.out().trim()).toBe(pkg.version);
  });

  it("rejects an unknown option with one line and exit code 2", async () => {
    const c = capture();
    expect(await runCli(["--frobnicate"], c.io)).toBe(EXIT.USAGE);
    expect(c.err().trim()).toBe("error: unknown option '--frobnicate'");
  });
});

describe("dmasim binary (smoke)", () => {
  const bin = join(here, "..", "dist", "main.js");

  it("is built", () => {
    expect(existsSync(bin), `${bin} is missing: run pnpm build first`).toBe(true);
  });

  it("runs the main job, compare, trace and map-bench as a real process", () => {
    const run = spawnSync(process.execPath, [bin, "run"], { encoding: "utf8" });
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("IOMMU lazy | two-step");
    expect(run.stdout).toMatch(/verify\s+ok/);
    const cmp = spawnSync(
      process.execPath,
      [bin, "compare", "--ios", "400", "--iommu", "none,lazy"],
      { encoding: "utf8" },
    );
    expect(cmp.status).toBe(0);
    expect(cmp.stdout).toMatch(/lazy\s+scatterlist/);
    const tr = spawnSync(process.execPath, [bin, "trace", "--json"], { encoding: "utf8" });
    expect(tr.status).toBe(0);
    expect((JSON.parse(tr.stdout) as { steps: unknown[] }).steps).toHaveLength(11);
    const mb = spawnSync(process.execPath, [bin, "map-bench", "-s", "1", "--max-loops", "1000"], {
      encoding: "utf8",
    });
    expect(mb.status).toBe(0);
    expect(mb.stdout.split("\n")[0]).toContain("dma mapping benchmark(SINGLE_MODE)");
  });

  it("ends quietly when the reader of its output goes away (EPIPE)", () => {
    // `true` exits at once, so every write after the first pipe buffer hits a closed pipe.
    const r = spawnSync("sh", ["-c", `"${process.execPath}" "${bin}" trace --json | true`], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const pipefail = spawnSync(
      "bash",
      ["-c", `set -o pipefail; "${process.execPath}" "${bin}" run --json --ios 200 | head -c 1`],
      { encoding: "utf8" },
    );
    expect(pipefail.stderr).toBe("");
    expect(pipefail.status).toBe(0);
  });

  it("runs a sweep on worker threads as a real process", () => {
    const grid = join(here, "..", "test-results", "smoke-grid.json");
    mkdirSync(dirname(grid), { recursive: true });
    writeFileSync(
      grid,
      JSON.stringify({
        base: { workload: { ios: 200 } },
        vary: { "iommu.mode": ["none", "strict", "lazy"] },
      }),
    );
    const sw = spawnSync(process.execPath, [bin, "sweep", grid, "--workers", "2", "--json"], {
      encoding: "utf8",
    });
    expect(sw.status).toBe(0);
    const lines = sw.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { index: number; verifyOk: boolean });
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2]);
    expect(lines.every((l) => l.verifyOk)).toBe(true);
  });

  it("runs --help and --version as a real process", () => {
    const help = execFileSync(process.execPath, [bin, "--help"], { encoding: "utf8" });
    expect(help).toContain("Usage: dmasim");
    const version = execFileSync(process.execPath, [bin, "--version"], { encoding: "utf8" });
    expect(version.trim()).toBe(pkg.version);
    const bad = spawnSync(process.execPath, [bin, "--nope"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("unknown option '--nope'");
  });
});
