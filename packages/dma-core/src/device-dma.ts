/**
 * How a simulated device reads and writes memory by DMA address: through its IOMMU domain
 * (IOTLB, then a page-table walk; faults are data) or, on the direct path, through the bus
 * offset; then physical memory. Device models (the NVMe controller) use only this.
 */
import { type ByteSink, type ByteSource, CounterSet, REGION_KIND, hex } from "@dmasim/bvec";
import { DMA_ACCESS, type IommuFault, TranslationBuffer, translateInto } from "@dmasim/iommu";
import type { Device } from "./device.ts";
import { dmaToPhys } from "./direct.ts";

/** The outcome of one device access: ok, or the IOMMU fault / bus error that stopped it. */
export interface DmaAccessResult {
  ok: boolean;
  /** The IOMMU fault, when translation failed. */
  fault: IommuFault | undefined;
  /** A bus error (no IOMMU: the address reaches no memory), when not ok without a fault. */
  busError: string | undefined;
}

/**
 * One device access as an observer (`DeviceDma.observer`) sees it after it happened: the range,
 * the direction, where it went, and what the IOMMU did for it. A teaching and debugging view
 * (`dmasim trace`); the engine never sets an observer.
 */
export interface DmaAccessEvent {
  readonly addr: number;
  readonly len: number;
  /** True for a device write to memory (DMA_FROM_DEVICE data, a completion entry). */
  readonly write: boolean;
  /** The physical runs the access reached (up to a fault, none when the translation failed). */
  readonly runs: readonly { readonly phys: number; readonly len: number }[];
  /** Whether the access went through an IOMMU domain (false: the direct path's bus offset). */
  readonly translated: boolean;
  /** IOMMU: pages (leaves) looked up in the IOTLB, of them misses that walked the page table. */
  readonly pages: number;
  readonly walks: number;
  /** IOMMU: pages served from stale IOTLB entries (memory reached after its unmap). */
  readonly staleHits: number;
  readonly ok: boolean;
  readonly fault: IommuFault | undefined;
  readonly busError: string | undefined;
}

/** Counter names of `DeviceDma`. */
export type DeviceDmaCounter =
  "reads" | "writes" | "bytesRead" | "bytesWritten" | "faults" | "busErrors";

/** A device's DMA engine. */
export class DeviceDma {
  readonly dev: Device;
  readonly counters = new CounterSet<DeviceDmaCounter>("devdma", [
    "reads",
    "writes",
    "bytesRead",
    "bytesWritten",
    "faults",
    "busErrors",
  ]);
  private readonly tb = new TranslationBuffer();
  /** The bytes `readU32` reads into. */
  private readonly u32 = new Uint8Array(4);
  private readonly result: DmaAccessResult = { ok: true, fault: undefined, busError: undefined };
  /** While `writeFrom` runs: where the bytes come from (else they come from the buffer). */
  private source: ByteSource | undefined = undefined;
  /** While `readTo` runs: where the bytes go (else they go to the buffer). */
  private sink: ByteSink | undefined = undefined;
  /** Where `readTo` stages what it reads when part of the access fails (see `access`). */
  private staging = new Uint8Array(0);
  /**
   * Called after every access with what it did (`DmaAccessEvent`); undefined (the default)
   * costs one test per access. Set by `dmasim trace` to show the device's side of one I/O.
   */
  observer: ((e: DmaAccessEvent) => void) | undefined = undefined;

  constructor(dev: Device) {
    this.dev = dev;
  }

  /** Reads `len` bytes at DMA address `addr` into `dst[off..]`. The result object is reused. */
  read(addr: number, dst: Uint8Array, off = 0, len = dst.length - off): DmaAccessResult {
    this.counters.c.reads++;
    return this.access(addr, dst, off, len, false);
  }

  /** Writes `len` bytes from `src[off..]` at DMA address `addr`. The result object is reused. */
  write(addr: number, src: Uint8Array, off = 0, len = src.length - off): DmaAccessResult {
    this.counters.c.writes++;
    return this.access(addr, src, off, len, true);
  }

  /**
   * Like `write`, but the `len` bytes are `src`'s bytes `[srcAt, srcAt + len)`, copied straight
   * into memory (`PhysMemory.writeFrom`): a device with its own store skips a staging buffer.
   * Same translation, checks, counters and result as `write`.
   */
  writeFrom(addr: number, src: ByteSource, srcAt: number, len: number): DmaAccessResult {
    this.counters.c.writes++;
    this.source = src;
    try {
      return this.access(addr, noBytes, srcAt, len, true);
    } finally {
      this.source = undefined;
    }
  }

  /**
   * Like `read`, but the `len` bytes go to `dst`'s bytes `[dstAt, dstAt + len)` straight from
   * memory (`PhysMemory.readTo`): a device with its own store skips a staging buffer. Same
   * translation, checks, counters and result as `read`; `dst` receives nothing unless the whole
   * access succeeds.
   */
  readTo(addr: number, dst: ByteSink, dstAt: number, len: number): DmaAccessResult {
    this.counters.c.reads++;
    this.sink = dst;
    try {
      return this.access(addr, noBytes, dstAt, len, false);
    } finally {
      this.sink = undefined;
    }
  }

  /** Reads a little-endian 32-bit value; returns -1 on a fault (see `lastResult`). */
  readU32(addr: number): number {
    const b = this.u32;
    const r = this.read(addr, b, 0, 4);
    if (!r.ok) return -1;
    return (
      (b[0] as number) +
      (b[1] as number) * 0x100 +
      (b[2] as number) * 0x10000 +
      (b[3] as number) * 0x1000000
    );
  }

  /** The result of the last access. */
  get lastResult(): DmaAccessResult {
    return this.result;
  }

  private access(
    addr: number,
    buf: Uint8Array,
    off: number,
    len: number,
    write: boolean,
  ): DmaAccessResult {
    if (this.observer === undefined) return this.accessOnce(addr, buf, off, len, write);
    const domain = this.dev.domain;
    const pagesBefore = domain?.counters.c.translatePages ?? 0;
    const r = this.accessOnce(addr, buf, off, len, write);
    const tb = this.tb;
    const runs: { phys: number; len: number }[] = [];
    if (domain === null) {
      const phys = dmaToPhys(this.dev, addr);
      if (phys >= 0) runs.push({ phys, len });
    } else if (tb.fault === undefined) {
      for (let i = 0; i < tb.count; i++)
        runs.push({ phys: tb.phys[i] as number, len: tb.len[i] as number });
    }
    this.observer({
      addr,
      len,
      write,
      runs,
      translated: domain !== null,
      pages: (domain?.counters.c.translatePages ?? 0) - pagesBefore,
      walks: domain === null ? 0 : tb.walks,
      staleHits: domain === null ? 0 : tb.staleHits,
      ok: r.ok,
      fault: r.fault,
      busError: r.busError,
    });
    return r;
  }

  private accessOnce(
    addr: number,
    buf: Uint8Array,
    off: number,
    len: number,
    write: boolean,
  ): DmaAccessResult {
    const r = this.result;
    r.ok = true;
    r.fault = undefined;
    r.busError = undefined;
    const dev = this.dev;
    dev.debug?.deviceAccess(dev, addr, len, write);
    const domain = dev.domain;
    if (domain !== null) {
      const tb = this.tb;
      translateInto(domain, addr, len, write ? DMA_ACCESS.WRITE : DMA_ACCESS.READ, tb);
      if (tb.fault !== undefined) {
        r.ok = false;
        r.fault = tb.fault;
        this.counters.c.faults++;
        return r;
      }
      let b = buf;
      let at = off;
      if (this.sink !== undefined && tb.count > 1 && !this.reachesAll(tb)) {
        // `readTo` must leave its sink alone when the access fails part way: the runs before
        // the one that reaches no memory are read into a staging buffer instead, exactly as
        // `read` would read them, and nothing reaches the sink.
        this.sink = undefined;
        if (this.staging.length < len) this.staging = new Uint8Array(len);
        b = this.staging;
        at = 0;
      }
      for (let i = 0; i < tb.count; i++) {
        const p = tb.phys[i] as number;
        const n = tb.len[i] as number;
        if (!this.touch(p, b, at, n, write)) return r;
        at += n;
      }
    } else {
      const phys = dmaToPhys(dev, addr);
      if (phys < 0)
        return this.busError(`DMA address ${hex(addr)} is outside every bus range of ${dev.name}`);
      if (!this.touch(phys, buf, off, len, write)) return r;
    }
    if (write) this.counters.c.bytesWritten += len;
    else this.counters.c.bytesRead += len;
    return r;
  }

  private touch(phys: number, buf: Uint8Array, off: number, len: number, write: boolean): boolean {
    const mem = this.dev.memory;
    if (!this.reaches(phys, len)) {
      this.busError(`DMA to ${hex(phys)}+${hex(len)} reaches no memory`);
      return false;
    }
    if (write) {
      const src = this.source;
      if (src === undefined) mem.write(phys, buf, off, len);
      else mem.writeFrom(phys, src, off, len);
    } else {
      const dst = this.sink;
      if (dst === undefined) mem.read(phys, buf, off, len);
      else mem.readTo(phys, dst, off, len);
    }
    return true;
  }

  /** True when `[phys, phys + len)` lies in one region of RAM or device memory (not MMIO). */
  private reaches(phys: number, len: number): boolean {
    const region = this.dev.memory.regionOf(phys);
    return region !== undefined && phys + len <= region.end && region.kind !== REGION_KIND.MMIO;
  }

  /** True when every run of a translation `reaches` memory. */
  private reachesAll(tb: TranslationBuffer): boolean {
    for (let i = 0; i < tb.count; i++)
      if (!this.reaches(tb.phys[i] as number, tb.len[i] as number)) return false;
    return true;
  }

  private busError(msg: string): DmaAccessResult {
    const r = this.result;
    r.ok = false;
    r.busError = msg;
    this.counters.c.busErrors++;
    return r;
  }
}

/** The empty buffer `writeFrom`/`readTo` pass down: nothing is ever stored in it, so sharing it is safe. */
const noBytes = new Uint8Array(0);
