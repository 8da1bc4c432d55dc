#!/usr/bin/env node
// Import-cycle check: inside each workspace package (packages/*, apps/*), the source files
// (src/, test/, bench/) must not import each other in a cycle. Every kind of import counts:
// `import`, `import type`, `export ... from`, `import("...")` and `import("...").T` types.
// Imports of other packages are the layering check's business (check-layers.mjs); this one
// follows relative specifiers only.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const PACKAGE_ROOTS = ["packages", "apps"];
const SOURCE_DIRS = ["src", "test", "bench"];
const SOURCE_RE = /\.(c|m)?[tj]sx?$/;
const RESOLVE_SUFFIXES = ["", ".ts", ".tsx", ".mts", ".cts", "/index.ts", "/index.tsx"];

function walk(dir, out) {
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) {
      if (entry !== "node_modules" && entry !== "dist") walk(p, out);
    } else if (SOURCE_RE.test(entry) && !entry.endsWith(".d.ts")) {
      out.push(p);
    }
  }
  return out;
}

/** The module specifiers a source file imports, of every kind (type-only included). */
export function importSpecifiers(fileName, text) {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false);
  const specs = [];
  const visit = (node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specs.push(node.moduleSpecifier.text);
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)
    ) {
      specs.push(node.moduleReference.expression.text);
    } else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(node.expression) && node.expression.text === "require")) &&
      node.arguments.length > 0 &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      specs.push(node.arguments[0].text);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      specs.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return specs;
}

/** The file a relative specifier names (with the usual TypeScript suffixes), if it is in `files`. */
function resolveRelative(from, spec, files) {
  const base = resolve(dirname(from), spec);
  const candidates = RESOLVE_SUFFIXES.map((s) => base + s);
  // `./x.js` written for `./x.ts` (TypeScript's NodeNext style).
  if (/\.(c|m)?js$/.test(base)) candidates.push(base.replace(/js$/, "ts"));
  return candidates.find((c) => files.has(c));
}

/** Strongly connected components of a graph (Tarjan), each a list of nodes. */
function components(nodes, edges) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v), idx.get(w)));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      out.push(comp);
    }
  };
  for (const v of nodes) if (!idx.has(v)) strong(v);
  return out;
}

/** A shortest cycle from `start` back to itself, inside `members` (breadth-first). */
function shortestCycle(start, edges, members) {
  const prev = new Map();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i];
    for (const w of edges.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]));
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** The package directories under `root` (each directory of packages/ and apps/ with a package.json). */
function packageDirs(root) {
  const dirs = [];
  for (const top of PACKAGE_ROOTS) {
    const d = join(root, top);
    if (!existsSync(d)) continue;
    for (const entry of readdirSync(d).sort()) {
      if (existsSync(join(d, entry, "package.json"))) dirs.push(join(d, entry));
    }
  }
  return dirs;
}

/**
 * Returns one line per import cycle found under `root` (empty when there is none): for each group
 * of files that import each other (a strongly connected component), one shortest cycle through
 * it, then the group's other files; paths are relative to `root`.
 */
export function checkCycles(root) {
  const name = (f) => relative(root, f).split(sep).join("/");
  const lines = [];
  for (const pkg of packageDirs(root)) {
    const list = SOURCE_DIRS.filter((s) => existsSync(join(pkg, s)))
      .flatMap((s) => walk(join(pkg, s), []))
      .sort();
    const files = new Set(list);
    const edges = new Map();
    for (const file of list) {
      const targets = new Set();
      for (const spec of importSpecifiers(file, readFileSync(file, "utf8"))) {
        if (!spec.startsWith(".")) continue;
        const target = resolveRelative(file, spec, files);
        if (target !== undefined) targets.add(target);
      }
      edges.set(file, [...targets].sort());
    }
    for (const comp of components(list, edges)) {
      const selfLoop = comp.length === 1 && (edges.get(comp[0]) ?? []).includes(comp[0]);
      if (comp.length === 1 && !selfLoop) continue;
      const members = new Set(comp);
      const first = [...comp].sort()[0];
      const cycle = shortestCycle(first, edges, members);
      const rest = [...comp].filter((f) => !cycle.includes(f)).sort();
      const more = rest.length ? ` (also in the cycle group: ${rest.map(name).join(", ")})` : "";
      lines.push(`${cycle.map(name).join(" -> ")}${more}`);
    }
  }
  return lines;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
  const cycles = checkCycles(root);
  if (cycles.length) {
    for (const line of cycles) console.error(`import cycle: ${line}`);
    process.exit(1);
  }
  console.log("import cycles: none inside any package");
}
