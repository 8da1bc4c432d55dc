import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { checkLayers } from "../scripts/check-layers.mjs";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const temps: string[] = [];

function fakeRepo(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "dmasim-layers-"));
  temps.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const pkg = (name: string, deps: Record<string, string> = {}) =>
  JSON.stringify({ name, dependencies: deps });

afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

describe("check-layers", () => {
  it("finds no violation in this repository", () => {
    expect(checkLayers(repoRoot)).toEqual([]);
  });

  it("accepts dependencies on lower layers", () => {
    const root = fakeRepo({
      "packages/bvec/package.json": pkg("@dmasim/bvec"),
      "packages/iommu/package.json": pkg("@dmasim/iommu", { "@dmasim/bvec": "workspace:*" }),
      "packages/iommu/src/index.ts": 'import { x } from "@dmasim/bvec";\n',
    });
    expect(checkLayers(root)).toEqual([]);
  });

  it("fails when a package declares a dependency on a higher layer", () => {
    const root = fakeRepo({
      "packages/bvec/package.json": pkg("@dmasim/bvec", { "@dmasim/iommu": "workspace:*" }),
      "packages/iommu/package.json": pkg("@dmasim/iommu"),
    });
    const v = checkLayers(root);
    expect(v).toHaveLength(1);
    expect(v[0]).toContain("names @dmasim/iommu");
  });

  it("fails when source imports a higher layer, even if undeclared", () => {
    const root = fakeRepo({
      "packages/iommu/package.json": pkg("@dmasim/iommu"),
      "packages/nvme/package.json": pkg("@dmasim/nvme"),
      "packages/iommu/test/x.test.ts": 'const m = await import("@dmasim/nvme");\n',
    });
    const v = checkLayers(root);
    expect(v).toEqual([
      "packages/iommu/test/x.test.ts: imports @dmasim/nvme, which is not a lower layer than @dmasim/iommu",
    ]);
  });

  it("fails when source imports a lower layer it does not declare", () => {
    const root = fakeRepo({
      "packages/bvec/package.json": pkg("@dmasim/bvec"),
      "packages/dma-core/package.json": pkg("@dmasim/dma-core"),
      "packages/dma-core/src/a.ts": 'export * from "@dmasim/bvec/extra";\n',
    });
    expect(checkLayers(root)).toEqual([
      "packages/dma-core/src/a.ts: imports @dmasim/bvec/extra without declaring it",
    ]);
  });
});
