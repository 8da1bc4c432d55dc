/**
 * The step-through page of one traced I/O (`dmasim trace --html`): one section per step of the
 * trace — bvecs, physical segments, the mapping, the IOVA allocation, the page-table entries per
 * level, the command decoded field by field, the PRP list or SGL, the device's accesses with
 * what the IOMMU did for each, the completion, the teardown — drawn as tables from the same data
 * `trace --json` prints (embedded in the page as JSON). Without script every step shows; with
 * it one step shows at a time, stepped with the arrow keys (or j/k), the buttons or the table
 * of contents, and each step has its own link (#step-N).
 */
import { hex } from "@dmasim/bvec";
import type { NvmeField, PrpEntryView, SglDescriptorView } from "@dmasim/nvme";
import { esc } from "./html-charts.ts";
import { page, tableHtml } from "./html-page.ts";
import type { TraceDifference, TraceStep } from "./trace.ts";
import type { IovaAllocation, TraceAccess, TraceTable } from "./trace-view.ts";

/** One traced I/O: its kernel release and steps. */
export interface TraceRun {
  readonly kernel: string;
  readonly steps: readonly TraceStep[];
}

/** The 16-byte rows of a structure, each byte a cell (a field's bytes share its title). */
function byteGrid(
  bytes: readonly number[],
  base: number,
  fields: readonly NvmeField[] = [],
): string {
  const owner = (i: number) => fields.find((f) => i >= f.offset && i < f.offset + f.size);
  const rows: string[] = [];
  for (let r = 0; r < bytes.length; r += 16) {
    const cells = bytes.slice(r, r + 16).map((b, k) => {
      const f = owner(r + k);
      const title = f === undefined ? "" : ` title="${esc(`${f.name}: ${f.text}`)}"`;
      return `<td class="mono"${title}>${b.toString(16).padStart(2, "0")}</td>`;
    });
    rows.push(`<tr><th class="mono">${esc(hex(base + r))}</th>${cells.join("")}</tr>`);
  }
  return `<div class="scroll"><table class="bytes">${rows.join("")}</table></div>`;
}

/** A structure's fields as a table. */
function fieldTable(fields: readonly NvmeField[], cls: string): string {
  return tableHtml(
    ["dword", "bits", "field", "name", "value"],
    fields.map((f) => [f.dword, f.bits, f.name, f.label, f.text]),
    `class="fields ${cls}"`,
  );
}

function counterTable(c: Readonly<Record<string, number>>, cls = "counters"): string {
  const rows = Object.entries(c).map(([k, v]) => [k, v > 0 ? `+${v}` : String(v)]);
  return rows.length === 0
    ? "<p>No counter moved.</p>"
    : tableHtml(["counter", "change"], rows, `class="${cls}"`);
}

/** The tables of the I/O's walks, root first: one table per page-table page, each entry's
 * fields as the format decodes them folded under it. */
function pageTables(d: { format: string; tables: readonly TraceTable[] }): string {
  return d.tables
    .map((t) => {
      const rows = t.entries.map((e) => {
        const fields = tableHtml(
          ["field", "bits", "value"],
          e.fields.map((f) => [f.name, f.bits, f.text]),
          'class="pte-fields"',
        );
        return `<tr class="${e.written ? "written" : "kept"}"><td>${e.index}</td><td class="mono">${esc(hex(e.iova))}</td><td>${esc(e.kind)}</td><td class="mono">${esc(hex(e.size))}</td><td class="mono">${esc(hex(e.addr))}</td><td class="mono pte">${esc(e.pte)}</td><td>${e.written ? "written" : "already there"}</td><td><details><summary>${e.fields.length} fields</summary>${fields}</details></td></tr>`;
      });
      return `<h3>Level ${t.level} table at <span class="mono">${esc(hex(t.tableAddr))}</span></h3><div class="scroll"><table class="ptes" data-level="${t.level}"><tr><th>index</th><th>IOVA</th><th>kind</th><th>covers</th><th>points to</th><th>PTE</th><th>by this I/O</th><th>${esc(d.format)} fields</th></tr>${rows.join("")}</table></div>`;
    })
    .join("");
}

/** Each step's body drawn from its data, then its lines as `trace` prints them, folded. */
function stepBody(s: TraceStep): string {
  return `${drawn(s)}<details><summary>as text</summary><pre>${esc(s.lines.join("\n"))}</pre></details>`;
}

/** A step drawn from its data; a step without its own drawing shows its lines. */
function drawn(s: TraceStep): string {
  const d = s.data as Record<string, unknown>;
  switch (s.step) {
    case "kernel": {
      const k = d as { kernel: string; iommu: string; mapping: string; dmaDebug: boolean };
      return tableHtml(
        ["Linux", "IOMMU mode", "mapping", "dma-debug"],
        [[k.kernel, k.iommu, k.mapping, k.dmaDebug ? "on" : "off"]],
      );
    }
    case "bvecs": {
      const bv = s.data as { page: number; offset: number; len: number; phys: number }[];
      return tableHtml(
        ["bvec", "page frame", "offset", "length", "physical address"],
        bv.map((b, i) => [String(i), hex(b.page), hex(b.offset), hex(b.len), hex(b.phys)]),
        'class="bvecs"',
      );
    }
    case "physical segments": {
      const p = d as {
        nrPhysSegments: number;
        physGapBit: number;
        segments: { paddr: number; len: number }[];
      };
      return `<p>${esc(s.lines[0]?.trim() ?? "")}</p><p>nr_phys_segments ${p.nrPhysSegments}, gap bit ${p.physGapBit}</p>${tableHtml(
        ["segment", "physical address", "length"],
        p.segments.map((x, i) => [String(i), hex(x.paddr), hex(x.len)]),
        'class="segments"',
      )}`;
    }
    case "DMA mapping": {
      const m = d as { counters: Record<string, number>; mapped: { addr: number; len: number }[] };
      return `<p>${esc(s.lines[0]?.trim() ?? "")}</p><p>${esc(s.lines[1]?.trim() ?? "")}</p>${tableHtml(
        ["DMA range", "length"],
        m.mapped.map((r) => [hex(r.addr), hex(r.len)]),
        'class="mapped"',
      )}<h3>Counters the mapping moved</h3>${counterTable(m.counters)}`;
    }
    case "IOVA allocation": {
      const a = d as { source: string | null; granule?: number; allocations: IovaAllocation[] };
      if (a.source === null) return `<p>${esc(s.lines[0]?.trim() ?? "")}</p>`;
      return `<p>Source: ${esc(a.source)}</p>${tableHtml(
        ["allocated range", "bytes", "holds"],
        a.allocations.map((x) => [
          `${hex(x.start)}-${hex(x.end)}`,
          hex(x.size),
          `${hex(x.mapped.addr)} + ${hex(x.mapped.len)}`,
        ]),
        'class="iova"',
      )}`;
    }
    case "page tables":
      return `<p>The entries on the walks to this I/O's ranges, root level first. Rows the mapping wrote are marked; the others were there before it.</p>${pageTables(d as { format: string; tables: TraceTable[] })}`;
    case "command": {
      const c = d as { slot: number; addr: number; bytes: number[]; fields: NvmeField[] };
      return `<p>${esc(s.lines[0]?.trim() ?? "")}</p>${byteGrid(c.bytes, c.addr, c.fields)}${fieldTable(c.fields, "sqe")}`;
    }
    case "PRP list":
    case "SGL segment": {
      const x = d as {
        descriptors: { addr: number; dmaAddr: number; bytes: number[] }[];
        prpEntries?: PrpEntryView[];
        sglDescriptors?: SglDescriptorView[];
      };
      if (x.descriptors.length === 0)
        return "<p>None: the command holds the whole data pointer.</p>";
      const where = tableHtml(
        ["descriptor page", "CPU address", "DMA address"],
        x.descriptors.map((p, i) => [String(i), hex(p.addr), hex(p.dmaAddr)]),
      );
      const entries =
        x.prpEntries !== undefined
          ? tableHtml(
              ["page", "slot", "offset", "entry", "role", "covers"],
              x.prpEntries.map((e) => [
                String(e.page),
                String(e.index),
                hex(e.offset),
                hex(e.addr),
                e.role === "data" ? "data page" : "pointer to the next list page",
                e.role === "data" ? `${hex(e.len)} bytes` : "-",
              ]),
              'class="prp-entries"',
            )
          : tableHtml(
              ["descriptor", "type", "subtype", "address", "length"],
              (x.sglDescriptors ?? []).map((e) => [
                String(e.index),
                e.typeName,
                e.subtypeName,
                hex(e.addr),
                hex(e.len),
              ]),
              'class="sgl-entries"',
            );
      const used = x.prpEntries !== undefined ? Math.min(256, 8 * x.prpEntries.length + 8) : 256;
      const first = x.descriptors[0];
      return `${where}${entries}${first === undefined ? "" : `<h3>The first descriptor page's bytes</h3>${byteGrid(first.bytes.slice(0, used), first.addr)}`}`;
    }
    case "controller walk": {
      const w = d as { accesses: TraceAccess[] };
      return `<p>${esc(s.lines[0]?.trim() ?? "")}</p>${tableHtml(
        [
          "#",
          "access",
          "DMA address",
          "length",
          "reached",
          "IOTLB hits",
          "IOTLB misses",
          "PTE reads (walk cache)",
          "result",
        ],
        w.accesses.map((a, i) => [
          String(i + 1),
          `${a.kind} (${a.write ? "write" : "read"})`,
          hex(a.addr),
          hex(a.len),
          a.runs.map((r) => `${hex(r.phys)}+${hex(r.len)}`).join(", "),
          a.translated ? String(a.iotlbHits) : "-",
          a.translated ? String(a.iotlbMisses) : "-",
          a.translated ? `${a.pteReads} (${a.walkCacheHits})` : "-",
          a.ok
            ? a.staleHits > 0
              ? `ok, ${a.staleHits} STALE`
              : "ok"
            : `failed: ${a.failure ?? "?"}`,
        ]),
        'class="accesses"',
      )}`;
    }
    case "completion": {
      const c = d as { addr: number; bytes: number[]; fields: NvmeField[]; reason?: string | null };
      return `<p>${esc(s.lines[0]?.trim() ?? "")}</p>${c.reason === undefined ? "" : `<p class="failed">${esc(s.lines[1]?.trim() ?? "")}</p>`}${byteGrid(c.bytes, c.addr, c.fields)}${fieldTable(c.fields, "cqe")}`;
    }
    case "teardown": {
      const t = d as {
        summary: string;
        unmap: Record<string, number>;
        timer: Record<string, number>;
      };
      return `<p>${esc(t.summary)}</p><h3>At completion (the unmap)</h3>${counterTable(t.unmap)}<h3>After the flush-queue timer</h3>${counterTable(t.timer)}`;
    }
    default:
      return `<pre>${esc(s.lines.join("\n"))}</pre>`;
  }
}

/** The script that steps: one section at a time, keys, buttons, links. */
const SCRIPT = `(function () {
  var steps = Array.prototype.slice.call(document.querySelectorAll("section.step"));
  var links = Array.prototype.slice.call(document.querySelectorAll("nav.toc a"));
  var pos = document.getElementById("pos");
  document.body.classList.add("stepping");
  var cur = 0;
  function show(i, push) {
    cur = Math.max(0, Math.min(steps.length - 1, i));
    steps.forEach(function (s, k) { s.hidden = k !== cur; });
    links.forEach(function (a, k) { if (k === cur) a.setAttribute("aria-current", "step"); else a.removeAttribute("aria-current"); });
    pos.textContent = "step " + (cur + 1) + " of " + steps.length + ": " + steps[cur].dataset.step;
    if (push && location.hash !== "#" + steps[cur].id) history.replaceState(null, "", "#" + steps[cur].id);
  }
  function fromHash() {
    var i = steps.findIndex(function (s) { return "#" + s.id === location.hash; });
    show(i < 0 ? 0 : i, false);
  }
  // A link shows its step at once; the hash it sets then finds the same step.
  links.forEach(function (a, k) { a.addEventListener("click", function () { show(k, false); }); });
  document.getElementById("prev").addEventListener("click", function () { show(cur - 1, true); });
  document.getElementById("next").addEventListener("click", function () { show(cur + 1, true); });
  document.getElementById("all").addEventListener("click", function () {
    document.body.classList.toggle("stepping");
    var on = document.body.classList.contains("stepping");
    steps.forEach(function (s, k) { s.hidden = on && k !== cur; });
  });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowRight" || e.key === "j" || e.key === "PageDown") { show(cur + 1, true); e.preventDefault(); }
    else if (e.key === "ArrowLeft" || e.key === "k" || e.key === "PageUp") { show(cur - 1, true); e.preventDefault(); }
    else if (e.key === "Home") { show(0, true); e.preventDefault(); }
    else if (e.key === "End") { show(steps.length - 1, true); e.preventDefault(); }
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();`;

const STYLE = `
nav.toc ol{display:flex;flex-wrap:wrap;gap:.3em 1.2em;padding:0;margin:.5em 0;list-style:none}
nav.toc .n{color:#555;margin-right:.25em}
nav.toc a[aria-current]{font-weight:bold;color:#000}
.controls{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ddd;display:flex;gap:.5em;align-items:center;flex-wrap:wrap}
.controls button{font:inherit;padding:.2em .8em}
section.step{border-top:1px solid #eee;padding-top:.4em}
body:not(.stepping) .controls #prev,body:not(.stepping) .controls #next{display:none}
tr.written td{background:#eef6ee}table.bytes td{padding:1px 3px}table.bytes{font-size:12px}
.failed{color:#a00;font-weight:bold}
section.step td,section.step th{text-align:left}`;

/** The step-through page of one trace (two releases: each one's steps, then what changes). */
export function traceHtml(
  runs: readonly TraceRun[],
  json: unknown,
  differences?: readonly TraceDifference[],
): string {
  const two = runs.length > 1;
  const sections: { id: string; title: string; body: string }[] = [];
  for (const r of runs)
    for (const s of r.steps)
      sections.push({
        id: `step-${sections.length + 1}`,
        title: two ? `Linux ${r.kernel}: ${s.step}` : s.step,
        body: stepBody(s),
      });
  if (differences !== undefined)
    sections.push({
      id: `step-${sections.length + 1}`,
      title: `what changes from Linux ${runs[0]?.kernel ?? ""} to ${runs[1]?.kernel ?? ""}`,
      body:
        differences.length === 0
          ? "<p>Nothing: every step is the same.</p>"
          : differences
              .map(
                (d) =>
                  `<h3>${esc(d.step)}</h3><pre>${esc([...d.only0.map((l) => `- ${l.trim()}`), ...d.only1.map((l) => `+ ${l.trim()}`)].join("\n"))}</pre>`,
              )
              .join(""),
    });
  const toc = `<nav class="toc" aria-label="steps"><ol>${sections.map((s, i) => `<li><span class="n">${i + 1}.</span><a href="#${s.id}">${esc(s.title)}</a></li>`).join("")}</ol></nav>`;
  const controls = `<div class="controls"><button id="prev" type="button" aria-label="previous step">← previous</button><button id="next" type="button" aria-label="next step">next →</button><button id="all" type="button">all steps / one at a time</button><span id="pos" aria-live="polite"></span></div>`;
  const body = [
    `<h1>dmasim trace: one I/O, step by step</h1>`,
    `<p class="note">Arrow keys (or j / k) step; Home and End jump; each step has its own link.</p>`,
    toc,
    controls,
    ...sections.map(
      (s) =>
        `<section class="step" id="${s.id}" data-step="${esc(s.title)}"><h2>${esc(s.title)}</h2>${s.body}</section>`,
    ),
    `<script type="application/json" id="trace-json">${JSON.stringify(json).replaceAll("<", "\\u003c")}</script>`,
  ].join("\n");
  return page("dmasim trace", body, { style: STYLE, script: SCRIPT });
}
