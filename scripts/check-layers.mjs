#!/usr/bin/env node
// Layering check: a workspace package may depend on (declare or import) only packages of a
// lower layer. Order: bvec < iommu < dma-core < nvme < cli < examples.
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The layers, lowest first: the package directory and its package name. */
export const LAYERS = [
  { dir: "packages/bvec", name: "@dmasim/bvec" },
  { dir: "packages/iommu", name: "@dmasim/iommu" },
  { dir: "packages/dma-core", name: "@dmasim/dma-core" },
  { dir: "packages/nvme", name: "@dmasim/nvme" },
  { dir: "apps/cli", name: "dmasim" },
  { dir: "apps/examples", name: "@dmasim/examples" },
];

const SOURCE_DIRS = ["src", "test", "bench"];
const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)["']([^"']+)["']/g;

function walk(dir, out) {
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    const st = statSync(p);
    if (st.isDirectory()) {
      if (entry !== "node_modules" && entry !== "dist") walk(p, out);
    } else if (/\.(c|m)?[tj]sx?$/.test(entry)) {
      out.push(p);
    }
  }
  return out;
}

/** Returns one line per violation found under `root` (empty when the layering holds). */
export function checkLayers(root) {
  const rank = new Map(LAYERS.map((l, i) => [l.name, i]));
  const violations = [];
  LAYERS.forEach((layer, i) => {
    const pkgPath = join(root, layer.dir, "package.json");
    if (!existsSync(pkgPath)) return;
    const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
    if (pkg.name !== layer.name) {
      violations.push(`${layer.dir}/package.json: expected name ${layer.name}, found ${pkg.name}`);
    }
    for (const field of [
      "dependencies",
      "devDependencies",
      "peerDependencies",
      "optionalDependencies",
    ]) {
      for (const dep of Object.keys(pkg[field] ?? {})) {
        const r = rank.get(dep);
        if (r !== undefined && r >= i) {
          violations.push(
            `${layer.dir}/package.json: ${field} names ${dep}, which is not a lower layer than ${layer.name}`,
          );
        }
      }
    }
    for (const sub of SOURCE_DIRS) {
      const dir = join(root, layer.dir, sub);
      if (!existsSync(dir)) continue;
      for (const file of walk(dir, [])) {
        const text = readFileSync(file, "utf8");
        for (const m of text.matchAll(IMPORT_RE)) {
          const spec = m[1];
          const name = spec.startsWith("@")
            ? spec.split("/").slice(0, 2).join("/")
            : spec.split("/")[0];
          const r = rank.get(name);
          if (r !== undefined && r >= i && name !== layer.name) {
            violations.push(
              `${relative(root, file)}: imports ${spec}, which is not a lower layer than ${layer.name}`,
            );
          }
          if (r !== undefined && r < i) {
            const declared = pkg.dependencies?.[name] ?? pkg.devDependencies?.[name];
            if (!declared)
              violations.push(`${relative(root, file)}: imports ${spec} without declaring it`);
          }
        }
      }
    }
  });
  return violations;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
  const v = checkLayers(root);
  if (v.length) {
    for (const line of v) console.error(`layering: ${line}`);
    process.exit(1);
  }
  console.log(`layering: ok (${LAYERS.map((l) => l.dir.split("/")[1]).join(" < ")})`);
}
