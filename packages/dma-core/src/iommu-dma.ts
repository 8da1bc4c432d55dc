/**
 * The DMA-to-IOMMU glue (drivers/iommu/dma-iommu.c): setting a device's domain up for the DMA
 * API (`iommuSetupDmaOps`, which creates the per-domain cookie of iommu-dma-cookie.ts), IOVA
 * allocation with the 32-bit-first policy, single mappings, SWIOTLB bouncing of sub-granule
 * buffers for untrusted devices, and strict or lazy unmapping.
 */
import {
  MAX_ADDR,
  REGION_KIND,
  SimError,
  alignDown,
  alignUp,
  hex,
  lowestSetBit,
} from "@dmasim/bvec";
import {
  FlushQueue,
  IOMMU_PROT,
  type IommuDomain,
  type IommuProt,
  type IotlbGather,
  IovaDomain,
} from "@dmasim/iommu";
import { archSyncDmaForCpu, archSyncDmaForDevice } from "./arch.ts";
import { DMA_ATTR, DMA_DIRECTION, type DmaDirection, hasAttr } from "./constants.ts";
import type { Device } from "./device.ts";
import { DmaError, type DmaErrorCode } from "./errors.ts";
import { IommuDmaCookie, type IommuDmaOptions, domainIovaCookie } from "./iommu-dma-cookie.ts";
import { swiotlbTblMapSingle } from "./swiotlb.ts";

/** The MSI doorbell window x86 IOMMUs reserve in every DMA domain (IOMMU_RESV_MSI). */
const MSI_WINDOW = { start: 0xfee00000, end: 0xfeefffff } as const;

/**
 * Linux `iommu_setup_dma_ops`, which the IOMMU core calls when it has attached a device's
 * default domain: sets the PCI 32-bit-first IOVA policy (`pci_32bit_workaround`, off with
 * `forcedac`) and, for a DMA or DMA-FQ domain, sets the domain up for the DMA API with
 * `iommu_dma_init_domain`. The first device of a domain creates its cookie
 * (`domain->iova_cookie`) with `options`; later devices share it. Call it once per device,
 * after `new Device({ iommu })` and before the first mapping; it does nothing for a device
 * without a domain. EINVAL when the domain cannot serve the DMA API (a granule above the CPU
 * page).
 */
export function iommuSetupDmaOps(dev: Device, options: Partial<IommuDmaOptions> = {}): void {
  const domain = dev.domain;
  const cookie = domain !== null && dev.dmaIommu ? iommuDmaInitDomain(domain, dev, options) : null;
  dev.pci32bitWorkaround = dev.pci && !(cookie?.options.forcedac ?? false);
}

/**
 * Linux `iommu_dma_init_domain`: creates (once) the cookie of a DMA domain: the granule is the
 * smallest page size, IOVA page 0 is never handed out, the MSI window and the host bridge
 * windows (MMIO and P2P regions of the physical map) are reserved. A lazy domain gets a flush
 * queue; without a clock it is downgraded to strict, as Linux does when the queue cannot be set up.
 * Not reserved (the model has none of them): a PCI hole outside the memory map, `dma-ranges`
 * gaps, RMRRs, AMD's HyperTransport hole.
 */
function iommuDmaInitDomain(
  domain: IommuDomain,
  dev: Device,
  opts: Partial<IommuDmaOptions>,
): IommuDmaCookie {
  const existing = domainIovaCookie(domain);
  if (existing) return existing;
  const granule = lowestSetBit(domain.pgsizeBitmap);
  const options: IommuDmaOptions = {
    forcedac: opts.forcedac ?? false,
    singleQueue: opts.singleQueue ?? false,
    numCpus: opts.numCpus ?? 1,
  };
  const clock = dev.clock ?? domain.clock;
  const startPfn = Math.max(1, Math.floor(domain.geometry.apertureStart / granule));
  // init_iova_domain BUG()s on a granule above PAGE_SIZE: the IOVA domain refuses it (EINVAL).
  const iovad = new IovaDomain({
    granule,
    startPfn,
    pageSize: dev.memory.pageSize,
    numCpus: options.numCpus,
    ...(clock ? { clock } : {}),
  });
  const top = domain.geometry.apertureEnd;
  const reserve = (start: number, end: number) => {
    const lo = Math.max(Math.floor(start / granule), startPfn);
    const hi = Math.min(Math.floor(end / granule), Math.floor(top / granule));
    if (lo <= hi) iovad.reserveIova(lo, hi);
  };
  if (dev.pci) {
    reserve(MSI_WINDOW.start, MSI_WINDOW.end);
    for (const r of dev.memory.regions) if (r.kind !== REGION_KIND.RAM) reserve(r.start, r.end - 1);
  }
  let fq: FlushQueue | null = null;
  if (domain.isLazy) {
    if (clock === undefined) domain.downgradeToStrict();
    else fq = new FlushQueue({ domain, iovad, clock, single: options.singleQueue, hz: domain.hz });
  }
  const cookie = new IommuDmaCookie(domain, iovad, fq, options);
  domain.iovaCookie = cookie;
  return cookie;
}

/** Turns an error from the IOMMU layer into a `DmaError` with the same errno. */
export function asDmaError(e: unknown): DmaError {
  if (e instanceof DmaError) return e;
  if (e instanceof SimError) {
    const code = (
      ["EINVAL", "ENOMEM", "EIO", "EPERM", "EEXIST", "ENODEV", "EFAULT"] as const
    ).includes(e.code as never)
      ? (e.code as DmaErrorCode)
      : "EINVAL";
    return new DmaError(code, e.message, { cause: e });
  }
  throw e;
}

/** Linux `dma_info_to_prot`. */
export function dmaInfoToProt(dir: DmaDirection, coherent: boolean, attrs: number): IommuProt {
  let prot = hasAttr(attrs, DMA_ATTR.MMIO) ? IOMMU_PROT.MMIO : coherent ? IOMMU_PROT.CACHE : 0;
  if (hasAttr(attrs, DMA_ATTR.PRIVILEGED)) prot += IOMMU_PROT.PRIV;
  switch (dir) {
    case DMA_DIRECTION.BIDIRECTIONAL:
      return prot + IOMMU_PROT.READ + IOMMU_PROT.WRITE;
    case DMA_DIRECTION.TO_DEVICE:
      return prot + IOMMU_PROT.READ;
    case DMA_DIRECTION.FROM_DEVICE:
      return prot + IOMMU_PROT.WRITE;
    default:
      return 0;
  }
}

function cookieOf(dev: Device): IommuDmaCookie {
  const c = dev.cookie;
  if (c === null) {
    throw new DmaError(
      "EINVAL",
      dev.dmaIommu
        ? `device ${dev.name}: its DMA domain was not set up (call iommuSetupDmaOps first)`
        : `device ${dev.name} is not behind an IOMMU DMA domain`,
    );
  }
  return c;
}

/**
 * Linux `iommu_dma_alloc_iova`: allocates `size` bytes (granule-aligned) of IOVA below
 * `dmaLimit`; PCI devices try below 4 GiB first until that fails once. Returns 0 on exhaustion.
 */
export function iommuDmaAllocIova(dev: Device, size: number, dmaLimit: number): number {
  const cookie = cookieOf(dev);
  const g = cookie.granule;
  const pages = size / g;
  let limit = dev.busDmaLimit !== 0 ? Math.min(dmaLimit, dev.busDmaLimit) : dmaLimit;
  const geo = cookie.domain.geometry;
  if (geo.forceAperture) limit = Math.min(limit, geo.apertureEnd);
  if (dev.pci32bitWorkaround && limit > 0xffffffff) {
    const pfn = cookie.iovad.allocIovaFast(pages, Math.floor(0xffffffff / g), false, dev.cpu);
    if (pfn !== 0) return pfn * g;
    // Linux logs "Using %d-bit DMA addresses" and stops trying 32-bit first for this device.
    dev.pci32bitWorkaround = false;
  }
  const pfn = cookie.iovad.allocIovaFast(pages, Math.floor(limit / g), true, dev.cpu);
  return pfn * g;
}

/** Linux `iommu_iotlb_gather_init` on the cookie's gather, allocating only to drop a freelist handed on. */
export function iommuDmaGather(cookie: IommuDmaCookie, queued: boolean): IotlbGather {
  const g = cookie.gather;
  g.start = MAX_ADDR;
  g.end = 0;
  g.pgsize = 0;
  if (g.freelist.length !== 0) g.freelist = [];
  g.queued = queued;
  return g;
}

/** Linux `iommu_dma_free_iova`: through the flush queue when the gather is queued, else at once. */
export function iommuDmaFreeIova(
  dev: Device,
  iova: number,
  size: number,
  gather: IotlbGather | null,
): void {
  const cookie = cookieOf(dev);
  const g = cookie.granule;
  if (gather?.queued && cookie.fq) {
    cookie.fq.queueIova(iova / g, size / g, gather.freelist, dev.cpu);
    // The queue owns the pages now.
    if (gather.freelist.length !== 0) gather.freelist = [];
  } else {
    cookie.iovad.freeIovaFast(iova / g, size / g, dev.cpu);
  }
}

/**
 * Linux `__iommu_dma_map`: allocates IOVA for the granule-rounded range, maps it with
 * `iommu_map` (map + sync), returns the IOVA plus the sub-granule offset. Throws on failure
 * (ENOMEM for IOVA exhaustion) and leaves nothing behind.
 */
export function iommuDmaMapRaw(
  dev: Device,
  phys: number,
  size: number,
  prot: IommuProt,
  dmaMask: number,
): number {
  const cookie = cookieOf(dev);
  const g = cookie.granule;
  if (dev.minAlignMask > g - 1) {
    throw new DmaError(
      "EINVAL",
      `device ${dev.name}: min_align_mask ${hex(dev.minAlignMask)} exceeds the IOMMU granule ${hex(g)} (unsupported alignment constraint)`,
    );
  }
  const off = iovaOffset(phys, g);
  const len = alignUp(size + off, g);
  const iova = iommuDmaAllocIova(dev, len, dmaMask);
  if (iova === 0)
    throw new DmaError(
      "ENOMEM",
      `device ${dev.name}: IOVA space exhausted for ${hex(len)} bytes below ${hex(dmaMask)}`,
    );
  try {
    cookie.domain.map(iova, phys - off, len, prot);
  } catch (e) {
    cookie.iovad.freeIovaFast(iova / g, len / g, dev.cpu);
    throw asDmaError(e);
  }
  return iova + off;
}

/**
 * Linux `__iommu_dma_unmap`: unmaps the granule-rounded range; strict mode invalidates before
 * the IOVA is freed, lazy mode queues the IOVA and the freed table pages. Returns the bytes the
 * page table removed (a warning when it differs from the length, as Linux's WARN_ON).
 *
 * With `checkMapped` (callers that skipped `iommu_dma_unmap_phys`'s `iommu_iova_to_phys` check
 * because they need no physical address), an unmap that removed nothing is looked up then: if
 * `dmaAddr` is not mapped it returns -1 before syncing or freeing anything, as that check does
 * (the page table stops at the first hole, so nothing was changed).
 */
export function iommuDmaUnmapRaw(
  dev: Device,
  dmaAddr: number,
  size: number,
  checkMapped = false,
): number {
  const cookie = cookieOf(dev);
  const g = cookie.granule;
  const off = iovaOffset(dmaAddr, g);
  const start = dmaAddr - off;
  const len = alignUp(size + off, g);
  const gather = iommuDmaGather(cookie, cookie.fq !== null);
  const unmapped = cookie.domain.unmapFast(start, len, gather);
  if (unmapped !== len) {
    if (checkMapped && unmapped === 0 && cookie.domain.iovaToPhys(dmaAddr) === 0) return -1;
    dev.debug?.warn(
      dev,
      "__iommu_dma_unmap",
      `unmapped ${hex(unmapped)} of ${hex(len)} bytes at ${hex(start)}`,
      start,
      len,
    );
  }
  if (!gather.queued) cookie.domain.iotlbSync(gather);
  iommuDmaFreeIova(dev, start, len, gather);
  return unmapped;
}

function warnUnmapped(dev: Device, dmaAddr: number, size: number): void {
  dev.debug?.warn(
    dev,
    "unmap-unmapped-iova",
    `unmap of ${hex(dmaAddr)}+${hex(size)}: the IOVA is not mapped (the mapping leaks)`,
    dmaAddr,
    size,
  );
}

/** Linux `dev_use_swiotlb`: untrusted devices bounce sub-granule buffers (kmalloc bouncing is not modelled). */
export function devUseSwiotlb(dev: Device): boolean {
  return dev.untrusted;
}

/**
 * Linux `iova_offset`: `x mod granule` for a power-of-two granule. Computed by division, which
 * is exact here and several times faster than `%` on addresses above 2^31 (a libm fmod call).
 */
export function iovaOffset(x: number, granule: number): number {
  return x - Math.floor(x / granule) * granule;
}

/** Linux `iova_unaligned`: the buffer shares an IOMMU granule with other data. */
export function iovaUnaligned(phys: number, size: number, granule: number): boolean {
  return iovaOffset(phys, granule) !== 0 || iovaOffset(size, granule) !== 0;
}

/**
 * Linux `iommu_dma_map_swiotlb`: bounces a sub-granule buffer into slots aligned to the
 * granule, keeping the min_align_mask bits (through `swiotlbTblMapSingle`, which also clears
 * the device's skip-sync state), and zeroes the rest of the bounce granules for
 * untrusted devices so no stale data is exposed. Returns the bounce address.
 */
export function iommuDmaMapSwiotlb(
  dev: Device,
  phys: number,
  size: number,
  minAlignMask = dev.minAlignMask,
): number {
  if (dev.swiotlb === null) {
    throw new DmaError(
      "ENOMEM",
      `device ${dev.name}: DMA bounce buffers are inactive, unable to map an unaligned transaction at ${hex(phys)}`,
    );
  }
  const g = cookieOf(dev).granule;
  const tlb = swiotlbTblMapSingle(dev, phys, size, g - 1, minAlignMask, g);
  if (dev.untrusted) {
    const lo = alignDown(tlb, g);
    const hi = alignUp(tlb + size, g);
    dev.memory.fill(lo, tlb - lo, 0);
    dev.memory.fill(tlb + size, hi - (tlb + size), 0);
  }
  return tlb;
}

/** Linux `iommu_dma_map_phys`. */
export function iommuDmaMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): number {
  const cookie = cookieOf(dev);
  const mmio = hasAttr(attrs, DMA_ATTR.MMIO);
  const prot = dmaInfoToProt(dir, dev.coherent, attrs);
  let p = phys;
  let bounced = false;
  if (devUseSwiotlb(dev) && iovaUnaligned(phys, size, cookie.granule)) {
    if (mmio)
      throw new DmaError("EPERM", `device ${dev.name}: MMIO at ${hex(phys)} would need bouncing`);
    p = iommuDmaMapSwiotlb(dev, phys, size);
    bounced = true;
  }
  if (!dev.coherent && !hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !mmio)
    archSyncDmaForDevice(dev, size);
  try {
    const addr = iommuDmaMapRaw(dev, p, size, prot, dev.getMask());
    dev.counters.c.iommuMaps++;
    return addr;
  } catch (e) {
    if (bounced) dev.swiotlb?.unmapSingle(p, size, dir, true);
    throw e;
  }
}

/** Linux `iommu_dma_unmap_phys`. A DMA address that is not mapped leaks with a warning, as in Linux. */
export function iommuDmaUnmapPhys(
  dev: Device,
  dmaAddr: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): void {
  const cookie = cookieOf(dev);
  if (attrs !== 0 && hasAttr(attrs, DMA_ATTR.MMIO)) {
    iommuDmaUnmapRaw(dev, dmaAddr, size);
    return;
  }
  const skipSync = attrs !== 0 && hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC);
  if ((dev.swiotlb === null || dev.swiotlb.idle) && (dev.coherent || skipSync)) {
    // Nothing below needs the physical address (no cache maintenance, and no bounce buffer:
    // there is no pool, or none of its slots is mapped, so the address cannot be one): the
    // page-table walk of the "is it mapped" check is only done when the unmap removed nothing.
    // Linux walks the table here every time; the model skips a walk whose answer changes
    // nothing, so `pgtable.walks` counts fewer CPU walks than Linux makes (docs/timing.md).
    if (iommuDmaUnmapRaw(dev, dmaAddr, size, true) < 0) warnUnmapped(dev, dmaAddr, size);
    return;
  }
  const phys = cookie.domain.iovaToPhys(dmaAddr);
  if (phys === 0) {
    warnUnmapped(dev, dmaAddr, size);
    return;
  }
  if (!skipSync && !dev.coherent) archSyncDmaForCpu(dev, size, dir);
  iommuDmaUnmapRaw(dev, dmaAddr, size);
  if (dev.swiotlb?.isSwiotlbBuffer(phys))
    dev.swiotlb.unmapSingle(phys, size, dir, hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC));
}

/** Linux `iommu_dma_sync_single_for_cpu`. */
export function iommuDmaSyncSingleForCpu(
  dev: Device,
  dmaAddr: number,
  size: number,
  dir: DmaDirection,
): void {
  if (dev.coherent && !devUseSwiotlb(dev)) return;
  const phys = cookieOf(dev).domain.iovaToPhys(dmaAddr);
  if (!dev.coherent) archSyncDmaForCpu(dev, size, dir);
  if (dev.swiotlb?.isSwiotlbBuffer(phys)) dev.swiotlb.syncForCpu(phys, size, dir);
}

/** Linux `iommu_dma_sync_single_for_device`. */
export function iommuDmaSyncSingleForDevice(
  dev: Device,
  dmaAddr: number,
  size: number,
  dir: DmaDirection,
): void {
  if (dev.coherent && !devUseSwiotlb(dev)) return;
  const phys = cookieOf(dev).domain.iovaToPhys(dmaAddr);
  if (dev.swiotlb?.isSwiotlbBuffer(phys)) dev.swiotlb.syncForDevice(phys, size, dir);
  if (!dev.coherent) archSyncDmaForDevice(dev, size);
}

/** Linux `iommu_dma_get_merge_boundary`: granule - 1. */
export function iommuDmaGetMergeBoundary(dev: Device): number {
  return cookieOf(dev).granule - 1;
}
