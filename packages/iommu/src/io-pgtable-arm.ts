/**
 * io-pgtable-arm's map and unmap (drivers/iommu/io-pgtable-arm.c) over the `arm-lpae` format
 * (fmt-arm-lpae.ts).
 *
 * Table-freeing policy: as Linux (`__arm_lpae_unmap`), a table is freed only when an unmap at
 * the level above covers its whole span (a block-sized unmap over a table entry), and its page
 * goes to the unmap's gather freelist (or back to the allocator at once without a gather). A
 * table that empties through smaller unmaps stays linked and is reused by the next mapping in
 * its span, so a steady stream of DMA mappings allocates no table pages; a failed map keeps
 * the tables it created, as Linux's `iommu_map` unwind does. `freeEmptyTables: true` selects
 * dmasim's stricter policy instead: a table is freed as soon as its last entry is cleared (and
 * a failed map prunes what it created), so the table footprint always equals what live
 * mappings need. The root table lives until `destroy()`.
 *
 * Overmap: EEXIST, with nothing written (all target entries are checked first). Partial
 * large-page unmap: refused, as in current Linux (`__arm_lpae_unmap` after "Remove split on
 * unmap behavior"): unmapping part of a block returns 0 and leaves the block mapped.
 */
import { type PhysMemory, TWO_POW_32, fastMod, hex } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";
import { type ArmLpaeFormat, PTE_LO, isLeaf, isTableEntry } from "./fmt-arm-lpae.ts";
import { type FreedTablePage, type IotlbGather, iommuIotlbGatherQueued } from "./iotlb-gather.ts";
import type { IommuProt } from "./prot.ts";
import {
  type MappedBytes,
  NO_KEY,
  PtCore,
  type PtGeometry,
  type PtOps,
  type PtTable,
} from "./pt-core.ts";
import { formatPte } from "./pt-types.ts";

/**
 * Linux `struct arm_lpae_io_pgtable`: the common core (as it embeds `struct io_pgtable`) with
 * io-pgtable-arm's map and unmap.
 */
export class ArmLpaeIoPgtable extends PtCore implements PtOps {
  /** The PTE format. */
  readonly arm: ArmLpaeFormat;
  /** The table-freeing policy (see the file comment). */
  readonly freeEmptyTables: boolean;
  readonly ias: number;
  readonly oas: number;
  private readonly ivaLimit: number;
  private readonly paLimit: number;

  constructor(
    mem: PhysMemory,
    fmt: ArmLpaeFormat,
    geo: PtGeometry,
    ias: number,
    oas: number,
    freeEmpty: boolean,
  ) {
    super(mem, fmt, geo);
    this.arm = fmt;
    this.ias = ias;
    this.oas = oas;
    this.ivaLimit = 2 ** ias;
    this.paLimit = 2 ** oas;
    this.freeEmptyTables = freeEmpty;
  }

  inRange(iova: number): boolean {
    return iova >= 0 && iova < this.ivaLimit;
  }

  checkMapRange(iova: number, paddr: number, size: number): void {
    if (iova + size > this.ivaLimit) {
      throw new IommuError(
        "ERANGE",
        `iova range ${hex(iova)}+${hex(size)} is beyond the ${this.ias}-bit input address size`,
      );
    }
    if (paddr + size > this.paLimit) {
      throw new IommuError(
        "ERANGE",
        `physical range ${hex(paddr)}+${hex(size)} is beyond the ${this.oas}-bit output address size`,
      );
    }
  }

  /**
   * The one-entry walk cache shared by map and unmap: true when a granule-sized operation
   * falls in the leaf table the last walk ended in (`pathTables[0]` is still that table);
   * otherwise the cache is dropped and the walk starts at the root.
   */
  private walkCacheHit(pgsize: number, key: number): boolean {
    if (pgsize === this.arm.granule && this.cachedLeafTable(key, false) !== undefined) return true;
    this.wcKey = NO_KEY;
    return false;
  }

  /**
   * Where map and unmap start their walk for `pgsize` at leaf key `key`: level 0 on a walk
   * cache hit (`pathTables[0]` is the leaf table), else the top level with `pathTables[top]`
   * set to the live top table. Returns the level; its table is `pathTables[level]`.
   */
  private walkStart(pgsize: number, key: number): number {
    if (this.walkCacheHit(pgsize, key)) return 0;
    this.pathTables[this.topLevel] = this.liveTop();
    return this.topLevel;
  }

  /**
   * `arm_lpae_map_pages` + `__arm_lpae_map`: walks to the level of `pgsize`, creating tables,
   * and installs up to `count` leaves without crossing the end of the table, adding the bytes
   * to `mapped`. All target entries are checked before any is written (EEXIST maps nothing).
   */
  mapPages(
    iova: number,
    paddr: number,
    pgsize: number,
    count: number,
    prot: IommuProt,
    mapped: MappedBytes,
  ): void {
    const fmt = this.arm;
    const pLo = fmt.protLo[prot] as number;
    const pHi = fmt.protHi[prot] as number;
    const pt = this.pathTables;
    const pi = this.pathIdx;
    const itemSize = this.geo.itemSize;
    const key = Math.floor(iova / this.leafSpan);
    const l0 = this.walkStart(pgsize, key);
    let t = pt[l0] as PtTable;
    for (let level = l0; ; level--) {
      const size = itemSize[level] as number;
      const idx = fastMod(Math.floor(iova / size), t.entries);
      pt[level] = t;
      pi[level] = idx;
      if (size === pgsize) {
        if (level === 0) this.wcKey = key;
        const n = Math.min(count, t.entries - idx);
        let emptyTables = 0;
        for (let i = 0; i < n; i++) {
          const v = this.viewFor(t, idx + i);
          const o = 2 * this.viewOffset(idx + i);
          const lo = v[o] as number;
          if (lo === 0) continue;
          if (isTableEntry(lo, level) && !this.hasLeaves(this.child(t, idx + i))) {
            emptyTables++;
            continue;
          }
          throw new IommuError(
            "EEXIST",
            `iova ${hex(iova + i * size)} is already mapped (level ${fmt.levelNumber(level)} entry ${formatPte(v[o + 1] as number, lo)})`,
          );
        }
        if (emptyTables > 0) this.replaceEmptyTables(t, idx, n, iova, size);
        // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
        const typeLo = level === 0 ? (pLo | PTE_LO.TYPE) >>> 0 : pLo;
        if (fmt.granule === 65536) {
          for (let i = 0; i < n; i++) {
            const a = paddr + i * size;
            this.writePte(t, idx + i, fmt.pteLo(a, typeLo), fmt.pteHi(a, pHi));
          }
        } else {
          // The address bits sit in place: the halves are the address halves plus the bits.
          for (let i = 0; i < n; i++) {
            const a = paddr + i * size;
            const v = this.viewFor(t, idx + i);
            const o = 2 * this.viewOffset(idx + i);
            /* eslint-disable no-bitwise -- composing 32-bit PTE halves */
            v[o] = (fastMod(a, TWO_POW_32) | typeLo) >>> 0;
            v[o + 1] = (Math.floor(a / TWO_POW_32) | pHi) >>> 0;
            /* eslint-enable no-bitwise */
          }
          this.counters.c.pteWrites += n;
        }
        t.live += n;
        this.countLeaves(this.itemLg2[level] as number, n);
        this.counters.c.leavesMapped += n;
        mapped.bytes += n * size;
        return;
      }
      const lo = this.lo(t, idx);
      if (lo === 0) {
        const nt = this.allocTable(level - 1, this.geo.itemEntries);
        if (nt === undefined) {
          throw new IommuError(
            "ENOMEM",
            `no memory for a level-${fmt.levelNumber(level - 1)} table mapping iova ${hex(iova)}`,
          );
        }
        this.writePte(
          t,
          idx,
          fmt.pteLo(nt.phys, PTE_LO.VALID + PTE_LO.TYPE),
          fmt.pteHi(nt.phys, 0),
        );
        this.link(t, idx, nt);
        t.live++;
        t = nt;
        continue;
      }
      if (!isTableEntry(lo, level)) {
        throw new IommuError(
          "EEXIST",
          `iova ${hex(iova)} lies in a ${hex(size)} block already mapped at level ${fmt.levelNumber(level)}`,
        );
      }
      t = this.child(t, idx);
    }
  }

  /**
   * `arm_lpae_unmap_pages` + `__arm_lpae_unmap`: clears up to `count` entries of size `pgsize`
   * from `iova` within one table; returns the bytes unmapped (0 at a hole or inside a larger
   * block). A table found where a leaf of `pgsize` is expected is torn down whole (Linux frees
   * the table and flushes the walk).
   */
  unmapPages(
    iova: number,
    pgsize: number,
    count: number,
    gather: IotlbGather | undefined,
    freed: FreedTablePage[],
  ): number {
    const pt = this.pathTables;
    const pi = this.pathIdx;
    const itemSize = this.geo.itemSize;
    const c = this.counters.c;
    const key = Math.floor(iova / this.leafSpan);
    const l0 = this.walkStart(pgsize, key);
    let t = pt[l0] as PtTable;
    for (let level = l0; ; level--) {
      const size = itemSize[level] as number;
      const idx = fastMod(Math.floor(iova / size), t.entries);
      pt[level] = t;
      pi[level] = idx;
      const lo0 = this.lo(t, idx);
      c.pteReads++;
      if (lo0 === 0) {
        if (level === 0) this.wcKey = key;
        return 0;
      }
      if (size === pgsize) {
        if (level === 0) this.wcKey = key;
        const n = Math.min(count, t.entries - idx);
        const queued = iommuIotlbGatherQueued(gather);
        const tlb = this.tlb;
        let i = 0;
        for (; i < n; i++) {
          const lo = this.lo(t, idx + i);
          if (lo === 0) break;
          if (isTableEntry(lo, level)) {
            // A table where a block-sized leaf is expected: tear the whole table down.
            const sub = this.child(t, idx + i);
            this.clearPte(t, idx + i);
            this.link(t, idx + i, undefined);
            tlb?.flushWalk(iova + i * size, size);
            this.freeSubtree(sub, freed);
          } else {
            this.clearPte(t, idx + i);
            this.countLeaves(this.itemLg2[level] as number, -1);
            c.leavesUnmapped++;
            if (!queued && gather !== undefined) tlb?.addPage(gather, iova + i * size, size);
          }
        }
        t.live -= i;
        if (t.live === 0 && level < this.topLevel && this.freeEmptyTables)
          this.freeEmptyPath(level, freed);
        return i * size;
      }
      if (isLeaf(lo0, level)) {
        // Current Linux refuses to split a block: "Unmap of a partial large IOPTE is not allowed".
        c.partialBlockUnmaps++;
        return 0;
      }
      t = this.child(t, idx);
    }
  }

  /** After a failed map: the eager policy frees the empty tables on the path to `iova`. */
  afterFailedMap(iova: number): void {
    if (this.freeEmptyTables) this.pruneEmpty(iova);
  }

  /** True when a leaf is mapped anywhere under table `t`. */
  private hasLeaves(t: PtTable): boolean {
    if (t.live === 0) return false;
    if (t.level === 0) return true;
    for (let i = 0; i < t.entries; i++) {
      const lo = this.lo(t, i);
      if (lo === 0) continue;
      if (!isTableEntry(lo, t.level)) return true;
      if (this.hasLeaves(this.child(t, i))) return true;
    }
    return false;
  }

  /**
   * Before a block goes where an empty table is linked (entries `idx..idx+n` of `t`): unlinks and
   * frees each such table at once, after a walk flush, as `arm_lpae_init_pte` does (it unmaps
   * the old table with no gather). Tables holding leaves never get here (EEXIST instead: Linux
   * would drop their live leaves silently; dmasim refuses to).
   */
  private replaceEmptyTables(t: PtTable, idx: number, n: number, iova: number, size: number): void {
    const freed: FreedTablePage[] = [];
    for (let i = 0; i < n; i++) {
      const sub = t.children?.[idx + i];
      if (sub === undefined) continue;
      this.clearPte(t, idx + i);
      this.link(t, idx + i, undefined);
      t.live--;
      this.tlb?.flushWalk(iova + i * size, size);
      this.freeSubtree(sub, freed);
    }
    this.putPages(freed);
    // The scratch path may run through a freed table; the caller's walk is above it.
  }

  /** After the table at `level` of the scratch path became empty, frees it and any emptied parents. */
  private freeEmptyPath(level: number, freed: FreedTablePage[]): void {
    for (let l = level; l < this.topLevel; l++) {
      const t = this.pathTables[l] as PtTable;
      if (t.live !== 0) return;
      const parent = this.pathTables[l + 1] as PtTable;
      const pidx = this.pathIdx[l + 1] as number;
      this.clearPte(parent, pidx);
      this.link(parent, pidx, undefined);
      parent.live--;
      this.retireTable(t, freed);
    }
  }

  /** Frees the empty tables on the path to `iova` (after a failed map step). */
  private pruneEmpty(iova: number): void {
    this.wcKey = NO_KEY;
    if (iova >= this.ivaLimit) return;
    let t = this.liveTop();
    let level = this.topLevel;
    for (; level > 0; level--) {
      const idx = fastMod(Math.floor(iova / (this.geo.itemSize[level] as number)), t.entries);
      this.pathTables[level] = t;
      this.pathIdx[level] = idx;
      const lo = this.lo(t, idx);
      if (lo === 0 || !isTableEntry(lo, level)) break;
      t = this.child(t, idx);
    }
    this.pathTables[level] = t;
    if (level < this.topLevel && t.live === 0) {
      const freed: FreedTablePage[] = [];
      this.freeEmptyPath(level, freed);
      this.putPages(freed);
    }
  }
}
