/**
 * dma-debug (kernel/dma/debug.c), extended to the two-step IOVA API, which upstream does not
 * check at all (that half is debug-iova.ts). Every report is a structured record (Linux prints
 * only the first, `num_errors = 1`); optionally the first error throws. dma-debug is attached
 * per device at run time, where Linux builds it in (CONFIG_DMA_API_DEBUG).
 */
import { hex, kernelHas } from "@dmasim/bvec";
import { DMA_ATTR, DMA_DIRECTION, type DmaDirection, directionName, hasAttr } from "./constants.ts";
import {
  DMA_DEBUG_CLASS,
  type DebugDevice,
  type DmaDebugClass,
  type DmaDebugReport,
  type ReportAt,
  UnmappedHistory,
} from "./debug-common.ts";
import { IovaDebug } from "./debug-iova.ts";
import { DmaError } from "./errors.ts";

/**
 * How a mapping was made (Linux `dma_debug_type`, plus the IOVA API). "single" is what
 * `dma_map_page` records before 6.18 (`dma_debug_single`); from 6.18 every `dma_map_phys`
 * mapping, `dma_map_resource` included, is "phy" (see `debugMapType`).
 */
export type DmaDebugType = "phy" | "single" | "sg" | "coherent" | "resource" | "iova";

/** Linux `L1_CACHE_BYTES` on x86-64 and arm64: the cacheline dma-debug tracks. */
export const L1_CACHE_BYTES = 64;
/** Linux `ACTIVE_CACHELINE_MAX_OVERLAP`: (1 << RADIX_TREE_MAX_TAGS) - 1. */
export const ACTIVE_CACHELINE_MAX_OVERLAP = 7;

/** One node of Linux's `dma_active_cacheline` radix tree. */
interface ActiveCacheline {
  /** The overlap count kept in the radix-tree tags (0..7). */
  overlap: number;
  /** `is_cache_clean` of the mapping that inserted the node (7.0). */
  readonly clean: boolean;
}

interface Entry {
  readonly addr: number;
  readonly size: number;
  readonly phys: number;
  readonly dir: DmaDirection;
  readonly type: DmaDebugType;
  readonly sgNents: number;
  readonly cpuAddr: number;
}

/**
 * The type dma-debug records for a single mapping: from 6.18 (e9e81d86fee6) `dma_map_phys`
 * records every mapping, `dma_map_resource` included, as "phy" (`dma_debug_phy`); before,
 * `dma_map_page` records "single" and `dma_map_resource` "resource". `type` is the caller's
 * "phy" (memory) or "resource" (DMA_ATTR_MMIO); other types pass through.
 */
export function debugMapType(dev: DebugDevice, type: DmaDebugType): DmaDebugType {
  if (type !== "phy" && type !== "resource" && type !== "single") return type;
  if (kernelHas(dev.kernel, "dma-debug-phys")) return "phy";
  return type === "resource" ? "resource" : "single";
}

/**
 * Linux `pfn_valid(pfn) && !PageReserved(pfn_to_page(pfn))` for the pfn of `phys`: the
 * memory map says RAM there (the page allocator's memory; P2P BARs and MMIO are not).
 */
export function isRamPfn(dev: DebugDevice, phys: number): boolean {
  return dev.memory.isRam(phys);
}

/** Options of `DmaDebug`. */
export interface DmaDebugOptions {
  /** Throw a `DmaError` (code EINVAL) on the first error report (default false). */
  readonly throwOnError?: boolean;
  /** How many recently unmapped ranges to remember per device, to catch late device accesses. */
  readonly unmappedHistory?: number;
}

/** dma-debug: tracks every mapping of the devices it is attached to. */
export class DmaDebug {
  readonly reports: DmaDebugReport[] = [];
  readonly throwOnError: boolean;
  /** The checks of the two-step IOVA API (`dma_iova_*`). */
  readonly iova: IovaDebug;
  private readonly entries = new Map<DebugDevice, Entry[]>();
  private readonly unmapped: UnmappedHistory;
  /** Linux `dma_active_cacheline`: one tree for all devices, keyed by cacheline number. */
  private readonly cachelines = new Map<number, ActiveCacheline>();
  /** The WARN_ONCE of `active_cacheline_inc_overlap` fired. */
  private overlapWarned = false;
  /** The one reporting function of every check (see `ReportAt`). */
  private readonly at: ReportAt = (dev, call, addr, size) => (cls, message) => {
    this.report(dev, cls, call, addr, size, message);
  };

  constructor(options: DmaDebugOptions = {}) {
    this.throwOnError = options.throwOnError ?? false;
    this.unmapped = new UnmappedHistory(options.unmappedHistory ?? 4096);
    this.iova = new IovaDebug(this.at, this.unmapped);
  }

  /** Error reports (warnings excluded). */
  get errors(): DmaDebugReport[] {
    return this.reports.filter((r) => r.class !== DMA_DEBUG_CLASS.WARN);
  }

  /** Mappings still live for `dev` (or all devices), IOVA states included. */
  outstanding(dev?: DebugDevice): number {
    let n = 0;
    for (const [d, list] of this.entries) if (dev === undefined || d === dev) n += list.length;
    return n + this.iova.outstanding(dev);
  }

  /** Records a report (and throws when configured to). */
  report(
    dev: DebugDevice,
    cls: DmaDebugClass,
    call: string,
    addr: number,
    size: number,
    message: string,
  ): void {
    const r: DmaDebugReport = {
      class: cls,
      device: dev.name,
      call,
      addr,
      size,
      message: `DMA-API: ${dev.name}: ${message}`,
    };
    this.reports.push(r);
    if (this.throwOnError && cls !== DMA_DEBUG_CLASS.WARN) throw new DmaError("EINVAL", r.message);
  }

  /** A warning (Linux WARN in the DMA code, not a dma-debug error). */
  warn(dev: DebugDevice, what: string, message: string, addr: number, size: number): void {
    this.report(dev, DMA_DEBUG_CLASS.WARN, what, addr, size, message);
  }

  private list(dev: DebugDevice): Entry[] {
    let l = this.entries.get(dev);
    if (!l) {
      l = [];
      this.entries.set(dev, l);
    }
    return l;
  }

  /** Linux `add_dma_entry`: the entry, then its cacheline (`active_cacheline_insert`). */
  private add(dev: DebugDevice, e: Entry, attrs: number, call: string): void {
    this.list(dev).push(e);
    this.unmapped.forget(dev, e.addr, e.size);
    this.cachelineInsert(dev, e, attrs, call);
  }

  /**
   * Linux `active_cacheline_insert` and the EEXIST check of `add_dma_entry`: a second live
   * mapping of a cacheline the device may write (any direction but DMA_TO_DEVICE) is reported
   * unless the new mapping has DMA_ATTR_SKIP_CPU_SYNC or (7.0) both it and the first mapping
   * of the line are "cache clean" (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES or
   * DMA_ATTR_REQUIRE_COHERENT). The overlap count saturates at 7 with a one-time warning.
   * Differences from Linux: the one-time warning is once per `DmaDebug`, not per boot; the
   * arm64 DMA_BOUNCE_UNALIGNED_KMALLOC exemption is not modelled (x86 has no such bouncing).
   */
  private cachelineInsert(dev: DebugDevice, e: Entry, attrs: number, call: string): void {
    if (e.dir === DMA_DIRECTION.TO_DEVICE) return;
    const cln = Math.floor(e.phys / L1_CACHE_BYTES);
    const clean =
      (kernelHas(dev.kernel, "dma-attr-ignore-cachelines") &&
        hasAttr(attrs, DMA_ATTR.DEBUGGING_IGNORE_CACHELINES)) ||
      (kernelHas(dev.kernel, "dma-attr-require-coherent") &&
        hasAttr(attrs, DMA_ATTR.REQUIRE_COHERENT));
    const line = this.cachelines.get(cln);
    if (line === undefined) {
      this.cachelines.set(cln, { overlap: 0, clean });
      return;
    }
    const bad = this.at(dev, call, e.addr, e.size);
    // active_cacheline_inc_overlap: the count lives in 3 radix-tree tags and stops at 7.
    if (line.overlap < ACTIVE_CACHELINE_MAX_OVERLAP) {
      line.overlap++;
    } else if (!this.overlapWarned) {
      this.overlapWarned = true;
      bad(
        DMA_DEBUG_CLASS.WARN,
        `exceeded ${ACTIVE_CACHELINE_MAX_OVERLAP} overlapping mappings of cacheline ${hex(cln)}`,
      );
    }
    if (hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) || (clean && line.clean)) return;
    bad(
      DMA_DEBUG_CLASS.CACHELINE_OVERLAP,
      `cacheline tracking EEXIST, overlapping mappings aren't supported [device address=${hex(e.addr)}] [phys=${hex(e.phys)}] [cacheline=${hex(cln)}] [mapped with ${directionName(e.dir)}]`,
    );
  }

  /** Linux `active_cacheline_remove` (from `dma_entry_free`). */
  private cachelineRemove(e: Entry): void {
    if (e.dir === DMA_DIRECTION.TO_DEVICE) return;
    const cln = Math.floor(e.phys / L1_CACHE_BYTES);
    const line = this.cachelines.get(cln);
    if (line === undefined) return;
    if (line.overlap === 0) this.cachelines.delete(cln);
    else line.overlap--;
  }

  /** Live entries of the cacheline tracking (Linux `dma_active_cacheline` nodes), for tests. */
  get activeCachelines(): number {
    return this.cachelines.size;
  }

  /**
   * Linux `debug_dma_map_phys` (6.18+; before, `debug_dma_map_page` and
   * `debug_dma_map_resource`): records the mapping and tracks its first cacheline. `type` is
   * "phy" for a mapping of memory and "resource" for DMA_ATTR_MMIO; the recorded type depends
   * on the release (`debugMapType`). From the fix that moved `dma_map_resource`'s RAM check
   * into dma-debug (af0c3f058662), an MMIO mapping of RAM is reported here and goes ahead.
   */
  mapPhys(
    dev: DebugDevice,
    addr: number,
    phys: number,
    size: number,
    dir: DmaDirection,
    attrs: number,
    type: DmaDebugType,
  ): void {
    const t = debugMapType(dev, type);
    const call =
      t === "single" ? "dma_map_page" : t === "resource" ? "dma_map_resource" : "dma_map_phys";
    if (
      hasAttr(attrs, DMA_ATTR.MMIO) &&
      kernelHas(dev.kernel, "map-resource-ram-report") &&
      isRamPfn(dev, phys)
    ) {
      this.at(
        dev,
        call,
        addr,
        size,
      )(DMA_DEBUG_CLASS.MAP_RESOURCE_RAM, `dma_map_resource called for RAM address ${hex(phys)}`);
    }
    this.add(dev, { addr, size, phys, dir, type: t, sgNents: 0, cpuAddr: 0 }, attrs, call);
  }

  /** Hook of `dma_map_sg` (one entry, and one tracked cacheline, per mapped segment). */
  mapSg(
    dev: DebugDevice,
    segs: readonly { addr: number; len: number; phys: number }[],
    nents: number,
    dir: DmaDirection,
    attrs = 0,
  ): void {
    for (const s of segs) {
      const e: Entry = {
        addr: s.addr,
        size: s.len,
        phys: s.phys,
        dir,
        type: "sg",
        sgNents: nents,
        cpuAddr: 0,
      };
      this.add(dev, e, attrs, "dma_map_sg");
    }
  }

  /** Hook of `dma_alloc_coherent`. */
  allocCoherent(dev: DebugDevice, addr: number, cpuAddr: number, size: number): void {
    const dir = DMA_DIRECTION.BIDIRECTIONAL;
    const e: Entry = { addr, size, phys: cpuAddr, dir, type: "coherent", sgNents: 0, cpuAddr };
    this.add(dev, e, 0, "dma_alloc_coherent");
  }

  /** Linux `check_unmap`: best-fit lookup of (dev, addr), then the mismatch checks. */
  unmap(
    dev: DebugDevice,
    addr: number,
    size: number,
    dir: DmaDirection,
    type: DmaDebugType,
    call: string,
    sgNents = 0,
    cpuAddr = -1,
  ): void {
    type = debugMapType(dev, type);
    const bad = this.at(dev, call, addr, size);
    const where = `[device address=${hex(addr)}] [size=${size} bytes]`;
    const l = this.list(dev);
    const same = l.filter((e) => e.addr === addr);
    const exact = same.find((e) => e.size === size && e.type === type && e.dir === dir);
    const e = exact ?? (same.length === 1 ? same[0] : undefined);
    if (e === undefined) {
      const fit = same.length === 0 ? "" : ` (no best fit among ${same.length} mappings)`;
      bad(
        DMA_DEBUG_CLASS.UNMAP_NOT_MAPPED,
        `device driver tries to free DMA memory it has not allocated ${where}${fit}`,
      );
      return;
    }
    if (e.size !== size) {
      bad(
        DMA_DEBUG_CLASS.UNMAP_SIZE,
        `device driver frees DMA memory with different size [device address=${hex(addr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
      );
    }
    if (e.type !== type) {
      bad(
        DMA_DEBUG_CLASS.UNMAP_TYPE,
        `device driver frees DMA memory with wrong function ${where} [mapped as ${e.type}] [unmapped as ${type}]`,
      );
    }
    if (type === "coherent" && cpuAddr >= 0 && e.cpuAddr !== cpuAddr) {
      bad(
        DMA_DEBUG_CLASS.FREE_CPU_ADDR,
        `device driver frees DMA memory with different CPU address ${where} [cpu alloc address=${hex(e.cpuAddr)}] [cpu free address=${hex(cpuAddr)}]`,
      );
    }
    if (type === "sg" && e.sgNents !== sgNents) {
      bad(
        DMA_DEBUG_CLASS.UNMAP_SG_NENTS,
        `device driver frees DMA sg list with different entry count [map count=${e.sgNents}] [unmap count=${sgNents}]`,
      );
    }
    if (e.dir !== dir) {
      bad(
        DMA_DEBUG_CLASS.UNMAP_DIRECTION,
        `device driver frees DMA memory with different direction ${where} [mapped with ${directionName(e.dir)}] [unmapped with ${directionName(dir)}]`,
      );
    }
    l.splice(l.indexOf(e), 1);
    this.cachelineRemove(e);
    this.unmapped.remember(dev, e.addr, e.size);
  }

  /**
   * Linux `check_sync`: the range must lie in one mapping, in a compatible direction.
   * Deliberately stricter: "outside allocated range" tests the sync's end against the
   * mapping's (Linux compares the sizes only), and the first live mapping containing `addr` is
   * used (Linux's best fit reports "not allocated" when several contain it and none fits).
   */
  sync(dev: DebugDevice, addr: number, size: number, dir: DmaDirection, forCpu: boolean): void {
    const call = forCpu ? "dma_sync_single_for_cpu" : "dma_sync_single_for_device";
    const bad = this.at(dev, call, addr, size);
    const where = `[device address=${hex(addr)}] [size=${size} bytes]`;
    const e = this.list(dev).find((x) => addr >= x.addr && addr < x.addr + x.size);
    if (e === undefined) {
      bad(
        DMA_DEBUG_CLASS.SYNC_NOT_MAPPED,
        `device driver tries to sync DMA memory it has not allocated ${where}`,
      );
      return;
    }
    if (addr + size > e.addr + e.size) {
      bad(
        DMA_DEBUG_CLASS.SYNC_OUTSIDE,
        `device driver syncs DMA memory outside allocated range [device address=${hex(e.addr)}] [allocation size=${e.size} bytes] [sync offset+size=${addr - e.addr + size}]`,
      );
    }
    if (e.dir !== DMA_DIRECTION.BIDIRECTIONAL && e.dir !== dir) {
      bad(
        DMA_DEBUG_CLASS.SYNC_DIRECTION,
        `device driver syncs DMA memory with different direction ${where} [mapped with ${directionName(e.dir)}] [synced with ${directionName(dir)}]`,
      );
    }
    if (forCpu && e.dir === DMA_DIRECTION.TO_DEVICE && dir !== DMA_DIRECTION.TO_DEVICE) {
      bad(
        DMA_DEBUG_CLASS.SYNC_RO_FOR_CPU,
        `device driver syncs device read-only DMA memory for cpu ${where}`,
      );
    }
    if (!forCpu && e.dir === DMA_DIRECTION.FROM_DEVICE && dir !== DMA_DIRECTION.FROM_DEVICE) {
      bad(
        DMA_DEBUG_CLASS.SYNC_WO_FOR_DEVICE,
        `device driver syncs device write-only DMA memory to device ${where}`,
      );
    }
  }

  /**
   * A device access by DMA (from `DeviceDma`): it must hit a live mapping; in an IOVA state
   * the linked range must have been synced; an access to a range unmapped earlier is reported
   * as an access after unmap (in lazy mode the IOMMU may even still let it through).
   */
  deviceAccess(dev: DebugDevice, addr: number, len: number, write: boolean): void {
    const call = write ? "device write" : "device read";
    for (const e of this.list(dev)) if (addr >= e.addr && addr + len <= e.addr + e.size) return;
    if (this.iova.access(dev, addr, len, call)) return;
    const where = `${hex(addr)}+${hex(len)}`;
    if (this.unmapped.find(dev, addr, len)) {
      this.at(
        dev,
        call,
        addr,
        len,
      )(DMA_DEBUG_CLASS.ACCESS_AFTER_UNMAP, `device accessed ${where} after it was unmapped`);
      return;
    }
    this.at(
      dev,
      call,
      addr,
      len,
    )(DMA_DEBUG_CLASS.ACCESS_NOT_MAPPED, `device accessed ${where}, which the driver never mapped`);
  }

  /** Linux's unbind check: reports one leak record per mapping still live for `dev`; returns how many. */
  checkLeaks(dev: DebugDevice): number {
    const l = this.list(dev);
    for (const e of l) {
      this.at(
        dev,
        "driver unbind",
        e.addr,
        e.size,
      )(
        DMA_DEBUG_CLASS.LEAK,
        `device driver has pending DMA allocations while released from device [count=${l.length}] [device address=${hex(e.addr)}] [size=${e.size} bytes] [mapped with ${directionName(e.dir)}] [mapped as ${e.type}]`,
      );
    }
    return l.length + this.iova.checkLeaks(dev);
  }
}
