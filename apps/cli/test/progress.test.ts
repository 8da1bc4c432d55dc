import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { CommandIo } from "../src/commands/common.ts";
import { progressLine } from "../src/commands/progress.ts";

const bin = join(fileURLToPath(new URL(".", import.meta.url)), "..", "dist", "main.js");

function io(progress: boolean): CommandIo & { err: string } {
  const o = {
    err: "",
    color: false,
    progress,
    stdout: () => undefined,
    stderr: (s: string) => {
      o.err += s;
    },
  };
  return o;
}

describe("progress", () => {
  it("redraws at most every 250 ms with share, count, ETA and rate, and clears itself", () => {
    let t = 0;
    const out = io(true);
    const p = progressLine(out, "run", "I/Os", () => t);
    if (p === null) throw new Error("a terminal gets progress");
    t = 100;
    p.update(10, 100);
    expect(out.err).toBe("");
    t = 1000;
    p.update(25, 100);
    expect(out.err).toBe("\r\x1b[Krun:  25%  25/100 I/Os  ETA 3.0 s  25 I/Os/s");
    t = 1100;
    p.update(30, 100);
    expect(out.err.split("\r\x1b[K")).toHaveLength(2);
    p.end();
    expect(out.err.endsWith("\r\x1b[K")).toBe(true);
  });

  it("says nothing without a terminal", () => {
    expect(progressLine(io(false), "run", "I/Os")).toBeNull();
  });

  it("draws on a pseudo-terminal and not on a pipe", () => {
    expect(existsSync(bin)).toBe(true);
    const tty = spawnSync(
      "script",
      ["-qfec", `"${process.execPath}" "${bin}" run --ios 60000`, "/dev/null"],
      {
        encoding: "utf8",
      },
    );
    expect(tty.status).toBe(0);
    expect(tty.stdout).toContain("\r\x1b[Krun:  ");
    expect(tty.stdout).toMatch(/run: {2}\d+% {2}\d+\/60000 I\/Os/);
    const pipe = spawnSync(process.execPath, [bin, "run", "--ios", "60000"], { encoding: "utf8" });
    expect(pipe.stderr).toBe("");
    const json = spawnSync(
      "script",
      ["-qfec", `"${process.execPath}" "${bin}" run --ios 60000 --json`, "/dev/null"],
      {
        encoding: "utf8",
      },
    );
    expect(json.stdout).not.toContain("\x1b[K");
  });
});
