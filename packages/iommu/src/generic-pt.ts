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
import { IommuError, type IommuErrorCode } from "./errors.ts";
import {
  type FreedTablePage,
  type IotlbGather,
  IotlbGather as Gather,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
} from "./iotlb-gather.ts";
import { IOMMU_PROT, IOMMU_PROT_ALL, type IommuProt } from "./prot.ts";
import { type MappedBytes, PtCore, type PtOps, type PtTable } from "./pt-core.ts";
import type { GenericPtFormat } from "./pt-format.ts";
import { mapRange, mapRangeLeaf, mapSinglePage } from "./generic-pt-map.ts";
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
  /** 2^max_oasz: output addresses are below it. */
  private readonly paLimit: number;
  /** The current top range's end (exclusive; its lower half with sign extension). */
  private topEnd: number;
  /** The attribute bits `pt_iommu_set_prot` gives each prot value 0..63. */
  private readonly protLoOf: number[] = [];
  private readonly protHiOf: number[] = [];
  private readonly protErrOf: ({ code: IommuErrorCode; message: string } | undefined)[] = [];
  /** The next output address of the running `map_pages` (`map->oa`). */
  mapOa = 0;
  attrLo = 0;
  attrHi = 0;
  leafLg2 = 0;
  /** 2^leafLg2. */
  leafSize = 0;
  leafLevel = 0;
  /** `map_pages`'s own gather: tables replaced by leaves, synced before it returns. */
  readonly mapGather = new Gather();
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
    this.paLimit = 2 ** this.maxOasz;
    for (let p = 0; p <= IOMMU_PROT_ALL; p++) {
      this.protLoOf.push(fmt.protLo(p));
      this.protHiOf.push(fmt.protHi(p));
      this.protErrOf.push(fmt.protError(p));
    }
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
    this.topEnd = this.rangeEnd(cfg.topLevel);
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

  /** The end (exclusive) of the range a top at `level` covers (its lower half when sign-extended). */
  private rangeEnd(level: number): number {
    return 2 ** (this.cfg.signExtend ? this.maxVasz - 1 : this.topVasz(level));
  }

  /** Linux `pt_check_range` with the top at `level`: both ends in the range, one half. */
  private rangeOk(va: number, last: number, level: number): boolean {
    const end = level === this.topLevel ? this.topEnd : this.rangeEnd(level);
    if (this.cfg.signExtend) return va >= 0 ? last < end : va >= -end && last < 0;
    return va >= 0 && last < end;
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
    if (paddr >= this.paLimit) {
      throw new IommuError(
        "ERANGE",
        `paddr ${hex(paddr)} is beyond the ${this.maxOasz}-bit output address size`,
      );
    }
    const err = this.protErrOf[prot];
    if (err !== undefined) throw new IommuError(err.code, err.message);
    this.attrLo = this.protLoOf[prot] as number;
    this.attrHi = this.protHiOf[prot] as number;
    const len = pgsize * pgcount;
    if (len === 0) throw new IommuError("EINVAL", "map_pages of 0 bytes");
    const last = iova + len - 1;
    const single = this.systemPage && pgsize === 4096 && pgcount === 1;
    if (single) {
      this.leafLg2 = 12;
      this.leafSize = 4096;
      this.leafLevel = 0;
    } else {
      const lg = this.bestPgsizeLg2(iova, last, paddr);
      if (lg === 0)
        throw new IommuError("ENXIO", `no page size maps iova ${hex(iova)} to ${hex(paddr)}`);
      this.leafLg2 = lg;
      this.leafSize = 2 ** lg;
      this.leafLevel = Math.floor((lg - 12) / ITEM_LG2);
    }
    this.checkMapRangeTop(iova, last);
    this.mapOa = paddr;
    try {
      if (!single || !mapSinglePage(this, iova)) {
        const top = this.liveTop();
        if (this.leafLevel === this.topLevel) mapRangeLeaf(this, top, this.topLevel, iova, last);
        else mapRange(this, top, this.topLevel, iova, last);
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
    // The common case: within the lower range the top already spans.
    if (va >= 0 && last < this.topEnd && this.leafLevel <= this.topLevel) return;
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
    this.topEnd = this.rangeEnd(level);
  }

  /** One past the last index of `t` the range [va, last] touches (`pt_range_to_end_index`). */
  endIndex(t: PtTable, level: number, va: number, last: number): number {
    if (va === last || level === this.topLevel) return this.index(t, level, last) + 1;
    const span = (this.geo.itemSize[level] as number) * t.entries;
    return Math.floor(va / span) === Math.floor(last / span)
      ? this.index(t, level, last) + 1
      : t.entries;
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
    if (list.length > 0) list.length = 0;
    ptUnmapRange(this, iova, last, list);
    if (gather !== undefined || list.length > 0)
      this.gatherRangePages(gather, iova, len, list, freed);
    return this.unmapped;
  }
}
