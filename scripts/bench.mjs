#!/usr/bin/env node
// `pnpm bench`: runs every package's bench/*.bench.ts (or those of --package DIR), prints a
// table, writes bench-results/latest.json and rewrites the generated table in BENCHMARKS.md.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "..");
const args = process.argv.slice(2);
const pkgIdx = args.indexOf("--package");
const only = pkgIdx >= 0 ? resolve(process.cwd(), args[pkgIdx + 1]) : undefined;
const timeIdx = args.indexOf("--time");
const time = timeIdx >= 0 ? args[timeIdx + 1] : "400";
const filterIdx = args.indexOf("--filter");
const filter = filterIdx >= 0 ? args[filterIdx + 1] : undefined;

const dirs = [];
for (const group of ["packages", "apps"]) {
  const g = join(root, group);
  if (!existsSync(g)) continue;
  for (const name of readdirSync(g).sort()) dirs.push(join(g, name));
}
const files = [];
for (const d of dirs) {
  if (only && resolve(d) !== only) continue;
  const b = join(d, "bench");
  if (!existsSync(b)) continue;
  for (const f of readdirSync(b).sort()) if (f.endsWith(".bench.ts")) files.push(join(b, f));
}
const selected = filter ? files.filter((f) => f.includes(filter)) : files;
if (selected.length === 0) {
  console.error("bench: no benchmark files found");
  process.exit(1);
}

const tsx = join(root, "node_modules", ".bin", "tsx");
const results = [];
for (const file of selected) {
  process.stderr.write(`bench: ${relative(root, file)}\n`);
  const out = execFileSync(
    tsx,
    ["--conditions=@dmasim/source", join(root, "scripts", "bench-run.ts"), "--time", time, file],
    {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  for (const line of out.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    r.file = relative(root, r.file);
    results.push(r);
  }
}

const fmt = (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const rows = results.map((r) => [
  r.name,
  fmt(r.nsPerOp),
  r.targetNs !== undefined ? `< ${r.targetNs}` : "",
  r.targetNs !== undefined ? (r.nsPerOp <= r.targetNs ? "met" : "MISSED") : "",
  r.baseline !== undefined ? `${r.ratio.toFixed(2)}x ${r.baseline}` : "",
]);
const head = ["benchmark", "ns/op", "target", "", "vs baseline"];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) =>
  cells
    .map((c, i) => (i === 1 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
    .join("  ")
    .trimEnd();
console.log(line(head));
for (const r of rows) console.log(line(r));

const machine = {
  cpu: cpus()[0]?.model ?? "unknown",
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 1024 ** 3),
  node: process.version,
  date: new Date().toISOString().slice(0, 10),
};
mkdirSync(join(root, "bench-results"), { recursive: true });
writeFileSync(
  join(root, "bench-results", "latest.json"),
  JSON.stringify({ machine, results }, null, 2) + "\n",
);

// Update the generated table of BENCHMARKS.md: rows are keyed by benchmark name, so a run of
// one package replaces its own rows and keeps the others.
const mdPath = join(root, "BENCHMARKS.md");
if (existsSync(mdPath) && !args.includes("--no-write")) {
  const md = readFileSync(mdPath, "utf8");
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  const i = md.indexOf(start);
  const j = md.indexOf(end);
  if (i >= 0 && j > i) {
    const old = new Map();
    for (const line of md.slice(i + start.length, j).split("\n")) {
      const m = /^\| `([^`]+)` \|/.exec(line);
      if (m) old.set(m[1], line);
    }
    for (const r of rows) old.set(r[0], `| \`${r[0]}\` | ${r[1]} | ${r[2]} | ${r[3]} | ${r[4]} |`);
    const table = [
      `Last run ${machine.date} on ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}.`,
      "",
      "| benchmark | ns/op | target | | vs baseline |",
      "|---|---:|---|---|---|",
      ...[...old.keys()].sort().map((k) => old.get(k)),
    ].join("\n");
    writeFileSync(mdPath, md.slice(0, i + start.length) + "\n" + table + "\n" + md.slice(j));
  }
}
