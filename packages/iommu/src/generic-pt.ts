/**
 * generic_pt's IOMMU page table (drivers/iommu/generic_pt/iommu_pt.h, "iommupt"): the map and
 * unmap Linux runs for the AMD v1, VT-d second-stage, x86-64 and RISC-V formats, over the
 * common core. What differs from io-pgtable-arm, and users notice:
 *
 * - A map over anything mapped fails with EADDRINUSE (`__map_range`, `clear_contig`), and maps
 *   progressively: the entries before the collision stay written and count in `mapped`, for
 *   iommu.c to unmap. An empty table where a leaf goes is freed through the gather, which
 *   `map_pages` then syncs.
 * - Unmapping a small page at the start of a large page removes the whole large page and
 *   returns its size; unmap never runs on into the next entry (`__unmap_range`). A start in
 *   the middle of a large page, or a hole, stops the unmap.
 * - A table is freed when an unmap covers it whole; emptied tables otherwise stay linked.
 * - AMD v1 grows its top level at run time as higher IOVAs are mapped (`increase_top`,
 *   PT_FEAT_DYNAMIC_TOP); x86-64 and RISC-V split the IOVA space into a sign-extended lower
 *   and upper half (PT_FEAT_SIGN_EXTEND): the upper half is written here as negative IOVAs
 *   (0xffff_8000_0000_0000 is -2^47 with 48 bits), and only the lower half is a DMA aperture.
 * - A leaf may be a contiguous run of items (AMD v1's every power of two, RISC-V's 64 KiB
 *   NAPOT), written as replicated PTEs; `map_pages` picks the leaf size itself with
 *   `pt_compute_best_pgsize` over the domain's page-size bitmap.
 * - Unmaps gather the range they were asked for (`gather_range_pages`), syncing first when the
 *   table may not widen a flush over a gap (PT_FEAT_FLUSH_RANGE_NO_GAPS).
 */
import { type PhysMemory, hex, lowestSetBit } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";
import {
  type FreedTablePage,
  type IotlbGather,
  IotlbGather as Gather,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
} from "./iotlb-gather.ts";
import { IOMMU_PROT, type IommuProt } from "./prot.ts";
import { type MappedBytes, PtCore, type PtOps, type PtTable, floorMod } from "./pt-core.ts";
import { type GenericPtFormat, PT_ENTRY } from "./pt-format.ts";
import { ptPruneEmpty, ptUnmapRange } from "./generic-pt-unmap.ts";

/** The configuration a driver gives `pt_iommu_<fmt>_init`. */
export interface GenericPtConfig {
  /** `hw_max_vasz_lg2`: IOVA bits (capped by the model at 52: addresses stay below 2^53). */
  readonly vaBits: number;
  /** `hw_max_oasz_lg2`: output address bits. */
  readonly oaBits: number;
  /** The top level at creation (AMD v1's `starting_level`; the others from the VA bits). */
  readonly topLevel: number;
  /** PT_FEAT_DYNAMIC_TOP. */
  readonly dynamicTop: boolean;
  /** PT_FEAT_SIGN_EXTEND. */
  readonly signExtend: boolean;
  /** PT_FEAT_FLUSH_RANGE_NO_GAPS instead of PT_FEAT_FLUSH_RANGE. */
  readonly flushRangeNoGaps: boolean;
  /** The sizes the driver narrows the domain's bitmap to (`domain->pgsize_bitmap &=`), if any. */
  readonly pgsizeMask?: number;
  /** dmasim's eager table freeing (IoPgtableConfig.freeEmptyTables). */
  readonly freeEmptyTables?: boolean;
}

const ITEM_LG2 = 9;

/**
 * Entries of a top table at `level` (`pt_top_memsize_lg2`): the VA bits above the level's
 * items, at most a table's worth while a DYNAMIC_TOP table can still grow.
 */
function topEntries(fmt: GenericPtFormat, cfg: GenericPtConfig, level: number): number {
  const lg = cfg.vaBits - (12 + ITEM_LG2 * level);
  return 2 ** (cfg.dynamicTop && level !== fmt.maxTopLevel ? Math.min(lg, ITEM_LG2) : lg);
}

/** Linux `struct pt_iommu` with generic_pt's iommu ops, over the common core. */
export class PtIommu extends PtCore implements PtOps {
  readonly gfmt: GenericPtFormat;
  readonly cfg: GenericPtConfig;
  /** `common->max_vasz_lg2`. */
  readonly maxVasz: number;
  /** `common->max_oasz_lg2`. */
  readonly maxOasz: number;
  /** The domain's `pgsize_bitmap` as a list, ascending. */
  readonly pageSizes: readonly number[];
  /** dmasim's eager policy: a table is freed as soon as an unmap empties it. */
  readonly freeEmptyTables: boolean;
  /** `domain->geometry.aperture_end`. */
  readonly apertureEnd: number;
  /** Bytes unmapped by the running `unmap_pages` (`unmap->unmapped`). */
  unmapped = 0;
  /** The next output address of the running `map_pages` (`map->oa`). */
  private mapOa = 0;
  private attrLo = 0;
  private attrHi = 0;
  private leafLg2 = 0;
  private leafLevel = 0;
  /** `map_pages`'s own gather: tables replaced by leaves, synced before it returns. */
  private readonly mapGather = new Gather();
  private readonly unmapFree: FreedTablePage[] = [];
  /** Level 0 holds PAGE_SIZE items (`pt_has_system_page_size`). */
  private readonly systemPage: boolean;

  constructor(mem: PhysMemory, fmt: GenericPtFormat, cfg: GenericPtConfig) {
    const maxLevel = fmt.maxTopLevel;
    const itemSize: number[] = [];
    for (let l = 0; l <= maxLevel; l++) itemSize.push(2 ** (12 + ITEM_LG2 * l));
    super(mem, fmt, {
      tableBytes: 4096,
      itemSize,
      itemEntries: 2 ** ITEM_LG2,
      topLevel: cfg.topLevel,
      topEntries: topEntries(fmt, cfg, cfg.topLevel),
    });
    const maxVasz = cfg.vaBits;
    this.gfmt = fmt;
    this.cfg = cfg;
    this.maxVasz = maxVasz;
    this.maxOasz = Math.min(cfg.oaBits, fmt.maxOaLg2);
    this.freeEmptyTables = cfg.freeEmptyTables ?? false;
    this.systemPage = mem.pageSize === 4096;
    // get_info: every level's possible sizes (all levels the top can grow to with
    // DYNAMIC_TOP), hiding sizes of 2^max_oasz and above; then the driver's narrowing.
    const sizes = new Set<number>();
    const last = cfg.dynamicTop ? maxLevel : cfg.topLevel;
    for (let l = 0; l <= last; l++) {
      if (cfg.dynamicTop && 12 + ITEM_LG2 * l >= maxVasz) break;
      for (const s of fmt.possibleSizes(l)) if (s < 2 ** this.maxOasz) sizes.add(s);
    }
    const mask = cfg.pgsizeMask;
    this.pageSizes = [...sizes]
      .filter((s) => mask === undefined || mask % (2 * s) >= s)
      .sort((a, b) => a - b);
    // pt_iommu_init_domain: the whole range the top can grow to, or the lower half; an Sv57
    // lower half (2^56) is cut to the model's 52-bit addresses.
    this.apertureEnd = Math.min(2 ** (cfg.signExtend ? maxVasz - 1 : maxVasz), 2 ** 52) - 1;
  }

  /** Log2 of the VA span the current top covers (`_pt_top_range`'s max_vasz_lg2). */
  private topVasz(level: number): number {
    if (this.cfg.dynamicTop && level !== this.gfmt.maxTopLevel)
      return Math.min(this.maxVasz, 12 + ITEM_LG2 * level + ITEM_LG2);
    return this.maxVasz;
  }

  /** Linux `pt_check_range` with the top at `level`: both ends in the range, one half. */
  private rangeOk(va: number, last: number, level: number): boolean {
    if (this.cfg.signExtend) {
      const half = 2 ** (this.maxVasz - 1);
      return va >= 0 ? last < half : va >= -half && last < 0;
    }
    return va >= 0 && last < 2 ** this.topVasz(level);
  }

  inRange(iova: number): boolean {
    return this.rangeOk(iova, iova, this.topLevel);
  }

  checkMapRange(): void {
    // map_pages checks its own range (check_map_range), one call at a time.
  }

  afterFailedMap(iova: number): void {
    // generic_pt keeps the tables a failed map created; the eager policy prunes them.
    if (this.freeEmptyTables) ptPruneEmpty(this, iova);
  }

  /** `pt_compute_best_pgsize` over the domain's bitmap: the largest leaf for the range. */
  private bestPgsizeLg2(va: number, last: number, oa: number): number {
    const len = last - va + 1;
    let best = 2 ** Math.floor(Math.log2(len));
    if (va !== 0) best = Math.min(best, lowestSetBit(va));
    if (oa !== 0) best = Math.min(best, lowestSetBit(oa));
    const sizes = this.pageSizes;
    for (let i = sizes.length - 1; i >= 0; i--) {
      const s = sizes[i] as number;
      if (s <= best) return Math.log2(s);
    }
    return 0;
  }

  /**
   * `pt_iommu_<fmt>_map_pages`: maps `pgcount` pages of `pgsize` at `iova`, with the leaf size
   * `pt_compute_best_pgsize` picks, adding the bytes mapped to `mapped` even when it fails.
   */
  mapPages(
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: IommuProt,
    mapped: MappedBytes,
  ): void {
    // eslint-disable-next-line no-bitwise -- prot is a 6-bit flag set
    if ((prot & (IOMMU_PROT.READ | IOMMU_PROT.WRITE)) === 0)
      throw new IommuError("EINVAL", `map_pages: prot ${hex(prot)} has neither READ nor WRITE`);
    if (paddr >= 2 ** this.maxOasz) {
      throw new IommuError(
        "ERANGE",
        `paddr ${hex(paddr)} is beyond the ${this.maxOasz}-bit output address size`,
      );
    }
    const fmt = this.gfmt;
    const err = fmt.protError(prot);
    if (err !== undefined) throw new IommuError(err.code, err.message);
    this.attrLo = fmt.protLo(prot);
    this.attrHi = fmt.protHi(prot);
    const len = pgsize * pgcount;
    if (len === 0) throw new IommuError("EINVAL", "map_pages of 0 bytes");
    const last = iova + len - 1;
    const single = this.systemPage && pgsize === 4096 && pgcount === 1;
    if (single) {
      this.leafLg2 = 12;
      this.leafLevel = 0;
    } else {
      const lg = this.bestPgsizeLg2(iova, last, paddr);
      if (lg === 0)
        throw new IommuError("ENXIO", `no page size maps iova ${hex(iova)} to ${hex(paddr)}`);
      this.leafLg2 = lg;
      this.leafLevel = Math.floor((lg - 12) / ITEM_LG2);
    }
    this.checkMapRangeTop(iova, last);
    this.mapOa = paddr;
    try {
      if (!single || !this.mapSinglePage(iova)) {
        const top = this.liveTop();
        if (this.leafLevel === this.topLevel) this.mapRangeLeaf(top, this.topLevel, iova, last);
        else this.mapRange(top, this.topLevel, iova, last);
      }
    } finally {
      // Table levels were freed and replaced with large items: flush any walk cache that
      // may refer to the freed levels.
      if (this.mapGather.freelist.length > 0) this.syncGather(this.mapGather);
      mapped.bytes += this.mapOa - paddr;
    }
  }

  /** `iommu_iotlb_sync` on a gather of this table (the domain's, or frees at once alone). */
  private syncGather(g: IotlbGather): void {
    const tlb = this.tlb;
    if (tlb?.sync !== undefined) tlb.sync(g);
    else {
      this.putPages(g.freelist);
      iommuIotlbGatherInit(g);
    }
  }

  /** `check_map_range`: ERANGE outside the table, or grows the top until the range fits. */
  private checkMapRangeTop(va: number, last: number): void {
    for (;;) {
      const ok = this.rangeOk(va, last, this.topLevel);
      if (!this.cfg.dynamicTop) {
        if (!ok) throw this.rangeError(va, last);
        return;
      }
      if (ok && this.leafLevel <= this.topLevel) return;
      this.increaseTop(va, last);
    }
  }

  private rangeError(va: number, last: number): IommuError {
    return new IommuError(
      "ERANGE",
      `iova range ${hex(va)}..${hex(last)} is beyond the ${this.maxVasz}-bit input address size${this.cfg.signExtend ? " or not sign-extended" : ""}`,
    );
  }

  /**
   * `increase_top`: adds tables above the top, each linking the old top at index 0, until the
   * range fits; then `change_top` (the DTE's root and mode). ERANGE when the format or the VA
   * size allows no more levels (what it allocated is freed).
   */
  private increaseTop(va: number, last: number): void {
    const fmt = this.gfmt;
    let level = this.topLevel;
    let top = this.liveTop();
    const created: PtTable[] = [];
    const giveBack = (): void => {
      const freed: FreedTablePage[] = [];
      for (const t of created) this.retireTable(t, freed);
      this.putPages(freed);
    };
    while (!(this.rangeOk(va, last, level) && this.leafLevel <= level)) {
      level++;
      if (level > fmt.maxTopLevel || 12 + ITEM_LG2 * level >= this.maxVasz) {
        giveBack();
        throw this.rangeError(va, last);
      }
      const nt = this.allocTable(level, topEntries(fmt, this.cfg, level));
      if (nt === undefined) {
        giveBack();
        throw new IommuError("ENOMEM", `no memory for a level-${level} top table`);
      }
      created.push(nt);
      this.writePte(nt, 0, fmt.tableLo(top.phys, level), fmt.tableHi(top.phys, level));
      this.link(nt, 0, top);
      nt.live = 1;
      top = nt;
    }
    this.top = top;
    this.topLevel = level;
  }

  /** `__map_single_page`: one 4 KiB page into an existing leaf table; false to take the full path. */
  private mapSinglePage(iova: number): boolean {
    const key = Math.floor(iova / this.leafSpan);
    let t = this.cachedLeafTable(key, false);
    if (t === undefined) {
      t = this.liveTop();
      for (let level = this.topLevel; level > 0; level--) {
        const idx = this.index(t, level, iova);
        const v = this.viewFor(t, idx);
        const o = 2 * this.viewOffset(idx);
        if (this.gfmt.entryType(v[o] as number, v[o + 1] as number, level) !== PT_ENTRY.TABLE)
          return false;
        t = this.child(t, idx);
      }
      this.pathTables[0] = t;
      this.wcKey = key;
    }
    const idx = this.index(t, 0, iova);
    const v = this.viewFor(t, idx);
    const o = 2 * this.viewOffset(idx);
    if (this.gfmt.entryType(v[o] as number, v[o + 1] as number, 0) !== PT_ENTRY.EMPTY)
      throw this.inUse(iova);
    this.installLeaf(t, 0, idx, 1);
    return true;
  }

  private inUse(iova: number): IommuError {
    return new IommuError("EADDRINUSE", `iova ${hex(iova)} is already mapped`);
  }

  /** Writes one leaf entry of `step` items at `idx` (the next `mapOa`), and advances `mapOa`. */
  private installLeaf(t: PtTable, level: number, idx: number, step: number): void {
    const fmt = this.gfmt;
    const lg = this.leafLg2;
    const lo = fmt.leafLo(this.mapOa, level, lg, this.attrLo);
    const hi = fmt.leafHi(this.mapOa, level, lg, this.attrHi);
    for (let i = 0; i < step; i++) this.writePte(t, idx + i, lo, hi);
    t.live += step;
    this.countLeaves(lg, 1);
    this.counters.c.leavesMapped++;
    this.mapOa += 2 ** lg;
  }

  /** One past the last index of `t` the range [va, last] touches (`pt_range_to_end_index`). */
  endIndex(t: PtTable, level: number, va: number, last: number): number {
    if (va === last || level === this.topLevel) return this.index(t, level, last) + 1;
    const span = (this.geo.itemSize[level] as number) * t.entries;
    return Math.floor(va / span) === Math.floor(last / span)
      ? this.index(t, level, last) + 1
      : t.entries;
  }

  /** `__map_range`: descends through (or creates) the tables above the leaf level. */
  private mapRange(t: PtTable, level: number, va: number, last: number): void {
    const isz = this.geo.itemSize[level] as number;
    const end = this.endIndex(t, level, va, last);
    let idx = this.index(t, level, va);
    let cur = va;
    for (;;) {
      const v = this.viewFor(t, idx);
      const o = 2 * this.viewOffset(idx);
      const type = this.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
      let child: PtTable;
      if (type === PT_ENTRY.TABLE) child = this.child(t, idx);
      else if (type !== PT_ENTRY.EMPTY) throw this.inUse(cur);
      else child = this.newTable(t, level, idx, cur);
      if (this.leafLevel === level - 1) this.mapRangeLeaf(child, level - 1, cur, last);
      else this.mapRange(child, level - 1, cur, last);
      idx++;
      if (idx >= end) return;
      cur = cur - floorMod(cur, isz) + isz;
    }
  }

  /** `pt_iommu_new_table`: a new lower table linked at `idx` of `t`. */
  private newTable(t: PtTable, level: number, idx: number, va: number): PtTable {
    const nt = this.allocTable(level - 1, 2 ** ITEM_LG2);
    if (nt === undefined)
      throw new IommuError(
        "ENOMEM",
        `no memory for a level-${level - 1} table mapping iova ${hex(va)}`,
      );
    this.writePte(t, idx, this.gfmt.tableLo(nt.phys, level), this.gfmt.tableHi(nt.phys, level));
    this.link(t, idx, nt);
    t.live++;
    return nt;
  }

  /** `__map_range_leaf`: installs the leaves of the range at their level. */
  private mapRangeLeaf(t: PtTable, level: number, va: number, last: number): void {
    const step = 2 ** (this.leafLg2 - (this.itemLg2[level] as number));
    const end = this.endIndex(t, level, va, last);
    let idx = this.index(t, level, va);
    let cur = va;
    do {
      const v = this.viewFor(t, idx);
      const o = 2 * this.viewOffset(idx);
      const type = this.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
      if (type !== PT_ENTRY.EMPTY || step > 1) this.clearContig(t, level, idx, step, cur);
      this.installLeaf(t, level, idx, step);
      idx += step;
      cur += 2 ** this.leafLg2;
    } while (idx < end);
  }

  /**
   * `clear_contig`: where a leaf of `step` items goes, empty tables are unlinked and freed
   * through the map's gather; anything mapped (a leaf, or a table holding one) is EADDRINUSE.
   */
  private clearContig(t: PtTable, level: number, idx: number, step: number, va: number): void {
    const isz = this.geo.itemSize[level] as number;
    for (let i = 0; i < step; i++) {
      const v = this.viewFor(t, idx + i);
      const o = 2 * this.viewOffset(idx + i);
      const type = this.gfmt.entryType(v[o] as number, v[o + 1] as number, level);
      if (type === PT_ENTRY.EMPTY) continue;
      if (type !== PT_ENTRY.TABLE || this.holdsLeaves(this.child(t, idx + i)))
        throw this.inUse(va + i * isz);
      const sub = this.child(t, idx + i);
      this.clearPte(t, idx + i);
      this.link(t, idx + i, undefined);
      t.live--;
      const list: FreedTablePage[] = [];
      this.retireTables(sub, list);
      this.gatherRangePages(this.mapGather, va + i * isz, isz, list, this.mapGather.freelist);
    }
  }

  /** True when a leaf is mapped anywhere under `t` (`__collect_tables` with check_mapped). */
  private holdsLeaves(t: PtTable): boolean {
    if (t.live === 0) return false;
    for (let i = 0; i < t.entries; i++) {
      const type = this.gfmt.entryType(this.lo(t, i), this.hi(t, i), t.level);
      if (type === PT_ENTRY.OA) return true;
      if (type === PT_ENTRY.TABLE && this.holdsLeaves(this.child(t, i))) return true;
    }
    return false;
  }

  /** Retires `t` and every table below it (their pages go to `freed`, entries untouched). */
  retireTables(t: PtTable, freed: FreedTablePage[]): void {
    if (t.children !== undefined)
      for (const ch of t.children) if (ch !== undefined) this.retireTables(ch, freed);
    this.retireTable(t, freed);
  }

  /**
   * `gather_range_pages`: gathers `[iova, iova+len)` for the invalidation (after syncing what
   * the gather held when the table flushes without gaps and the range is disjoint), then hands
   * the freed table pages to `out` (the gather's freelist).
   */
  gatherRangePages(
    gather: IotlbGather | undefined,
    iova: number,
    len: number,
    list: readonly FreedTablePage[],
    out: FreedTablePage[],
  ): void {
    let target = out;
    if (gather !== undefined) {
      if (this.cfg.flushRangeNoGaps && iommuIotlbGatherIsDisjoint(gather, iova, len))
        this.syncGather(gather);
      iommuIotlbGatherAddRange(gather, iova, len);
      // After a sync the gather holds a new freelist.
      target = gather.freelist;
    }
    for (const p of list) target.push(p);
  }

  /**
   * `pt_iommu_<fmt>_unmap_pages`: clears what `[iova, iova + pgsize * pgcount)` covers and
   * returns the bytes unmapped (possibly more than asked, a whole large page).
   */
  unmapPages(
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IotlbGather | undefined,
    freed: FreedTablePage[],
  ): number {
    const len = pgsize * pgcount;
    const last = iova + len - 1;
    if (len === 0 || !this.rangeOk(iova, last, this.topLevel)) return 0;
    this.unmapped = 0;
    const list = this.unmapFree;
    list.length = 0;
    ptUnmapRange(this, iova, last, list);
    this.gatherRangePages(gather, iova, len, list, freed);
    return this.unmapped;
  }
}
