/**
 * The device model (Linux `struct device` as the DMA layer sees it): masks, bus offsets,
 * coherency, trust, segment limits, the attached IOMMU domain, SWIOTLB, P2P reachability.
 */
import {
  CounterSet,
  DEFAULT_KERNEL,
  type KernelVersion,
  MAX_ADDR,
  type PhysMemory,
  REGION_KIND,
  type SimClock,
  checkAddr,
  checkMask,
  hex,
} from "@dmasim/bvec";
import type { IommuDomain } from "@dmasim/iommu";
import { type BusDmaRegion, dmaBitMask } from "./constants.ts";
import type { DmaDebug } from "./debug.ts";
import { DmaError } from "./errors.ts";
import { type IommuDmaCookie, domainIovaCookie } from "./iommu-dma-cookie.ts";
import type { Swiotlb } from "./swiotlb.ts";

/** The segment boundary `pci_device_add` gives every PCI function (`dma_set_seg_boundary`). */
const PCI_SEG_BOUNDARY_MASK = 0xffffffff;

/** How a device reaches a P2P provider's memory (Linux `enum pci_p2pdma_map_type`). */
export const P2P_MAP = {
  /** Not P2P memory (normal RAM). */
  NONE: "none",
  /** The device cannot reach it. */
  NOT_SUPPORTED: "not-supported",
  /** Through a PCI switch, by bus address: no DMA mapping at all. */
  BUS_ADDR: "bus-addr",
  /** Through the host bridge: mapped like RAM, with DMA_ATTR_MMIO. */
  THRU_HOST_BRIDGE: "thru-host-bridge",
} as const;
/** A P2P map type. */
export type P2pMap = (typeof P2P_MAP)[keyof typeof P2P_MAP];

/** How one P2P provider (a region owner) is reached. */
export interface P2pRoute {
  readonly map: "bus-addr" | "thru-host-bridge";
  /** Bus address = phys - busOffset, for `bus-addr` (Linux `pci_p2pdma_bus_addr_map`). */
  readonly busOffset?: number;
}

/** Options of a `Device`. */
export interface DeviceOptions {
  readonly name: string;
  readonly memory: PhysMemory;
  /** The Linux release whose DMA layer (and drivers) this device runs under (default: newest). */
  readonly kernel?: KernelVersion;
  /** Streaming DMA mask, bits (default 64). */
  readonly dmaMaskBits?: number;
  /** Coherent DMA mask, bits (default: the streaming mask). */
  readonly coherentMaskBits?: number;
  /** Linux `bus_dma_limit` (0: none). */
  readonly busDmaLimit?: number;
  /** Linux `dma_range_map` (bus offsets); empty: DMA address = physical address. */
  readonly dmaRangeMap?: readonly BusDmaRegion[];
  /** Cache-coherent DMA (default true). */
  readonly coherent?: boolean;
  /** An untrusted (external-facing) PCI device: sub-granule buffers are bounced under an IOMMU. */
  readonly untrusted?: boolean;
  /**
   * A PCI device (default true): gets the 32-bit-first IOVA policy and PCI's default segment
   * boundary (4 GiB).
   */
  readonly pci?: boolean;
  /** Linux `dma_set_max_seg_size` (default 64 KiB). */
  readonly maxSegmentSize?: number;
  /**
   * Linux `dma_set_seg_boundary`. Default: 0xffffffff for a PCI device, as `pci_device_add`
   * sets it (`dma_set_seg_boundary(&dev->dev, 0xffffffff)`), else none (`dma_get_seg_boundary`
   * without `dma_parms`: ULONG_MAX).
   */
  readonly segmentBoundaryMask?: number;
  /** Linux `dma_set_min_align_mask` (default 0). */
  readonly minAlignMask?: number;
  /**
   * The attached domain (default: none, i.e. no IOMMU). A DMA or DMA-FQ domain is usable once
   * `iommuSetupDmaOps(dev)` has set it up, as the IOMMU core does at probe.
   */
  readonly iommu?: IommuDomain | null;
  /** The SWIOTLB pool the device may bounce through (default: none). */
  readonly swiotlb?: Swiotlb | null;
  /** Linux `swiotlb=force` / confidential guest: every direct mapping bounces. */
  readonly forceBounce?: boolean;
  /**
   * The two-step IOVA API may be used (default true). False is a what-if: `dmaIovaTryAlloc`
   * fails as it does without an IOMMU DMA domain, so its callers (the request mapper, NVMe)
   * take their per-segment `dmaMapPhys` fallback even under an IOMMU: one IOVA allocation, one
   * sync and one unmap per segment instead of one per request.
   */
  readonly iovaApi?: boolean;
  /** P2P providers (region owners) the device can reach, and how. */
  readonly p2p?: Readonly<Record<string, P2pRoute>>;
  /** The simulated clock (needed for lazy IOMMU mode). */
  readonly clock?: SimClock;
  /** dma-debug for this device. */
  readonly debug?: DmaDebug | null;
}

/** Counter names of a `Device`. */
export type DeviceCounter =
  | "maps"
  | "unmaps"
  | "mapFailures"
  | "syncsForCpu"
  | "syncsForDevice"
  | "cacheCleanBytes"
  | "cacheInvalidateBytes"
  | "iommuMaps"
  | "directMaps"
  | "bounceMaps"
  | "iovaLinks"
  | "iovaUnlinks"
  | "iovaSyncs"
  | "iovaTryAllocs"
  | "iovaTryAllocFailures"
  | "sgMaps"
  | "sgUnmaps"
  | "coherentAllocs"
  | "coherentFrees"
  | "coherentBytes";

/** A device as the DMA layer sees it. */
export class Device {
  readonly name: string;
  readonly memory: PhysMemory;
  /** The Linux release modelled for this device; gated behaviours ask `kernelHas(dev.kernel, …)`. */
  readonly kernel: KernelVersion;
  /** Streaming mask as a limit (`*dev->dma_mask`). */
  dmaMask: number;
  dmaMaskBits: number;
  /** Coherent mask as a limit. */
  coherentDmaMask: number;
  busDmaLimit: number;
  readonly dmaRangeMap: readonly BusDmaRegion[];
  readonly coherent: boolean;
  readonly untrusted: boolean;
  readonly pci: boolean;
  maxSegmentSize: number;
  segmentBoundaryMask: number;
  minAlignMask: number;
  /** The attached domain, if any. */
  readonly domain: IommuDomain | null;
  /**
   * Linux `dev->dma_iommu` (which `iommu_setup_dma_ops` sets): true when the attached domain is
   * a DMA-API (strict or lazy) domain, so the DMA calls go through dma-iommu.
   */
  readonly dmaIommu: boolean;
  /** Linux `dev->iommu->pci_32bit_workaround`: try 32-bit IOVAs first; cleared on the first failure. */
  pci32bitWorkaround: boolean;
  readonly swiotlb: Swiotlb | null;
  readonly forceBounce: boolean;
  /** See `DeviceOptions.iovaApi`. */
  readonly iovaApi: boolean;
  readonly p2p: Readonly<Record<string, P2pRoute>>;
  /** Linux `dev->dma_skip_sync`: set for coherent devices, cleared on the first bounce. */
  dmaSkipSync: boolean;
  readonly debug: DmaDebug | null;
  readonly clock: SimClock | undefined;
  /** The simulated CPU the caller runs on (Linux `smp_processor_id()`), for per-CPU caches. */
  cpu = 0;
  readonly counters = new CounterSet<DeviceCounter>("dma", [
    "maps",
    "unmaps",
    "mapFailures",
    "syncsForCpu",
    "syncsForDevice",
    "cacheCleanBytes",
    "cacheInvalidateBytes",
    "iommuMaps",
    "directMaps",
    "bounceMaps",
    "iovaLinks",
    "iovaUnlinks",
    "iovaSyncs",
    "iovaTryAllocs",
    "iovaTryAllocFailures",
    "sgMaps",
    "sgUnmaps",
    "coherentAllocs",
    "coherentFrees",
    "coherentBytes",
  ]);

  constructor(o: DeviceOptions) {
    if (!o.name) throw new DmaError("EINVAL", "a device needs a name");
    this.name = o.name;
    this.kernel = o.kernel ?? DEFAULT_KERNEL;
    this.memory = o.memory;
    this.dmaMaskBits = o.dmaMaskBits ?? 64;
    this.dmaMask = dmaBitMask(this.dmaMaskBits);
    this.coherentDmaMask = dmaBitMask(o.coherentMaskBits ?? this.dmaMaskBits);
    this.busDmaLimit = checkAddr(o.busDmaLimit ?? 0, "bus_dma_limit", 53);
    for (const r of o.dmaRangeMap ?? []) {
      checkAddr(r.cpuStart, "dma_range_map cpu_start", 53);
      checkAddr(r.dmaStart, "dma_range_map dma_start", 53);
      checkAddr(r.size, "dma_range_map size", 53);
    }
    this.dmaRangeMap = o.dmaRangeMap ?? [];
    this.coherent = o.coherent ?? true;
    this.untrusted = o.untrusted ?? false;
    this.pci = o.pci ?? true;
    this.maxSegmentSize = o.maxSegmentSize ?? 65536;
    this.segmentBoundaryMask = checkMask(
      o.segmentBoundaryMask ?? (this.pci ? PCI_SEG_BOUNDARY_MASK : MAX_ADDR),
      "segment boundary mask",
    );
    this.minAlignMask = checkMask(o.minAlignMask ?? 0, "min_align_mask");
    this.domain = o.iommu ?? null;
    this.dmaIommu = this.domain !== null && this.domain.isDma;
    this.clock = o.clock ?? this.domain?.clock;
    this.pci32bitWorkaround = this.pci;
    this.swiotlb = o.swiotlb ?? null;
    this.forceBounce = o.forceBounce ?? false;
    this.iovaApi = o.iovaApi ?? true;
    if (this.forceBounce && this.swiotlb === null) {
      throw new DmaError("EINVAL", `device ${this.name}: forced bouncing needs a SWIOTLB pool`);
    }
    this.p2p = o.p2p ?? {};
    this.dmaSkipSync = this.coherent;
    this.debug = o.debug ?? null;
  }

  /**
   * The DMA cookie of the domain (`dev->iommu_group->domain->iova_cookie`: IOVA allocator, flush
   * queue) once `iommuSetupDmaOps` has set the domain up; null without one.
   */
  get cookie(): IommuDmaCookie | null {
    return this.dmaIommu && this.domain !== null ? domainIovaCookie(this.domain) : null;
  }

  /** Linux `dma_get_mask`. */
  getMask(): number {
    return this.dmaMask;
  }

  /** Linux `dma_set_mask`: sets the streaming mask (bits). */
  setMaskBits(bits: number): void {
    this.dmaMaskBits = bits;
    this.dmaMask = dmaBitMask(bits);
    // dma_set_mask -> dma_setup_need_sync: on the direct and the IOMMU path the device skips
    // syncs again exactly when it is coherent (the next SWIOTLB mapping clears it again).
    this.dmaSkipSync = this.coherent;
  }

  /** Linux `dma_get_seg_boundary`. */
  getSegBoundary(): number {
    return this.segmentBoundaryMask;
  }

  /**
   * Linux `pci_p2pdma_state`: how this device reaches the memory at `phys`: NONE for RAM, the
   * configured route for a P2P BAR, NOT_SUPPORTED otherwise.
   */
  p2pState(phys: number): P2pMap {
    const region = this.memory.regionOf(phys);
    if (region === undefined || region.kind === REGION_KIND.RAM) return P2P_MAP.NONE;
    if (region.kind !== REGION_KIND.P2P) return P2P_MAP.NOT_SUPPORTED;
    const route = this.p2p[region.owner];
    return route === undefined ? P2P_MAP.NOT_SUPPORTED : route.map;
  }

  /** Linux `pci_p2pdma_bus_addr_map`: the bus address of P2P memory reached through a switch. */
  p2pBusAddr(phys: number): number {
    const region = this.memory.regionOf(phys);
    const route = region ? this.p2p[region.owner] : undefined;
    if (route?.map !== "bus-addr") {
      throw new DmaError(
        "EREMOTEIO",
        `device ${this.name} has no bus-address route to ${hex(phys)}`,
      );
    }
    return phys - (route.busOffset ?? 0);
  }
}
