/**
 * The format-independent core of the I/O page table: tables as blocks of simulated physical
 * memory holding 8-byte little-endian PTEs, the CPU-side pointers Linux keeps to them, the
 * hardware walker that reads those bytes (`lookupLeaf`), the trace walk and dump, table
 * freeing, and the walk caches. The map and unmap algorithms live with the Linux code they
 * model (io-pgtable-arm.ts, generic-pt.ts); the PTE layouts with their formats.
 *
 * Levels are generic_pt's: level 0 holds leaves only, the top table has the highest level.
 */
import { CounterSet, InternalError, type PhysMemory, fastMod, hex, leU32View } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";
import type { FreedTablePage, IotlbGather } from "./iotlb-gather.ts";
import type { IommuProt } from "./prot.ts";
import { PT_ENTRY, type PtFormat } from "./pt-format.ts";
import {
  IO_PGTABLE_COUNTERS,
  type IoPgtableCounter,
  type IoPgtableTlbOps,
  type LeafLookup,
} from "./pt-types.ts";

/** One table: a block of simulated memory and the model's bookkeeping for it. */
export interface PtTable {
  /** First CPU page frame of the block. */
  readonly pfn: number;
  /** Physical address of the table. */
  readonly phys: number;
  /** generic_pt level (0 = leaf level). */
  readonly level: number;
  /** Entries the table holds. */
  readonly entries: number;
  /** 32-bit views of the table's bytes, one per CPU page the table spans. */
  readonly views: Uint32Array[];
  /** Items that are not zero. */
  live: number;
  /**
   * The tables its table entries point at, by index (levels above 0 only). This is the CPU
   * side's virtual pointer (Linux `pt_table_ptr` / `iopte_deref` through the direct map);
   * device walks follow the physical address in the PTE instead.
   */
  readonly children: (PtTable | undefined)[] | undefined;
}

/** The shape of a table tree. */
export interface PtGeometry {
  /** Bytes of one table (the granule for io-pgtable-arm, 4 KiB for the generic_pt formats). */
  readonly tableBytes: number;
  /** Bytes one entry translates, per level, up to the highest level the table can grow to. */
  readonly itemSize: readonly number[];
  /** Entries of every table but the top one. */
  readonly itemEntries: number;
  /** Level of the top table at creation. */
  readonly topLevel: number;
  /** Entries of the top table at creation. */
  readonly topEntries: number;
}

/** Bytes a `map_pages` call mapped (Linux's `size_t *mapped`: added to, never zeroed). */
export interface MappedBytes {
  bytes: number;
}

/**
 * A table's map and unmap: the Linux code of its format (io-pgtable-arm's `io_pgtable_ops`,
 * generic_pt's `pt_iommu` ops). iommu.c's page-size loop (iommu-core.ts) calls them one page
 * size at a time.
 */
export interface PtOps {
  /** Whether `iova` lies in the table's input range (unmap and lookups outside it find nothing). */
  inRange(iova: number): boolean;
  /** Throws ERANGE when a map of `size` bytes at `iova` to `paddr` cannot be held. */
  checkMapRange(iova: number, paddr: number, size: number): void;
  /** Linux `map_pages(iova, paddr, pgsize, pgcount, prot, gfp, &mapped)`: throws on failure. */
  mapPages(
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: IommuProt,
    mapped: MappedBytes,
  ): void;
  /** Linux `unmap_pages(iova, pgsize, pgcount, gather)`: the bytes unmapped. */
  unmapPages(
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IotlbGather | undefined,
    freed: FreedTablePage[],
  ): number;
  /** Clean-up after a map failed at `iova` (dmasim's eager table freeing). */
  afterFailedMap(iova: number): void;
}

/**
 * The walk caches' "no key": below every floor(iova / leafSpan), a sign-extended upper half's
 * negative IOVAs included.
 */
export const NO_KEY = Number.MIN_SAFE_INTEGER;

/** Floor modulo, also for the negative IOVAs of a sign-extended upper half. */
export function floorMod(x: number, n: number): number {
  const r = x % n;
  return r < 0 ? r + n : r;
}

/** The common page-table machinery. Its members are the package's, not the public API. */
export class PtCore {
  readonly mem: PhysMemory;
  readonly fmt: PtFormat;
  readonly geo: PtGeometry;
  readonly counters = new CounterSet<IoPgtableCounter>("pagetable", [...IO_PGTABLE_COUNTERS]);
  /** IOTLB callbacks (set by the owning domain). */
  tlb: IoPgtableTlbOps | undefined = undefined;
  readonly cpuPage: number;
  /** Page-allocator order of one table. */
  readonly tableOrder: number;
  /** Entries per 32-bit view (per CPU page), i.e. min(table bytes, cpu page) / 8. */
  readonly entriesPerView: number;
  /** Level of the top table (grows with generic_pt's `increase_top`). */
  topLevel: number;
  top: PtTable | undefined;
  readonly tables = new Map<number, PtTable>();
  /** Live leaves by log2 of their size (a contiguous entry counts once). */
  readonly leafLive: number[] = Array.from({ length: 64 }, () => 0);
  pendingFree = 0;
  /** The item size of each level (`geo.itemSize`, held here for the walks). */
  readonly itemSize: readonly number[];
  /** Log2 of the item size of each level. */
  readonly itemLg2: number[];
  /** IOVA span of one leaf table (the item size of level 1). */
  readonly leafSpan: number;
  // Scratch path of the CPU-side walks, by level (no allocation per operation).
  readonly pathTables: PtTable[];
  readonly pathIdx: number[];
  /**
   * Walk cache of the CPU side: while `wcKey` equals floor(iova / leafSpan), `pathTables` and
   * `pathIdx` above level 0 hold the path to that IOVA's leaf table. NO_KEY when invalid.
   */
  wcKey = NO_KEY;
  /**
   * Walk cache of the device side: while `dwKey` equals floor(iova / leafSpan), `dwTable` is
   * the leaf table the path of that IOVA reaches. Tables are only ever unlinked by
   * `retireTable`, which drops it, so the path above it cannot have changed (a new top above
   * it, as `increase_top` adds, leaves the path below unchanged).
   */
  private dwKey = NO_KEY;
  private dwTable: PtTable | undefined = undefined;

  constructor(mem: PhysMemory, fmt: PtFormat, geo: PtGeometry) {
    this.mem = mem;
    this.fmt = fmt;
    this.geo = geo;
    this.cpuPage = mem.pageSize;
    this.tableOrder = geo.tableBytes > this.cpuPage ? Math.log2(geo.tableBytes / this.cpuPage) : 0;
    this.entriesPerView = Math.min(geo.tableBytes, this.cpuPage) / 8;
    this.topLevel = geo.topLevel;
    this.leafSpan = geo.itemSize[1] ?? Infinity;
    this.itemSize = geo.itemSize;
    this.itemLg2 = geo.itemSize.map((s) => Math.log2(s));
    const top = this.allocTable(geo.topLevel, geo.topEntries);
    if (top === undefined) throw new IommuError("ENOMEM", "no memory for the root page table");
    this.top = top;
    // Packed arrays, one slot per level the table can reach.
    this.pathTables = Array.from({ length: geo.itemSize.length }, () => top);
    this.pathIdx = Array.from({ length: geo.itemSize.length }, () => 0);
  }

  liveTop(): PtTable {
    const r = this.top;
    if (r === undefined) throw new IommuError("EINVAL", "the page table was destroyed");
    return r;
  }

  /** Index of `iova` in table `t` (of level `level`). */
  index(t: PtTable, level: number, iova: number): number {
    const q = Math.floor(iova / (this.itemSize[level] as number));
    return iova >= 0 ? fastMod(q, t.entries) : floorMod(q, t.entries);
  }

  /**
   * Entry `idx`'s place in its view (`idx % entriesPerView`). Avoids the `%` operator: on a
   * value V8 holds as a double it becomes a call to the C library's fmod.
   */
  viewOffset(idx: number): number {
    const epv = this.entriesPerView;
    return idx < epv ? idx : fastMod(idx, epv);
  }

  viewFor(t: PtTable, idx: number): Uint32Array {
    const views = t.views;
    return (
      views.length === 1 ? views[0] : views[Math.floor(idx / this.entriesPerView)]
    ) as Uint32Array;
  }

  /** The low half of entry `idx`. */
  lo(t: PtTable, idx: number): number {
    return this.viewFor(t, idx)[2 * this.viewOffset(idx)] as number;
  }

  /** The high half of entry `idx`. */
  hi(t: PtTable, idx: number): number {
    return this.viewFor(t, idx)[2 * this.viewOffset(idx) + 1] as number;
  }

  /** Writes entry `idx` (two 32-bit halves). */
  writePte(t: PtTable, idx: number, lo: number, hi: number): void {
    const v = this.viewFor(t, idx);
    const o = 2 * this.viewOffset(idx);
    v[o] = lo;
    v[o + 1] = hi;
    this.counters.c.pteWrites++;
  }

  clearPte(t: PtTable, idx: number): void {
    const v = this.viewFor(t, idx);
    const o = 2 * this.viewOffset(idx);
    v[o] = 0;
    v[o + 1] = 0;
    this.counters.c.pteWrites++;
  }

  tableAt(addr: number): PtTable {
    const t = this.tables.get(addr / this.cpuPage);
    if (t === undefined)
      throw new InternalError(`page-table entry points at ${hex(addr)}, which is not a live table`);
    return t;
  }

  /**
   * The table at `addr`, which entry `idx` of `t` holds: the same table `tableAt` finds (a
   * linked child is always a live table), taken from the CPU-side pointer when that child sits
   * at `addr`, so a device walk skips the table map; any other address goes to `tableAt`.
   */
  nextTable(t: PtTable, idx: number, addr: number): PtTable {
    const ch = t.children?.[idx];
    return ch !== undefined && ch.phys === addr ? ch : this.tableAt(addr);
  }

  /** The table a table entry of `t` points at (CPU-side pointer). */
  child(t: PtTable, idx: number): PtTable {
    const c = t.children?.[idx];
    if (c === undefined)
      throw new InternalError(`table ${hex(t.phys)} entry ${idx} has no child table`);
    return c;
  }

  /** Links `child` as entry `idx` of `t` (the PTE is written by the caller). */
  link(t: PtTable, idx: number, child: PtTable | undefined): void {
    (t.children as (PtTable | undefined)[])[idx] = child;
  }

  allocTable(level: number, entries: number): PtTable | undefined {
    const pfn = this.mem.tryAllocPages(this.tableOrder);
    if (pfn < 0) return undefined;
    const pages = 2 ** this.tableOrder;
    const views: Uint32Array[] = [];
    const words = Math.min(this.geo.tableBytes, this.cpuPage) / 4;
    for (let i = 0; i < pages; i++) {
      const bytes = this.mem.pageBytes(pfn + i);
      bytes.fill(0);
      // The table's entries as little-endian 32-bit halves (bvec's le.ts owns the layout).
      views.push(leU32View(bytes, words));
    }
    const children =
      level > 0 ? new Array<PtTable | undefined>(entries).fill(undefined) : undefined;
    const t: PtTable = { pfn, phys: pfn * this.cpuPage, level, entries, views, live: 0, children };
    this.tables.set(pfn, t);
    this.counters.c.tablePagesAllocated++;
    return t;
  }

  /** Unlinks a table from the tree and records its page as freed (not yet returned). */
  retireTable(t: PtTable, freed: FreedTablePage[]): void {
    this.dropWalkCaches();
    this.tables.delete(t.pfn);
    freed.push({ pfn: t.pfn, order: this.tableOrder });
    this.pendingFree++;
  }

  /** Returns page-table pages (from a gather freelist or the flush queue) to the allocator. */
  putPages(list: readonly FreedTablePage[]): void {
    for (const p of list) {
      this.mem.freePages(p.pfn, p.order);
      this.counters.c.tablePagesFreed++;
      this.pendingFree--;
    }
  }

  /** Records `n` leaves of 2^`lg` bytes mapped (negative: unmapped). */
  countLeaves(lg: number, n: number): void {
    this.leafLive[lg] = (this.leafLive[lg] as number) + n;
  }

  // -------------------------------------------------------------------------------------
  // the walk caches

  /**
   * The walk caches, behind one function: the leaf table a walk of `key` (floor(iova /
   * leafSpan)) ends in, when the CPU side's (`device` false) or the IOMMU's (`device` true)
   * one-entry cache holds it; undefined otherwise.
   */
  cachedLeafTable(key: number, device: boolean): PtTable | undefined {
    if (device) return key === this.dwKey ? this.dwTable : undefined;
    return key === this.wcKey ? this.pathTables[0] : undefined;
  }

  /** Drops both walk caches (a table was unlinked). */
  dropWalkCaches(): void {
    this.wcKey = NO_KEY;
    this.dwKey = NO_KEY;
    this.dwTable = undefined;
  }

  // -------------------------------------------------------------------------------------
  // the IOMMU's walker, the trace walk, the dump

  /**
   * The IOMMU's table walk for `iova`, reading PTEs from memory without allocating: fills `out`
   * and returns true when a leaf maps it. Counts one walk. `device` (the default) is the
   * IOMMU's own walker, with its walk cache and its `walkCacheHits`/`walkMemReads` counts;
   * false is a software walk by the CPU (`iova_to_phys`), which neither uses nor disturbs that
   * cache. The caller has checked that `iova` is within the table's range.
   */
  lookupLeaf(iova: number, out: LeafLookup, device: boolean): boolean {
    const c = this.counters.c;
    c.walks++;
    const fmt = this.fmt;
    const top = this.topLevel;
    const key = Math.floor(iova / this.leafSpan);
    let t: PtTable;
    let level = top;
    const cached = device ? this.cachedLeafTable(key, true) : undefined;
    if (cached !== undefined) {
      // The levels above the leaf table are the ones the last walk read (no table has been
      // retired since): the same entries, counted as read again.
      t = cached;
      level = 0;
      c.pteReads += top;
      c.walkCacheHits += top;
    } else t = this.liveTop();
    for (; ; level--) {
      const idx = this.index(t, level, iova);
      const v = this.viewFor(t, idx);
      const o = 2 * fastMod(idx, this.entriesPerView);
      const lo = v[o] as number;
      const hi = v[o + 1] as number;
      c.pteReads++;
      if (device) c.walkMemReads++;
      const type = device ? fmt.deviceEntryType(lo, hi, level) : fmt.entryType(lo, hi, level);
      if (type === PT_ENTRY.EMPTY) return false;
      if (type === PT_ENTRY.OA) {
        const size = (this.geo.itemSize[level] as number) * 2 ** fmt.leafContigLg2(lo, hi, level);
        out.pageSize = size;
        out.pageIova = iova - floorMod(iova, size);
        out.pagePhys = fmt.leafOa(lo, hi, level);
        out.prot = fmt.leafProt(lo, hi);
        return true;
      }
      t = this.nextTable(t, idx, fmt.tableAddr(lo, hi));
      if (level === 1 && device) {
        this.dwKey = key;
        this.dwTable = t;
      }
    }
  }

  /** Frees a table and everything below it (leaves are dropped, tables retired). */
  freeSubtree(t: PtTable, freed: FreedTablePage[]): void {
    const level = t.level;
    const fmt = this.fmt;
    for (let i = 0; t.live > 0 && i < t.entries; i++) {
      const v = this.viewFor(t, i);
      const o = 2 * this.viewOffset(i);
      const lo = v[o] as number;
      const hi = v[o + 1] as number;
      if (lo === 0 && hi === 0) continue;
      const type = fmt.entryType(lo, hi, level);
      if (type === PT_ENTRY.TABLE) {
        this.freeSubtree(this.child(t, i), freed);
        this.link(t, i, undefined);
      } else if (type === PT_ENTRY.OA) {
        // A contiguous entry counts once, at its first item.
        const contig = fmt.leafContigLg2(lo, hi, level);
        if (fastMod(i, 2 ** contig) === 0) {
          this.countLeaves((this.itemLg2[level] as number) + contig, -1);
          this.counters.c.leavesUnmapped++;
        }
      }
      this.clearPte(t, i);
      t.live--;
    }
    this.retireTable(t, freed);
  }

  /** Linux `free_io_pgtable_ops` / `pt_iommu_deinit`: frees every table, the top included. */
  destroy(): void {
    const top = this.top;
    if (top === undefined) return;
    const freed: FreedTablePage[] = [];
    this.freeSubtree(top, freed);
    this.putPages(freed);
    this.top = undefined;
  }
}
