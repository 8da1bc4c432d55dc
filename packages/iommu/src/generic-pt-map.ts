/**
 * generic_pt's map walk (drivers/iommu/generic_pt/iommu_pt.h): `__map_single_page`,
 * `__map_range`, `__map_range_leaf` and `clear_contig`, over generic-pt.ts's `PtIommu`.
 */
import { hex } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";
import type { FreedTablePage, IotlbGather } from "./iotlb-gather.ts";
import { type PtCore, type PtTable, floorMod } from "./pt-core.ts";
import { type GenericPtFormat, PT_ENTRY } from "./pt-format.ts";

/** What the map walk needs of `PtIommu`: the state of the running `map_pages`. */
export interface PtMapTarget extends PtCore {
  readonly gfmt: GenericPtFormat;
  /** The next output address (`map->oa`). */
  mapOa: number;
  attrLo: number;
  attrHi: number;
  leafLg2: number;
  leafSize: number;
  leafLevel: number;
  /** `map_pages`'s own gather. */
  readonly mapGather: IotlbGather;
  endIndex(t: PtTable, level: number, va: number, last: number): number;
  retireTables(t: PtTable, freed: FreedTablePage[]): void;
  gatherRangePages(
    gather: IotlbGather | undefined,
    iova: number,
    len: number,
    list: readonly FreedTablePage[],
    out: FreedTablePage[],
  ): void;
}

const ITEM_LG2 = 9;

/** `__map_single_page`: one 4 KiB page into an existing leaf table; false to take the full path. */
export function mapSinglePage(pt: PtMapTarget, iova: number): boolean {
  const key = Math.floor(iova / pt.leafSpan);
  let t = pt.cachedLeafTable(key, false);
  if (t === undefined) {
    t = pt.liveTop();
    for (let level = pt.topLevel; level > 0; level--) {
      const idx = pt.index(t, level, iova);
      const v = pt.viewFor(t, idx);
      const o = 2 * pt.viewOffset(idx);
      if (pt.gfmt.entryType(v[o] as number, v[o + 1] as number, level) !== PT_ENTRY.TABLE)
        return false;
      t = pt.child(t, idx);
    }
    pt.pathTables[0] = t;
    pt.wcKey = key;
  }
  const idx = pt.index(t, 0, iova);
  const v = pt.viewFor(t, idx);
  const o = 2 * pt.viewOffset(idx);
  const fmt = pt.gfmt;
  if (fmt.entryType(v[o] as number, v[o + 1] as number, 0) !== PT_ENTRY.EMPTY) throw inUse(iova);
  const oa = pt.mapOa;
  v[o] = fmt.leafLo(oa, 0, 12, pt.attrLo);
  v[o + 1] = fmt.leafHi(oa, 0, 12, pt.attrHi);
  const c = pt.counters.c;
  c.pteWrites++;
  c.leavesMapped++;
  t.live++;
  pt.countLeaves(12, 1);
  pt.mapOa = oa + 4096;
  return true;
}

export function inUse(iova: number): IommuError {
  return new IommuError("EADDRINUSE", `iova ${hex(iova)} is already mapped`);
}

/** Writes one leaf entry of `step` items at `idx` (the next `mapOa`), and advances `mapOa`. */
function installLeaf(pt: PtMapTarget, t: PtTable, level: number, idx: number, step: number): void {
  const fmt = pt.gfmt;
  const lg = pt.leafLg2;
  const lo = fmt.leafLo(pt.mapOa, level, lg, pt.attrLo);
  const hi = fmt.leafHi(pt.mapOa, level, lg, pt.attrHi);
  for (let i = 0; i < step; i++) pt.writePte(t, idx + i, lo, hi);
  t.live += step;
  pt.countLeaves(lg, 1);
  pt.counters.c.leavesMapped++;
  pt.mapOa += pt.leafSize;
}

/** `__map_range`: descends through (or creates) the tables above the leaf level. */
export function mapRange(
  pt: PtMapTarget,
  t: PtTable,
  level: number,
  va: number,
  last: number,
): void {
  const isz = pt.geo.itemSize[level] as number;
  const end = pt.endIndex(t, level, va, last);
  let idx = pt.index(t, level, va);
  let cur = va;
  for (;;) {
    const v = pt.viewFor(t, idx);
    const o = 2 * pt.viewOffset(idx);
    const type = pt.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
    let child: PtTable;
    if (type === PT_ENTRY.TABLE) child = pt.child(t, idx);
    else if (type !== PT_ENTRY.EMPTY) throw inUse(cur);
    else child = newTable(pt, t, level, idx, cur);
    if (pt.leafLevel === level - 1) mapRangeLeaf(pt, child, level - 1, cur, last);
    else mapRange(pt, child, level - 1, cur, last);
    idx++;
    if (idx >= end) return;
    cur = cur - floorMod(cur, isz) + isz;
  }
}

/** `pt_iommu_new_table`: a new lower table linked at `idx` of `t`. */
function newTable(pt: PtMapTarget, t: PtTable, level: number, idx: number, va: number): PtTable {
  const nt = pt.allocTable(level - 1, 2 ** ITEM_LG2);
  if (nt === undefined)
    throw new IommuError(
      "ENOMEM",
      `no memory for a level-${level - 1} table mapping iova ${hex(va)}`,
    );
  pt.writePte(t, idx, pt.gfmt.tableLo(nt.phys, level), pt.gfmt.tableHi(nt.phys, level));
  pt.link(t, idx, nt);
  t.live++;
  return nt;
}

/** `__map_range_leaf`: installs the leaves of the range at their level. */
export function mapRangeLeaf(
  pt: PtMapTarget,
  t: PtTable,
  level: number,
  va: number,
  last: number,
): void {
  const step = 2 ** (pt.leafLg2 - (pt.itemLg2[level] as number));
  const end = pt.endIndex(t, level, va, last);
  let idx = pt.index(t, level, va);
  let cur = va;
  if (step === 1) {
    mapRangeItems(pt, t, level, idx, end, cur);
    return;
  }
  do {
    const v = pt.viewFor(t, idx);
    const o = 2 * pt.viewOffset(idx);
    const type = pt.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
    if (type !== PT_ENTRY.EMPTY || step > 1) clearContig(pt, t, level, idx, step, cur);
    installLeaf(pt, t, level, idx, step);
    idx += step;
    cur += pt.leafSize;
  } while (idx < end);
}

/**
 * `__map_range_leaf` for leaves of one item each (the common case): entries `idx..end` of
 * `t`, written in place, the counts taken once for the run (also when it stops at a
 * collision).
 */
function mapRangeItems(
  pt: PtMapTarget,
  t: PtTable,
  level: number,
  idx0: number,
  end: number,
  va: number,
): void {
  const fmt = pt.gfmt;
  const lg = pt.leafLg2;
  const size = pt.leafSize;
  const aLo = pt.attrLo;
  const aHi = pt.attrHi;
  let oa = pt.mapOa;
  let idx = idx0;
  let cur = va;
  try {
    do {
      const v = pt.viewFor(t, idx);
      const o = 2 * pt.viewOffset(idx);
      if (fmt.entryType(v[o] as number, v[o + 1] as number, level) !== PT_ENTRY.EMPTY)
        clearContig(pt, t, level, idx, 1, cur);
      v[o] = fmt.leafLo(oa, level, lg, aLo);
      v[o + 1] = fmt.leafHi(oa, level, lg, aHi);
      oa += size;
      cur += size;
      idx++;
    } while (idx < end);
  } finally {
    const n = idx - idx0;
    const c = pt.counters.c;
    c.pteWrites += n;
    c.leavesMapped += n;
    t.live += n;
    pt.countLeaves(lg, n);
    pt.mapOa = oa;
  }
}

/**
 * `clear_contig`: where a leaf of `step` items goes, empty tables are unlinked and freed
 * through the map's gather; anything mapped (a leaf, or a table holding one) is EADDRINUSE.
 */
function clearContig(
  pt: PtMapTarget,
  t: PtTable,
  level: number,
  idx: number,
  step: number,
  va: number,
): void {
  const isz = pt.geo.itemSize[level] as number;
  for (let i = 0; i < step; i++) {
    const v = pt.viewFor(t, idx + i);
    const o = 2 * pt.viewOffset(idx + i);
    const type = pt.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
    if (type === PT_ENTRY.EMPTY) continue;
    if (type !== PT_ENTRY.TABLE || holdsLeaves(pt, pt.child(t, idx + i))) throw inUse(va + i * isz);
    const sub = pt.child(t, idx + i);
    pt.clearPte(t, idx + i);
    pt.link(t, idx + i, undefined);
    t.live--;
    const list: FreedTablePage[] = [];
    pt.retireTables(sub, list);
    pt.gatherRangePages(pt.mapGather, va + i * isz, isz, list, pt.mapGather.freelist);
  }
}

/** True when a leaf is mapped anywhere under `t` (`__collect_tables` with check_mapped). */
function holdsLeaves(pt: PtMapTarget, t: PtTable): boolean {
  if (t.live === 0) return false;
  for (let i = 0; i < t.entries; i++) {
    const type = pt.gfmt.entryType(pt.lo(t, i), pt.hi(t, i), t.level);
    if (type === PT_ENTRY.OA) return true;
    if (type === PT_ENTRY.TABLE && holdsLeaves(pt, pt.child(t, i))) return true;
  }
  return false;
}
