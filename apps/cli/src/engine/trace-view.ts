/**
 * The parts of a trace that show what one I/O did to the machine's state: the IOVA ranges it
 * allocated, the page-table entries it wrote at each level, the device's accesses in order with
 * what the IOMMU did for each, and the specification's fields of a command or completion.
 */
import { hex } from "@dmasim/bvec";
import type { DmaAccessEvent } from "@dmasim/dma-core";
import type { IoPageTable, IovaDomain, PteDumpEntry } from "@dmasim/iommu";
import type { NvmeField } from "@dmasim/nvme";

/** Lines of a hex dump, 16 bytes to a line, each prefixed with its address. */
export function hexdump(bytes: Uint8Array, base: number, width = 16): string[] {
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += width) {
    const row = Array.from(bytes.subarray(i, i + width), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join(" ");
    out.push(`  ${hex(base + i).padStart(14)}: ${row}`);
  }
  return out;
}

/** Decoded fields as lines: "CDW0 07:00 OPC (Opcode) = 02h Read". */
export function fieldLines(fields: readonly NvmeField[], indent = "    "): string[] {
  return fields.map((f) => `${indent}${f.dword} ${f.bits} ${f.name} (${f.label}) = ${f.text}`);
}

/** A range of DMA addresses. */
export interface DmaRange {
  readonly addr: number;
  readonly len: number;
}

/** One IOVA range the mapping allocated, as the allocator's tree holds it. */
export interface IovaAllocation {
  /** First and last byte of the allocated range (whole granules). */
  readonly start: number;
  readonly end: number;
  /** Allocated bytes (a power of two of granules when the allocation was size-aligned). */
  readonly size: number;
  /** The DMA range of the mapping inside it. */
  readonly mapped: DmaRange;
}

/** The IOVA ranges holding `mapped` (Linux `find_iova` for each), one per distinct range. */
export function iovaAllocations(iovad: IovaDomain, mapped: readonly DmaRange[]): IovaAllocation[] {
  const out: IovaAllocation[] = [];
  for (const r of mapped) {
    const g = iovad.granule;
    const found = iovad.findIova(Math.floor(r.addr / g));
    if (found === undefined) continue;
    const start = found.pfnLo * g;
    if (out.some((a) => a.start === start)) continue;
    const end = (found.pfnHi + 1) * g - 1;
    out.push({ start, end, size: end + 1 - start, mapped: r });
  }
  return out;
}

/**
 * Where the IOVAs came from, by the allocator's counters over the mapping: the per-CPU rcache
 * (a magazine hit), the tree (`alloc_iova` searching down from the limit), or both.
 */
export function iovaSource(counters: Readonly<Record<string, number>>): string {
  const rcache = counters["iova.allocRcacheHit"] ?? 0;
  const tree = counters["iova.allocTree"] ?? 0;
  if (rcache > 0 && tree > 0) return `${rcache} from the rcache, ${tree} from the tree`;
  if (rcache > 0)
    return `the per-CPU rcache (${rcache === 1 ? "a magazine hit" : `${rcache} magazine hits`}: a range freed earlier, reused without searching the tree)`;
  if (tree > 0)
    return `the tree (${tree === 1 ? "an rcache miss" : `${tree} rcache misses`}: alloc_iova searched down from the DMA limit for a free range)`;
  return "no new allocation";
}

/** One page-table entry of the I/O's path, and whether the mapping wrote it. */
export interface TracePte extends PteDumpEntry {
  /** True when the entry was not there, or held another value, before the mapping. */
  readonly written: boolean;
}

/** One table of the path: its level, where it sits, and the entries shown. */
export interface TraceTable {
  readonly level: number;
  readonly tableAddr: number;
  readonly entries: readonly TracePte[];
}

/** The key of an entry: the table it sits in and its index. */
function pteKey(e: PteDumpEntry): string {
  return `${e.tableAddr}:${e.index}`;
}

/** Every entry of the page table, by table and index, with its value (before a mapping). */
export function pteSnapshot(pt: IoPageTable): Map<string, string> {
  return new Map(pt.dump().map((e) => [pteKey(e), e.pte]));
}

/**
 * The tables on the walks to `mapped`, root first, with the entries on those walks (the table
 * entries leading down, and every leaf covering the ranges); an entry absent or different in
 * `before` is marked written.
 */
export function pageTablePath(
  pt: IoPageTable,
  before: ReadonlyMap<string, string>,
  mapped: readonly DmaRange[],
): TraceTable[] {
  const seen = new Set<string>();
  const tables = new Map<number, { level: number; entries: TracePte[] }>();
  for (const r of mapped) {
    const start = r.addr - (r.addr % pt.granule);
    for (const e of pt.dump(start, r.addr + r.len)) {
      const key = pteKey(e);
      if (seen.has(key)) continue;
      seen.add(key);
      const t = tables.get(e.tableAddr) ?? { level: e.level, entries: [] };
      t.entries.push({ ...e, written: before.get(key) !== e.pte });
      tables.set(e.tableAddr, t);
    }
  }
  return [...tables.entries()]
    .map(([tableAddr, t]) => ({ level: t.level, tableAddr, entries: t.entries }))
    .sort((a, b) => a.level - b.level || a.tableAddr - b.tableAddr);
}

/** A page-table entry as a line: "L3[479] @0x...: page iova 0x... → 0x... = 0x..._... (written)". */
export function pteLine(e: TracePte): string {
  return `  PTE L${e.level}[${e.index}] iova ${hex(e.iova)} → ${hex(e.addr)} (${e.kind}, ${hex(e.size)}) = ${e.pte}${e.written ? "" : " (already there)"}`;
}

/** A PTE's fields as the page table's format decodes them, on one line: "VALID[0]=valid …". */
export function pteFieldsLine(e: TracePte): string {
  return `      ${e.fields.map((f) => `${f.name}[${f.bits}]=${f.text}`).join(" ")}`;
}

/** What a device access was, from where its address falls. */
export type AccessKind =
  | "SQ entry fetch"
  | "CQ entry post"
  | "PRP list read"
  | "SGL segment read"
  | "data read"
  | "data write";

/**
 * A device access of the trace (`DmaAccessEvent`'s range, direction, runs, lookups and stale
 * hits), with what it was, its IOTLB hits and misses, and the page-table reads it cost.
 */
export interface TraceAccess extends Pick<
  DmaAccessEvent,
  "addr" | "len" | "write" | "runs" | "translated" | "pages" | "staleHits" | "ok"
> {
  readonly kind: AccessKind;
  /** IOTLB lookups that hit, and misses (each a page-table walk). */
  readonly iotlbHits: number;
  readonly iotlbMisses: number;
  /** Page-table entries the walks read, and of them those the walk cache served. */
  readonly pteReads: number;
  readonly walkCacheHits: number;
  /** The fault's reason, or the bus error, when the access failed. */
  readonly failure: string | null;
}

/** Address ranges of the trace's queues and descriptors, to name each access by. */
export interface AccessMap {
  readonly sq: DmaRange;
  readonly cq: DmaRange;
  readonly descriptors: readonly DmaRange[];
  readonly sgl: boolean;
}

function inside(a: number, r: DmaRange): boolean {
  return a >= r.addr && a < r.addr + r.len;
}

/** What an access at `e.addr` was. */
export function accessKind(e: DmaAccessEvent, map: AccessMap): AccessKind {
  if (inside(e.addr, map.sq)) return "SQ entry fetch";
  if (inside(e.addr, map.cq)) return "CQ entry post";
  if (map.descriptors.some((d) => inside(e.addr, d)))
    return map.sgl ? "SGL segment read" : "PRP list read";
  return e.write ? "data write" : "data read";
}

/** An access as a line, with what the IOMMU did for it. */
export function accessLine(a: TraceAccess): string {
  const where = a.runs.map((r) => `${hex(r.phys)}+${hex(r.len)}`).join(", ");
  const iommu = a.translated
    ? a.pages === 0
      ? "; identity domain"
      : `; IOTLB ${a.iotlbHits} hit${a.iotlbHits === 1 ? "" : "s"}, ${a.iotlbMisses} miss${a.iotlbMisses === 1 ? "" : "es"}${a.iotlbMisses > 0 ? ` (walk: ${a.pteReads} PTE reads, ${a.walkCacheHits} from the walk cache)` : ""}${a.staleHits > 0 ? `, ${a.staleHits} STALE` : ""}`
    : "; direct (no IOMMU)";
  return `  ${a.kind}: ${a.write ? "write" : "read"} ${hex(a.addr)} + ${hex(a.len)} → ${a.ok ? where : `FAILED (${a.failure ?? "?"})`}${iommu}`;
}
