/**
 * What the two halves of dma-debug share: the report classes and records, the device as
 * dma-debug sees it, the compact reporting function every check calls, and the history of
 * recently unmapped ranges (debug.ts checks the mapping calls, debug-iova.ts the IOVA API).
 */
import type { KernelVersion, PhysMemory } from "@dmasim/bvec";

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

/** One report. */
export interface DmaDebugReport {
  readonly class: DmaDebugClass;
  readonly device: string;
  readonly call: string;
  readonly addr: number;
  readonly size: number;
  readonly message: string;
}

/**
 * What dma-debug reads of a device: its name, kernel release and memory map. Entries are kept
 * per device object, as Linux keys them by `struct device *` (every `Device` is one).
 */
export interface DebugDevice {
  readonly name: string;
  readonly kernel: KernelVersion;
  readonly memory: PhysMemory;
}

/** Records one report of the place `ReportAt` named (Linux `err_printk`). */
export type Complain = (cls: DmaDebugClass, message: string) => void;

/**
 * The one reporting function of dma-debug: names the device, the DMA API call and the range a
 * report is about, and returns what records a report there (`at(dev, call, addr, size)(CLASS,
 * message)`), so that one call site can report several mismatches of one mapping.
 */
export type ReportAt = (dev: DebugDevice, call: string, addr: number, size: number) => Complain;

/** A range the driver unmapped. */
export interface UnmappedRange {
  readonly addr: number;
  readonly size: number;
}

/**
 * The ranges each device unmapped recently (at most `history` per device), so that a late
 * device access is reported as an access after unmap rather than to memory never mapped. A
 * new mapping over a remembered range forgets it.
 */
export class UnmappedHistory {
  private readonly ranges = new Map<DebugDevice, UnmappedRange[]>();
  private readonly history: number;

  constructor(history: number) {
    this.history = history;
  }

  remember(dev: DebugDevice, addr: number, size: number): void {
    let l = this.ranges.get(dev);
    if (!l) {
      l = [];
      this.ranges.set(dev, l);
    }
    l.push({ addr, size });
    if (l.length > this.history) l.shift();
  }

  forget(dev: DebugDevice, addr: number, size: number): void {
    const l = this.ranges.get(dev);
    if (!l) return;
    for (let i = l.length - 1; i >= 0; i--) {
      const u = l[i] as UnmappedRange;
      if (u.addr < addr + size && addr < u.addr + u.size) l.splice(i, 1);
    }
  }

  /** A remembered range that overlaps [addr, addr + len), if any. */
  find(dev: DebugDevice, addr: number, len: number): UnmappedRange | undefined {
    return this.ranges.get(dev)?.find((x) => addr < x.addr + x.size && x.addr < addr + len);
  }
}
