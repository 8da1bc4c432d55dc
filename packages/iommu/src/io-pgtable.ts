/**
 * An ARM LPAE-like multi-level I/O page table (drivers/iommu/io-pgtable-arm.c), with its tables
 * in simulated physical memory.
 *
 * Formats: granule 4 KiB (page sizes 4K | 2M | 1G), 16 KiB (16K | 32M) or 64 KiB (64K | 512M);
 * input address size 32..48 bits (52 with the 64 KiB granule) deciding the number of levels.
 * Every table is a granule-sized block of 8-byte entries (granule / 8 of them; the root may use
 * fewer) allocated from the `PhysMemory` page allocator. Levels are numbered as ARM does: the
 * leaf level is 3, the root is `4 - levels`.
 *
 * PTE layout (64-bit, little-endian, stored as two 32-bit halves; LPAE-inspired):
 *
 * | bits  | meaning |
 * |-------|---------|
 * | 0     | VALID |
 * | 1     | TYPE: 1 = table (levels < 3) or page (level 3); 0 = block |
 * | 4:2   | ATTRINDX: 0 normal non-cacheable, 1 normal write-back (IOMMU_CACHE), 2 device (IOMMU_MMIO) |
 * | 6     | AP[1] UNPRIV: set unless IOMMU_PRIV (privileged-only mappings clear it) |
 * | 7     | AP[2] RDONLY: set unless IOMMU_WRITE |
 * | 9:8   | SH: 3 (inner shareable) for cacheable mappings |
 * | 10    | AF: access flag, always set on leaves |
 * | 15:12 | with the 64 KiB granule: output address bits 51:48 (as ARM's 52-bit PA format) |
 * | 47:g  | output address (g = log2(granule)) |
 * | 54    | XN: IOMMU_NOEXEC |
 * | 55    | SW_NOREAD (software bit): set unless IOMMU_READ |
 *
 * A table descriptor is VALID | TYPE plus the next table's physical address.
 *
 * Table-freeing policy: as Linux (io-pgtable-arm `__arm_lpae_unmap`, and VT-d's
 * `dma_pte_clear_level` alike), a table is freed only when an unmap at the level above covers
 * its whole span (a block-sized unmap over a table entry), and its page goes to the unmap's
 * gather freelist (or back to the allocator at once without a gather). A table that empties
 * through smaller unmaps stays linked and is reused by the next mapping in its span, so a
 * steady stream of DMA mappings allocates no table pages; a failed map keeps the tables it
 * created, as Linux's `iommu_map` unwind does. `freeEmptyTables: true` selects dmasim's
 * stricter policy instead: a table is freed as soon as its last entry is cleared (and a failed
 * map prunes what it created), so the table footprint always equals what live mappings need.
 * The root table lives until `destroy()`.
 *
 * Partial large-page unmap: refused, as in current Linux (`__arm_lpae_unmap` after "Remove split
 * on unmap behavior"): unmapping part of a block returns 0 and leaves the block mapped.
 */
import {
  CounterSet,
  InternalError,
  type PhysMemory,
  TWO_POW_32,
  fastMod,
  hex,
  ilog2,
  leU32View,
} from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { type FreedTablePage, type IotlbGather, iommuIotlbGatherQueued } from "./iotlb-gather.ts";
import { pgsizeInto, type PgsizeChoice } from "./pgsize.ts";
import { IOMMU_PROT, IOMMU_PROT_ALL, type IommuProt } from "./prot.ts";

/** Low-half PTE bits (genuine 32-bit quantities). */
export const PTE_LO = {
  VALID: 0x1,
  TYPE: 0x2,
  ATTR_NC: 0x0,
  ATTR_WB: 0x4,
  ATTR_DEVICE: 0x8,
  ATTR_MASK: 0x1c,
  AP_UNPRIV: 0x40,
  AP_RDONLY: 0x80,
  SH_INNER: 0x300,
  AF: 0x400,
} as const;

/** High-half PTE bits (bit n of the PTE is bit n - 32 of the high half). */
export const PTE_HI = {
  /** Output address bits 47:32 live in the low 16 bits of the high half. */
  ADDR_MASK: 0xffff,
  XN: 0x400000,
  SW_NOREAD: 0x800000,
} as const;

/** Supported translation granules. */
export const IO_PGTABLE_GRANULES = [4096, 16384, 65536] as const;
/** A translation granule in bytes. */
export type IoPgtableGranule = (typeof IO_PGTABLE_GRANULES)[number];

/** Format of an `IoPageTable`. */
export interface IoPgtableConfig {
  /** Translation granule (default 4096). */
  readonly granule?: IoPgtableGranule;
  /** Input (IOVA) address size in bits: 32..48, or up to 52 with the 64 KiB granule (default 48). */
  readonly ias?: number;
  /** Output (physical) address size in bits: up to 48, or 52 with the 64 KiB granule (default 48). */
  readonly oas?: number;
  /**
   * Free a table as soon as an unmap clears its last entry (dmasim's option; default false:
   * empty tables stay linked until a covering unmap or `destroy()`, as in Linux).
   */
  readonly freeEmptyTables?: boolean;
}

/**
 * Callbacks into the IOTLB layer, as io-pgtable's `iommu_flush_ops`: `addPage` records one
 * cleared leaf in the gather (`io_pgtable_tlb_add_page`); `flushWalk` synchronously invalidates
 * a range whose table was torn down (`io_pgtable_tlb_flush_walk`).
 */
export interface IoPgtableTlbOps {
  addPage(gather: IotlbGather, iova: number, size: number): void;
  flushWalk(iova: number, size: number): void;
}

/** One step of a walk: the table read at a level and the entry found there. */
export interface WalkStep {
  readonly level: number;
  readonly tableAddr: number;
  readonly index: number;
  readonly pteAddr: number;
  readonly pteHi: number;
  readonly pteLo: number;
  readonly pte: string;
}

/** What a walk found for one IOVA. */
export interface WalkResult {
  /** True when a leaf maps the IOVA. */
  readonly present: boolean;
  /** ARM level of the last entry read (3 is the leaf level). */
  readonly level: number;
  /** Size of the leaf page or block (0 when not present). */
  readonly pageSize: number;
  /** The IOVA at which the leaf starts. */
  readonly iovaBase: number;
  /** The physical address the IOVA translates to (0 when not present). */
  readonly phys: number;
  /** The leaf's prot flags (0 when not present). */
  readonly prot: IommuProt;
  /** The last entry read, as halves and as hex. */
  readonly pteHi: number;
  readonly pteLo: number;
  readonly pte: string;
  /** Physical address of the table holding that entry, and of the entry itself. */
  readonly tableAddr: number;
  readonly pteAddr: number;
  /** Every level read, root first. */
  readonly steps: readonly WalkStep[];
}

/** A leaf lookup written into a caller-owned object (for the translation hot path). */
export interface LeafLookup {
  /** Physical address of the start of the leaf page/block (valid when the lookup returned true). */
  pagePhys: number;
  /** IOVA at which the leaf starts. */
  pageIova: number;
  /** Leaf size in bytes. */
  pageSize: number;
  /** Leaf prot flags. */
  prot: IommuProt;
}

/** One entry of a dump. */
export interface PteDumpEntry {
  readonly level: number;
  readonly index: number;
  readonly iova: number;
  readonly kind: "table" | "block" | "page";
  /** Bytes the entry covers. */
  readonly size: number;
  /** Output address (next table or mapped memory). */
  readonly addr: number;
  readonly prot: IommuProt;
  readonly pte: string;
  readonly tableAddr: number;
}

/** Counter names of `IoPageTable`. */
export type IoPgtableCounter =
  | "mapCalls"
  | "unmapCalls"
  | "mapFailures"
  | "pteWrites"
  | "pteReads"
  | "walks"
  | "walkCacheHits"
  | "walkMemReads"
  | "tablePagesAllocated"
  | "tablePagesFreed"
  | "leavesMapped"
  | "leavesUnmapped"
  | "partialBlockUnmaps";

interface Table {
  /** First CPU page frame of the block. */
  readonly pfn: number;
  /** Physical address of the table. */
  readonly phys: number;
  /** Depth from the root (0 = root). */
  readonly depth: number;
  /** 32-bit views of the table's bytes, one per CPU page the table spans. */
  readonly views: Uint32Array[];
  /** Entries that are not zero. */
  live: number;
  /**
   * The tables its table entries point at, by index (non-leaf levels only). This is the CPU
   * side's virtual pointer (Linux `iopte_deref` through the direct map); device walks follow
   * the physical address in the PTE instead.
   */
  readonly children: (Table | undefined)[] | undefined;
}

function formatPte(hi: number, lo: number): string {
  return `0x${hi.toString(16).padStart(8, "0")}_${lo.toString(16).padStart(8, "0")}`;
}

/** An ARM LPAE-like I/O page table (Linux `io_pgtable_ops` of io-pgtable-arm). */
export class IoPageTable {
  /** Translation granule in bytes. */
  readonly granule: IoPgtableGranule;
  /** Input address size (bits). */
  readonly ias: number;
  /** Output address size (bits). */
  readonly oas: number;
  /** Number of levels. */
  readonly levels: number;
  /** ARM number of the root level (`4 - levels`). */
  readonly startLevel: number;
  /** Supported page sizes as a bitmap (Linux `pgsize_bitmap`). */
  readonly pgsizeBitmap: number;
  /** Supported page sizes, ascending. */
  readonly pageSizes: readonly number[];
  /** Event counters. */
  readonly counters = new CounterSet<IoPgtableCounter>("pagetable", [
    "mapCalls",
    "unmapCalls",
    "mapFailures",
    "pteWrites",
    "pteReads",
    "walks",
    "walkCacheHits",
    "walkMemReads",
    "tablePagesAllocated",
    "tablePagesFreed",
    "leavesMapped",
    "leavesUnmapped",
    "partialBlockUnmaps",
  ]);
  /** IOTLB callbacks (set by the owning domain). */
  tlb: IoPgtableTlbOps | undefined;

  /** The table-freeing policy (see the file comment). */
  readonly freeEmptyTables: boolean;
  private readonly mem: PhysMemory;
  private readonly cpuPage: number;
  /** Page-allocator order of one table. */
  private readonly tableOrder: number;
  /** Entries per 32-bit view (per CPU page), i.e. min(granule, cpu page) / 8. */
  private readonly entriesPerView: number;
  /** Bytes one entry covers at each depth. */
  private readonly levelSize: number[];
  /** Entries of a table at each depth. */
  private readonly levelEntries: number[];
  /** Whether a leaf (block or page) may be installed at each depth. */
  private readonly leafAllowed: boolean[];
  /** Live leaves at each depth. */
  private readonly leafLive: number[];
  private readonly tables = new Map<number, Table>();
  private root: Table | undefined;
  private readonly ivaLimit: number;
  private readonly paLimit: number;
  /** Address mask for the low PTE half (32-bit). */
  private readonly addrMaskLo: number;
  private pendingFree = 0;
  /** PTE attribute bits for each prot value 0..63 (low and high halves). */
  private readonly protLo = new Uint32Array(IOMMU_PROT_ALL + 1);
  private readonly protHi = new Uint32Array(IOMMU_PROT_ALL + 1);
  private readonly scratchFreed: FreedTablePage[] = [];
  // Scratch state for walks (no allocation per operation).
  private readonly pathTables: Table[] = [];
  private readonly pathIdx: number[] = [];
  private readonly choice: PgsizeChoice = { pgsize: 0, count: 0 };
  /**
   * Walk cache of the CPU side: while `wcKey` equals floor(iova / leafSpan), `pathTables` and
   * `pathIdx` above the leaf level hold the path to that IOVA's leaf table. -1 when invalid.
   */
  private wcKey = -1;
  /**
   * Walk cache of the device side (`lookupLeaf`): while `dwKey` equals floor(iova / leafSpan),
   * `dwTable` is the leaf table the path of that IOVA reaches. Tables are only ever unlinked by
   * `retireTable`, which drops it, so the path above it cannot have changed. The walk still
   * counts every level it reads in `pteReads`; the levels above the leaf that the last walk read
   * also count as `walkCacheHits` (a one-entry model of the hardware's paging-structure or walk
   * cache, which serves them without a memory access), the others as `walkMemReads`.
   */
  private dwKey = -1;
  private dwTable: Table | undefined = undefined;
  private readonly leafSpan: number;
  /** The second smallest page size (Infinity if there is one size only). */
  private readonly secondSize: number;

  constructor(mem: PhysMemory, config: IoPgtableConfig = {}) {
    const granule = config.granule ?? 4096;
    if (!(IO_PGTABLE_GRANULES as readonly number[]).includes(granule)) {
      throw new IommuError("EINVAL", `granule ${hex(granule)} is not 4 KiB, 16 KiB or 64 KiB`);
    }
    const maxBits = granule === 65536 ? 52 : 48;
    const ias = config.ias ?? 48;
    const oas = config.oas ?? 48;
    if (!Number.isInteger(ias) || ias < 32 || ias > maxBits) {
      throw new IommuError(
        "EINVAL",
        `input address size ${ias} is outside 32..${maxBits} bits for granule ${hex(granule)}`,
      );
    }
    if (!Number.isInteger(oas) || oas < 32 || oas > maxBits) {
      throw new IommuError(
        "EINVAL",
        `output address size ${oas} is outside 32..${maxBits} bits for granule ${hex(granule)}`,
      );
    }
    this.mem = mem;
    this.freeEmptyTables = config.freeEmptyTables ?? false;
    this.granule = granule;
    this.ias = ias;
    this.oas = oas;
    this.ivaLimit = 2 ** ias;
    this.paLimit = 2 ** oas;
    this.cpuPage = mem.pageSize;
    const pgShift = ilog2(granule);
    const bitsPerLevel = pgShift - 3;
    // ARM: levels = DIV_ROUND_UP(ias - pg_shift, bits_per_level).
    const levels = Math.ceil((ias - pgShift) / bitsPerLevel);
    this.levels = levels;
    this.startLevel = 4 - levels;
    const pgdBits = ias - pgShift - bitsPerLevel * (levels - 1);
    this.levelSize = [];
    this.levelEntries = [];
    this.leafAllowed = [];
    this.leafLive = [];
    const blockSizes =
      granule === 4096
        ? [4096, 2 ** 21, 2 ** 30]
        : granule === 16384
          ? [16384, 2 ** 25]
          : [65536, 2 ** 29];
    for (let d = 0; d < levels; d++) {
      const size = 2 ** (pgShift + bitsPerLevel * (levels - 1 - d));
      this.levelSize.push(size);
      this.levelEntries.push(d === 0 ? 2 ** pgdBits : 2 ** bitsPerLevel);
      this.leafAllowed.push(blockSizes.includes(size));
      this.leafLive.push(0);
    }
    const sizes = blockSizes.filter((s) => s < this.ivaLimit);
    this.pageSizes = sizes;
    this.pgsizeBitmap = sizes.reduce((a, b) => a + b, 0);
    this.leafSpan = this.levelSize[levels - 2] ?? this.ivaLimit;
    this.secondSize = sizes[1] ?? Infinity;
    this.tableOrder = granule > this.cpuPage ? ilog2(granule / this.cpuPage) : 0;
    this.entriesPerView = Math.min(granule, this.cpuPage) / 8;
    // eslint-disable-next-line no-bitwise -- a 32-bit mask of the address bits in the low PTE half
    this.addrMaskLo = ~(granule - 1) >>> 0;
    for (let p = 0; p <= IOMMU_PROT_ALL; p++) {
      const [lo, hi] = this.protBits(p);
      this.protLo[p] = lo;
      this.protHi[p] = hi;
    }
    const root = this.allocTable(0);
    if (root === undefined) throw new IommuError("ENOMEM", "no memory for the root page table");
    this.root = root;
  }

  /** Physical address of the root table (what a TTBR / context entry would hold). */
  get rootAddr(): number {
    return this.liveRoot().phys;
  }

  /** Tables currently linked into the tree (the root included). */
  get tablePages(): number {
    return this.tables.size;
  }

  /** CPU pages of memory the linked tables occupy (a 64 KiB table spans 16 pages of 4 KiB). */
  get tableMemoryPages(): number {
    return this.tables.size * 2 ** this.tableOrder;
  }

  /** Table pages freed by unmaps but still waiting in a gather or the flush queue. */
  get pendingFreeTablePages(): number {
    return this.pendingFree;
  }

  /** The smallest page size (the IOVA granule of a DMA domain). */
  get minPageSize(): number {
    return this.granule;
  }

  /** Live leaves by page size, ascending by size. */
  leafCounts(): { pageSize: number; count: number }[] {
    const out: { pageSize: number; count: number }[] = [];
    for (let d = this.levels - 1; d >= 0; d--) {
      if (this.leafAllowed[d])
        out.push({ pageSize: this.levelSize[d] as number, count: this.leafLive[d] as number });
    }
    return out;
  }

  /** Live leaves of one page size. */
  leafCount(pageSize: number): number {
    const d = this.levelSize.indexOf(pageSize);
    return d < 0 ? 0 : (this.leafLive[d] as number);
  }

  /**
   * Linux `iommu_map` on the page table (`__iommu_map` + `map_pages`): maps `size` bytes at
   * `iova` to `paddr` with the largest page sizes `iommu_pgsize` allows. Throws EINVAL when
   * misaligned, ERANGE beyond the address sizes, EEXIST over a mapped entry, ENOMEM when a table
   * page cannot be allocated. A failed map leaves no leaf of itself behind; the tables it
   * created stay linked as in Linux, or are pruned under `freeEmptyTables`.
   */
  map(iova: number, paddr: number, size: number, prot: IommuProt): void {
    this.counters.c.mapCalls++;
    this.checkMapArgs(iova, paddr, size, prot);
    const pLo = this.protLo[prot] as number;
    const pHi = this.protHi[prot] as number;
    let done = 0;
    const ch = this.choice;
    const sizes = this.pageSizes;
    try {
      while (done < size) {
        const rest = size - done;
        if (rest < this.secondSize) {
          // Only the smallest size fits: iommu_pgsize would pick it for the whole rest.
          done += this.mapPages(
            iova + done,
            paddr + done,
            this.granule,
            rest / this.granule,
            pLo,
            pHi,
          );
          continue;
        }
        pgsizeInto(sizes, iova + done, paddr + done, rest, ch);
        done += this.mapPages(iova + done, paddr + done, ch.pgsize, ch.count, pLo, pHi);
      }
    } catch (e) {
      this.counters.c.mapFailures++;
      // Linux unrolls with iommu_unmap(orig_iova, mapped so far) and keeps the tables the
      // failing step created; the eager policy prunes them too.
      if (done > 0) this.unmap(iova, done);
      if (this.freeEmptyTables) this.pruneEmpty(iova + done);
      throw e;
    }
  }

  /**
   * Linux `__iommu_unmap` on the page table: removes up to `size` bytes at `iova` and returns the
   * bytes removed (stops at the first hole; 0 when misaligned or when the range starts in the
   * middle of a block). Freed table pages go to `gather.freelist`, or straight back to the
   * allocator without a gather.
   */
  unmap(iova: number, size: number, gather?: IotlbGather): number {
    this.counters.c.unmapCalls++;
    if (!(Number.isSafeInteger(iova) && iova >= 0)) checkNum(iova, "iova");
    if (!(Number.isSafeInteger(size) && size >= 0)) checkNum(size, "size");
    const min = this.granule;
    if (fastMod(iova, min) !== 0 || fastMod(size, min) !== 0 || iova >= this.ivaLimit) return 0;
    let done = 0;
    const ch = this.choice;
    const sizes = this.pageSizes;
    const freed: FreedTablePage[] = gather === undefined ? this.scratchFreed : gather.freelist;
    while (done < size) {
      const rest = size - done;
      let got: number;
      if (rest < this.secondSize)
        got = this.unmapPages(iova + done, min, rest / min, gather, freed);
      else {
        pgsizeInto(sizes, iova + done, iova + done, rest, ch);
        got = this.unmapPages(iova + done, ch.pgsize, ch.count, gather, freed);
      }
      if (got === 0) break;
      done += got;
    }
    if (gather === undefined && freed.length > 0) {
      this.putPages(freed);
      freed.length = 0;
    }
    return done;
  }

  /** Returns page-table pages (from a gather freelist or the flush queue) to the allocator. */
  putPages(list: readonly FreedTablePage[]): void {
    for (const p of list) {
      this.mem.freePages(p.pfn, p.order);
      this.counters.c.tablePagesFreed++;
      this.pendingFree--;
    }
  }

  /** Linux `iova_to_phys`: the physical address `iova` maps to, or 0 when unmapped. */
  iovaToPhys(iova: number): number {
    const out = scratchLeaf;
    if (!this.lookupLeaf(iova, out, false)) return 0;
    return out.pagePhys + (iova - out.pageIova);
  }

  /**
   * Walks the table for `iova` reading PTEs from memory, without allocating; fills `out` and
   * returns true when a leaf maps it. Counts one walk. `device` (the default) is the IOMMU's own
   * walker, with its walk cache and its `walkCacheHits`/`walkMemReads` counts; false is a
   * software walk by the CPU (`iova_to_phys`), which neither uses nor disturbs that cache.
   */
  lookupLeaf(iova: number, out: LeafLookup, device = true): boolean {
    const c = this.counters.c;
    c.walks++;
    if (!(iova >= 0 && iova < this.ivaLimit)) return false;
    const last = this.levels - 1;
    const key = Math.floor(iova / this.leafSpan);
    let t: Table;
    let d = 0;
    if (device && key === this.dwKey) {
      // The levels above the leaf table are the ones the last walk read (no table has been
      // retired since): the same entries, counted as read again.
      t = this.dwTable as Table;
      d = last;
      c.pteReads += last;
      c.walkCacheHits += last;
    } else t = this.liveRoot();
    for (; ; d++) {
      const size = this.levelSize[d] as number;
      const idx = fastMod(Math.floor(iova / size), this.levelEntries[d] as number);
      const v = this.viewFor(t, idx);
      const o = 2 * fastMod(idx, this.entriesPerView);
      const lo = v[o] as number;
      c.pteReads++;
      if (device) c.walkMemReads++;
      if (lo === 0) return false;
      const hi = v[o + 1] as number;
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      const isTable = d < last && (lo & PTE_LO.TYPE) !== 0;
      if (!isTable) {
        out.pageSize = size;
        out.pageIova = iova - fastMod(iova, size);
        out.pagePhys = this.pteAddr(lo, hi);
        out.prot = this.pteProt(lo, hi);
        return true;
      }
      t = this.nextTable(t, idx, this.pteAddr(lo, hi));
      if (d + 1 === last && device) {
        this.dwKey = key;
        this.dwTable = t;
      }
    }
  }

  /** A full walk of `iova` for tracing: every level read, and the leaf if any. */
  walk(iova: number): WalkResult {
    checkNum(iova, "iova");
    this.counters.c.walks++;
    const steps: WalkStep[] = [];
    let t = this.liveRoot();
    const last = this.levels - 1;
    const notPresent = (
      level: number,
      hi: number,
      lo: number,
      tableAddr: number,
      pteAddr: number,
    ): WalkResult => ({
      present: false,
      level,
      pageSize: 0,
      iovaBase: 0,
      phys: 0,
      prot: 0,
      pteHi: hi,
      pteLo: lo,
      pte: formatPte(hi, lo),
      tableAddr,
      pteAddr,
      steps,
    });
    if (iova >= this.ivaLimit) return notPresent(this.startLevel, 0, 0, t.phys, t.phys);
    for (let d = 0; ; d++) {
      const size = this.levelSize[d] as number;
      const idx = fastMod(Math.floor(iova / size), this.levelEntries[d] as number);
      const v = this.viewFor(t, idx);
      const o = 2 * this.viewOffset(idx);
      const lo = v[o] as number;
      const hi = v[o + 1] as number;
      this.counters.c.pteReads++;
      const pteAddr = t.phys + 8 * idx;
      const level = this.startLevel + d;
      steps.push({
        level,
        tableAddr: t.phys,
        index: idx,
        pteAddr,
        pteHi: hi,
        pteLo: lo,
        pte: formatPte(hi, lo),
      });
      if (lo === 0) return notPresent(level, hi, lo, t.phys, pteAddr);
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      const isTable = d < last && (lo & PTE_LO.TYPE) !== 0;
      if (!isTable) {
        const base = iova - (iova % size);
        const pa = this.pteAddr(lo, hi);
        return {
          present: true,
          level,
          pageSize: size,
          iovaBase: base,
          phys: pa + (iova - base),
          prot: this.pteProt(lo, hi),
          pteHi: hi,
          pteLo: lo,
          pte: formatPte(hi, lo),
          tableAddr: t.phys,
          pteAddr,
          steps,
        };
      }
      t = this.tableAt(this.pteAddr(lo, hi));
    }
  }

  /** Every non-zero entry whose range intersects `[start, end)`, in IOVA order (for `trace`). */
  dump(start = 0, end = this.ivaLimit): PteDumpEntry[] {
    const out: PteDumpEntry[] = [];
    const visit = (t: Table, base: number): void => {
      const d = t.depth;
      const size = this.levelSize[d] as number;
      const n = this.levelEntries[d] as number;
      for (let i = 0; i < n; i++) {
        const iova = base + i * size;
        if (iova + size <= start || iova >= end) continue;
        const v = this.viewFor(t, i);
        const o = 2 * this.viewOffset(i);
        const lo = v[o] as number;
        if (lo === 0) continue;
        const hi = v[o + 1] as number;
        // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
        const isTable = d < this.levels - 1 && (lo & PTE_LO.TYPE) !== 0;
        const addr = this.pteAddr(lo, hi);
        out.push({
          level: this.startLevel + d,
          index: i,
          iova,
          kind: isTable ? "table" : d === this.levels - 1 ? "page" : "block",
          size,
          addr,
          prot: isTable ? 0 : this.pteProt(lo, hi),
          pte: formatPte(hi, lo),
          tableAddr: t.phys,
        });
        if (isTable) visit(this.tableAt(addr), iova);
      }
    };
    visit(this.liveRoot(), 0);
    return out;
  }

  /**
   * Linux `free_io_pgtable_ops`: frees every table, the root included. The table must not be
   * used afterwards. Leaves still mapped are dropped with their tables.
   */
  destroy(): void {
    const root = this.root;
    if (root === undefined) return;
    const freed: FreedTablePage[] = [];
    this.freeSubtree(root, freed);
    this.putPages(freed);
    this.root = undefined;
  }

  // -------------------------------------------------------------------------------------
  // internals

  private liveRoot(): Table {
    const r = this.root;
    if (r === undefined) throw new IommuError("EINVAL", "the page table was destroyed");
    return r;
  }

  private checkMapArgs(iova: number, paddr: number, size: number, prot: IommuProt): void {
    if (!(Number.isSafeInteger(iova) && iova >= 0)) checkNum(iova, "iova");
    if (!(Number.isSafeInteger(paddr) && paddr >= 0)) checkNum(paddr, "paddr");
    if (!(Number.isSafeInteger(size) && size >= 0)) checkNum(size, "size");
    if (!Number.isInteger(prot) || prot < 0 || prot > IOMMU_PROT_ALL) {
      throw new IommuError("EINVAL", `prot ${hex(prot)} has bits outside IOMMU_READ..IOMMU_PRIV`);
    }
    const min = this.granule;
    if (fastMod(iova, min) !== 0 || fastMod(paddr, min) !== 0 || fastMod(size, min) !== 0) {
      throw new IommuError(
        "EINVAL",
        `unaligned: iova ${hex(iova)} pa ${hex(paddr)} size ${hex(size)} min_pagesz ${hex(min)}`,
      );
    }
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

  /** PTE attribute bits for `prot`, as [low half, high half]. */
  private protBits(prot: IommuProt): [number, number] {
    /* eslint-disable no-bitwise -- prot is a 6-bit flag set and the results are 32-bit PTE halves */
    let lo = PTE_LO.VALID | PTE_LO.AF;
    if (prot & IOMMU_PROT.MMIO) lo |= PTE_LO.ATTR_DEVICE;
    else if (prot & IOMMU_PROT.CACHE) lo |= PTE_LO.ATTR_WB | PTE_LO.SH_INNER;
    if (!(prot & IOMMU_PROT.PRIV)) lo |= PTE_LO.AP_UNPRIV;
    if (!(prot & IOMMU_PROT.WRITE)) lo |= PTE_LO.AP_RDONLY;
    let hi = 0;
    if (prot & IOMMU_PROT.NOEXEC) hi |= PTE_HI.XN;
    if (!(prot & IOMMU_PROT.READ)) hi |= PTE_HI.SW_NOREAD;
    return [lo >>> 0, hi >>> 0];
    /* eslint-enable no-bitwise */
  }

  /** The prot flags a leaf PTE encodes. */
  private pteProt(lo: number, hi: number): IommuProt {
    /* eslint-disable no-bitwise -- PTE halves are 32-bit quantities; prot is a 6-bit flag set */
    let prot = 0;
    if (!(hi & PTE_HI.SW_NOREAD)) prot |= IOMMU_PROT.READ;
    if (!(lo & PTE_LO.AP_RDONLY)) prot |= IOMMU_PROT.WRITE;
    const attr = lo & PTE_LO.ATTR_MASK;
    if (attr === PTE_LO.ATTR_WB) prot |= IOMMU_PROT.CACHE;
    if (attr === PTE_LO.ATTR_DEVICE) prot |= IOMMU_PROT.MMIO;
    if (hi & PTE_HI.XN) prot |= IOMMU_PROT.NOEXEC;
    if (!(lo & PTE_LO.AP_UNPRIV)) prot |= IOMMU_PROT.PRIV;
    return prot;
    /* eslint-enable no-bitwise */
  }

  /** The output address held in a PTE. */
  private pteAddr(lo: number, hi: number): number {
    /* eslint-disable no-bitwise -- decoding 32-bit PTE halves */
    let a = (lo & this.addrMaskLo) >>> 0;
    let top = 0;
    if (this.granule === 65536) {
      top = (lo >>> 12) & 0xf;
      a = (lo & 0xffff0000) >>> 0;
    }
    return a + (hi & PTE_HI.ADDR_MASK) * TWO_POW_32 + top * 2 ** 48;
    /* eslint-enable no-bitwise */
  }

  /** Writes a PTE: `addr` (granule-aligned) plus attribute bits. */
  private writePte(t: Table, idx: number, addr: number, bitsLo: number, bitsHi: number): void {
    const v = this.viewFor(t, idx);
    const o = 2 * this.viewOffset(idx);
    let aLo = fastMod(addr, TWO_POW_32);
    const aHi = Math.floor(addr / TWO_POW_32);
    let hiAddr = aHi;
    if (this.granule === 65536 && addr >= 2 ** 48) {
      aLo += Math.floor(addr / 2 ** 48) * 4096;
      hiAddr = aHi % 65536;
    }
    /* eslint-disable no-bitwise -- composing 32-bit PTE halves */
    v[o] = (aLo | bitsLo) >>> 0;
    v[o + 1] = (hiAddr | bitsHi) >>> 0;
    /* eslint-enable no-bitwise */
    this.counters.c.pteWrites++;
  }

  private clearPte(t: Table, idx: number): void {
    const v = this.viewFor(t, idx);
    const o = 2 * this.viewOffset(idx);
    v[o] = 0;
    v[o + 1] = 0;
    this.counters.c.pteWrites++;
  }

  /**
   * Entry `idx`'s place in its view (`idx % entriesPerView`). Avoids the `%` operator: on a
   * value V8 holds as a double it becomes a call to the C library's fmod.
   */
  private viewOffset(idx: number): number {
    const epv = this.entriesPerView;
    return idx < epv ? idx : fastMod(idx, epv);
  }

  private viewFor(t: Table, idx: number): Uint32Array {
    const views = t.views;
    return (
      views.length === 1 ? views[0] : views[Math.floor(idx / this.entriesPerView)]
    ) as Uint32Array;
  }

  private tableAt(addr: number): Table {
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
  private nextTable(t: Table, idx: number, addr: number): Table {
    const ch = t.children?.[idx];
    return ch !== undefined && ch.phys === addr ? ch : this.tableAt(addr);
  }

  /** The table a table entry of `t` points at (CPU-side pointer). */
  private child(t: Table, idx: number): Table {
    const c = t.children?.[idx];
    if (c === undefined)
      throw new InternalError(`table ${hex(t.phys)} entry ${idx} has no child table`);
    return c;
  }

  private allocTable(depth: number): Table | undefined {
    const pfn = this.mem.tryAllocPages(this.tableOrder);
    if (pfn < 0) return undefined;
    const pages = 2 ** this.tableOrder;
    const views: Uint32Array[] = [];
    for (let i = 0; i < pages; i++) {
      const bytes = this.mem.pageBytes(pfn + i);
      bytes.fill(0);
      // The table's entries as little-endian 32-bit halves (bvec's le.ts owns the layout).
      views.push(leU32View(bytes, Math.min(this.granule, this.cpuPage) / 4));
    }
    const children =
      depth < this.levels - 1
        ? new Array<Table | undefined>(this.levelEntries[depth] as number).fill(undefined)
        : undefined;
    const t: Table = { pfn, phys: pfn * this.cpuPage, depth, views, live: 0, children };
    this.tables.set(pfn, t);
    this.counters.c.tablePagesAllocated++;
    return t;
  }

  /** Unlinks a table from the tree and records its page as freed (not yet returned). */
  private retireTable(t: Table, freed: FreedTablePage[]): void {
    this.wcKey = -1;
    this.dwKey = -1;
    this.dwTable = undefined;
    this.tables.delete(t.pfn);
    freed.push({ pfn: t.pfn, order: this.tableOrder });
    this.pendingFree++;
  }

  /**
   * The one-entry walk cache shared by map and unmap: true when a granule-sized operation
   * falls in the leaf table the last walk ended in (`pathTables[last]` is still that table);
   * otherwise the cache is dropped and the walk starts at the root.
   */
  private walkCacheHit(pgsize: number, key: number): boolean {
    if (pgsize === this.granule && key === this.wcKey) return true;
    this.wcKey = -1;
    return false;
  }

  /**
   * `arm_lpae_map_pages` + `__arm_lpae_map`: walks to the level of `pgsize`, creating tables,
   * and installs up to `count` leaves without crossing the end of the table. Returns the bytes
   * mapped. All target entries are checked before any is written (EEXIST maps nothing).
   */
  private mapPages(
    iova: number,
    paddr: number,
    pgsize: number,
    count: number,
    pLo: number,
    pHi: number,
  ): number {
    const last = this.levels - 1;
    const pt = this.pathTables;
    const pi = this.pathIdx;
    let t: Table;
    let d0 = 0;
    const key = Math.floor(iova / this.leafSpan);
    if (this.walkCacheHit(pgsize, key)) {
      t = pt[last] as Table;
      d0 = last;
    } else {
      t = this.liveRoot();
    }
    for (let d = d0; ; d++) {
      const size = this.levelSize[d] as number;
      const idx = fastMod(Math.floor(iova / size), this.levelEntries[d] as number);
      pt[d] = t;
      pi[d] = idx;
      if (size === pgsize) {
        if (d === last) this.wcKey = key;
        const n = Math.min(count, (this.levelEntries[d] as number) - idx);
        let emptyTables = 0;
        for (let i = 0; i < n; i++) {
          const v = this.viewFor(t, idx + i);
          const o = 2 * this.viewOffset(idx + i);
          const lo = v[o] as number;
          if (lo === 0) continue;
          // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
          if (d < last && (lo & PTE_LO.TYPE) !== 0 && !this.hasLeaves(this.child(t, idx + i))) {
            emptyTables++;
            continue;
          }
          throw new IommuError(
            "EEXIST",
            `iova ${hex(iova + i * size)} is already mapped (level ${this.startLevel + d} entry ${formatPte(v[o + 1] as number, lo)})`,
          );
        }
        if (emptyTables > 0) this.replaceEmptyTables(t, idx, n, iova, size);
        // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
        const typeLo = d === last ? (pLo | PTE_LO.TYPE) >>> 0 : pLo;
        for (let i = 0; i < n; i++) this.writePte(t, idx + i, paddr + i * size, typeLo, pHi);
        t.live += n;
        this.leafLive[d] = (this.leafLive[d] as number) + n;
        this.counters.c.leavesMapped += n;
        return n * size;
      }
      const v = this.viewFor(t, idx);
      const o = 2 * this.viewOffset(idx);
      const lo = v[o] as number;
      if (lo === 0) {
        const nt = this.allocTable(d + 1);
        if (nt === undefined) {
          throw new IommuError(
            "ENOMEM",
            `no memory for a level-${this.startLevel + d + 1} table mapping iova ${hex(iova)}`,
          );
        }
        this.writePte(t, idx, nt.phys, PTE_LO.VALID + PTE_LO.TYPE, 0);
        (t.children as (Table | undefined)[])[idx] = nt;
        t.live++;
        t = nt;
        continue;
      }
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      if ((lo & PTE_LO.TYPE) === 0) {
        throw new IommuError(
          "EEXIST",
          `iova ${hex(iova)} lies in a ${hex(size)} block already mapped at level ${this.startLevel + d}`,
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
  private unmapPages(
    iova: number,
    pgsize: number,
    count: number,
    gather: IotlbGather | undefined,
    freed: FreedTablePage[],
  ): number {
    const pt = this.pathTables;
    const pi = this.pathIdx;
    const last = this.levels - 1;
    const c = this.counters.c;
    let t: Table;
    let d0 = 0;
    const key = Math.floor(iova / this.leafSpan);
    if (this.walkCacheHit(pgsize, key)) {
      t = pt[last] as Table;
      d0 = last;
    } else {
      t = this.liveRoot();
    }
    for (let d = d0; ; d++) {
      const size = this.levelSize[d] as number;
      const idx = fastMod(Math.floor(iova / size), this.levelEntries[d] as number);
      pt[d] = t;
      pi[d] = idx;
      const v0 = this.viewFor(t, idx);
      const o0 = 2 * this.viewOffset(idx);
      const lo0 = v0[o0] as number;
      c.pteReads++;
      if (lo0 === 0) {
        if (d === last) this.wcKey = key;
        return 0;
      }
      if (size === pgsize) {
        if (d === last) this.wcKey = key;
        const n = Math.min(count, (this.levelEntries[d] as number) - idx);
        const queued = iommuIotlbGatherQueued(gather);
        let i = 0;
        for (; i < n; i++) {
          const v = this.viewFor(t, idx + i);
          const o = 2 * this.viewOffset(idx + i);
          const lo = v[o] as number;
          if (lo === 0) break;
          // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
          if (d < last && (lo & PTE_LO.TYPE) !== 0) {
            // A table where a block-sized leaf is expected: tear the whole table down.
            const sub = this.child(t, idx + i);
            this.clearPte(t, idx + i);
            (t.children as (Table | undefined)[])[idx + i] = undefined;
            this.tlb?.flushWalk(iova + i * size, size);
            this.freeSubtree(sub, freed);
          } else {
            this.clearPte(t, idx + i);
            this.leafLive[d] = (this.leafLive[d] as number) - 1;
            c.leavesUnmapped++;
            if (!queued && gather !== undefined) this.tlb?.addPage(gather, iova + i * size, size);
          }
        }
        t.live -= i;
        if (t.live === 0 && d > 0 && this.freeEmptyTables) this.freeEmptyPath(d, freed);
        return i * size;
      }
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      if ((lo0 & PTE_LO.TYPE) === 0) {
        // Current Linux refuses to split a block: "Unmap of a partial large IOPTE is not allowed".
        c.partialBlockUnmaps++;
        return 0;
      }
      t = this.child(t, idx);
    }
  }

  /** True when a leaf is mapped anywhere under table `t`. */
  private hasLeaves(t: Table): boolean {
    if (t.live === 0) return false;
    if (t.depth === this.levels - 1) return true;
    const n = this.levelEntries[t.depth] as number;
    for (let i = 0; i < n; i++) {
      const v = this.viewFor(t, i);
      const lo = v[2 * this.viewOffset(i)] as number;
      if (lo === 0) continue;
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      if ((lo & PTE_LO.TYPE) === 0) return true;
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
  private replaceEmptyTables(t: Table, idx: number, n: number, iova: number, size: number): void {
    const freed: FreedTablePage[] = [];
    for (let i = 0; i < n; i++) {
      const sub = t.children?.[idx + i];
      if (sub === undefined) continue;
      this.clearPte(t, idx + i);
      (t.children as (Table | undefined)[])[idx + i] = undefined;
      t.live--;
      this.tlb?.flushWalk(iova + i * size, size);
      this.freeSubtree(sub, freed);
    }
    this.putPages(freed);
    // The scratch path may run through a freed table; the caller's walk is above it.
  }

  /** After the table at depth `d` of the scratch path became empty, frees it and any emptied parents. */
  private freeEmptyPath(d: number, freed: FreedTablePage[]): void {
    for (let k = d; k > 0; k--) {
      const t = this.pathTables[k] as Table;
      if (t.live !== 0) return;
      const parent = this.pathTables[k - 1] as Table;
      const pidx = this.pathIdx[k - 1] as number;
      this.clearPte(parent, pidx);
      (parent.children as (Table | undefined)[])[pidx] = undefined;
      parent.live--;
      this.retireTable(t, freed);
    }
  }

  /** Frees a table and everything below it (leaves are dropped, tables retired). */
  private freeSubtree(t: Table, freed: FreedTablePage[]): void {
    const d = t.depth;
    const n = this.levelEntries[d] as number;
    const last = this.levels - 1;
    for (let i = 0; t.live > 0 && i < n; i++) {
      const v = this.viewFor(t, i);
      const o = 2 * this.viewOffset(i);
      const lo = v[o] as number;
      if (lo === 0) continue;
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      if (d < last && (lo & PTE_LO.TYPE) !== 0) {
        this.freeSubtree(this.child(t, i), freed);
        (t.children as (Table | undefined)[])[i] = undefined;
      } else {
        this.leafLive[d] = (this.leafLive[d] as number) - 1;
        this.counters.c.leavesUnmapped++;
      }
      this.clearPte(t, i);
      t.live--;
    }
    this.retireTable(t, freed);
  }

  /** Frees the empty tables on the path to `iova` (after a failed map step). */
  private pruneEmpty(iova: number): void {
    this.wcKey = -1;
    if (iova >= this.ivaLimit) return;
    let t = this.liveRoot();
    let d = 0;
    for (; d < this.levels - 1; d++) {
      const idx = fastMod(
        Math.floor(iova / (this.levelSize[d] as number)),
        this.levelEntries[d] as number,
      );
      this.pathTables[d] = t;
      this.pathIdx[d] = idx;
      const v = this.viewFor(t, idx);
      const o = 2 * this.viewOffset(idx);
      const lo = v[o] as number;
      // eslint-disable-next-line no-bitwise -- PTE low half is a 32-bit quantity
      if (lo === 0 || (lo & PTE_LO.TYPE) === 0) break;
      t = this.child(t, idx);
    }
    this.pathTables[d] = t;
    if (d > 0 && t.live === 0) {
      const freed: FreedTablePage[] = [];
      this.freeEmptyPath(d, freed);
      this.putPages(freed);
    }
  }
}

const scratchLeaf: LeafLookup = { pagePhys: 0, pageIova: 0, pageSize: 0, prot: 0 };
