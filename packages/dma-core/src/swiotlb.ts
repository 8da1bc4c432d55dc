/**
 * SWIOTLB (kernel/dma/swiotlb.c): a pool of bounce slots in low memory. A mapping takes
 * contiguous 2 KiB slots (at most 128, never crossing a 128-slot segment), keeps the low address
 * bits the device's min_align_mask asks for, and copies real bytes between the original buffer
 * and the slots by direction.
 */
import {
  CounterSet,
  MAX_ADDR,
  MAX_PAGE_ORDER,
  type PhysMemory,
  ZONE,
  alignUp,
  fastMod,
  hex,
} from "@dmasim/bvec";
import { type BusDmaRegion, DMA_DIRECTION, type DmaDirection } from "./constants.ts";
import { DmaError } from "./errors.ts";

/** Linux `IO_TLB_SHIFT`: slots of 2 KiB. */
export const IO_TLB_SIZE = 2048;
/** Linux `IO_TLB_SEGSIZE`: at most 128 contiguous slots per mapping. */
export const IO_TLB_SEGSIZE = 128;
/** Linux's default pool: 64 MiB. */
export const IO_TLB_DEFAULT_SIZE = 64 * 1024 * 1024;

/** What slot placement needs of the device (Linux `dma_get_seg_boundary`, the pool's bus address). */
export interface SwiotlbDevice {
  readonly segmentBoundaryMask: number;
  readonly dmaRangeMap: readonly BusDmaRegion[];
  /** The calling CPU, whose area is searched first (default 0). */
  readonly cpu?: number;
}

/** What `swiotlbTblMapSingle` needs of a `Device` besides slot placement. */
export interface SwiotlbMapDevice extends SwiotlbDevice {
  readonly name: string;
  readonly swiotlb: Swiotlb | null;
  /** Linux `dev->dma_skip_sync`, cleared by a bounce. */
  dmaSkipSync: boolean;
  readonly counters: { readonly c: { bounceMaps: number } };
}

/** Options of a `Swiotlb` pool. */
export interface SwiotlbOptions {
  /** Pool size in bytes (default 64 MiB); allocated from the DMA32 zone in blocks of the largest order. */
  readonly size?: number;
  /**
   * Online CPUs (default 1): the pool is divided into `nareas` per-CPU areas, the CPUs rounded
   * up to a power of two (Linux `swiotlb_adjust_nareas`), and a mapping searches the calling
   * CPU's area first (`cpu & (nareas - 1)`), then the next ones in turn (`swiotlb_find_slots`).
   * The model's areas are whole memory blocks of the pool (each with its own search index), so
   * `nareas` is at most the number of blocks (rounded down to a power of two); Linux caps it
   * only so that each area keeps at least IO_TLB_SEGSIZE slots.
   */
  readonly cpus?: number;
}

/** Counter names of `Swiotlb`. */
export type SwiotlbCounter =
  | "maps"
  | "unmaps"
  | "bouncedBytesToDevice"
  | "bouncedBytesFromDevice"
  | "slotsInUse"
  | "slotsHighWater"
  | "failures";

interface Area {
  /** Physical address of the first slot. */
  readonly base: number;
  /** One past the last slot's last byte. */
  readonly end: number;
  readonly pfn: number;
  readonly order: number;
  readonly slots: number;
  /** Per slot: the original address it bounces (−1 when free). */
  readonly orig: Float64Array;
  /** Per slot at a mapping's first slot: how many slots the mapping holds (0 elsewhere). */
  readonly count: Uint16Array;
  /** Per slot at a mapping's first slot: the mapping's length in bytes. */
  readonly mappedLen: Float64Array;
  /** Next slot to try (Linux `area->index`). */
  index: number;
}

/**
 * The per-CPU areas of a pool of `size` bytes for `cpus` CPUs (Linux `swiotlb_adjust_nareas`):
 * the CPUs rounded up to a power of two, at most one area per memory block of the pool
 * (blocks of `pageSize << MAX_PAGE_ORDER` bytes), rounded down to a power of two.
 */
export function swiotlbNareas(size: number, pageSize: number, cpus: number): number {
  const blocks = Math.ceil(size / (pageSize * 2 ** MAX_PAGE_ORDER));
  let nareas = 2 ** Math.ceil(Math.log2(cpus));
  while (nareas > blocks && nareas > 1) nareas /= 2;
  return nareas;
}

/** A SWIOTLB bounce pool in simulated low memory. */
export class Swiotlb {
  readonly memory: PhysMemory;
  readonly size: number;
  readonly counters = new CounterSet<SwiotlbCounter>(
    "swiotlb",
    [
      "maps",
      "unmaps",
      "bouncedBytesToDevice",
      "bouncedBytesFromDevice",
      "slotsInUse",
      "slotsHighWater",
      "failures",
    ],
    ["slotsInUse", "slotsHighWater"],
  );
  /** Fault injection: return true to make the next mapping fail as if the pool were full. */
  faultHook: ((size: number) => boolean) | undefined = undefined;
  private readonly areas: Area[] = [];
  /**
   * The areas by address, and the span from the first to the end of the last: `areaOf` runs on
   * every unmap and sync (Linux `is_swiotlb_buffer`), so it rejects an address outside the span
   * with two comparisons and finds the area of any other by binary search.
   */
  private readonly byBase: Area[] = [];
  private lo = Infinity;
  private hi = -Infinity;
  private readonly scratch = new Uint8Array(IO_TLB_SIZE * IO_TLB_SEGSIZE);

  constructor(memory: PhysMemory, options: SwiotlbOptions = {}) {
    this.memory = memory;
    const size = options.size ?? IO_TLB_DEFAULT_SIZE;
    const block = memory.pageSize * 2 ** MAX_PAGE_ORDER;
    if (
      !Number.isInteger(size) ||
      size < IO_TLB_SIZE * IO_TLB_SEGSIZE ||
      size % (IO_TLB_SIZE * IO_TLB_SEGSIZE) !== 0
    ) {
      throw new DmaError(
        "EINVAL",
        `SWIOTLB size ${hex(size)} is not a positive multiple of ${hex(IO_TLB_SIZE * IO_TLB_SEGSIZE)}`,
      );
    }
    let left = size;
    while (left > 0) {
      const bytes = Math.min(left, block);
      const order = Math.ceil(Math.log2(Math.max(1, bytes / memory.pageSize)));
      const pfn = memory.tryAllocPages(order, { zone: ZONE.DMA32 });
      if (pfn < 0) {
        for (const a of this.areas) memory.freePages(a.pfn, a.order);
        throw new DmaError(
          "ENOMEM",
          `cannot allocate a ${hex(size)}-byte SWIOTLB pool below 4 GiB`,
        );
      }
      const slots = bytes / IO_TLB_SIZE;
      this.areas.push({
        base: pfn * memory.pageSize,
        end: pfn * memory.pageSize + slots * IO_TLB_SIZE,
        pfn,
        order,
        slots,
        orig: new Float64Array(slots).fill(-1),
        count: new Uint16Array(slots),
        mappedLen: new Float64Array(slots),
        index: 0,
      });
      left -= bytes;
    }
    this.byBase.push(...this.areas);
    this.byBase.sort((a, b) => a.base - b.base);
    for (const a of this.areas) {
      this.lo = Math.min(this.lo, a.base);
      this.hi = Math.max(this.hi, a.end);
    }
    this.size = size;
    const cpus = options.cpus ?? 1;
    if (!Number.isInteger(cpus) || cpus < 1)
      throw new DmaError("EINVAL", `SWIOTLB CPUs ${cpus} is not a positive integer`);
    this.nareas = swiotlbNareas(size, memory.pageSize, cpus);
  }

  /** Per-CPU areas (Linux `mem->nareas`). */
  readonly nareas: number;

  /** One past the pool's highest byte (Linux `mem->end`): the mask a bouncing device needs. */
  get end(): number {
    return this.hi;
  }

  /** The first memory block of per-CPU area `a`. */
  private areaStart(a: number): number {
    return Math.floor((a * this.areas.length) / this.nareas);
  }

  /**
   * Whether no slot is mapped: then no address is a live bounce buffer, so an unmap that only
   * needs `isSwiotlbBuffer`'s answer can skip looking the physical address up.
   */
  get idle(): boolean {
    return this.counters.c.slotsInUse === 0;
  }

  /** Total slots in the pool. */
  get nslabs(): number {
    return this.size / IO_TLB_SIZE;
  }

  /** Largest mapping: 128 slots (Linux `swiotlb_max_mapping_size`, less the min_align_mask rounding). */
  maxMappingSize(minAlignMask = 0): number {
    const minAlign = minAlignMask > 0 ? alignUp(minAlignMask + 1, IO_TLB_SIZE) : 0;
    return IO_TLB_SIZE * IO_TLB_SEGSIZE - minAlign;
  }

  /** True when `phys` lies inside the pool (Linux `is_swiotlb_buffer`). */
  isSwiotlbBuffer(phys: number): boolean {
    return this.areaOf(phys) !== undefined;
  }

  /**
   * Linux `swiotlb_tbl_map_single` (the pool side; the DMA paths call `swiotlbTblMapSingle`):
   * bounces `size` bytes at `orig`. The bounce address keeps `orig`'s bits under `minAlignMask`
   * (and starts on `allocAlignMask + 1`). The original is always copied in first, whatever the
   * direction, so a partial device write cannot leak stale pool contents (Linux does the same
   * since its info-leak fix). Throws ENOMEM when no slots are free.
   *
   * Placement (`swiotlb_search_pool_area`): with no alignment asked for (`allocAlignMask` and
   * `minAlignMask` 0) a mapping of at least a page starts on a page, as swiotlb always did for
   * streaming mappings; with `dev`, the slots never cross the device's segment boundary
   * (`dma_get_seg_boundary`, checked with `iommu_is_span_boundary` on the bus address).
   */
  mapSingle(
    orig: number,
    size: number,
    allocAlignMask: number,
    minAlignMask: number,
    allocRound = 0,
    dev?: SwiotlbDevice,
  ): number {
    const c = this.counters.c;
    const pageSize = this.memory.pageSize;
    // Historically, swiotlb allocations >= PAGE_SIZE were page-aligned; streaming mappings
    // pass alloc_align_mask 0 and keep that.
    const alloc =
      allocAlignMask === 0 && minAlignMask === 0 && size >= pageSize
        ? pageSize - 1
        : allocAlignMask;
    const offset = (orig % (Math.max(alloc, IO_TLB_SIZE - 1) + 1)) % (minAlignMask + 1);
    const alignMask = Math.max(alloc, IO_TLB_SIZE - 1); // slot-start alignment - 1
    // Higher min-align bits (above the slot size) must match between slot and original.
    const highMask = minAlignMask > alignMask ? minAlignMask : 0;
    // With `allocRound` (the IOMMU granule) the slots cover whole granules, so the padding
    // around the data can be zeroed without touching another mapping's slots.
    const footprint = allocRound > 0 ? alignUp(size + offset, allocRound) : size + offset;
    const nslots = Math.ceil(footprint / IO_TLB_SIZE);
    if (size === 0 || nslots > IO_TLB_SEGSIZE || (this.faultHook?.(size) ?? false)) {
      c.failures++;
      throw new DmaError(
        "ENOMEM",
        `SWIOTLB cannot bounce ${hex(size)} bytes at ${hex(orig)} (${nslots} slots)`,
      );
    }
    // The calling CPU's area first, then the others in turn (swiotlb_find_slots).
    const first = this.areaStart(fastMod(dev?.cpu ?? 0, this.nareas));
    const nblocks = this.areas.length;
    for (let k = 0; k < nblocks; k++) {
      const area = this.areas[fastMod(first + k, nblocks)] as Area;
      const slot = this.findSlots(area, nslots, alignMask, highMask, orig, dev);
      if (slot < 0) continue;
      for (let i = 0; i < nslots; i++) area.orig[slot + i] = orig - offset + i * IO_TLB_SIZE;
      area.count[slot] = nslots;
      area.mappedLen[slot] = size;
      area.index = (slot + nslots) % area.slots;
      c.maps++;
      c.slotsInUse += nslots;
      if (c.slotsInUse > c.slotsHighWater) c.slotsHighWater = c.slotsInUse;
      const tlb = area.base + slot * IO_TLB_SIZE + offset;
      this.bounce(orig, tlb, size, true);
      return tlb;
    }
    c.failures++;
    throw new DmaError(
      "ENOMEM",
      `SWIOTLB is full: no ${nslots} free slots for ${hex(size)} bytes at ${hex(orig)}`,
    );
  }

  /** Linux `swiotlb_tbl_unmap_single`: copies back for FROM_DEVICE/BIDIRECTIONAL (unless skipped) and frees the slots. */
  unmapSingle(tlb: number, size: number, dir: DmaDirection, skipCopy = false): void {
    const { area, slot, origAddr } = this.lookup(tlb, size);
    if (!skipCopy && (dir === DMA_DIRECTION.FROM_DEVICE || dir === DMA_DIRECTION.BIDIRECTIONAL)) {
      this.bounce(origAddr, tlb, size, false);
    }
    const first = this.firstSlotOf(area, slot);
    const n = area.count[first] as number;
    for (let i = 0; i < n; i++) area.orig[first + i] = -1;
    area.count[first] = 0;
    area.mappedLen[first] = 0;
    this.counters.c.unmaps++;
    this.counters.c.slotsInUse -= n;
  }

  /** Linux `swiotlb_sync_single_for_cpu`: copies the bounce buffer back for FROM_DEVICE/BIDIRECTIONAL. */
  syncForCpu(tlb: number, size: number, dir: DmaDirection): void {
    const { origAddr } = this.lookup(tlb, size);
    if (dir === DMA_DIRECTION.FROM_DEVICE || dir === DMA_DIRECTION.BIDIRECTIONAL)
      this.bounce(origAddr, tlb, size, false);
  }

  /** Linux `swiotlb_sync_single_for_device`: copies the original in for TO_DEVICE/BIDIRECTIONAL. */
  syncForDevice(tlb: number, size: number, dir: DmaDirection): void {
    const { origAddr } = this.lookup(tlb, size);
    if (dir === DMA_DIRECTION.TO_DEVICE || dir === DMA_DIRECTION.BIDIRECTIONAL)
      this.bounce(origAddr, tlb, size, true);
  }

  /** The original address a bounce address stands for (Linux `swiotlb_orig_addr`-style lookup). */
  origAddr(tlb: number): number {
    return this.lookup(tlb, 1).origAddr;
  }

  /** Frees the pool's memory; throws EBUSY if slots are still mapped. */
  destroy(): void {
    if (this.counters.c.slotsInUse !== 0) {
      throw new DmaError("EBUSY", `SWIOTLB still has ${this.counters.c.slotsInUse} slots in use`);
    }
    for (const a of this.areas) this.memory.freePages(a.pfn, a.order);
    this.areas.length = 0;
    this.byBase.length = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
  }

  private areaOf(phys: number): Area | undefined {
    if (!(phys >= this.lo && phys < this.hi)) return undefined;
    const areas = this.byBase;
    let l = 0;
    let h = areas.length - 1;
    while (l <= h) {
      const m = Math.floor((l + h) / 2);
      const a = areas[m] as Area;
      if (phys < a.base) h = m - 1;
      else if (phys >= a.end) l = m + 1;
      else return a;
    }
    return undefined;
  }

  private firstSlotOf(area: Area, slot: number): number {
    let s = slot;
    while (s > 0 && (area.count[s] as number) === 0) s--;
    return s;
  }

  private lookup(tlb: number, size: number): { area: Area; slot: number; origAddr: number } {
    const area = this.areaOf(tlb);
    if (area === undefined) throw new DmaError("EINVAL", `${hex(tlb)} is not a SWIOTLB address`);
    const slot = Math.floor((tlb - area.base) / IO_TLB_SIZE);
    const o = area.orig[slot] as number;
    if (o < 0) throw new DmaError("EINVAL", `SWIOTLB slot at ${hex(tlb)} is not mapped`);
    const first = this.firstSlotOf(area, slot);
    const end = area.base + (first + (area.count[first] as number)) * IO_TLB_SIZE;
    if (tlb + size > end) {
      throw new DmaError(
        "EINVAL",
        `SWIOTLB access ${hex(tlb)}+${hex(size)} runs past its mapping (ends ${hex(end)})`,
      );
    }
    return { area, slot, origAddr: o + ((tlb - area.base) % IO_TLB_SIZE) };
  }

  private findSlots(
    area: Area,
    nslots: number,
    alignMask: number,
    highMask: number,
    orig: number,
    dev: SwiotlbDevice | undefined,
  ): number {
    const stride = Math.max(1, (alignMask + 1) / IO_TLB_SIZE);
    // Linux `get_max_slots(boundary_mask)` and `nr_slots(tbl_dma_addr)`: the boundary window in
    // slots, and where the block's first slot sits in it (from its bus address).
    const boundaryMask = dev?.segmentBoundaryMask ?? MAX_ADDR;
    const maxSlots = Math.floor(boundaryMask / IO_TLB_SIZE) + 1;
    const tblShift =
      boundaryMask === MAX_ADDR
        ? 0
        : Math.ceil(fastMod(tblDmaAddr(dev, area.base), boundaryMask + 1) / IO_TLB_SIZE);
    const wantHigh = highMask > 0 ? (orig % (highMask + 1)) - (orig % (alignMask + 1)) : 0;
    const n = area.slots;
    const start = area.index - (area.index % stride);
    for (let tries = 0; tries < n; tries += stride) {
      const slot = (start + tries) % n;
      if (slot + nslots > n) continue;
      // Never cross a segment of 128 slots.
      if (Math.floor(slot / IO_TLB_SEGSIZE) !== Math.floor((slot + nslots - 1) / IO_TLB_SEGSIZE))
        continue;
      const addr = area.base + slot * IO_TLB_SIZE;
      if (addr % (alignMask + 1) !== 0) continue;
      // Linux `iommu_is_span_boundary(slot_index, nslots, nr_slots(tbl_dma_addr), max_slots)`.
      if (boundaryMask !== MAX_ADDR && fastMod(tblShift + slot, maxSlots) + nslots > maxSlots)
        continue;
      if (highMask > 0 && addr % (highMask + 1) !== wantHigh) continue;
      let free = true;
      for (let i = 0; i < nslots; i++) {
        if ((area.orig[slot + i] as number) >= 0) {
          free = false;
          break;
        }
      }
      if (free) return slot;
    }
    return -1;
  }

  private bounce(orig: number, tlb: number, size: number, toDevice: boolean): void {
    const buf = size <= this.scratch.length ? this.scratch : new Uint8Array(size);
    if (toDevice) {
      this.memory.read(orig, buf, 0, size);
      this.memory.write(tlb, buf, 0, size);
      this.counters.c.bouncedBytesToDevice += size;
    } else {
      this.memory.read(tlb, buf, 0, size);
      this.memory.write(orig, buf, 0, size);
      this.counters.c.bouncedBytesFromDevice += size;
    }
  }
}

/**
 * Linux `phys_to_dma_unencrypted` for the pool (the bus address `swiotlb_search_pool_area`
 * checks the segment boundary on): the device's `dma_range_map` offset, if any.
 */
function tblDmaAddr(dev: SwiotlbDevice | undefined, phys: number): number {
  for (const r of dev?.dmaRangeMap ?? []) {
    if (phys >= r.cpuStart && phys - r.cpuStart < r.size) return phys - r.cpuStart + r.dmaStart;
  }
  return phys;
}

/**
 * Linux `swiotlb_tbl_map_single` as every DMA path calls it (direct `swiotlb_map`,
 * `iommu_dma_map_swiotlb` for single, scatterlist and `dma_iova_link` bounces): bounces through
 * the device's pool with its segment boundary, then clears the device's skip-sync state
 * (`dma_reset_need_sync`: a bounced buffer must always be synced). Returns the bounce address;
 * ENOMEM when the pool is full or the device has none.
 */
export function swiotlbTblMapSingle(
  dev: SwiotlbMapDevice,
  orig: number,
  size: number,
  allocAlignMask: number,
  minAlignMask: number,
  allocRound = 0,
): number {
  const pool = dev.swiotlb;
  if (pool === null) {
    throw new DmaError(
      "ENOMEM",
      `device ${dev.name}: DMA bounce buffers are inactive, cannot bounce ${hex(size)} bytes at ${hex(orig)}`,
    );
  }
  const tlb = pool.mapSingle(orig, size, allocAlignMask, minAlignMask, allocRound, dev);
  dev.dmaSkipSync = false;
  dev.counters.c.bounceMaps++;
  return tlb;
}
