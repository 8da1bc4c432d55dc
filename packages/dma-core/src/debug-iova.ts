/**
 * dma-debug for the two-step IOVA API, which upstream dma-debug does not check at all: one
 * track per `DmaIovaState` (its allocation and linked ranges), checked on every link, sync,
 * unlink, destroy and free, and on every device access that lands in an allocated IOVA range.
 */
import { hex } from "@dmasim/bvec";
import {
  DMA_DEBUG_CLASS,
  type DebugDevice,
  type ReportAt,
  type UnmappedHistory,
} from "./debug-common.ts";

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

/** The IOVA API half of `DmaDebug` (`DmaDebug.iova`); reports through the same log. */
export class IovaDebug {
  private readonly tracks = new Map<DebugDevice, Set<IovaTrack>>();
  private readonly at: ReportAt;
  private readonly unmapped: UnmappedHistory;

  constructor(at: ReportAt, unmapped: UnmappedHistory) {
    this.at = at;
    this.unmapped = unmapped;
  }

  private set(dev: DebugDevice): Set<IovaTrack> {
    let s = this.tracks.get(dev);
    if (!s) {
      s = new Set();
      this.tracks.set(dev, s);
    }
    return s;
  }

  /** IOVA states allocated and not yet freed, for `dev` or for all devices. */
  outstanding(dev?: DebugDevice): number {
    let n = 0;
    for (const [d, set] of this.tracks)
      if (dev === undefined || d === dev) for (const t of set) if (!t.freed) n++;
    return n;
  }

  /** `dma_iova_try_alloc` succeeded. */
  alloc(dev: DebugDevice, base: number, size: number): IovaTrack {
    const t: IovaTrack = { base, size, freed: false, links: [] };
    this.set(dev).add(t);
    this.unmapped.forget(dev, base, size);
    return t;
  }

  private live(dev: DebugDevice, t: IovaTrack | undefined, call: string): t is IovaTrack {
    if (t === undefined) return false;
    if (t.freed) {
      this.at(
        dev,
        call,
        t.base,
        t.size,
      )(
        DMA_DEBUG_CLASS.IOVA_USE_AFTER_FREE,
        `${call} on an IOVA state that was already freed or destroyed [iova=${hex(t.base)}]`,
      );
      return false;
    }
    return true;
  }

  /** A call on a state that was already freed or destroyed (reported as use after free). */
  useAfterFree(dev: DebugDevice, t: IovaTrack | undefined, call: string): void {
    this.live(dev, t, call);
  }

  /**
   * Before `dma_iova_link` maps anything: the range must lie inside the allocation and overlap
   * no linked range. Checked first so that an overlap is reported even though the page table
   * then refuses the map (EEXIST).
   */
  linkCheck(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_link")) return;
    const bad = this.at(dev, "dma_iova_link", t.base + offset, size);
    if (offset + size > t.size) {
      bad(
        DMA_DEBUG_CLASS.IOVA_LINK_OUTSIDE,
        `dma_iova_link beyond the allocated IOVA [offset=${hex(offset)}] [size=${hex(size)}] [allocated=${hex(t.size)}]`,
      );
    }
    const r = t.links.find((x) => offset < x.offset + x.size && x.offset < offset + size);
    if (r) {
      bad(
        DMA_DEBUG_CLASS.IOVA_LINK_OVERLAP,
        `dma_iova_link overlaps a linked range [offset=${hex(offset)}+${hex(size)}] [linked=${hex(r.offset)}+${hex(r.size)}]`,
      );
    }
  }

  /** `dma_iova_link` succeeded: records the linked range (not yet synced). */
  link(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_link")) return;
    t.links.push({ offset, size, synced: false });
  }

  /** `dma_iova_sync`: a linked range the sync covers entirely is synced. */
  sync(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_sync")) return;
    let covered = 0;
    for (const r of t.links) {
      const lo = Math.max(r.offset, offset);
      const hi = Math.min(r.offset + r.size, offset + size);
      if (hi > lo) {
        covered += hi - lo;
        if (lo === r.offset && hi === r.offset + r.size) r.synced = true;
      }
    }
    if (covered < size) {
      this.at(
        dev,
        "dma_iova_sync",
        t.base + offset,
        size,
      )(
        DMA_DEBUG_CLASS.IOVA_SYNC_UNLINKED,
        `dma_iova_sync of a range that is not (entirely) linked [offset=${hex(offset)}] [size=${hex(size)}] [linked bytes=${hex(covered)}]`,
      );
    }
  }

  /** `dma_iova_unlink`. */
  unlink(dev: DebugDevice, t: IovaTrack | undefined, offset: number, size: number): void {
    if (!this.live(dev, t, "dma_iova_unlink")) return;
    const keep: LinkRange[] = [];
    let removed = 0;
    for (const r of t.links) {
      if (r.offset >= offset && r.offset + r.size <= offset + size) removed += r.size;
      else keep.push(r);
    }
    if (removed !== size) {
      this.at(
        dev,
        "dma_iova_unlink",
        t.base + offset,
        size,
      )(
        DMA_DEBUG_CLASS.IOVA_UNLINK_NOT_LINKED,
        `dma_iova_unlink of a range that was not linked as such [offset=${hex(offset)}] [size=${hex(size)}] [linked bytes in it=${hex(removed)}]`,
      );
    }
    t.links = keep;
    this.unmapped.remember(dev, t.base + offset, size);
  }

  /** `dma_iova_destroy`: exactly [0, mappedLen) must be linked. */
  destroy(dev: DebugDevice, t: IovaTrack | undefined, mappedLen: number): void {
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
      this.at(
        dev,
        "dma_iova_destroy",
        t.base,
        mappedLen,
      )(
        DMA_DEBUG_CLASS.IOVA_DESTROY_LENGTH,
        `dma_iova_destroy of ${hex(mappedLen)} bytes, but ${hex(linked)} bytes are linked${contiguous ? "" : " (not one range from offset 0)"}`,
      );
    }
    t.links = [];
    t.freed = true;
    this.unmapped.remember(dev, t.base, Math.max(mappedLen, t.size));
    this.set(dev).delete(t);
  }

  /** `dma_iova_free`: nothing may still be linked. */
  free(dev: DebugDevice, t: IovaTrack | undefined): void {
    if (!this.live(dev, t, "dma_iova_free")) return;
    if (t.links.length > 0) {
      const linked = t.links.reduce((n, r) => n + r.size, 0);
      this.at(
        dev,
        "dma_iova_free",
        t.base,
        t.size,
      )(
        DMA_DEBUG_CLASS.IOVA_FREE_WITH_LINKS,
        `dma_iova_free with ${t.links.length} range(s) (${hex(linked)} bytes) still linked`,
      );
    }
    t.freed = true;
    this.unmapped.remember(dev, t.base, t.size);
    this.set(dev).delete(t);
  }

  /**
   * A device access at `addr`: true when it lands in a linked range of an allocated state
   * (reported when that range was not synced yet), false when no state covers it.
   */
  access(dev: DebugDevice, addr: number, len: number, call: string): boolean {
    for (const t of this.set(dev)) {
      if (addr < t.base || addr >= t.base + t.size) continue;
      const off = addr - t.base;
      const r = t.links.find((x) => off >= x.offset && off < x.offset + x.size);
      if (r === undefined) continue;
      if (!r.synced) {
        this.at(
          dev,
          call,
          addr,
          len,
        )(
          DMA_DEBUG_CLASS.IOVA_ACCESS_BEFORE_SYNC,
          `device accessed linked IOVA ${hex(addr)}+${hex(len)} before dma_iova_sync`,
        );
      }
      return true;
    }
    return false;
  }

  /** The unbind check for IOVA states: one leak report per state still allocated; returns how many. */
  checkLeaks(dev: DebugDevice): number {
    let n = 0;
    for (const t of this.set(dev)) {
      if (t.freed) continue;
      n++;
      this.at(
        dev,
        "driver unbind",
        t.base,
        t.size,
      )(
        DMA_DEBUG_CLASS.LEAK,
        `device driver has an IOVA state still allocated while released from device [iova=${hex(t.base)}] [size=${hex(t.size)}] [linked ranges=${t.links.length}]`,
      );
    }
    return n;
  }
}
