/**
 * The test machine of @dmasim/nvme ("@dmasim/nvme/testing"): a simulated machine (memory,
 * optional IOMMU, dma-debug), a controller and an enabled host, plus helpers to build requests
 * from page layouts, to read what the device sees through a command's PRPs or SGL, to submit
 * raw commands, and to list what leaked. It does not depend on a test framework: checks return
 * the problems they find, and the test asserts on them.
 */
import {
  BLK_STS,
  type BioVec,
  type BlkStatus,
  type PageSize,
  PhysMemory,
  type QueueLimits,
  REQ_OP,
  type ReqOp,
  type Request,
  SimClock,
  bioFromBvecs,
  blkRqFromBios,
  bvecFromPhys,
  getU16,
  queueLimits,
} from "@dmasim/bvec";
import {
  Device,
  DeviceDma,
  DmaDebug,
  Swiotlb,
  blkDmaIter,
  iommuSetupDmaOps,
} from "@dmasim/dma-core";
import { IOMMU_DOMAIN, IommuDomain } from "@dmasim/iommu";
import { NvmeController } from "../ctrl/ctrl.ts";
import type { NvmeControllerOptions } from "../ctrl/state.ts";
import { DmaRanges, nvmeMapPrp, nvmeMapSgl } from "../ctrl/walker.ts";
import { NvmeError } from "../errors.ts";
import { NvmeIod } from "../host/iod.ts";
import { NVME_CTRL_PAGE_SIZE } from "../host/limits.ts";
import { type MappingStyle, NvmeHost, type NvmeHostOptions } from "../host/pci.ts";
import type { ScatterlistMapContext } from "../host/scatterlist.ts";
import {
  CQE_SIZE,
  NVME_PSDT,
  SQE,
  SQE_SIZE,
  cqeCid,
  cqePhase,
  cqeStatus,
  getAddr64,
  sqePsdt,
} from "../spec/commands.ts";
import { type SglSupport, sglsSupported } from "../spec/identify.ts";
import { sqTailDoorbell } from "../spec/registers.ts";

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 ** 3;
export const FOUR_GIB = 4 * GiB;

export type IommuMode = "none" | "passthrough" | "strict" | "lazy";

/** Clock time that drains every timer of the machine (the flush queue's included): 2 s. */
const DRAIN_NS = 2_000_000_000;

export interface RigOptions {
  readonly mode?: IommuMode;
  readonly mapping?: MappingStyle;
  readonly sgl?: SglSupport;
  readonly pageSize?: PageSize;
  /** IOMMU translation granule (default 4 KiB). */
  readonly granule?: 4096 | 16384 | 65536;
  /** dma-debug on (default true). */
  readonly debug?: boolean;
  /** Force every streaming mapping through a SWIOTLB pool. */
  readonly bounce?: boolean;
  /** The device's `iovaApi` what-if (default true; false maps every segment on its own). */
  readonly iovaApi?: boolean;
  readonly ctrl?: Partial<Omit<NvmeControllerOptions, "dev" | "clock">>;
  readonly host?: Partial<Omit<NvmeHostOptions, "dev" | "bar">>;
  /** Do not call host.enable(). */
  readonly noEnable?: boolean;
}

export interface Baseline {
  readonly pages: number;
  readonly iovaRanges: number;
  readonly tablePages: number;
}

/** A machine with an NVMe controller and its host driver. */
export class Rig {
  readonly clock = new SimClock();
  readonly memory: PhysMemory;
  readonly debug: DmaDebug | null;
  readonly domain: IommuDomain | null;
  readonly swiotlb: Swiotlb | null;
  readonly dev: Device;
  readonly ctrl: NvmeController;
  readonly host: NvmeHost;
  readonly baseline: Baseline;
  readonly mode: IommuMode;
  /** Buffers the test allocated: freed by `checkNoLeaks`. */
  private readonly owned: { pfn: number; order: number }[] = [];

  constructor(o: RigOptions = {}) {
    this.mode = o.mode ?? "none";
    this.memory = new PhysMemory({ ramBytes: 16 * GiB, pageSize: o.pageSize ?? 4096 });
    this.debug = (o.debug ?? true) ? new DmaDebug() : null;
    const mode = this.mode;
    const type =
      mode === "strict"
        ? IOMMU_DOMAIN.DMA
        : mode === "lazy"
          ? IOMMU_DOMAIN.DMA_FQ
          : IOMMU_DOMAIN.IDENTITY;
    this.domain =
      mode === "none"
        ? null
        : new IommuDomain({
            type,
            mem: this.memory,
            clock: this.clock,
            pgtable: { granule: o.granule ?? 4096 },
          });
    this.swiotlb = (o.bounce ?? false) ? new Swiotlb(this.memory, { size: 4 * MiB }) : null;
    this.dev = new Device({
      name: "nvme0",
      memory: this.memory,
      iommu: this.domain,
      clock: this.clock,
      debug: this.debug,
      swiotlb: this.swiotlb,
      forceBounce: o.bounce ?? false,
      iovaApi: o.iovaApi ?? true,
    });
    iommuSetupDmaOps(this.dev);
    this.baseline = {
      pages: this.memory.pagesInUse,
      iovaRanges: this.dev.cookie?.iovad.liveRanges ?? 0,
      tablePages: this.domain?.pgtable?.tableMemoryPages ?? 0,
    };
    this.ctrl = new NvmeController({
      dev: this.dev,
      clock: this.clock,
      sgl: o.sgl ?? "none",
      ...o.ctrl,
    });
    this.host = new NvmeHost({
      dev: this.dev,
      bar: this.ctrl,
      mapping: o.mapping ?? "two-step",
      ...o.host,
    });
    if (!(o.noEnable ?? false)) this.host.enable();
  }

  // ---------------------------------------------------------------------------------------
  // Buffers

  /** `count` single pages scattered over RAM (no two consecutive ones adjacent). */
  scattered(count: number, seed: number): number[] {
    const pfns = this.memory.allocScattered(count, seed);
    for (const p of pfns) this.owned.push({ pfn: p, order: 0 });
    return pfns.map((p) => p * this.memory.pageSize);
  }

  /** 2^order contiguous pages (the NORMAL zone: above 4 GiB); returns the physical address. */
  contiguous(order: number): number {
    const pfn = this.memory.allocPages(order);
    this.owned.push({ pfn, order });
    return pfn * this.memory.pageSize;
  }

  /** Single pages above 4 GiB, not adjacent to each other. */
  highPages(count: number): number[] {
    const out: number[] = [];
    const ps = this.memory.pageSize;
    let pfn = FOUR_GIB / ps + 7;
    while (out.length < count) {
      if (this.memory.allocPageAt(pfn)) {
        this.owned.push({ pfn, order: 0 });
        out.push(pfn * ps);
      }
      pfn += 3;
    }
    return out;
  }

  /** Fills `len` bytes at `phys` with seeded data and returns them. */
  fill(phys: number, len: number, seed: number): Uint8Array {
    const d = pattern(len, seed);
    this.memory.write(phys, d);
    return d;
  }

  /** The bytes of a bvec list, concatenated. */
  gather(bvecs: readonly BioVec[]): Uint8Array {
    const total = bvecs.reduce((n, b) => n + b.len, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const b of bvecs) {
      this.memory.read(b.page * b.pageSize + b.offset, out, at, b.len);
      at += b.len;
    }
    return out;
  }

  /** Writes `data` across a bvec list. */
  scatter(bvecs: readonly BioVec[], data: Uint8Array): void {
    let at = 0;
    for (const b of bvecs) {
      this.memory.write(b.page * b.pageSize + b.offset, data, at, b.len);
      at += b.len;
    }
  }

  /** bvecs for (phys, len) pairs. */
  bvecs(parts: readonly (readonly [number, number])[]): BioVec[] {
    return parts.map(([p, l]) => bvecFromPhys(p, l, this.memory.pageSize));
  }

  /** A request built directly under `limits` (default: the host's I/O queue limits). */
  request(op: ReqOp, bvecs: readonly BioVec[], limits?: QueueLimits, sector = 0): Request {
    return blkRqFromBios(limits ?? this.host.limits, [bioFromBvecs(op, sector, bvecs)]);
  }

  // ---------------------------------------------------------------------------------------
  // Builder access

  /** A fresh I/O-queue iod. */
  iod(tag = 0, qid = 1): NvmeIod {
    const iod = new NvmeIod(qid, tag);
    iod.resetForSubmit();
    return iod;
  }

  /**
   * A mapping context over the enabled host's pools and Identify data, as the host builds its
   * own: for calling `nvmeMapData` / `nvmeMapDataScatterlist` and their unmaps directly.
   */
  mapContext(): ScatterlistMapContext {
    return mapContextOf(this.host);
  }

  /**
   * What the device sees through `cmd`'s data pointer for `len` bytes: the walk status, its
   * ranges, and the bytes read from those ranges (through the IOMMU; `readOk` is false when a
   * range could not be read).
   */
  deviceView(
    cmd: Uint8Array,
    len: number,
  ): { status: number; ranges: DmaRanges; bytes: Uint8Array; readOk: boolean } {
    const dma = new DeviceDma(this.dev);
    const ranges = new DmaRanges();
    const prp1 = getAddr64(cmd, SQE.PRP1);
    const prp2 = getAddr64(cmd, SQE.PRP2);
    const status =
      sqePsdt(cmd) === NVME_PSDT.PRP
        ? nvmeMapPrp(dma, prp1, prp2, len, NVME_CTRL_PAGE_SIZE, ranges)
        : nvmeMapSgl(
            dma,
            cmd,
            SQE.SGL_ADDR,
            len,
            { support: "byte", oversize: false, bitBucket: false },
            false,
            ranges,
          );
    const bytes = new Uint8Array(len);
    let readOk = true;
    if (status === 0) {
      let at = 0;
      for (let i = 0; i < ranges.count; i++) {
        const n = ranges.len[i] as number;
        if (!dma.read(ranges.addr[i] as number, bytes, at, n).ok) readOk = false;
        at += n;
      }
    }
    return { status, ranges, bytes, readOk };
  }

  // ---------------------------------------------------------------------------------------
  // I/O

  /** Submits one bio and drains; returns the bio status (throws if the bio never ended). */
  io(op: "read" | "write", sector: number, bvecs: readonly BioVec[]): BlkStatus {
    let status: BlkStatus | -1 = -1;
    const bio = bioFromBvecs(op, sector, bvecs);
    bio.endIo = (b) => (status = b.status);
    this.host.submitBio(bio);
    this.host.drain();
    if (status === -1) throw new NvmeError("ETIMEDOUT", "the bio did not complete");
    return status;
  }

  /**
   * Submits a raw 64-byte command on I/O queue `qid` (bypassing the driver: the CID must name
   * an idle tag so the host ignores the completion), rings the doorbell, and returns the
   * completion's status (shifted form, DNR = 0x4000). The host's ring state is kept
   * consistent so that normal I/O can continue afterwards. Throws when no completion for the
   * command arrives.
   */
  rawCommand(cmd: Uint8Array, qid = 1): number {
    const q = this.host.queues[qid];
    if (q === undefined) throw new NvmeError("EINVAL", `no queue ${qid}`);
    this.memory.write(q.sq.cpuAddr + q.sqTail * SQE_SIZE, cmd, 0, SQE_SIZE);
    q.sqTail = (q.sqTail + 1) % q.depth;
    q.lastSqTailDb = q.sqTail;
    this.ctrl.writeReg32(sqTailDoorbell(qid), q.sqTail);
    while (this.ctrl.pending > 0) this.clock.runNext();
    const e = this.memory.readBytes(q.cq.cpuAddr + q.cqHead * CQE_SIZE, CQE_SIZE);
    if (cqePhase(e) !== q.cqPhase) throw new NvmeError("EIO", "no completion was posted");
    if (cqeCid(e) !== getU16(cmd, SQE.CID))
      throw new NvmeError("EIO", `the completion is for CID ${cqeCid(e)}`);
    const consumed = this.host.pollCq(qid);
    if (consumed !== 1) throw new NvmeError("EIO", `the host consumed ${consumed} entries`);
    return cqeStatus(e);
  }

  // ---------------------------------------------------------------------------------------
  // Leak checks

  /**
   * Lists what the data path left allocated (empty when nothing leaked): descriptor blocks, vec
   * arrays and scatterlists before shutdown; then (after the clock drains the flush queue and
   * the host shuts down) IOVAs beyond the reserved and rcache-cached ranges, page-table leaves
   * or pending table pages, bounce slots, physical pages beyond the baseline (a coherent
   * allocation, descriptor pool page or table page), dma-debug reports, and a fatal controller.
   * Tests end with `expect(r.checkNoLeaks()).toEqual([])`.
   */
  checkNoLeaks(): string[] {
    const problems: string[] = [];
    const want = (what: string, got: unknown, expected: unknown): void => {
      if (JSON.stringify(got) !== JSON.stringify(expected))
        problems.push(`${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    };
    const host = this.host;
    for (const q of host.queues.slice(1)) want(`queue ${q.qid} in flight`, q.inflight, 0);
    want("small descriptor blocks in use", host.small.inUse, 0);
    want("large descriptor blocks in use", host.large.inUse, 0);
    want("dma_vec arrays in use", host.vecPool.counters.c.inUse, 0);
    want("scatterlist tables in use", host.sgPool.counters.c.inUse, 0);
    want("host in-flight bytes", host.counters.c.inflightBytes, 0);
    want("completions pending on the clock", this.ctrl.pending, 0);
    this.clock.advance(DRAIN_NS);
    host.shutdown();
    // Coherent frees at shutdown go through the flush queue too (lazy mode).
    this.clock.advance(DRAIN_NS);
    for (const o of this.owned) this.memory.freePages(o.pfn, o.order);
    this.owned.length = 0;
    const cookie = this.dev.cookie;
    if (cookie !== null) {
      want("flush queue entries pending", cookie.fq?.pending ?? 0, 0);
      const iovad = cookie.iovad;
      // Every range in the tree is reserved (the baseline) or parked in an rcache.
      want(
        "IOVA ranges neither reserved nor cached",
        iovad.liveRanges - iovad.counters.c.cachedRanges,
        this.baseline.iovaRanges,
      );
      iovad.freeGlobalCachedIovas();
      for (let cpu = 0; cpu < iovad.numCpus; cpu++) iovad.freeCpuCachedIovas(cpu);
      want("IOVA ranges after the rcaches are freed", iovad.liveRanges, this.baseline.iovaRanges);
    }
    const pt = this.domain?.pgtable;
    if (pt !== undefined) {
      want(
        "page-table leaves",
        pt.leafCounts().reduce((n, l) => n + l.count, 0),
        0,
      );
      want("table pages pending free", pt.pendingFreeTablePages, 0);
    }
    if (this.swiotlb !== null) want("bounce slots in use", this.swiotlb.counters.c.slotsInUse, 0);
    // Tables that emptied stay linked, as in Linux (the domain owns them): every other page is
    // back to the baseline.
    const tables = pt?.tableMemoryPages ?? 0;
    want(
      "pages in use (without page tables)",
      this.memory.pagesInUse - tables,
      this.baseline.pages - this.baseline.tablePages,
    );
    if (this.debug !== null) {
      want("dma-debug errors", this.debug.errors, []);
      want("dma-debug outstanding mappings", this.debug.outstanding(), 0);
      want("dma-debug leaks", this.debug.checkLeaks(this.dev), 0);
    }
    want("controller fatal status", this.ctrl.fatal, false);
    return problems;
  }
}

/**
 * A mapping context over an enabled host's pools and Identify data, as the host builds its
 * own (probe.ts): for calling the mapping functions of either style directly.
 */
export function mapContextOf(h: NvmeHost): ScatterlistMapContext {
  return {
    dev: h.dev,
    mem: h.dev.memory,
    small: h.small,
    large: h.large,
    vecPool: h.vecPool,
    sgPool: h.sgPool,
    sglSupported: sglsSupported(h.info.sgls),
    sglThreshold: h.sglThreshold,
    iter: blkDmaIter(),
  };
}

/** Seeded bytes. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + 12345) % 4294967296;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out[i] = Math.floor(x / 65536) % 256;
  }
  return out;
}

/** Limits for requests built by hand (no virt boundary unless given). */
export function limits(o: Partial<QueueLimits> = {}): QueueLimits {
  return queueLimits({
    maxHwSectors: 65536,
    maxSegments: 4096,
    maxSegmentSize: 0xffffffff,
    dmaAlignment: 3,
    ...o,
  });
}

export const OK = BLK_STS.OK;
export const READ = REQ_OP.READ;
export const WRITE = REQ_OP.WRITE;

/** A read/write command with a CID naming tag `tag` (generation 0). */
export function rawRw(op: number, slba: number, nlb: number, tag: number): Uint8Array {
  const cmd = new Uint8Array(SQE_SIZE);
  cmd[SQE.OPCODE] = op;
  cmd[SQE.CID] = tag % 256;
  cmd[SQE.CID + 1] = Math.floor(tag / 256);
  cmd[SQE.NSID] = 1;
  cmd[SQE.CDW10] = slba % 256;
  cmd[SQE.CDW10 + 1] = Math.floor(slba / 256) % 256;
  cmd[SQE.CDW12] = (nlb - 1) % 256;
  cmd[SQE.CDW12 + 1] = Math.floor((nlb - 1) / 256);
  return cmd;
}
