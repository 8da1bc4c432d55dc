/**
 * The I/O page table of a paging domain, in simulated physical memory: one of the formats of
 * docs/page-table-formats.md (`IoPgtableConfig.format`), with the map and unmap semantics of
 * the Linux code that drives it. The common machinery (tables, the IOMMU's walker, dump, walk
 * caches) is in pt-core.ts; each format's PTE layout and Linux algorithm in its own file
 * (io-pgtable-arm.ts); iommu.c's page-size loop in iommu-core.ts.
 */
import { type PhysMemory, hex, ilog2 } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { ArmLpaeFormat, IO_PGTABLE_GRANULES, type IoPgtableGranule } from "./fmt-arm-lpae.ts";
import { AmdV1Format } from "./fmt-amd-v1.ts";
import { RiscvFormat } from "./fmt-riscv.ts";
import { VtdSsFormat } from "./fmt-vtd-ss.ts";
import { X86_64Format } from "./fmt-x86-64.ts";
import { PtIommu } from "./generic-pt.ts";
import { ArmLpaeIoPgtable } from "./io-pgtable-arm.ts";
import { iommuMapRaw, iommuUnmapRaw, type PageSizeTarget } from "./iommu-core.ts";
import type { FreedTablePage, IotlbGather } from "./iotlb-gather.ts";
import type { IommuProt } from "./prot.ts";
import type { MappedBytes, PtCore, PtOps } from "./pt-core.ts";
import { ptDump, ptTraceWalk } from "./pt-trace.ts";
import { IO_PGTABLE_FORMATS, type IoPgtableCode, type IoPgtableFormat } from "./pt-format.ts";
import type { IoPgtableTlbOps, LeafLookup, PteDumpEntry, WalkResult } from "./pt-types.ts";

/** Format of an `IoPageTable`. */
export interface IoPgtableConfig {
  /** The page-table format (default "arm-lpae"). */
  readonly format?: IoPgtableFormat;
  /** Translation granule (default 4096). */
  readonly granule?: IoPgtableGranule;
  /** Input (IOVA) address size in bits: 32..48, or up to 52 with the 64 KiB granule (default 48). */
  readonly ias?: number;
  /** Output (physical) address size in bits: up to 48, or 52 with the 64 KiB granule (default 48). */
  readonly oas?: number;
  /**
   * Free a table as soon as an unmap clears its last entry, and prune the tables a failed map
   * created (dmasim's option; default false: empty tables stay linked until an unmap covers
   * them or `destroy()`, as in Linux).
   */
  readonly freeEmptyTables?: boolean;
  /**
   * generic_pt formats: the IOMMU caches non-present entries (VT-d caching mode, AMD's NpCache,
   * as a virtualised IOMMU does), so the driver picks PT_FEAT_FLUSH_RANGE_NO_GAPS: an unmap
   * syncs the gather before adding a disjoint range instead of widening the flush over the gap.
   */
  readonly flushRangeNoGaps?: boolean;
}

const scratchLeaf: LeafLookup = { pagePhys: 0, pageIova: 0, pageSize: 0, prot: 0 };

/** The generic_pt table of a format other than arm-lpae (`pt_iommu_<fmt>_init` by its driver). */
function genericPt(mem: PhysMemory, format: IoPgtableFormat, config: IoPgtableConfig): PtIommu {
  if ((config.granule ?? 4096) !== 4096)
    throw new IommuError("EINVAL", `the ${format} format has a 4 KiB granule only`);
  const noGaps = config.flushRangeNoGaps ?? false;
  const ias = config.ias ?? 48;
  const oas = config.oas ?? 52;
  if (!Number.isInteger(oas) || oas < 32 || oas > 52)
    throw new IommuError("EINVAL", `output address size ${oas} is outside 32..52 bits`);
  const checkIas = (lo: number): void => {
    if (!Number.isInteger(ias) || ias < lo || ias > 52)
      throw new IommuError(
        "EINVAL",
        `input address size ${ias} is outside ${lo}..52 bits for ${format}`,
      );
  };
  const common = {
    vaBits: ias,
    oaBits: oas,
    flushRangeNoGaps: noGaps,
    freeEmptyTables: config.freeEmptyTables ?? false,
  };
  switch (format) {
    case "amd-v1":
      // drivers/iommu/amd/iommu.c allocates with starting_level 2 and DYNAMIC_TOP;
      // hw_max_vasz_lg2 comes from the IOMMU's host page-table levels (48 with 4 levels).
      // pt_init_common drops DYNAMIC_TOP when the starting level already spans the VA.
      checkIas(32);
      return new PtIommu(mem, new AmdV1Format(), {
        ...common,
        topLevel: 2,
        dynamicTop: ias > 39,
        signExtend: false,
      });
    case "x86-64":
      // x86_64_pt_iommu_fmt_init: top level 2, 3 or 4 from the VA size; VT-d's first stage
      // sign-extends (4-level: canonical below bit 47).
      checkIas(31);
      return new PtIommu(mem, new X86_64Format(), {
        ...common,
        topLevel: Math.floor((ias - 31) / 9) + 2,
        dynamicTop: false,
        signExtend: true,
      });
    case "vtd-ss":
      // vtdss_pt_iommu_fmt_init: 3 levels up to 39 bits, 4 up to 48, 5 beyond.
      checkIas(31);
      return new PtIommu(mem, new VtdSsFormat(), {
        ...common,
        topLevel: ias > 48 ? 4 : ias > 39 ? 3 : 2,
        dynamicTop: false,
        signExtend: false,
      });
    case "riscv":
      // riscvpt_iommu_fmt_init: Sv39, Sv48 or Sv57; the RISC-V driver asks for SIGN_EXTEND,
      // FLUSH_RANGE and SVNAPOT_64K.
      if (ias !== 39 && ias !== 48 && ias !== 57)
        throw new IommuError("EINVAL", `riscv takes Sv39, Sv48 or Sv57: ${ias} bits is none`);
      return new PtIommu(mem, new RiscvFormat(), {
        ...common,
        topLevel: ias === 39 ? 2 : ias === 48 ? 3 : 4,
        dynamicTop: false,
        signExtend: true,
      });
    default:
      throw new IommuError("EINVAL", `${format} is not a generic_pt format`);
  }
}

function armLpae(mem: PhysMemory, config: IoPgtableConfig): ArmLpaeIoPgtable {
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
  const pgShift = ilog2(granule);
  const bitsPerLevel = pgShift - 3;
  // ARM: levels = DIV_ROUND_UP(ias - pg_shift, bits_per_level).
  const levels = Math.ceil((ias - pgShift) / bitsPerLevel);
  const pgdBits = ias - pgShift - bitsPerLevel * (levels - 1);
  const itemSize: number[] = [];
  for (let l = 0; l < levels; l++) itemSize.push(2 ** (pgShift + bitsPerLevel * l));
  const geo = {
    tableBytes: granule,
    itemSize,
    itemEntries: 2 ** bitsPerLevel,
    topLevel: levels - 1,
    topEntries: 2 ** pgdBits,
  };
  const fmt = new ArmLpaeFormat(granule);
  return new ArmLpaeIoPgtable(mem, fmt, geo, ias, oas, config.freeEmptyTables ?? false);
}

/** An I/O page table (Linux `io_pgtable_ops` / generic_pt's `pt_iommu`). */
export class IoPageTable implements PageSizeTarget {
  /** The format. */
  readonly format: IoPgtableFormat;
  /** The Linux code whose map/unmap semantics the table follows. */
  readonly code: IoPgtableCode;
  /** Translation granule in bytes (the smallest page size). */
  readonly granule: number;
  /** Input address size (bits). */
  readonly ias: number;
  /** Output address size (bits). */
  readonly oas: number;
  /** Supported page sizes as a bitmap (Linux `pgsize_bitmap`). */
  readonly pgsizeBitmap: number;
  /** Supported page sizes, ascending. */
  readonly pageSizes: readonly number[];
  /** The table-freeing policy (see io-pgtable-arm.ts). */
  readonly freeEmptyTables: boolean;
  /** True when IOVAs below 0 address a sign-extended upper half (x86-64, RISC-V). */
  readonly signExtended: boolean;
  /**
   * The last IOVA a DMA domain may use (Linux `geometry.aperture_end` of the table): the whole
   * input range, or its lower half when the format is sign-extended.
   */
  readonly apertureEnd: number;
  /** The lowest IOVA of the table (negative: the start of a sign-extended upper half). */
  readonly vaFirst: number;
  /** Event counters. */
  readonly counters: PtCore["counters"];
  /** The format's Linux map and unmap (`io_pgtable_ops` / generic_pt's ops). */
  readonly ops: PtOps;
  private readonly core: PtCore;

  constructor(mem: PhysMemory, config: IoPgtableConfig = {}) {
    const format = config.format ?? "arm-lpae";
    if (!(IO_PGTABLE_FORMATS as readonly string[]).includes(format)) {
      throw new IommuError(
        "EINVAL",
        `page-table format ${JSON.stringify(format)} is not one of ${IO_PGTABLE_FORMATS.join(", ")}`,
      );
    }
    this.format = format;
    if (format === "arm-lpae") {
      const arm = armLpae(mem, config);
      this.core = arm;
      this.ops = arm;
      this.code = arm.arm.code;
      this.granule = arm.arm.granule;
      this.ias = arm.ias;
      this.oas = arm.oas;
      this.freeEmptyTables = arm.freeEmptyTables;
      this.signExtended = false;
      this.pageSizes = (
        this.granule === 4096
          ? [4096, 2 ** 21, 2 ** 30]
          : this.granule === 16384
            ? [16384, 2 ** 25]
            : [65536, 2 ** 29]
      ).filter((s) => s < 2 ** this.ias);
      this.apertureEnd = 2 ** this.ias - 1;
      this.vaFirst = 0;
    } else {
      const pt = genericPt(mem, format, config);
      this.core = pt;
      this.ops = pt;
      this.code = pt.gfmt.code;
      this.granule = 4096;
      this.ias = pt.maxVasz;
      this.oas = pt.maxOasz;
      this.freeEmptyTables = pt.freeEmptyTables;
      this.signExtended = pt.cfg.signExtend;
      this.pageSizes = pt.pageSizes;
      this.apertureEnd = pt.apertureEnd;
      this.vaFirst = pt.cfg.signExtend ? -(2 ** (pt.maxVasz - 1)) : 0;
    }
    this.counters = this.core.counters;
    this.pgsizeBitmap = this.pageSizes.reduce((a, b) => a + b, 0);
  }

  /** IOTLB callbacks (set by the owning domain). */
  get tlb(): IoPgtableTlbOps | undefined {
    return this.core.tlb;
  }

  set tlb(ops: IoPgtableTlbOps | undefined) {
    this.core.tlb = ops;
  }

  /** Number of levels (for generic_pt's AMD v1, the current number: the top grows). */
  get levels(): number {
    return this.core.topLevel + 1;
  }

  /** The format's number of the root level (ARM: `4 - levels`). */
  get startLevel(): number {
    return this.core.fmt.levelNumber(this.core.topLevel);
  }

  /** Physical address of the root table (what a TTBR / context entry / DTE would hold). */
  get rootAddr(): number {
    return this.core.liveTop().phys;
  }

  /** Tables currently linked into the tree (the root included). */
  get tablePages(): number {
    return this.core.tables.size;
  }

  /** CPU pages of memory the linked tables occupy (a 64 KiB table spans 16 pages of 4 KiB). */
  get tableMemoryPages(): number {
    return this.core.tables.size * 2 ** this.core.tableOrder;
  }

  /** Table pages freed by unmaps but still waiting in a gather or the flush queue. */
  get pendingFreeTablePages(): number {
    return this.core.pendingFree;
  }

  /** The smallest page size (the IOVA granule of a DMA domain). */
  get minPageSize(): number {
    return this.pageSizes[0] as number;
  }

  /** Live leaves by page size, ascending by size (a contiguous entry counts once). */
  leafCounts(): { pageSize: number; count: number }[] {
    return this.pageSizes.map((s) => ({ pageSize: s, count: this.leafCount(s) }));
  }

  /** Live leaves of one page size. */
  leafCount(pageSize: number): number {
    const lg = Math.log2(pageSize);
    return Number.isInteger(lg) ? (this.core.leafLive[lg] ?? 0) : 0;
  }

  /**
   * Linux `iommu_map` on the page table alone (iommu.c's `__iommu_map` loop over this
   * table's `map_pages`; see `iommuMapRaw`).
   */
  map(iova: number, paddr: number, size: number, prot: IommuProt): void {
    iommuMapRaw(this, iova, paddr, size, prot);
  }

  /**
   * Linux `__iommu_unmap` on the page table alone (see `iommuUnmapRaw`): the bytes removed.
   * Freed table pages go to `gather.freelist`, or straight back to the allocator without one.
   */
  unmap(iova: number, size: number, gather?: IotlbGather): number {
    return iommuUnmapRaw(this, iova, size, gather);
  }

  /** The format's `map_pages`: `pgcount` pages of `pgsize` bytes, adding to `mapped.bytes`. */
  mapPages(
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: IommuProt,
    mapped: MappedBytes,
  ): void {
    this.ops.mapPages(iova, paddr, pgsize, pgcount, prot, mapped);
  }

  /** The format's `unmap_pages`: the bytes unmapped; freed tables go to `freed`. */
  unmapPages(
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IotlbGather | undefined,
    freed: FreedTablePage[],
  ): number {
    return this.ops.unmapPages(iova, pgsize, pgcount, gather, freed);
  }

  /** Returns page-table pages (from a gather freelist or the flush queue) to the allocator. */
  putPages(list: readonly FreedTablePage[]): void {
    this.core.putPages(list);
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
    if (!this.ops.inRange(iova)) {
      this.core.counters.c.walks++;
      return false;
    }
    return this.core.lookupLeaf(iova, out, device);
  }

  /** A full walk of `iova` for tracing: every level read, and the leaf if any. */
  walk(iova: number): WalkResult {
    if (!(Number.isSafeInteger(iova) && (iova >= 0 || this.signExtended))) checkNum(iova, "iova");
    return ptTraceWalk(this.core, iova, this.ops.inRange(iova));
  }

  /** Every non-zero entry whose range intersects `[start, end)`, in IOVA order (for `trace`). */
  dump(start = this.vaFirst, end = this.apertureEnd + 1): PteDumpEntry[] {
    return ptDump(this.core, start, end, 0, this.signExtended ? this.vaFirst : 0);
  }

  /**
   * Linux `free_io_pgtable_ops`: frees every table, the root included. The table must not be
   * used afterwards. Leaves still mapped are dropped with their tables.
   */
  destroy(): void {
    this.core.destroy();
  }
}
