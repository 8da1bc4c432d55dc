/**
 * The physical address map: regions of RAM (with holes between them), device memory such as
 * P2P BARs, and MMIO; the zones RAM is divided into; and the lookup from an address to its
 * region. Each region keeps its bytes in a `SparseBytes` store.
 */
import { TWO_POW_32, alignDown, checkAddr, checkInt, hex, isAligned } from "./addr.ts";
import { BvecError } from "./errors.ts";
import type { SparseBytes } from "./sparse.ts";

/** The kinds of physical region. */
export const REGION_KIND = {
  /** System RAM, usable by the page allocator. */
  RAM: "ram",
  /** Device memory a peer device exposes through a PCI BAR (P2P DMA provider). */
  P2P: "p2p",
  /** Other MMIO (registers); holds bytes but is never handed out as RAM. */
  MMIO: "mmio",
} as const;
/** A region kind. */
export type RegionKind = (typeof REGION_KIND)[keyof typeof REGION_KIND];

/** A region of the physical address map, as given to `PhysMemory`. */
export interface RegionSpec {
  /** First byte (aligned to the page size). */
  readonly start: number;
  /** Length in bytes (a multiple of the page size). */
  readonly size: number;
  readonly kind: RegionKind;
  /** Who owns it: the device exposing a BAR, or a label for RAM. */
  readonly owner?: string;
}

/** A region of the physical address map. */
export interface Region extends RegionSpec {
  readonly owner: string;
  /** One past the last byte. */
  readonly end: number;
}

/** Linux memory zones (x86-64 boundaries): DMA below 16 MiB, DMA32 below 4 GiB, Normal above. */
export const ZONE = { DMA: "dma", DMA32: "dma32", NORMAL: "normal" } as const;
/** A zone name. */
export type Zone = (typeof ZONE)[keyof typeof ZONE];

/** The end of ZONE_DMA (16 MiB). */
export const ZONE_DMA_END = 16 * 1024 * 1024;
/** The end of ZONE_DMA32 (4 GiB). */
export const ZONE_DMA32_END = TWO_POW_32;
/** The zones, lowest first. */
export const ZONES: readonly Zone[] = [ZONE.DMA, ZONE.DMA32, ZONE.NORMAL];

/** The zone a RAM address belongs to. */
export function zoneOf(phys: number): Zone {
  return phys < ZONE_DMA_END ? ZONE.DMA : phys < ZONE_DMA32_END ? ZONE.DMA32 : ZONE.NORMAL;
}

/** The page sizes a simulated machine may have. */
export const PAGE_SIZES = [4096, 16384, 65536] as const;
/** A supported page size. */
export type PageSize = (typeof PAGE_SIZES)[number];

/** The first byte of RAM in the standard layout: the first 1 MiB is reserved. */
const LOW_RAM_START = 0x100000;
/** The start of the PCI hole (2 GiB); it ends at 4 GiB, where the rest of RAM goes. */
const PCI_HOLE_START = 0x80000000;

/**
 * The usual x86-64 physical map for `ramBytes` of RAM: the first 1 MiB reserved, low RAM up to
 * 2 GiB, the PCI hole from 2 GiB to 4 GiB, and the rest of RAM from 4 GiB up.
 */
export function standardLayout(ramBytes: number, pageSize: PageSize = 4096): RegionSpec[] {
  checkInt(ramBytes, "RAM size", pageSize);
  const low = Math.min(alignDown(ramBytes, pageSize), PCI_HOLE_START - LOW_RAM_START);
  const out: RegionSpec[] = [
    { start: LOW_RAM_START, size: low, kind: REGION_KIND.RAM, owner: "ram-low" },
  ];
  const rest = alignDown(ramBytes - low, pageSize);
  if (rest > 0)
    out.push({ start: TWO_POW_32, size: rest, kind: REGION_KIND.RAM, owner: "ram-high" });
  return out;
}

/** A region of the map with its page frame range and its bytes. */
export interface RegionStore {
  readonly region: Region;
  readonly startPfn: number;
  readonly endPfn: number;
  readonly bytes: SparseBytes;
}

/** The regions of a physical map, sorted by address, and the lookup of an address. */
export class RegionMap {
  private readonly stores: RegionStore[] = [];
  /** The store the last lookup found (accesses come in runs). */
  private last: RegionStore | undefined;
  private readonly pageSize: number;
  private readonly newBytes: (size: number) => SparseBytes;

  /** `newBytes` makes the byte store of a region of `size` bytes. */
  constructor(pageSize: number, newBytes: (size: number) => SparseBytes) {
    this.pageSize = pageSize;
    this.newBytes = newBytes;
  }

  /** The regions with their stores, sorted by address. */
  get all(): readonly RegionStore[] {
    return this.stores;
  }

  /** Adds a page-aligned region that overlaps no other; returns its store. */
  add(spec: RegionSpec): RegionStore {
    const ps = this.pageSize;
    checkAddr(spec.start, "region start");
    checkInt(spec.size, "region size", 1);
    checkAddr(spec.start + spec.size, "region end", 53);
    if (!isAligned(spec.start, ps) || !isAligned(spec.size, ps)) {
      throw new BvecError(
        "EINVAL",
        `region ${hex(spec.start)}+${hex(spec.size)} is not aligned to the ${hex(ps)} page size`,
      );
    }
    if (!Object.values(REGION_KIND).includes(spec.kind)) {
      throw new BvecError(
        "EINVAL",
        `region kind ${JSON.stringify(spec.kind)} is not ram, p2p or mmio`,
      );
    }
    const end = spec.start + spec.size;
    for (const s of this.stores) {
      if (spec.start < s.region.end && s.region.start < end) {
        throw new BvecError(
          "EINVAL",
          `region ${hex(spec.start)}-${hex(end - 1)} overlaps ${s.region.owner} at ${hex(s.region.start)}-${hex(s.region.end - 1)}`,
        );
      }
    }
    const region: Region = {
      start: spec.start,
      size: spec.size,
      end,
      kind: spec.kind,
      owner: spec.owner ?? spec.kind,
    };
    const store: RegionStore = {
      region,
      startPfn: spec.start / ps,
      endPfn: end / ps,
      bytes: this.newBytes(spec.size),
    };
    this.stores.push(store);
    this.stores.sort((a, b) => a.region.start - b.region.start);
    return store;
  }

  /** The store of the region containing `phys`, or undefined for a hole. */
  find(phys: number): RegionStore | undefined {
    const last = this.last;
    if (last !== undefined && phys >= last.region.start && phys < last.region.end) return last;
    const st = this.stores;
    let lo = 0;
    let hi = st.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1; // eslint-disable-line no-bitwise -- array index
      const s = st[mid] as RegionStore;
      if (phys < s.region.start) hi = mid - 1;
      else if (phys >= s.region.end) lo = mid + 1;
      else {
        this.last = s;
        return s;
      }
    }
    return undefined;
  }

  /**
   * The store of the region where an access of `len` bytes at `phys` starts; throws EFAULT
   * unless every byte lies in a region (an access may run on into adjacent regions).
   */
  checked(phys: number, len: number): RegionStore {
    if (!Number.isSafeInteger(phys) || phys < 0) checkAddr(phys, "physical address", 53);
    const s = this.find(phys);
    if (s === undefined) {
      throw new BvecError(
        "EFAULT",
        `access of ${hex(len)} bytes at ${hex(phys)} falls in a hole of the physical map`,
      );
    }
    if (phys + len <= s.region.end) return s;
    // The access spans regions: every byte must be covered by adjacent regions.
    let p = s.region.end;
    while (p < phys + len) {
      const t = this.find(p);
      if (t === undefined) {
        throw new BvecError(
          "EFAULT",
          `access of ${hex(len)} bytes at ${hex(phys)} reaches a hole at ${hex(p)} past the end of ${s.region.owner}`,
        );
      }
      p = t.region.end;
    }
    return s;
  }
}
