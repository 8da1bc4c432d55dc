/**
 * dma-debug (kernel/dma/debug.c), extended to the two-step IOVA API, which upstream does not
 * check at all. Every report is a structured record; optionally the first error throws.
 */
import { type KernelVersion, type PhysMemory, hex, kernelHas } from "@dmasim/bvec";
import { DMA_ATTR, DMA_DIRECTION, type DmaDirection, directionName, hasAttr } from "./constants.ts";
import { DmaError } from "./errors.ts";

/**
 * What dma-debug reads of a device: its name, kernel release and memory map. Entries are kept
 * per device object, as Linux keys them by `struct device *` (every `Device` is one).
 */
export interface DebugDevice {
  readonly name: string;
  readonly kernel: KernelVersion;
  readonly memory: PhysMemory;
}

/** The classes of driver bug dma-debug reports. */
export const DMA_DEBUG_CLASS = {
  UNMAP_NOT_MAPPED: "unmap-not-mapped",
  UNMAP_SIZE: "unmap-size-mismatch",
  UNMAP_TYPE: "unmap-type-mismatch",
  UNMAP_DIRECTION: "unmap-direction-mismatch",
  UNMAP_SG_NENTS: "unmap-sg-nents-mismatch",
  FREE_CPU_ADDR: "free-coherent-cpu-address-mismatch",
  SYNC_NOT_MAPPED: "sync-not-mapped",
  SYNC_OUTSIDE: "sync-outside-mapping",
  SYNC_DIRECTION: "sync-direction-mismatch",
  SYNC_RO_FOR_CPU: "sync-device-read-only-for-cpu",
  SYNC_WO_FOR_DEVICE: "sync-device-write-only-for-device",
  LEAK: "leak",
  IOVA_LINK_OUTSIDE: "iova-link-outside-allocation",
  IOVA_LINK_OVERLAP: "iova-link-overlap",
  IOVA_SYNC_UNLINKED: "iova-sync-unlinked",
  IOVA_ACCESS_BEFORE_SYNC: "iova-access-before-sync",
  IOVA_FREE_WITH_LINKS: "iova-free-with-links",
  IOVA_DESTROY_LENGTH: "iova-destroy-length-mismatch",
  IOVA_UNLINK_NOT_LINKED: "iova-unlink-not-linked",
  IOVA_USE_AFTER_FREE: "iova-state-use-after-free",
  ACCESS_AFTER_UNMAP: "device-access-after-unmap",
  ACCESS_NOT_MAPPED: "device-access-not-mapped",
  CACHELINE_OVERLAP: "cacheline-overlap",
  MAP_RESOURCE_RAM: "map-resource-ram",
  WARN: "warning",
} as const;
/** A dma-debug report class. */
export type DmaDebugClass = (typeof DMA_DEBUG_CLASS)[keyof typeof DMA_DEBUG_CLASS];

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

/** One report. */
export interface DmaDebugReport {
  readonly class: DmaDebugClass;
  readonly device: string;
  readonly call: string;
  readonly addr: number;
  readonly size: number;
  readonly message: string;
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

/** A linked piece of an IOVA state. */
interface LinkRange {
  offset: number;
  size: number;
  synced: boolean;
}

/** What dma-debug knows of one `DmaIovaState`. */
export interface IovaTrack {
  base: number;
  size: number;
  freed: boolean;
  links: LinkRange[];
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
  private readonly entries = new Map<DebugDevice, Entry[]>();
  private readonly iovas = new Map<DebugDevice, Set<IovaTrack>>();
  private readonly unmapped = new Map<DebugDevice, { addr: number; size: number }[]>();
  private readonly history: number;
  /** Linux `dma_active_cacheline`: one tree for all devices, keyed by cacheline number. */
  private readonly cachelines = new Map<number, ActiveCacheline>();
  /** The WARN_ONCE of `active_cacheline_inc_overlap` fired. */
  private overlapWarned = false;

  constructor(options: DmaDebugOptions = {}) {
    this.throwOnError = options.throwOnError ?? false;
    this.history = options.unmappedHistory ?? 4096;
  }

  /** Error reports (warnings excluded). */
  get errors(): DmaDebugReport[] {
    return this.reports.filter((r) => r.class !== DMA_DEBUG_CLASS.WARN);
  }

  /** Mappings still live for `dev` (or all devices), IOVA states included. */
  outstanding(dev?: DebugDevice): number {
    let n = 0;
    for (const [d, list] of this.entries) if (dev === undefined || d === dev) n += list.length;
    for (const [d, set] of this.iovas)
      if (dev === undefined || d === dev) for (const t of set) if (!t.freed) n++;
    return n;
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
    this.forgetUnmapped(dev, e.addr, e.size);
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
    // active_cacheline_inc_overlap: the count lives in 3 radix-tree tags and stops at 7.
    if (line.overlap < ACTIVE_CACHELINE_MAX_OVERLAP) {
      line.overlap++;
    } else if (!this.overlapWarned) {
      this.overlapWarned = true;
      this.warn(
        dev,
        call,
        `exceeded ${ACTIVE_CACHELINE_MAX_OVERLAP} overlapping mappings of cacheline ${hex(cln)}`,
        e.addr,
        e.size,
      );
    }
    if (hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) || (clean && line.clean)) return;
    this.report(
      dev,
      DMA_DEBUG_CLASS.CACHELINE_OVERLAP,
      call,
      e.addr,
      e.size,
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

  private rememberUnmapped(dev: DebugDevice, addr: number, size: number): void {
    let l = this.unmapped.get(dev);
    if (!l) {
      l = [];
      this.unmapped.set(dev, l);
    }
    l.push({ addr, size });
    if (l.length > this.history) l.shift();
  }

  private forgetUnmapped(dev: DebugDevice, addr: number, size: number): void {
    const l = this.unmapped.get(dev);
    if (!l) return;
    for (let i = l.length - 1; i >= 0; i--) {
      const u = l[i] as { addr: number; size: number };
      if (u.addr < addr + size && addr < u.addr + u.size) l.splice(i, 1);
    }
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
      this.report(
        dev,
        DMA_DEBUG_CLASS.MAP_RESOURCE_RAM,
        call,
        addr,
        size,
        `dma_map_resource called for RAM address ${hex(phys)}`,
      );
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
    for (const s of segs)
      this.add(
        dev,
        {
          addr: s.addr,
          size: s.len,
          phys: s.phys,
          dir,
          type: "sg",
          sgNents: nents,
          cpuAddr: 0,
        },
        attrs,
        "dma_map_sg",
      );
  }

  /** Hook of `dma_alloc_coherent`. */
  allocCoherent(dev: DebugDevice, addr: number, cpuAddr: number, size: number): void {
    this.add(
      dev,
      {
        addr,
        size,
        phys: cpuAddr,
        dir: DMA_DIRECTION.BIDIRECTIONAL,
        type: "coherent",
        sgNents: 0,
        cpuAddr,
      },
      0,
      "dma_alloc_coherent",
    );
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
    const l = this.list(dev);
    const same = l.filter((e) => e.addr === addr);
    if (same.length === 0) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_NOT_MAPPED,
        call,
        addr,
        size,
        `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      );
      return;
    }
    const exact = same.find((e) => e.size === size && e.type === type && e.dir === dir);
    const e = exact ?? (same.length === 1 ? same[0] : undefined);
    if (e === undefined) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_NOT_MAPPED,
        call,
        addr,
        size,
        `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes] (no best fit among ${same.length} mappings)`,
      );
      return;
    }
    if (e.size !== size) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_SIZE,
        call,
        addr,
        size,
        `device driver frees DMA memory with different size [device address=${hex(addr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
      );
    }
    if (e.type !== type) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_TYPE,
        call,
        addr,
        size,
        `device driver frees DMA memory with wrong function [device address=${hex(addr)}] [size=${size} bytes] [mapped as ${e.type}] [unmapped as ${type}]`,
      );
    }
    if (type === "coherent" && cpuAddr >= 0 && e.cpuAddr !== cpuAddr) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.FREE_CPU_ADDR,
        call,
        addr,
        size,
        `device driver frees DMA memory with different CPU address [device address=${hex(addr)}] [size=${size} bytes] [cpu alloc address=${hex(e.cpuAddr)}] [cpu free address=${hex(cpuAddr)}]`,
      );
    }
    if (type === "sg" && e.sgNents !== sgNents) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_SG_NENTS,
        call,
        addr,
        size,
        `device driver frees DMA sg list with different entry count [map count=${e.sgNents}] [unmap count=${sgNents}]`,
      );
    }
    if (e.dir !== dir) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.UNMAP_DIRECTION,
        call,
        addr,
        size,
        `device driver frees DMA memory with different direction [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${directionName(e.dir)}] [unmapped with ${directionName(dir)}]`,
      );
    }
    l.splice(l.indexOf(e), 1);
    this.cachelineRemove(e);
    this.rememberUnmapped(dev, e.addr, e.size);
  }

  /** Linux `check_sync`: the range must lie in one mapping, in a compatible direction. */
  sync(dev: DebugDevice, addr: number, size: number, dir: DmaDirection, forCpu: boolean): void {
    const call = forCpu ? "dma_sync_single_for_cpu" : "dma_sync_single_for_device";
    const l = this.list(dev);
    const e = l.find((x) => addr >= x.addr && addr < x.addr + x.size);
    if (e === undefined) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.SYNC_NOT_MAPPED,
        call,
        addr,
        size,
        `device driver tries to sync DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      );
      return;
    }
    if (addr + size > e.addr + e.size) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.SYNC_OUTSIDE,
        call,
        addr,
        size,
        `device driver syncs DMA memory outside allocated range [device address=${hex(e.addr)}] [allocation size=${e.size} bytes] [sync offset+size=${addr - e.addr + size}]`,
      );
    }
    if (e.dir !== DMA_DIRECTION.BIDIRECTIONAL && e.dir !== dir) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.SYNC_DIRECTION,
        call,
        addr,
        size,
        `device driver syncs DMA memory with different direction [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${directionName(e.dir)}] [synced with ${directionName(dir)}]`,
      );
    }
    if (forCpu && e.dir === DMA_DIRECTION.TO_DEVICE && dir !== DMA_DIRECTION.TO_DEVICE) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.SYNC_RO_FOR_CPU,
        call,
        addr,
        size,
        `device driver syncs device read-only DMA memory for cpu [device address=${hex(addr)}] [size=${size} bytes]`,
      );
    }
    if (!forCpu && e.dir === DMA_DIRECTION.FROM_DEVICE && dir !== DMA_DIRECTION.FROM_DEVICE) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.SYNC_WO_FOR_DEVICE,
        call,
        addr,
        size,
        `device driver syncs device write-only DMA memory to device [device address=${hex(addr)}] [size=${size} bytes]`,
      );
    }
  }

  // ---------------------------------------------------------------------------------------
  // The IOVA API (not checked by upstream dma-debug)

  private iovaSet(dev: DebugDevice): Set<IovaTrack> {
    let s = this.iovas.get(dev);
    if (!s) {
      s = new Set();
      this.iovas.set(dev, s);
    }
    return s;
  }

  /** `dma_iova_try_alloc` succeeded. */
  iovaAlloc(dev: DebugDevice, base: number, size: number): IovaTrack {
    const t: IovaTrack = { base, size, freed: false, links: [] };
    this.iovaSet(dev).add(t);
    this.forgetUnmapped(dev, base, size);
    return t;
  }

  private live(dev: DebugDevice, t: IovaTrack | undefined, call: string): t is IovaTrack {
    if (t === undefined) return false;
    if (t.freed) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_USE_AFTER_FREE,
        call,
        t.base,
        t.size,
        `${call} on an IOVA state that was already freed or destroyed [iova=${hex(t.base)}]`,
      );
      return false;
    }
    return true;
  }

  /** A call on a state that was already freed or destroyed (reported as use after free). */
  iovaUseAfterFree(dev: DebugDevice, t: IovaTrack | undefined, call: string): void {
    this.live(dev, t, call);
  }

  /**
   * Before `dma_iova_link` maps anything: the range must lie inside the allocation and overlap
   * no linked range. Checked first so that an overlap is reported even though the page table
   * then refuses the map (EEXIST).
   */
  iovaLinkCheck(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_link")) return;
    if (offset + size > t.size) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_LINK_OUTSIDE,
        "dma_iova_link",
        t.base + offset,
        size,
        `dma_iova_link beyond the allocated IOVA [offset=${hex(offset)}] [size=${hex(size)}] [allocated=${hex(t.size)}]`,
      );
    }
    for (const r of t.links) {
      if (offset < r.offset + r.size && r.offset < offset + size) {
        this.report(
          dev,
          DMA_DEBUG_CLASS.IOVA_LINK_OVERLAP,
          "dma_iova_link",
          t.base + offset,
          size,
          `dma_iova_link overlaps a linked range [offset=${hex(offset)}+${hex(size)}] [linked=${hex(r.offset)}+${hex(r.size)}]`,
        );
        return;
      }
    }
  }

  /** `dma_iova_link` succeeded: records the linked range (not yet synced). */
  iovaLink(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_link")) return;
    t.links.push({ offset, size, synced: false });
  }

  /** `dma_iova_sync`. */
  iovaSync(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_sync")) return;
    let covered = 0;
    for (const r of t.links) {
      const lo = Math.max(r.offset, offset);
      const hi = Math.min(r.offset + r.size, offset + size);
      if (hi > lo) {
        covered += hi - lo;
        if (lo === r.offset && hi === r.offset + r.size) r.synced = true;
        else if (lo <= r.offset && hi >= r.offset + r.size) r.synced = true;
      }
    }
    if (covered < size) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_SYNC_UNLINKED,
        "dma_iova_sync",
        t.base + offset,
        size,
        `dma_iova_sync of a range that is not (entirely) linked [offset=${hex(offset)}] [size=${hex(size)}] [linked bytes=${hex(covered)}]`,
      );
    }
  }

  /** `dma_iova_unlink`. */
  iovaUnlink(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_unlink")) return;
    this.removeLinks(dev, t, offset, size, "dma_iova_unlink");
  }

  private removeLinks(
    dev: DebugDevice,
    t: IovaTrack,
    offset: number,
    size: number,
    call: string,
  ): void {
    const keep: LinkRange[] = [];
    let removed = 0;
    for (const r of t.links) {
      if (r.offset >= offset && r.offset + r.size <= offset + size) removed += r.size;
      else keep.push(r);
    }
    if (removed !== size) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_UNLINK_NOT_LINKED,
        call,
        t.base + offset,
        size,
        `${call} of a range that was not linked as such [offset=${hex(offset)}] [size=${hex(size)}] [linked bytes in it=${hex(removed)}]`,
      );
    }
    t.links = keep;
    this.rememberUnmapped(dev, t.base + offset, size);
  }

  /** `dma_iova_destroy`: exactly [0, mappedLen) must be linked. */
  iovaDestroy(dev: DebugDevice, t: IovaTrack | undefined, mappedLen: number): void {
    if (!this.live(dev, t, "dma_iova_destroy")) return;
    const linked = t.links.reduce((n, r) => n + r.size, 0);
    const contiguous = [...t.links]
      .sort((a, b) => a.offset - b.offset)
      .every((r, i, a) =>
        i === 0
          ? r.offset === 0
          : r.offset === (a[i - 1] as LinkRange).offset + (a[i - 1] as LinkRange).size,
      );
    if (linked !== mappedLen || !contiguous) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_DESTROY_LENGTH,
        "dma_iova_destroy",
        t.base,
        mappedLen,
        `dma_iova_destroy of ${hex(mappedLen)} bytes, but ${hex(linked)} bytes are linked${contiguous ? "" : " (not one range from offset 0)"}`,
      );
    }
    t.links = [];
    t.freed = true;
    this.rememberUnmapped(dev, t.base, Math.max(mappedLen, t.size));
    this.iovaSet(dev).delete(t);
  }

  /** `dma_iova_free`: nothing may still be linked. */
  iovaFree(dev: DebugDevice, t: IovaTrack | undefined): void {
    if (!this.live(dev, t, "dma_iova_free")) return;
    if (t.links.length > 0) {
      const linked = t.links.reduce((n, r) => n + r.size, 0);
      this.report(
        dev,
        DMA_DEBUG_CLASS.IOVA_FREE_WITH_LINKS,
        "dma_iova_free",
        t.base,
        t.size,
        `dma_iova_free with ${t.links.length} range(s) (${hex(linked)} bytes) still linked`,
      );
    }
    t.freed = true;
    this.rememberUnmapped(dev, t.base, t.size);
    this.iovaSet(dev).delete(t);
  }

  /**
   * A device access by DMA (from `DeviceDma`): it must hit a live mapping; in an IOVA state
   * the linked range must have been synced; an access to a range unmapped earlier is reported
   * as an access after unmap (in lazy mode the IOMMU may even still let it through).
   */
  deviceAccess(dev: DebugDevice, addr: number, len: number, write: boolean): void {
    const call = write ? "device write" : "device read";
    for (const e of this.list(dev)) if (addr >= e.addr && addr + len <= e.addr + e.size) return;
    for (const t of this.iovaSet(dev)) {
      if (addr >= t.base && addr < t.base + t.size) {
        const off = addr - t.base;
        for (const r of t.links) {
          if (off >= r.offset && off < r.offset + r.size) {
            if (!r.synced) {
              this.report(
                dev,
                DMA_DEBUG_CLASS.IOVA_ACCESS_BEFORE_SYNC,
                call,
                addr,
                len,
                `device accessed linked IOVA ${hex(addr)}+${hex(len)} before dma_iova_sync`,
              );
            }
            return;
          }
        }
      }
    }
    const u = this.unmapped.get(dev)?.find((x) => addr < x.addr + x.size && x.addr < addr + len);
    if (u) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.ACCESS_AFTER_UNMAP,
        call,
        addr,
        len,
        `device accessed ${hex(addr)}+${hex(len)} after it was unmapped`,
      );
      return;
    }
    this.report(
      dev,
      DMA_DEBUG_CLASS.ACCESS_NOT_MAPPED,
      call,
      addr,
      len,
      `device accessed ${hex(addr)}+${hex(len)}, which the driver never mapped`,
    );
  }

  /** Linux's unbind check: reports one leak record per mapping still live for `dev`; returns how many. */
  checkLeaks(dev: DebugDevice): number {
    const l = this.list(dev);
    for (const e of l) {
      this.report(
        dev,
        DMA_DEBUG_CLASS.LEAK,
        "driver unbind",
        e.addr,
        e.size,
        `device driver has pending DMA allocations while released from device [count=${l.length}] [device address=${hex(e.addr)}] [size=${e.size} bytes] [mapped with ${directionName(e.dir)}] [mapped as ${e.type}]`,
      );
    }
    let n = l.length;
    for (const t of this.iovaSet(dev)) {
      if (t.freed) continue;
      n++;
      this.report(
        dev,
        DMA_DEBUG_CLASS.LEAK,
        "driver unbind",
        t.base,
        t.size,
        `device driver has an IOVA state still allocated while released from device [iova=${hex(t.base)}] [size=${hex(t.size)}] [linked ranges=${t.links.length}]`,
      );
    }
    return n;
  }
}
