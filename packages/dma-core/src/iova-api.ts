/**
 * The two-step IOVA API (drivers/iommu/dma-iommu.c, Linux 6.16+): allocate IOVA space once
 * with `dmaIovaTryAlloc`, link physical ranges into it with `dmaIovaLink`, make the page tables
 * visible with one `dmaIovaSync`, and tear down with `dmaIovaDestroy` (or `dmaIovaUnlink` +
 * `dmaIovaFree`). Without an IOMMU DMA domain `dmaIovaTryAlloc` returns false and the caller
 * uses the streaming API: the same code path works everywhere
 * (docs/review-points.md#use-iova-in-state, docs/review-points.md#no-iommu-no-op).
 */
import { alignUp, checkInt, hex, kernelHas } from "@dmasim/bvec";
import { archSyncDmaForCpu, archSyncDmaForDevice } from "./arch.ts";
import { DMA_ATTR, type DmaDirection, checkDirection, checkPhys, hasAttr } from "./constants.ts";
import type { IovaTrack } from "./debug-iova.ts";
import type { Device } from "./device.ts";
import { DmaError } from "./errors.ts";
import {
  asDmaError,
  devUseSwiotlb,
  dmaInfoToProt,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaGather,
  iommuDmaMapSwiotlb,
  iovaOffset,
  iovaUnaligned,
} from "./iommu-dma.ts";
import { checkAttrs } from "./mapping.ts";

/** What this module reads and writes of a state's private fields. */
interface StateAccess {
  set(s: DmaIovaState, addr: number, size: number, track: IovaTrack | undefined): void;
  markSwiotlb(s: DmaIovaState): void;
  usesSwiotlb(s: DmaIovaState): boolean;
  track(s: DmaIovaState): IovaTrack | undefined;
  markFreed(s: DmaIovaState): void;
  isFreed(s: DmaIovaState): boolean;
}

// Set once, by the static block of DmaIovaState below, and never exported: only the IOVA API
// of this module can change a state's backend.
let access: StateAccess;

/**
 * Linux `struct dma_iova_state`: the one object holding a transaction's mapping state
 * (docs/review-points.md#one-state-object). Its IOVA base and size are readable; the backend
 * (whether bouncing happened, whether it was freed, what dma-debug knows) is private to this
 * module. It stores no attrs: those are passed per call (docs/review-points.md#attrs-per-call).
 */
export class DmaIovaState {
  #addr = 0;
  #size = 0;
  #useSwiotlb = false;
  #freed = false;
  #track: IovaTrack | undefined = undefined;

  static {
    access = {
      set: (s, addr, size, track) => {
        s.#addr = addr;
        s.#size = size;
        s.#track = track;
      },
      markSwiotlb: (s) => {
        s.#useSwiotlb = true;
      },
      usesSwiotlb: (s) => s.#useSwiotlb,
      track: (s) => s.#track,
      markFreed: (s) => {
        s.#freed = true;
      },
      isFreed: (s) => s.#freed,
    };
  }

  /** Linux `state->addr`: the IOVA base plus the sub-granule offset of the phys given to try-alloc. */
  get addr(): number {
    return this.#addr;
  }

  /** Linux `dma_iova_size`. */
  get size(): number {
    return this.#size;
  }

  /**
   * Zeroes the state (Linux's `memset` at the start of `dma_iova_try_alloc`). A driver that
   * reuses a state for a request that may not reach the try-alloc zeroes it first, as the NVMe
   * host does before every submission.
   */
  static reset(s: DmaIovaState): void {
    s.#addr = 0;
    s.#size = 0;
    s.#useSwiotlb = false;
    s.#freed = false;
    s.#track = undefined;
  }
}

/** Linux `dma_use_iova`: true once a try-alloc succeeded (the "use IOVA" bit lives in the state: docs/review-points.md#use-iova-in-state). */
export function dmaUseIova(state: DmaIovaState): boolean {
  return state.size !== 0;
}

/** Linux `dma_iova_size`. */
export function dmaIovaSize(state: DmaIovaState): number {
  return state.size;
}

function granuleOf(dev: Device): number {
  const c = dev.cookie;
  if (c === null) throw new DmaError("EOPNOTSUPP", `device ${dev.name} has no IOMMU DMA domain`);
  return c.granule;
}

/**
 * Linux `dma_iova_try_alloc`: reserves IOVA for `size` bytes whose first byte is at `phys`
 * (phys only sets the sub-granule alignment). Returns false without an IOMMU DMA domain (or
 * with the device's `iovaApi` what-if off), for size 0, and on IOVA exhaustion, always leaving
 * the state zeroed (docs/review-points.md#no-iommu-no-op).
 */
export function dmaIovaTryAlloc(
  dev: Device,
  state: DmaIovaState,
  phys: number,
  size: number,
): boolean {
  DmaIovaState.reset(state);
  checkPhys(phys);
  checkInt(size, "IOVA size");
  if (!dev.dmaIommu || !dev.iovaApi) return false;
  dev.counters.c.iovaTryAllocs++;
  if (size === 0) {
    dev.debug?.warn(dev, "dma_iova_try_alloc", "dma_iova_try_alloc with size 0", phys, 0);
    dev.counters.c.iovaTryAllocFailures++;
    return false;
  }
  const g = granuleOf(dev);
  const off = iovaOffset(phys, g);
  const base = iommuDmaAllocIova(dev, alignUp(size + off, g), dev.getMask());
  if (base === 0) {
    dev.counters.c.iovaTryAllocFailures++;
    return false;
  }
  const track = dev.debug?.iova.alloc(dev, base + off, size);
  access.set(state, base + off, size, track);
  return true;
}

function checkState(dev: Device, state: DmaIovaState, call: string): void {
  if (access.isFreed(state)) {
    dev.debug?.iova.useAfterFree(dev, access.track(state), call);
    throw new DmaError("EINVAL", `${call} on an IOVA state that was already freed or destroyed`);
  }
}

/** Linux `__dma_iova_link`: cache maintenance on the granule-rounded range, then map without sync. */
function iovaLinkRaw(
  dev: Device,
  iova: number,
  phys: number,
  len: number,
  dir: DmaDirection,
  attrs: number,
): void {
  if (!dev.coherent && !hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !hasAttr(attrs, DMA_ATTR.MMIO))
    archSyncDmaForDevice(dev, len);
  const cookie = dev.cookie;
  if (cookie === null) return;
  const prot = dmaInfoToProt(dir, dev.coherent, attrs);
  try {
    cookie.domain.mapNosync(iova, phys, len, prot);
  } catch (e) {
    throw asDmaError(e);
  }
}

/**
 * Linux `iommu_dma_iova_link_swiotlb`: bounces the sub-granule head and tail of the range and
 * links the aligned middle directly; sets the sticky "used SWIOTLB" flag. The bounce slot
 * keeps the data's offset inside its granule (the link arithmetic needs it whatever the
 * device's min_align_mask says).
 *
 * With the fix (gate "iova-link-unwind-fix": 6ec91df8aff7 "iommu/dma: Do not try to
 * iommu_map a 0 length region in swiotlb", in 6.18.y and 7.0.y) an empty middle is skipped
 * and a failure unlinks what this call linked, from `offset`. 6.17 and 6.19 keep the upstream
 * bug, reproduced on purpose: the empty middle is linked (a 0-byte `iommu_map`; dmasim's page
 * table is io-pgtable style, where `__iommu_map` of 0 bytes maps nothing and returns 0, so the
 * call only counts; the generic iommupt tables fail it as illegal, which dmasim does not
 * model), and the unwind is `dma_iova_unlink(state, 0, mapped)`: the window at offset 0,
 * which for a link at a later offset unmaps an earlier link's pages and leaves this link's
 * pages (and bounce slots) mapped.
 */
function iovaLinkSwiotlb(
  dev: Device,
  state: DmaIovaState,
  phys: number,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
): void {
  const g = granuleOf(dev);
  const fixed = kernelHas(dev.kernel, "iova-link-unwind-fix");
  const startPad = iovaOffset(phys, g);
  const endPad = iovaOffset(phys + size, g);
  const addr = state.addr + offset;
  let mapped = 0;
  let left = size;
  try {
    if (startPad !== 0) {
      const bounceLen = Math.min(left, g - startPad);
      const tlb = iommuDmaMapSwiotlb(dev, phys, bounceLen, g - 1);
      try {
        iovaLinkRaw(dev, addr - startPad, tlb - iovaOffset(tlb, g), g, dir, attrs);
      } catch (e) {
        dev.swiotlb?.unmapSingle(tlb, bounceLen, dir, true);
        throw e;
      }
      access.markSwiotlb(state);
      mapped += bounceLen;
      left -= bounceLen;
      if (left === 0) return;
    }
    const tail = endPad;
    const middle = left - tail;
    // Before the fix the middle is linked even when empty (a 0-byte iommu_map).
    if (middle > 0 || !fixed) {
      iovaLinkRaw(dev, addr + mapped, phys + mapped, middle, dir, attrs);
      mapped += middle;
    }
    if (tail !== 0) {
      const tlb = iommuDmaMapSwiotlb(dev, phys + mapped, tail, g - 1);
      try {
        iovaLinkRaw(dev, addr + mapped, tlb - iovaOffset(tlb, g), g, dir, attrs);
      } catch (e) {
        dev.swiotlb?.unmapSingle(tlb, tail, dir, true);
        throw e;
      }
      access.markSwiotlb(state);
      mapped += tail;
    }
  } catch (e) {
    // The upstream bug before the fix: the unwind starts at offset 0, not at `offset`.
    if (!fixed) iovaUnlinkRaw(dev, state, 0, mapped, dir, attrs, false);
    else if (mapped > 0) iovaUnlinkRaw(dev, state, offset, mapped, dir, attrs, false);
    throw e;
  }
}

/**
 * Linux `dma_iova_link`: maps `size` bytes at `phys` at `offset` into the state's IOVA range,
 * without syncing, and returns the DMA address of the linked range (docs/review-points.md#link-returns-address).
 * Errors throw:
 * EIO for an unaligned phys after the first link, EINVAL for an unaligned IOVA (from the IOMMU
 * core), EPERM for MMIO that would need bouncing, ENOMEM for page-table or bounce exhaustion,
 * EOPNOTSUPP without an IOMMU DMA domain.
 */
export function dmaIovaLink(
  dev: Device,
  state: DmaIovaState,
  phys: number,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  checkPhys(phys);
  checkInt(offset, "link offset");
  checkInt(size, "link size", 1);
  checkAttrs(dev, attrs, "dma_iova_link");
  const d = checkDirection(dir);
  if (!dev.dmaIommu || !dmaUseIova(state)) {
    throw new DmaError(
      "EOPNOTSUPP",
      `dma_iova_link on device ${dev.name} without an allocated IOVA state`,
    );
  }
  checkState(dev, state, "dma_iova_link");
  const g = granuleOf(dev);
  const pad = iovaOffset(phys, g);
  const addr = state.addr + offset;
  if (pad !== 0 && offset > 0) {
    throw new DmaError(
      "EIO",
      `dma_iova_link: phys ${hex(phys)} is not granule-aligned at offset ${hex(offset)} (only the first link may be)`,
    );
  }
  if (
    attrs !== 0 &&
    hasAttr(attrs, DMA_ATTR.REQUIRE_COHERENT) &&
    (access.usesSwiotlb(state) || !dev.coherent)
  ) {
    throw new DmaError(
      "EOPNOTSUPP",
      `dma_iova_link with DMA_ATTR_REQUIRE_COHERENT cannot be met on ${dev.name}`,
    );
  }
  dev.debug?.iova.linkCheck(dev, access.track(state), offset, size);
  if (devUseSwiotlb(dev) && iovaUnaligned(phys, size, g)) {
    if (hasAttr(attrs, DMA_ATTR.MMIO)) {
      throw new DmaError(
        "EPERM",
        `dma_iova_link: MMIO at ${hex(phys)}+${hex(size)} would need bouncing`,
      );
    }
    iovaLinkSwiotlb(dev, state, phys, offset, size, d, attrs);
  } else {
    iovaLinkRaw(dev, addr - pad, phys - pad, alignUp(size + pad, g), d, attrs);
  }
  dev.counters.c.iovaLinks++;
  dev.debug?.iova.link(dev, access.track(state), offset, size);
  return addr;
}

/** Linux `dma_iova_sync`: one "sync after map" over the granule-rounded range. */
export function dmaIovaSync(dev: Device, state: DmaIovaState, offset: number, size: number): void {
  checkInt(offset, "sync offset");
  checkInt(size, "sync size");
  if (!dev.dmaIommu || !dmaUseIova(state)) {
    throw new DmaError(
      "EOPNOTSUPP",
      `dma_iova_sync on device ${dev.name} without an allocated IOVA state`,
    );
  }
  checkState(dev, state, "dma_iova_sync");
  const g = granuleOf(dev);
  const addr = state.addr + offset;
  const pad = iovaOffset(addr, g);
  dev.counters.c.iovaSyncs++;
  dev.debug?.iova.sync(dev, access.track(state), offset, size);
  try {
    dev.cookie?.domain.syncMap(addr - pad, alignUp(size + pad, g));
  } catch (e) {
    throw asDmaError(e);
  }
}

/**
 * Linux `__iommu_dma_iova_unlink`: the slow per-granule walk when bouncing happened or cache
 * maintenance is due, then the unmap; a synchronous invalidation unless the IOVA is also freed
 * in lazy mode (then the IOVA and the freed page-table pages wait in the flush queue).
 */
function iovaUnlinkRaw(
  dev: Device,
  state: DmaIovaState,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
  freeIova: boolean,
): void {
  const cookie = dev.cookie;
  if (cookie === null) return;
  const g = cookie.granule;
  const addr = state.addr + offset;
  const pad = iovaOffset(addr, g);
  const syncCpu =
    !dev.coherent && !hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC) && !hasAttr(attrs, DMA_ATTR.MMIO);
  if (access.usesSwiotlb(state) || syncCpu) {
    let at = addr;
    let left = size;
    let chunk = Math.min(left, g - pad);
    while (left > 0) {
      const phys = cookie.domain.iovaToPhys(at);
      if (phys === 0) {
        dev.debug?.warn(
          dev,
          "dma_iova_unlink",
          `unlink walk found no mapping at ${hex(at)}`,
          at,
          chunk,
        );
        break;
      }
      if (syncCpu) archSyncDmaForCpu(dev, chunk, dir);
      if (dev.swiotlb?.isSwiotlbBuffer(phys))
        dev.swiotlb.unmapSingle(phys, chunk, dir, hasAttr(attrs, DMA_ATTR.SKIP_CPU_SYNC));
      at += chunk;
      left -= chunk;
      chunk = Math.min(left, g);
    }
  }
  const gather = iommuDmaGather(cookie, freeIova && cookie.fq !== null);
  const len = alignUp(size + pad, g);
  const start = addr - pad;
  const unmapped = cookie.domain.unmapFast(start, len, gather);
  if (unmapped !== len) {
    dev.debug?.warn(
      dev,
      "dma_iova_unlink",
      `unmapped ${hex(unmapped)} of ${hex(len)} bytes at ${hex(start)}`,
      start,
      len,
    );
  }
  if (!gather.queued) cookie.domain.iotlbSync(gather);
  if (freeIova) iommuDmaFreeIova(dev, start, len, gather);
}

/** Linux `dma_iova_unlink`: unmaps a linked range with a synchronous invalidation; never frees IOVA. */
export function dmaIovaUnlink(
  dev: Device,
  state: DmaIovaState,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkInt(offset, "unlink offset");
  checkInt(size, "unlink size", 1);
  checkAttrs(dev, attrs, "dma_iova_unlink");
  const d = checkDirection(dir);
  if (!dev.dmaIommu || !dmaUseIova(state)) return;
  checkState(dev, state, "dma_iova_unlink");
  dev.debug?.iova.unlink(dev, access.track(state), offset, size);
  dev.counters.c.iovaUnlinks++;
  iovaUnlinkRaw(dev, state, offset, size, d, attrs, false);
}

/**
 * Linux `dma_iova_destroy`: unmaps [0, mappedLen) and frees the granule-rounded mapped length
 * (not the whole allocation, as upstream); lazy mode defers the invalidation to the flush
 * queue. mappedLen 0 behaves like `dmaIovaFree`. A no-op without an IOMMU.
 */
export function dmaIovaDestroy(
  dev: Device,
  state: DmaIovaState,
  mappedLen: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkInt(mappedLen, "mapped length");
  checkAttrs(dev, attrs, "dma_iova_destroy");
  const d = checkDirection(dir);
  if (!dev.dmaIommu || !dmaUseIova(state)) return;
  checkState(dev, state, "dma_iova_destroy");
  if (mappedLen === 0) {
    dmaIovaFree(dev, state);
    return;
  }
  dev.debug?.iova.destroy(dev, access.track(state), mappedLen);
  iovaUnlinkRaw(dev, state, 0, mappedLen, d, attrs, true);
  access.markFreed(state);
}

/** Linux `dma_iova_free`: frees the whole IOVA range at once, never through the flush queue. */
export function dmaIovaFree(dev: Device, state: DmaIovaState): void {
  if (!dev.dmaIommu || !dmaUseIova(state)) return;
  checkState(dev, state, "dma_iova_free");
  const g = granuleOf(dev);
  const pad = iovaOffset(state.addr, g);
  dev.debug?.iova.free(dev, access.track(state));
  iommuDmaFreeIova(dev, state.addr - pad, alignUp(state.size + pad, g), null);
  access.markFreed(state);
}
