/**
 * generic_pt's `__unmap_range` (drivers/iommu/generic_pt/iommu_pt.h): the walk that clears a
 * range, stopping at a hole, removing a whole large page when the range starts at it, and
 * freeing the tables the range covers whole.
 */
import type { FreedTablePage } from "./iotlb-gather.ts";
import { type PtCore, type PtTable, floorMod } from "./pt-core.ts";
import { type GenericPtFormat, PT_ENTRY } from "./pt-format.ts";

/** What the unmap walk needs of generic-pt.ts's `PtIommu`. */
export interface PtIommu extends PtCore {
  readonly gfmt: GenericPtFormat;
  /** dmasim's eager policy: free a table as soon as it empties. */
  readonly freeEmptyTables: boolean;
  /** Bytes unmapped by the running `unmap_pages`. */
  unmapped: number;
  endIndex(t: PtTable, level: number, va: number, last: number): number;
  retireTables(t: PtTable, freed: FreedTablePage[]): void;
  inRange(iova: number): boolean;
}

/**
 * Clears the leaf entry at `idx` of `t` (all the items of a contiguous one) and returns how
 * many items it had.
 */
function clearLeaf(pt: PtIommu, t: PtTable, level: number, idx: number, contig: number): number {
  const n = 2 ** contig;
  for (let i = 0; i < n; i++) pt.clearPte(t, idx + i);
  t.live -= n;
  pt.countLeaves((pt.itemLg2[level] as number) + contig, -1);
  pt.counters.c.leavesUnmapped++;
  return n;
}

/**
 * Clears the run of single-item leaves from `idx` (a leaf at `idx` is known), up to `end` or
 * the first entry that is not one; returns how many it cleared. The counts are taken once.
 */
function clearItems(pt: PtIommu, t: PtTable, level: number, idx: number, end: number): number {
  const fmt = pt.gfmt;
  let i = idx;
  let reads = 0;
  for (;;) {
    const v = pt.viewFor(t, i);
    const o = 2 * pt.viewOffset(i);
    v[o] = 0;
    v[o + 1] = 0;
    i++;
    if (i >= end) break;
    const v2 = pt.viewFor(t, i);
    const o2 = 2 * pt.viewOffset(i);
    const lo = v2[o2] as number;
    const hi = v2[o2 + 1] as number;
    reads++;
    if (fmt.entryType(lo, hi, level) !== PT_ENTRY.OA || fmt.leafContigLg2(lo, hi, level) !== 0)
      break;
  }
  // The entry the run stopped at is read again by the caller.
  const n = i - idx;
  const c = pt.counters.c;
  c.pteReads += reads - (i < end ? 1 : 0);
  c.pteWrites += n;
  c.leavesUnmapped += n;
  t.live -= n;
  pt.countLeaves(pt.itemLg2[level] as number, -n);
  return n;
}

/**
 * The 4 KiB case through the walk cache: when the leaf table of `va` is the one the last CPU
 * walk ended in, its entry is read there. Returns the bytes unmapped, or -1 to take the full
 * walk (no cached table).
 */
function unmapCachedPage(pt: PtIommu, va: number): number {
  const t = pt.cachedLeafTable(Math.floor(va / pt.leafSpan), false);
  if (t === undefined) return -1;
  const idx = pt.index(t, 0, va);
  const v = pt.viewFor(t, idx);
  const o = 2 * pt.viewOffset(idx);
  const lo = v[o] as number;
  const hi = v[o + 1] as number;
  pt.counters.c.pteReads++;
  const fmt = pt.gfmt;
  if (fmt.entryType(lo, hi, 0) !== PT_ENTRY.OA) return 0;
  const contig = fmt.leafContigLg2(lo, hi, 0);
  if (contig === 0) {
    v[o] = 0;
    v[o + 1] = 0;
    pt.counters.c.pteWrites++;
    t.live--;
    pt.countLeaves(12, -1);
    pt.counters.c.leavesUnmapped++;
    return 4096;
  }
  // A start in the middle of a contiguous entry: "Unmap of a partial large IOPTE" is EINVAL.
  if (floorMod(va, 4096 * 2 ** contig) !== 0) return 0;
  return clearLeaf(pt, t, 0, idx, contig) * 4096;
}

/**
 * `__unmap_range` over table `t` at `level` for `[va, last]`: returns false when it stopped at
 * a hole or a partial large page (Linux's -EINVAL); adds the bytes it cleared to
 * `pt.unmapped`; puts freed tables in `freed`.
 */
function unmapRange(
  pt: PtIommu,
  t: PtTable,
  level: number,
  va: number,
  last: number,
  freed: FreedTablePage[],
): boolean {
  const fmt = pt.gfmt;
  const c = pt.counters.c;
  const isz = pt.geo.itemSize[level] as number;
  const start = pt.index(t, level, va);
  const end = pt.endIndex(t, level, va, last);
  // The IOVA of item 0 of this table (negative in a sign-extended upper half).
  const tableBase = va - floorMod(va, isz) - start * isz;
  let idx = start;
  let lo = pt.lo(t, idx);
  let hi = pt.hi(t, idx);
  let type = fmt.entryType(lo, hi, level);
  c.pteReads++;
  let items = 0;
  let ok = true;
  if (type === PT_ENTRY.OA) {
    // "A starting index is in the middle of a contiguous entry": refused.
    if (floorMod(va, isz * 2 ** fmt.leafContigLg2(lo, hi, level)) !== 0) return false;
  }
  for (;;) {
    if (type === PT_ENTRY.OA) {
      // A range whose last byte falls inside the entry removes the entry whole: the length
      // returned is then larger than asked.
      const contig = fmt.leafContigLg2(lo, hi, level);
      if (contig === 0) {
        const n = clearItems(pt, t, level, idx, end);
        items += n;
        idx += n;
        if (idx >= end) break;
        lo = pt.lo(t, idx);
        hi = pt.hi(t, idx);
        type = fmt.entryType(lo, hi, level);
        c.pteReads++;
        continue;
      }
      const n = clearLeaf(pt, t, level, idx, contig);
      items += n;
      idx += n;
    } else if (type === PT_ENTRY.TABLE) {
      const cur = idx === start ? va : tableBase + idx * isz;
      const sub = pt.child(t, idx);
      // The unmap covers the whole item: the table goes too, once its levels are cleared.
      const fullyCovered =
        floorMod(cur, isz) === 0 &&
        (Math.floor(cur / isz) !== Math.floor(last / isz) || floorMod(last, isz) === isz - 1);
      if (!unmapRange(pt, sub, level - 1, cur, last, freed)) {
        ok = false;
        break;
      }
      // dmasim's eager policy frees a table as soon as it empties.
      if (fullyCovered || (pt.freeEmptyTables && sub.live === 0)) {
        pt.retireTables(sub, freed);
        pt.clearPte(t, idx);
        pt.link(t, idx, undefined);
        t.live--;
      }
      idx++;
    } else {
      ok = false;
      break;
    }
    if (idx >= end) break;
    lo = pt.lo(t, idx);
    hi = pt.hi(t, idx);
    type = fmt.entryType(lo, hi, level);
    c.pteReads++;
  }
  pt.unmapped += items * isz;
  return ok;
}

/** `pt_walk_range(&range, __unmap_range, ...)` from the top for `[va, last]`. */
export function ptUnmapRange(pt: PtIommu, va: number, last: number, freed: FreedTablePage[]): void {
  if (last - va === 4095 && !pt.freeEmptyTables) {
    const got = unmapCachedPage(pt, va);
    if (got >= 0) {
      pt.unmapped += got;
      return;
    }
  }
  unmapRange(pt, pt.liveTop(), pt.topLevel, va, last, freed);
}

/**
 * dmasim's eager policy after a failed map: frees the empty tables on the path to `iova`
 * (generic_pt itself keeps them).
 */
export function ptPruneEmpty(pt: PtIommu, iova: number): void {
  if (!pt.inRange(iova)) return;
  const path: { t: PtTable; idx: number }[] = [];
  let t = pt.liveTop();
  for (let level = pt.topLevel; level > 0; level--) {
    const idx = pt.index(t, level, iova);
    if (pt.gfmt.entryType(pt.lo(t, idx), pt.hi(t, idx), level) !== PT_ENTRY.TABLE) break;
    path.push({ t, idx });
    t = pt.child(t, idx);
  }
  const freed: FreedTablePage[] = [];
  for (let i = path.length - 1; i >= 0; i--) {
    const { t: parent, idx } = path[i] as { t: PtTable; idx: number };
    const sub = pt.child(parent, idx);
    if (sub.live !== 0) break;
    pt.retireTable(sub, freed);
    pt.clearPte(parent, idx);
    pt.link(parent, idx, undefined);
    parent.live--;
  }
  pt.putPages(freed);
}
