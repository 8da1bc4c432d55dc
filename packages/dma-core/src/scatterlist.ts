/**
 * The scatterlist path the two-step API replaces, kept to compare costs: `blkRqMapSg`
 * (block/blk-mq-dma.c `__blk_rq_map_sg`), and `dmaMapSg` / `dmaUnmapSg` with the direct
 * per-entry mapping (kernel/dma/direct.c) or the IOMMU's single-IOVA mapping with the merging
 * of `__finalise_sg` (drivers/iommu/dma-iommu.c).
 */
import { type Request, alignUp, blkMapIterNext, blkRqMapIterInit, hex } from "@dmasim/bvec";
import { archSyncDmaForCpu, archSyncDmaForDevice } from "./arch.ts";
import { DMA_ATTR, type DmaDirection, checkDirection, hasAttr } from "./constants.ts";
import { P2P_MAP, type Device } from "./device.ts";
import { dmaDirectMapPhys, dmaDirectUnmapPhys } from "./direct.ts";
import { DmaError } from "./errors.ts";
import {
  asDmaError,
  devUseSwiotlb,
  dmaInfoToProt,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapPhys,
  iommuDmaUnmapPhys,
  iommuDmaUnmapRaw,
} from "./iommu-dma.ts";
import { checkAttrs } from "./mapping.ts";

/** Marks a DMA address field as unused (Linux `DMA_MAPPING_ERROR` in `sg_dma_address`). */
export const SG_DMA_UNUSED = -1;

/** Linux `struct scatterlist`: one CPU-side segment and, once mapped, one DMA-side segment. */
export interface ScatterlistEntry {
  /** Physical address of the segment (Linux `sg_phys`). */
  phys: number;
  /** Length in bytes. */
  length: number;
  /** Linux `sg_dma_address`. */
  dmaAddress: number;
  /** Linux `sg_dma_len`. */
  dmaLength: number;
  /** Linux `sg_dma_is_bus_address`: a P2P bus address that needs no unmapping. */
  busAddr: boolean;
}

/** Linux `struct sg_table`. */
export class SgTable {
  readonly sgl: ScatterlistEntry[];
  /** Linux `nents`: mapped DMA segments. */
  nents = 0;
  /** Linux `orig_nents`: CPU segments. */
  origNents = 0;
  /** Linux `sg_dma_is_swiotlb`: mapped entry by entry because of bouncing. */
  swiotlb = false;

  /** Linux `sg_alloc_table`: a table with room for `n` entries. */
  constructor(n: number) {
    this.sgl = [];
    for (let i = 0; i < n; i++)
      this.sgl.push({
        phys: 0,
        length: 0,
        dmaAddress: SG_DMA_UNUSED,
        dmaLength: 0,
        busAddr: false,
      });
  }

  /** Bytes of the scatterlist entry array (Linux's `sizeof(struct scatterlist)` is 32 on 64-bit). */
  get bytes(): number {
    return this.sgl.length * 32;
  }
}

/**
 * Linux `blk_rq_map_sg`: fills the table with the request's physical segments; returns how
 * many. The table needs room for `req.nrPhysSegments` entries.
 */
export function blkRqMapSg(req: Request, sgt: SgTable): number {
  const it = blkRqMapIterInit(req);
  const v = { paddr: 0, len: 0 };
  let n = 0;
  while (blkMapIterNext(req, it, v)) {
    const e = sgt.sgl[n];
    if (e === undefined)
      throw new DmaError(
        "EINVAL",
        `scatterlist of ${sgt.sgl.length} entries is too small for the request`,
      );
    e.phys = v.paddr;
    e.length = v.len;
    e.dmaAddress = SG_DMA_UNUSED;
    e.dmaLength = 0;
    e.busAddr = false;
    n++;
  }
  sgt.origNents = n;
  return n;
}

function directMapSg(
  dev: Device,
  sgt: SgTable,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): number {
  for (let i = 0; i < nents; i++) {
    const s = sgt.sgl[i] as ScatterlistEntry;
    const p2p = dev.p2pState(s.phys);
    try {
      if (p2p === P2P_MAP.BUS_ADDR) {
        s.dmaAddress = dev.p2pBusAddr(s.phys);
        s.busAddr = true;
      } else if (p2p === P2P_MAP.NOT_SUPPORTED) {
        throw new DmaError(
          "EREMOTEIO",
          `device ${dev.name} cannot reach P2P memory at ${hex(s.phys)}`,
        );
      } else {
        // Host-bridge P2P is mapped by its CPU physical address with DMA_ATTR_MMIO. Deliberate
        // difference: 6.18's dma_direct_map_sg only `break`s for PCI_P2PDMA_MAP_THRU_HOST_BRIDGE
        // and never sets the entry's DMA address (fixed upstream later); dmasim maps it.
        s.dmaAddress = dmaDirectMapPhys(
          dev,
          s.phys,
          s.length,
          dir,
          attrs + (p2p === P2P_MAP.THRU_HOST_BRIDGE ? DMA_ATTR.MMIO : 0),
        );
      }
    } catch (e) {
      for (let j = 0; j < i; j++) {
        const t = sgt.sgl[j] as ScatterlistEntry;
        if (!t.busAddr)
          dmaDirectUnmapPhys(
            dev,
            t.dmaAddress,
            t.length,
            dir,
            attrs + (hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) ? 0 : DMA_ATTR.SKIP_CPU_SYNC),
          );
      }
      const err = asDmaError(e);
      throw err.code === "EREMOTEIO" ? err : new DmaError("EIO", err.message, { cause: err });
    }
    s.dmaLength = s.length;
  }
  return nents;
}

/**
 * Linux `__finalise_sg`: turns the laid-out IOVA range back into DMA segments, merging an entry
 * into the previous one when it starts on a granule, the running IOVA is not on a segment
 * boundary, and the merged length stays within the max segment size.
 */
function finaliseSg(dev: Device, sgt: SgTable, nents: number, base: number): number {
  const sg = sgt.sgl;
  const mask = dev.segmentBoundaryMask;
  const unit = mask === Number.MAX_SAFE_INTEGER ? 0 : mask + 1;
  const maxLen = dev.maxSegmentSize;
  let dmaAddr = base;
  let cur = 0;
  let curLen = 0;
  let count = 0;
  for (let i = 0; i < nents; i++) {
    const s = sg[i] as ScatterlistEntry;
    const sOff = s.dmaAddress;
    const sLen = s.dmaLength;
    const sIovaLen = s.length;
    s.dmaAddress = SG_DMA_UNUSED;
    s.dmaLength = 0;
    if (s.busAddr) {
      if (i > 0) cur++;
      const c = sg[cur] as ScatterlistEntry;
      s.busAddr = false;
      c.dmaAddress = sOff;
      c.dmaLength = sIovaLen;
      c.busAddr = true;
      count++;
      curLen = 0;
      continue;
    }
    s.phys += sOff;
    s.length = sLen;
    const onBoundary = unit === 0 ? dmaAddr === 0 : dmaAddr % unit === 0;
    if (curLen !== 0 && sOff === 0 && !onBoundary && curLen + sLen <= maxLen) {
      curLen += sLen;
    } else {
      if (i > 0) cur++;
      curLen = sLen;
      count++;
      (sg[cur] as ScatterlistEntry).dmaAddress = dmaAddr + sOff;
    }
    (sg[cur] as ScatterlistEntry).dmaLength = curLen;
    dmaAddr += sIovaLen;
    if (sLen + sOff < sIovaLen) curLen = 0;
  }
  return count;
}

/** Undoes the IOVA layout of the first pass (Linux `__invalidate_sg`). */
function invalidateSg(sgt: SgTable, nents: number): void {
  for (let i = 0; i < nents; i++) {
    const s = sgt.sgl[i] as ScatterlistEntry;
    if (s.busAddr) {
      s.busAddr = false;
      s.dmaAddress = SG_DMA_UNUSED;
      s.dmaLength = 0;
      continue;
    }
    if (s.dmaAddress !== SG_DMA_UNUSED) {
      s.phys += s.dmaAddress;
      s.length = s.dmaLength;
    }
    s.dmaAddress = SG_DMA_UNUSED;
    s.dmaLength = 0;
  }
}

/**
 * Linux `iommu_dma_map_sg`: untrusted devices map entry by entry (`iommu_dma_map_sg_swiotlb`);
 * otherwise the entries are laid out in one IOVA range (granule-padded, segment boundaries
 * respected), mapped with one protection from the caller's attrs, and merged by `__finalise_sg`.
 * P2P through a switch gets its bus address; P2P through the host bridge a regular IOVA.
 */
function iommuMapSg(
  dev: Device,
  sgt: SgTable,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): number {
  const cookie = dev.cookie;
  if (cookie === null) throw new DmaError("EINVAL", `device ${dev.name} has no IOMMU DMA domain`);
  const g = cookie.granule;
  if (devUseSwiotlb(dev)) {
    // Untrusted device: every entry separately, no merging (Linux `iommu_dma_map_sg_swiotlb`).
    for (let i = 0; i < nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      try {
        s.dmaAddress = iommuDmaMapPhys(dev, s.phys, s.length, dir, attrs);
      } catch (e) {
        for (let j = 0; j < i; j++) {
          const t = sgt.sgl[j] as ScatterlistEntry;
          iommuDmaUnmapPhys(
            dev,
            t.dmaAddress,
            t.length,
            dir,
            attrs + (hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) ? 0 : DMA_ATTR.SKIP_CPU_SYNC),
          );
          t.dmaAddress = SG_DMA_UNUSED;
          t.dmaLength = 0;
        }
        throw new DmaError("EIO", asDmaError(e).message, { cause: e });
      }
      s.dmaLength = s.length;
    }
    sgt.swiotlb = true;
    return nents;
  }
  if (!hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !dev.coherent) {
    for (let i = 0; i < nents; i++)
      archSyncDmaForDevice(dev, (sgt.sgl[i] as ScatterlistEntry).length);
  }
  const mask = dev.segmentBoundaryMask;
  const unit = mask === Number.MAX_SAFE_INTEGER ? 0 : mask + 1;
  let prev: ScatterlistEntry | undefined;
  let iovaLen = 0;
  for (let i = 0; i < nents; i++) {
    const s = sgt.sgl[i] as ScatterlistEntry;
    const p2p = dev.p2pState(s.phys);
    if (p2p === P2P_MAP.BUS_ADDR) {
      // Deliberate difference: Linux sets `sg_dma_len(s) = sg->length`, the length of the
      // list's first entry (a slip in iommu_dma_map_sg); dmasim gives each entry its own.
      s.dmaAddress = dev.p2pBusAddr(s.phys);
      s.dmaLength = s.length;
      s.busAddr = true;
      continue;
    }
    if (p2p === P2P_MAP.NOT_SUPPORTED) {
      invalidateSg(sgt, i);
      throw new DmaError(
        "EREMOTEIO",
        `device ${dev.name} cannot reach P2P memory at ${hex(s.phys)}`,
      );
    }
    // PCI_P2PDMA_MAP_THRU_HOST_BRIDGE: mapped with a regular IOVA, like RAM (nothing to do).
    const off = s.phys % g;
    const len = s.length;
    s.dmaAddress = off;
    s.dmaLength = len;
    s.phys -= off;
    s.length = alignUp(len + off, g);
    // Pad the previous entry so this one starts on a segment boundary if it would cross one.
    // Quirk kept from Linux: the padding is mapped too, onto the memory after the previous entry.
    if (unit !== 0) {
      const pad = (unit - (iovaLen % unit)) % unit;
      if (pad !== 0 && prev !== undefined && pad < s.length - 1) {
        prev.length += pad;
        iovaLen += pad;
      }
    }
    iovaLen += s.length;
    prev = s;
  }
  if (iovaLen === 0) return finaliseSg(dev, sgt, nents, 0);
  const iova = iommuDmaAllocIova(dev, iovaLen, dev.getMask());
  if (iova === 0) {
    invalidateSg(sgt, nents);
    throw new DmaError(
      "ENOMEM",
      `device ${dev.name}: IOVA space exhausted for a ${hex(iovaLen)}-byte scatterlist`,
    );
  }
  // Linux `iommu_map_sg`: coalesce physically contiguous entries, then one sync for the range.
  // The protection is the caller's attrs alone (`dma_info_to_prot(dir, coherent, attrs)`).
  const domain = cookie.domain;
  const prot = dmaInfoToProt(dir, dev.coherent, attrs);
  let mapped = 0;
  let runStart = -1;
  let runLen = 0;
  try {
    for (let i = 0; i < nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      // The contiguity test comes before the bus-address skip, as in Linux: a bus-address
      // entry ends the run unless it happens to start where the run ends.
      if (runLen > 0 && runStart + runLen !== s.phys) {
        domain.mapNosync(iova + mapped, runStart, runLen, prot);
        mapped += runLen;
        runLen = 0;
      }
      if (s.busAddr) continue;
      if (runLen > 0) {
        runLen += s.length;
      } else {
        runStart = s.phys;
        runLen = s.length;
      }
    }
    if (runLen > 0) {
      domain.mapNosync(iova + mapped, runStart, runLen, prot);
      mapped += runLen;
    }
    domain.syncMap(iova, mapped);
  } catch (e) {
    if (mapped > 0) domain.unmap(iova, mapped);
    iommuDmaFreeIova(dev, iova, iovaLen, null);
    invalidateSg(sgt, nents);
    const err = asDmaError(e);
    throw err.code === "ENOMEM" || err.code === "EREMOTEIO"
      ? err
      : new DmaError("EINVAL", err.message, { cause: err });
  }
  return finaliseSg(dev, sgt, nents, iova);
}

/**
 * Linux `dma_map_sgtable`: maps the table's `origNents` entries and sets `nents` to the DMA
 * segments produced. Throws a `DmaError` (EINVAL, ENOMEM, EIO, EREMOTEIO) on failure, with
 * nothing left mapped.
 */
export function dmaMapSgtable(dev: Device, sgt: SgTable, dir: DmaDirection, attrs = 0): number {
  checkAttrs(dev, attrs, "dma_map_sg");
  const d = checkDirection(dir);
  const n = dev.dmaIommu
    ? iommuMapSg(dev, sgt, sgt.origNents, d, attrs)
    : directMapSg(dev, sgt, sgt.origNents, d, attrs);
  sgt.nents = n;
  dev.counters.c.sgMaps++;
  if (dev.debug) {
    const segs = [];
    for (let i = 0; i < n; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      if (!s.busAddr) segs.push({ addr: s.dmaAddress, len: s.dmaLength, phys: s.phys });
    }
    dev.debug.mapSg(dev, segs, sgt.origNents, d, attrs);
  }
  return n;
}

/** Linux `dma_map_sg_attrs`: like `dmaMapSgtable` for a table whose `origNents` is `nents`. */
export function dmaMapSg(
  dev: Device,
  sgt: SgTable,
  nents: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  sgt.origNents = nents;
  return dmaMapSgtable(dev, sgt, dir, attrs);
}

/**
 * Linux `dma_unmap_sg_attrs` / `dma_unmap_sgtable`: pass the ORIGINAL entry count. Under an
 * IOMMU (no bouncing) the whole IOVA range goes in one unmap.
 */
export function dmaUnmapSgtable(dev: Device, sgt: SgTable, dir: DmaDirection, attrs = 0): void {
  checkAttrs(dev, attrs, "dma_unmap_sg");
  const d = checkDirection(dir);
  const nents = sgt.origNents;
  if (dev.debug) {
    for (let i = 0; i < sgt.nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      if (!s.busAddr)
        dev.debug.unmap(dev, s.dmaAddress, s.dmaLength, d, "sg", "dma_unmap_sg", nents);
    }
  }
  if (!dev.dmaIommu) {
    for (let i = 0; i < nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      if (!s.busAddr && s.dmaAddress !== SG_DMA_UNUSED)
        dmaDirectUnmapPhys(dev, s.dmaAddress, s.length, d, attrs);
    }
  } else if (sgt.swiotlb) {
    for (let i = 0; i < nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      iommuDmaUnmapPhys(dev, s.dmaAddress, s.dmaLength, d, attrs);
    }
  } else {
    if (!hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !dev.coherent) {
      for (let i = 0; i < nents; i++)
        archSyncDmaForCpu(dev, (sgt.sgl[i] as ScatterlistEntry).length, d);
    }
    let start = -1;
    let end = -1;
    for (let i = 0; i < nents; i++) {
      const s = sgt.sgl[i] as ScatterlistEntry;
      if (s.dmaLength === 0) break;
      if (s.busAddr) continue;
      if (start < 0) start = s.dmaAddress;
      end = s.dmaAddress + s.dmaLength;
    }
    if (start >= 0) iommuDmaUnmapRaw(dev, start, end - start);
  }
  for (const s of sgt.sgl) {
    s.dmaAddress = SG_DMA_UNUSED;
    s.dmaLength = 0;
    s.busAddr = false;
  }
  sgt.nents = 0;
  sgt.swiotlb = false;
  dev.counters.c.sgUnmaps++;
}

/** Linux `dma_unmap_sg_attrs`. */
export function dmaUnmapSg(
  dev: Device,
  sgt: SgTable,
  nents: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  if (nents !== sgt.origNents && dev.debug) {
    dev.debug.report(
      dev,
      "unmap-sg-nents-mismatch",
      "dma_unmap_sg",
      sgt.sgl[0]?.dmaAddress ?? 0,
      0,
      `device driver frees DMA sg list with different entry count [map count=${sgt.origNents}] [unmap count=${nents}]`,
    );
  }
  dmaUnmapSgtable(dev, sgt, dir, attrs);
}
