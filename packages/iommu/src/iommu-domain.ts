/**
 * An IOMMU domain (struct iommu_domain): its type, geometry, page table and the core map/unmap
 * and IOTLB maintenance calls of drivers/iommu/iommu.c.
 */
import { CounterSet, type PhysMemory, type SimClock, hex } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { FaultLog, type IommuFault } from "./fault.ts";
import { DEFAULT_HZ } from "./flush-queue.ts";
import { IoPageTable, type IoPgtableConfig } from "./io-pgtable.ts";
import { iommuMapRaw, iommuUnmapRaw } from "./iommu-core.ts";
import { Iotlb } from "./iotlb.ts";
import {
  type FreedTablePage,
  type GatherSyncTarget,
  IotlbGather,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherInit,
} from "./iotlb-gather.ts";
import {
  IOMMU_DOMAIN,
  IOMMU_DOMAIN_FLAG,
  IOMMU_DOMAIN_NAMES,
  type IommuDomainType,
  type IommuProt,
  domainTypeHas,
} from "./prot.ts";

/** Linux `struct iommu_domain_geometry`. */
export interface IommuDomainGeometry {
  /** First IOVA the domain can map. */
  readonly apertureStart: number;
  /** Last IOVA the domain can map (inclusive). */
  readonly apertureEnd: number;
  /** True when DMA outside the aperture is impossible (dma-iommu clamps its limit to the end). */
  readonly forceAperture: boolean;
}

/** Options of an `IommuDomain`. */
export interface IommuDomainOptions {
  readonly type: IommuDomainType;
  /** Simulated memory holding the page tables (needed by paging domains). */
  readonly mem?: PhysMemory;
  /** Page-table format (paging domains). */
  readonly pgtable?: IoPgtableConfig;
  /** Geometry; defaults to the whole input address space, forced. */
  readonly geometry?: Partial<IommuDomainGeometry>;
  /** The IOMMU's IOTLB (shared by the domains of one IOMMU); a private one by default. */
  readonly iotlb?: Iotlb;
  /** Clock for fault timestamps. */
  readonly clock?: SimClock;
  /** True when the driver needs `iotlb_sync_map` after mapping (then a range invalidation). */
  readonly needsSyncMap?: boolean;
  /** Faults kept in the domain's log (default 64). */
  readonly faultLogSize?: number;
  /** Domain ID (IOTLB tag); by default the next one of the IOTLB's IOMMU (`Iotlb.allocDomainId`). */
  readonly id?: number;
  /** CONFIG_HZ, for the jiffies timer of the flush queue a lazy domain gets (default 250). */
  readonly hz?: number;
}

/** Counter names of `IommuDomain`. */
export type IommuDomainCounter =
  | "mapCalls"
  | "bytesMapped"
  | "mapFailures"
  | "syncMapCalls"
  | "syncMapFlushes"
  | "unmapCalls"
  | "bytesUnmapped"
  | "iotlbSyncs"
  | "rangeInvalidations"
  | "walkFlushes"
  | "flushAlls"
  | "tablePagesReleased"
  | "translations"
  | "translatePages"
  | "staleTranslations"
  | "faults";

/** Linux `struct iommu_domain` with its ops. */
export class IommuDomain implements GatherSyncTarget {
  /** Domain ID: the tag of its IOTLB entries. */
  readonly id: number;
  /** The page table (paging domains only). */
  readonly pgtable: IoPageTable | undefined;
  /** The IOTLB caching this domain's translations. */
  readonly iotlb: Iotlb;
  /** Aperture. */
  readonly geometry: IommuDomainGeometry;
  /** Linux `pgsize_bitmap` (0 for non-paging domains). */
  readonly pgsizeBitmap: number;
  /** Whether `syncMap` issues an invalidation. */
  readonly needsSyncMap: boolean;
  /** The clock, if any. */
  readonly clock: SimClock | undefined;
  /** CONFIG_HZ the DMA layer gives this domain's flush queue (`FlushQueueOptions.hz`). */
  readonly hz: number;
  /** Event counters. */
  readonly counters = new CounterSet<IommuDomainCounter>("domain", [
    "mapCalls",
    "bytesMapped",
    "mapFailures",
    "syncMapCalls",
    "syncMapFlushes",
    "unmapCalls",
    "bytesUnmapped",
    "iotlbSyncs",
    "rangeInvalidations",
    "walkFlushes",
    "flushAlls",
    "tablePagesReleased",
    "translations",
    "translatePages",
    "staleTranslations",
    "faults",
  ]);
  /** Recent translation faults. */
  readonly faultLog: FaultLog;
  /**
   * Linux `domain->iova_cookie`: the DMA layer's state of a DMA domain (dma-core's
   * `IommuDmaCookie`: the IOVA allocator and the flush queue), set once by
   * `iommu_dma_init_domain` when the first device is set up; null before. Opaque to this
   * layer, as `struct iommu_dma_cookie` is private to drivers/iommu/dma-iommu.c.
   */
  iovaCookie: object | null = null;
  private domainType: IommuDomainType;

  constructor(options: IommuDomainOptions) {
    const type = options.type;
    if (!(Object.values(IOMMU_DOMAIN) as number[]).includes(type)) {
      throw new IommuError("EINVAL", `unknown domain type ${hex(type)}`);
    }
    this.domainType = type;
    this.iotlb = options.iotlb ?? new Iotlb();
    this.id = options.id ?? this.iotlb.allocDomainId();
    checkNum(this.id, "domain id");
    this.clock = options.clock;
    this.needsSyncMap = options.needsSyncMap ?? false;
    this.hz = checkNum(options.hz ?? DEFAULT_HZ, "HZ", 1);
    this.faultLog = new FaultLog(checkNum(options.faultLogSize ?? 64, "fault log size"));
    let end = 2 ** 52 - 1;
    if (domainTypeHas(type, IOMMU_DOMAIN_FLAG.PAGING)) {
      if (options.mem === undefined)
        throw new IommuError(
          "EINVAL",
          `a ${IOMMU_DOMAIN_NAMES[type]} domain needs memory for its page table`,
        );
      const pt = new IoPageTable(options.mem, options.pgtable);
      pt.tlb = {
        addPage: (gather, iova, size) => {
          iommuIotlbGatherAddPage(this, gather, iova, size);
        },
        flushWalk: (iova, size) => {
          this.counters.c.walkFlushes++;
          this.iotlb.invalidateRange(this.id, iova, size);
        },
        sync: (gather) => {
          this.iotlbSync(gather);
        },
      };
      this.pgtable = pt;
      this.pgsizeBitmap = pt.pgsizeBitmap;
      end = pt.apertureEnd;
    } else {
      this.pgtable = undefined;
      this.pgsizeBitmap = 0;
    }
    const g = options.geometry ?? {};
    const geometry: IommuDomainGeometry = {
      apertureStart: g.apertureStart ?? 0,
      apertureEnd: g.apertureEnd ?? end,
      forceAperture: g.forceAperture ?? this.pgtable !== undefined,
    };
    checkNum(geometry.apertureStart, "aperture start");
    checkNum(geometry.apertureEnd, "aperture end");
    if (geometry.apertureEnd < geometry.apertureStart || geometry.apertureEnd > end) {
      throw new IommuError(
        "EINVAL",
        `aperture ${hex(geometry.apertureStart)}..${hex(geometry.apertureEnd)} is empty or beyond ${hex(end)}`,
      );
    }
    this.geometry = geometry;
  }

  /** The domain type (`IOMMU_DOMAIN.*`). */
  get type(): IommuDomainType {
    return this.domainType;
  }

  /** The type's name ("DMA-FQ", "identity", ...). */
  get typeName(): string {
    return IOMMU_DOMAIN_NAMES[this.domainType];
  }

  /** Linux `iommu_is_dma_domain`: the kernel DMA API owns this domain. */
  get isDma(): boolean {
    return domainTypeHas(this.domainType, IOMMU_DOMAIN_FLAG.DMA_API);
  }

  /** True for a DMA_FQ (lazy) domain. */
  get isLazy(): boolean {
    return domainTypeHas(this.domainType, IOMMU_DOMAIN_FLAG.DMA_FQ);
  }

  /** True when the domain translates through a page table. */
  get isPaging(): boolean {
    return this.pgtable !== undefined;
  }

  /**
   * Turns a DMA_FQ domain into a strict DMA one (Linux `iommu_set_dma_strict`, or the silent
   * downgrade in `iommu_dma_init_domain` when the flush queue cannot be set up).
   */
  downgradeToStrict(): void {
    if (this.domainType === IOMMU_DOMAIN.DMA_FQ) this.domainType = IOMMU_DOMAIN.DMA;
  }

  /** Linux `iommu_map`: `mapNosync` then `syncMap`. */
  map(iova: number, paddr: number, size: number, prot: IommuProt): void {
    this.mapNosync(iova, paddr, size, prot);
    this.syncMap(iova, size);
  }

  /**
   * Linux `iommu_map_nosync`: maps with the largest page sizes; EINVAL for a non-paging domain
   * or misalignment, EEXIST over a mapping, ENOMEM without table memory. Nothing is left mapped
   * after a failure.
   */
  mapNosync(iova: number, paddr: number, size: number, prot: IommuProt): void {
    const c = this.counters.c;
    c.mapCalls++;
    const pt = this.pgtable;
    if (pt === undefined) {
      c.mapFailures++;
      throw new IommuError(
        "EINVAL",
        `cannot map iova ${hex(iova)} in a ${this.typeName} domain: it is not a paging domain`,
      );
    }
    try {
      iommuMapRaw(pt, iova, paddr, size, prot);
    } catch (e) {
      c.mapFailures++;
      throw e;
    }
    c.bytesMapped += size;
  }

  /** Linux `iommu_sync_map`: a counted no-op unless the domain needs it (then a range invalidation). */
  syncMap(iova: number, size: number): void {
    this.counters.c.syncMapCalls++;
    if (this.needsSyncMap && size > 0) {
      this.counters.c.syncMapFlushes++;
      this.iotlb.invalidateRange(this.id, iova, size);
    }
  }

  /**
   * Linux `iommu_unmap_fast` (`__iommu_unmap`): unmaps without syncing; returns the bytes
   * removed (0 for a non-paging domain, misalignment, a hole or part of a block). The caller
   * must `iotlbSync(gather)` or queue the range.
   */
  unmapFast(iova: number, size: number, gather: IotlbGather): number {
    this.counters.c.unmapCalls++;
    const pt = this.pgtable;
    if (pt === undefined) return 0;
    const got = iommuUnmapRaw(pt, iova, size, gather);
    if (got > 0) {
      this.counters.c.bytesUnmapped += got;
      this.iotlb.markStale(this.id, iova, got);
    }
    return got;
  }

  /** Linux `iommu_unmap`: unmap, then sync (strict). Returns the bytes removed. */
  unmap(iova: number, size: number): number {
    const gather = new IotlbGather();
    const got = this.unmapFast(iova, size, gather);
    this.iotlbSync(gather);
    return got;
  }

  /**
   * Linux `iommu_iotlb_sync`: invalidates the gathered range, releases the gathered page-table
   * pages, and re-initialises the gather.
   */
  iotlbSync(gather: IotlbGather): void {
    this.counters.c.iotlbSyncs++;
    if (gather.end !== 0) {
      this.counters.c.rangeInvalidations++;
      this.iotlb.invalidateRange(this.id, gather.start, gather.end - gather.start + 1);
    }
    this.putPages(gather.freelist);
    iommuIotlbGatherInit(gather);
  }

  /** Linux `flush_iotlb_all`: a whole-domain invalidation. */
  flushIotlbAll(): void {
    this.counters.c.flushAlls++;
    this.iotlb.invalidateAll(this.id);
  }

  /** Releases page-table pages an unmap freed (`iommu_put_pages_list`), after their invalidation. */
  putPages(list: readonly FreedTablePage[]): void {
    if (list.length === 0) return;
    this.counters.c.tablePagesReleased += list.length;
    this.pgtable?.putPages(list);
  }

  /** Linux `iommu_iova_to_phys`: identity returns the IOVA, blocked 0, paging the table's answer (0 when unmapped). */
  iovaToPhys(iova: number): number {
    if (this.domainType === IOMMU_DOMAIN.IDENTITY) return iova;
    const pt = this.pgtable;
    return pt === undefined ? 0 : pt.iovaToPhys(iova);
  }

  /** Records a fault in the log and the counters. */
  recordFault(f: IommuFault): void {
    this.counters.c.faults++;
    this.faultLog.push(f);
  }
}
