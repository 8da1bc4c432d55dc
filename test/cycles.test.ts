import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { checkCycles, importSpecifiers } from "../scripts/check-cycles.mjs";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const temps: string[] = [];

function fakeRepo(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "dmasim-cycles-"));
  temps.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const pkg = (name: string) => JSON.stringify({ name });

afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

describe("check-cycles", () => {
  it("finds no import cycle in this repository", () => {
    expect(checkCycles(repoRoot)).toEqual([]);
  });

  it("accepts imports that form no cycle", () => {
    const root = fakeRepo({
      "packages/a/package.json": pkg("a"),
      "packages/a/src/index.ts": 'export { x } from "./x.ts";\nexport { y } from "./y.ts";\n',
      "packages/a/src/x.ts": 'import { y } from "./y.ts";\nexport const x = y;\n',
      "packages/a/src/y.ts": "export const y = 1;\n",
    });
    expect(checkCycles(root)).toEqual([]);
  });

  it("finds a planted cycle made of type-only imports and names its files", () => {
    const root = fakeRepo({
      "packages/a/package.json": pkg("a"),
      "packages/a/src/device.ts":
        'import type { Debug } from "./debug.ts";\nexport class Device { debug: Debug | null = null; }\n',
      "packages/a/src/debug.ts":
        'import type { Device } from "./device.ts";\nexport class Debug { seen: Device[] = []; }\n',
    });
    expect(checkCycles(root)).toEqual([
      "packages/a/src/debug.ts -> packages/a/src/device.ts -> packages/a/src/debug.ts",
    ]);
  });

  it("reports one line per cycle, with the other files of a larger group", () => {
    const root = fakeRepo({
      "packages/a/package.json": pkg("a"),
      "packages/a/src/a.ts": 'export { b } from "./b.ts";\n',
      "packages/a/src/b.ts": 'import { c } from "./c";\nexport const b = c;\n',
      "packages/a/src/c.ts": 'export const c = () => import("./a.ts");\nimport "./d.ts";\n',
      "packages/a/src/d.ts": 'import { c } from "./c.ts";\nexport const d = c;\n',
      "apps/b/package.json": pkg("b"),
      "apps/b/src/x.ts": 'export type T = import("../test/y.ts").U;\n',
      "apps/b/test/y.ts": 'import type { T } from "../src/x.ts";\nexport type U = T | 1;\n',
    });
    expect(checkCycles(root)).toEqual([
      "packages/a/src/a.ts -> packages/a/src/b.ts -> packages/a/src/c.ts -> packages/a/src/a.ts (also in the cycle group: packages/a/src/d.ts)",
      "apps/b/src/x.ts -> apps/b/test/y.ts -> apps/b/src/x.ts",
    ]);
  });

  it("does not follow imports of other packages (the layering check's business)", () => {
    const root = fakeRepo({
      "packages/a/package.json": pkg("a"),
      "packages/a/src/x.ts": 'import { y } from "b";\nexport const x = y;\n',
      "packages/b/package.json": pkg("b"),
      "packages/b/src/index.ts": 'import { x } from "a";\nexport const y = x;\n',
    });
    expect(checkCycles(root)).toEqual([]);
  });

  it("reads every import form and ignores specifiers in comments and strings", () => {
    const text = [
      'import type { A } from "./a.ts";',
      'export { b } from "./b.ts";',
      'export * as c from "./c.ts";',
      'import "./d.ts";',
      'const e = await import("./e.ts");',
      'type F = import("./f.ts").F;',
      '// import { g } from "./g.ts";',
      'const h = "import(\\"./h.ts\\")";',
    ].join("\n");
    expect(importSpecifiers("x.ts", text)).toEqual([
      "./a.ts",
      "./b.ts",
      "./c.ts",
      "./d.ts",
      "./e.ts",
      "./f.ts",
    ]);
  });
});
