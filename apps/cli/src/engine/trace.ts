/**
 * One I/O, step by step: the bvecs, the physical segments, the DMA mapping (IOVA, page-table
 * entries written, sync), the command bytes, the PRP list or SGL bytes, the controller's walk
 * with its DMA translations, the completion, and the teardown with its invalidations.
 */
import {
  BLK_STS,
  Bio,
  type BlkStatus,
  SECTOR_SIZE,
  BvecError,
  bioAddPage,
  bioSplitIoAt,
  blkRqFromBios,
  blkRqPhysSegments,
  bvecPhys,
  InternalError,
  blkStatusName,
  fastMod,
  hex,
  bioSegments,
  getU32,
  getU64,
} from "@dmasim/bvec";
import { DeviceDma, dmaUseIova } from "@dmasim/dma-core";
import { DMA_ACCESS, translate } from "@dmasim/iommu";
import {
  CQE_SIZE,
  DmaRanges,
  type NvmeFaultPlan,
  SQE,
  SQE_SIZE,
  cqeCid,
  cqePhase,
  cqeStatus,
  nvmeMapPrp,
  nvmeMapSgl,
  nvmeStatusName,
} from "@dmasim/nvme";
import { JobError } from "./errors.ts";
import type { Job } from "./job.ts";
import { sizeOf } from "./job.ts";
import {
  type Machine,
  buildMachine,
  counterSources,
  effectiveIommuMode,
  snapshotCounters,
} from "./machine.ts";

/** One step of a trace. */
export interface TraceStep {
  readonly step: string;
  readonly lines: readonly string[];
  readonly data: unknown;
}

/** Options of a trace. */
export interface TraceOptions {
  /** Explicit buffers (physical address and length); default: from the job's layout. */
  readonly bufs?: readonly { readonly phys: number; readonly len: number }[];
  readonly write?: boolean;
  /** Byte offset on the namespace. */
  readonly offset?: number;
  /**
   * Attach dma-debug (CONFIG_DMA_API_DEBUG), as `run --debug` does. Off by default, as in `run`
   * and in a production kernel: with it on, `dma_need_unmap` is always true, so the driver
   * records DMA addresses it would otherwise not.
   */
  readonly debug?: boolean;
  /**
   * Fault injection on the controller for the traced I/O (`NvmeController.setFaults`), e.g.
   * `{ corruptDescriptor: { nth: 1 } }` or `{ failDmaRead: { nth: 1 } }`: a way to see a failed
   * command and the reason the controller records for it. Default: none.
   */
  readonly faults?: NvmeFaultPlan;
}

function hexdump(bytes: Uint8Array, base: number, width = 16): string[] {
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += width) {
    const row = Array.from(bytes.subarray(i, i + width), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join(" ");
    out.push(`  ${hex(base + i).padStart(14)}: ${row}`);
  }
  return out;
}

function signed(v: number): string {
  return v > 0 ? `+${v}` : String(v);
}

function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) {
    const d = v - (a[k] ?? 0);
    if (d !== 0 && !k.startsWith("memory.bytes")) out[k] = d;
  }
  return out;
}

/** The I/O does not fit one request: the block layer would split it under the queue limits. */
export class TraceSplitError extends JobError {
  constructor(message: string) {
    super([message]);
  }
}

/** The machine's RAM, for messages: "RAM 0x100000-0x80000000, 0x100000000-0x480000000". */
function ramText(m: Machine): string {
  return `RAM ${m.memory.regions.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(", ")}`;
}

/** Traces one I/O of `job` (its bs, its buffer layout, or `bufs`). */
export function traceIo(job: Job, o: TraceOptions = {}): TraceStep[] {
  const debug = o.debug ?? false;
  const m = buildMachine(job, { debug });
  if (o.faults !== undefined) m.ctrl.setFaults(o.faults);
  const ps = m.memory.pageSize;
  const steps: TraceStep[] = [];
  steps.push({
    step: "kernel",
    lines: [
      `  Linux ${job.kernel}, IOMMU ${effectiveIommuMode(job)}${effectiveIommuMode(job) !== job.iommu.mode ? ` (asked: ${job.iommu.mode})` : ""}, mapping ${job.host.mapping}, dma-debug ${debug ? "on" : "off"}`,
    ],
    data: {
      kernel: job.kernel,
      iommu: effectiveIommuMode(job),
      mapping: job.host.mapping,
      dmaDebug: debug,
    },
  });
  const sources = counterSources(m);
  const write = o.write ?? false;
  // 1. Buffers and bvecs.
  let bufs = o.bufs;
  if (bufs === undefined) {
    const bs =
      typeof job.workload.bs === "object"
        ? Array.isArray(job.workload.bs)
          ? sizeOf(job.workload.bs[0]?.bs ?? 4096)
          : sizeOf(job.workload.bs.min)
        : sizeOf(job.workload.bs);
    const off = job.workload.buffers === "offset" ? job.workload.bufferOffset : 0;
    const pages =
      job.workload.buffers === "scattered"
        ? m.memory.allocScattered(Math.ceil((bs + off) / ps), job.seed)
        : (() => {
            const n = Math.ceil((bs + off) / ps);
            const base = m.memory.allocPages(Math.ceil(Math.log2(n)));
            return Array.from({ length: n }, (_, i) => base + i);
          })();
    const list: { phys: number; len: number }[] = [];
    let left = bs;
    let first = off;
    for (const p of pages) {
      if (left === 0) break;
      const n = Math.min(ps - first, left);
      list.push({ phys: p * ps + first, len: n });
      left -= n;
      first = 0;
    }
    bufs = list;
  } else {
    for (const b of bufs) {
      if (!m.memory.isRam(b.phys, b.len))
        throw new JobError([
          `--buf ${hex(b.phys)}:${b.len} is not inside RAM of the simulated machine (${ramText(m)})`,
        ]);
    }
    // The buffers' pages become the I/O's own, so that nothing the machine allocates later
    // (page tables, bounce slots) lands on them; a page the machine already uses is refused.
    const claimed = new Set<number>();
    for (const b of bufs) {
      for (let pfn = Math.floor(b.phys / ps); pfn * ps < b.phys + b.len; pfn++) {
        if (claimed.has(pfn)) continue;
        if (!m.memory.allocPageAt(pfn))
          throw new JobError([
            `--buf ${hex(b.phys)}:${b.len}: page ${hex(pfn * ps)} is already in use by the machine (the driver's queues and descriptors, page tables or the SWIOTLB pool); choose free RAM`,
          ]);
        claimed.add(pfn);
      }
    }
  }
  const total = bufs.reduce((n, b) => n + b.len, 0);
  if (total % job.controller.lbaSize !== 0)
    throw new JobError([
      `--buf: the buffers hold ${total} bytes, not a multiple of the ${job.controller.lbaSize}-byte LBA size (controller.lbaSize)`,
    ]);
  const offset = o.offset ?? 0;
  const nsBytes =
    Math.floor((job.controller.namespaceGiB * 1024 ** 3) / job.controller.lbaSize) *
    job.controller.lbaSize;
  if (offset % job.controller.lbaSize !== 0 || offset + total > nsBytes)
    throw new JobError([
      `--offset ${offset}: give a multiple of the ${job.controller.lbaSize}-byte LBA size with offset + ${total} bytes within the ${nsBytes}-byte namespace`,
    ]);
  const bio = new Bio(write ? "write" : "read", offset / SECTOR_SIZE, Math.max(1, bufs.length));
  for (const b of bufs) {
    if (bioAddPage(bio, Math.floor(b.phys / ps), b.len, b.phys % ps, ps) !== b.len)
      throw new JobError([`--buf: ${bufs.length} buffers are more than one bio holds`]);
  }
  const bv = bioSegments(bio);
  steps.push({
    step: "bvecs",
    lines: bv.map(
      (b, i) =>
        `  bvec ${i}: page ${hex(b.page)} offset ${hex(b.offset)} len ${hex(b.len)} → phys ${hex(bvecPhys(b))}`,
    ),
    data: bv.map((b) => ({ page: b.page, offset: b.offset, len: b.len, phys: bvecPhys(b) })),
  });
  const lim = m.host.limits;
  let split: number;
  try {
    split = bioSplitIoAt(bio, lim).sectors;
  } catch (e) {
    if (e instanceof BvecError)
      throw new JobError([`--buf: the buffers break the queue limits: ${e.message}`]);
    throw e;
  }
  if (split !== 0)
    throw new TraceSplitError(
      `trace follows one request, and ${total} bytes in ${bv.length} bvec${bv.length === 1 ? "" : "s"} would be split after ${split * SECTOR_SIZE} bytes under the queue limits (max_hw_sectors ${lim.maxHwSectors} = ${lim.maxHwSectors * SECTOR_SIZE} bytes, max_segments ${lim.maxSegments}, virt_boundary ${hex(lim.virtBoundaryMask)}); trace what fits in one request`,
    );
  const req = blkRqFromBios(lim, [bio]);
  const segs = blkRqPhysSegments(req);
  steps.push({
    step: "physical segments",
    lines: [
      `  queue limits: max_segments ${lim.maxSegments}, max_hw_sectors ${lim.maxHwSectors}, virt_boundary ${hex(lim.virtBoundaryMask)}, seg_boundary ${hex(lim.segBoundaryMask)}`,
      `  nr_phys_segments ${req.nrPhysSegments}, gap bit ${req.physGapBit}`,
      ...segs.map((s, i) => `  segment ${i}: ${hex(s.paddr)} + ${hex(s.len)}`),
    ],
    data: { nrPhysSegments: req.nrPhysSegments, physGapBit: req.physGapBit, segments: segs },
  });
  // 2. Map and build (no doorbell yet).
  const before = snapshotCounters(m, sources);
  let status: BlkStatus = BLK_STS.OK;
  let done = false;
  const st = m.host.queueRq(
    req,
    (s) => {
      status = s;
      done = true;
    },
    { qid: 1, last: false },
  );
  if (st !== BLK_STS.OK) {
    // A refusal is an outcome of the model (a mapping that failed, no bounce slot), not an error.
    const name = blkStatusName(st);
    steps.push({
      step: "submit",
      lines: [
        `  the driver refused the request: ${name} (${st})${st === BLK_STS.RESOURCE ? ": the DMA mapping or a descriptor allocation failed; blk-mq would requeue it" : ""}`,
      ],
      data: { refused: true, status: st, statusName: name },
    });
    return steps;
  }
  const q = m.host.queues[1];
  const iod = q?.iods.find((x) => x.busy);
  if (q === undefined || iod === undefined)
    throw new InternalError("no request in flight after submit");
  const afterMap = snapshotCounters(m, sources);
  const cmd = iod.cmd;
  const sgl = cmd[SQE.FLAGS] !== 0;
  const iova = dmaUseIova(iod.dmaState)
    ? { addr: iod.dmaState.addr, size: iod.dmaState.size }
    : null;
  // The DMA ranges the mapping produced: the IOVA range, the recorded per-segment mappings, the
  // mapped scatterlist entries (old style), or, for per-segment SGL mappings (no records: the
  // unmap reads the SGL), the Data Blocks of the SGL segment the driver wrote.
  const sglBlocks = (): { addr: number; len: number }[] => {
    const seg = iod.descriptors[0];
    if (!sgl || seg === undefined) return [];
    const bytes = m.memory.readBytes(seg.cpuAddr, getU32(cmd, SQE.SGL_LEN));
    const out: { addr: number; len: number }[] = [];
    for (let o = 0; o + 16 <= bytes.length; o += 16)
      out.push({ addr: getU64(bytes, o), len: getU32(bytes, o + 8) });
    return out;
  };
  const mapped: { addr: number; len: number }[] = iova
    ? [{ addr: iova.addr, len: iova.size }]
    : iod.sgt
      ? iod.sgt.sgl.slice(0, iod.sgt.nents).map((e) => ({ addr: e.dmaAddress, len: e.dmaLength }))
      : iod.nrDmaVecs > 0
        ? (iod.dmaVecs ?? [iod.dmaVec]).slice(0, iod.nrDmaVecs)
        : sglBlocks();
  const pt = m.domain?.pgtable;
  const ptes = pt
    ? mapped
        .flatMap((r) => pt.dump(r.addr - fastMod(r.addr, pt.granule), r.addr + r.len))
        .filter((e) => e.kind !== "table")
    : [];
  const path = iova
    ? `two-step IOVA (one range ${hex(iova.addr)} + ${hex(iova.size)})`
    : iod.sgt
      ? `scatterlist (dma_map_sgtable: ${iod.sgt.nents} DMA segment${iod.sgt.nents === 1 ? "" : "s"})`
      : mapped.length === 0
        ? "per-segment dma_map_phys (nothing to unmap)"
        : `per-segment dma_map_phys (${mapped.length} segment${mapped.length === 1 ? "" : "s"}${iod.nrDmaVecs === 0 ? ", read back from the SGL" : ""})`;
  const mapLines = [
    `  path: ${path}`,
    `  mapped length ${hex(iod.totalLen)}; descriptors ${iod.nrDescriptors}; dma_vec records ${iod.nrDmaVecs}${iod.dmaVecs ? " (array from the mempool)" : ""}`,
    ...Object.entries(diff(before, afterMap)).map(([k, v]) => `  ${k} ${signed(v)}`),
    ...ptes.map(
      (e) =>
        `  PTE L${e.level}[${e.index}] iova ${hex(e.iova)} → ${hex(e.addr)} (${e.kind}, ${hex(e.size)}) = ${e.pte}`,
    ),
  ];
  steps.push({
    step: "DMA mapping",
    lines: mapLines,
    data: { iova, totalLen: iod.totalLen, counters: diff(before, afterMap), ptes },
  });
  // 3. The command as it sits in the submission queue.
  const slot = (q.sqTail + q.depth - 1) % q.depth;
  const sqeAddr = q.sq.cpuAddr + slot * SQE_SIZE;
  const sqe = m.memory.readBytes(sqeAddr, SQE_SIZE);
  const dptr = sgl
    ? `SGL1 ${Math.floor((cmd[SQE.SGL_TYPE] as number) / 16) === 0 ? "Data Block" : "Last Segment"} addr ${hex(getU64(cmd, SQE.SGL_ADDR))} len ${hex(getU32(cmd, SQE.SGL_LEN))}`
    : `PRP1 ${hex(getU64(cmd, SQE.PRP1))} PRP2 ${hex(getU64(cmd, SQE.PRP2))}`;
  steps.push({
    step: "command",
    lines: [
      `  SQ 1 slot ${slot} at ${hex(sqeAddr)}: opcode ${hex(cmd[SQE.OPCODE] as number)} (${write ? "Write" : "Read"}), PSDT ${sgl ? "01b (SGL)" : "00b (PRP)"}, ${dptr}`,
      ...hexdump(sqe, sqeAddr),
    ],
    data: { slot, addr: sqeAddr, bytes: Array.from(sqe) },
  });
  // 4. Descriptor memory.
  const descLines: string[] = [];
  const descData: { addr: number; bytes: number[] }[] = [];
  for (let i = 0; i < iod.nrDescriptors; i++) {
    const d = iod.descriptors[i];
    if (!d) continue;
    const n = sgl ? getU32(cmd, SQE.SGL_LEN) : Math.min(4096, 8 * Math.ceil(total / 4096) + 8);
    const bytes = m.memory.readBytes(d.cpuAddr, Math.min(n, 4096));
    descLines.push(
      `  descriptor ${i}: cpu ${hex(d.cpuAddr)} dma ${hex(d.dmaAddr)}`,
      ...hexdump(bytes.subarray(0, Math.min(bytes.length, 256)), d.cpuAddr),
    );
    descData.push({ addr: d.cpuAddr, bytes: Array.from(bytes) });
  }
  steps.push({
    step: sgl ? "SGL segment" : "PRP list",
    lines: descLines.length ? descLines : ["  none: the command holds the whole data pointer"],
    data: descData,
  });
  // 5. The controller's walk, as the device sees it (through the IOMMU).
  const ranges = new DmaRanges();
  const dma = new DeviceDma(m.dev);
  const wst = sgl
    ? nvmeMapSgl(
        dma,
        cmd,
        SQE.SGL_ADDR,
        total,
        {
          support: job.controller.sgl === "dword" ? "dword" : "byte",
          oversize: false,
          bitBucket: false,
        },
        !write,
        ranges,
      )
    : nvmeMapPrp(dma, getU64(cmd, SQE.PRP1), getU64(cmd, SQE.PRP2), total, 4096, ranges);
  const walkLines = [
    `  walk status ${hex(wst)}; descriptor reads ${ranges.descriptorReads} (${ranges.descriptorBytes} bytes)`,
  ];
  const walkData: unknown[] = [];
  for (let i = 0; i < ranges.count; i++) {
    const a = ranges.addr[i] as number;
    const l = ranges.len[i] as number;
    let runs: { phys: number; len: number }[] = [{ phys: a, len: l }];
    if (m.domain) {
      const t = translate(m.domain, a, l, write ? DMA_ACCESS.READ : DMA_ACCESS.WRITE);
      runs = t.ok ? t.runs.map((r) => ({ phys: r.phys, len: r.len })) : [];
    }
    walkLines.push(
      `  DMA ${hex(a)} + ${hex(l)} → ${runs.map((r) => `${hex(r.phys)}+${hex(r.len)}`).join(", ")}`,
    );
    walkData.push({ addr: a, len: l, phys: runs });
  }
  steps.push({ step: "controller walk", lines: walkLines, data: walkData });
  // 6. Doorbell, device work, completion.
  m.host.commitRqs(1);
  const cqAddr = q.cq.cpuAddr + q.cqHead * CQE_SIZE;
  const cqe = m.memory.readBytes(cqAddr, CQE_SIZE);
  const beforeTeardown = snapshotCounters(m, sources);
  m.host.pollCq(1);
  const nvmeStatus = cqeStatus(cqe);
  // A failed command: the check that failed, as the controller logged it (QEMU's trace event).
  const failure = nvmeStatus === 0 ? undefined : m.ctrl.commandError(1, cqeCid(cqe));
  steps.push({
    step: "completion",
    lines: [
      `  CQE at ${hex(cqAddr)}: status ${hex(nvmeStatus)} phase ${cqePhase(cqe)}; block status ${done ? status : "pending"}`,
      ...(nvmeStatus === 0
        ? []
        : [`  failed: ${nvmeStatusName(nvmeStatus)}; reason ${failure?.reason ?? "not recorded"}`]),
      ...hexdump(cqe, cqAddr),
    ],
    data: {
      addr: cqAddr,
      bytes: Array.from(cqe),
      blockStatus: status,
      ...(nvmeStatus === 0 ? {} : { reason: failure?.reason ?? null }),
    },
  });
  // 7. Teardown.
  const afterTeardown = snapshotCounters(m, sources);
  m.clock.advance(2_000_000_000);
  const afterTimer = snapshotCounters(m, sources);
  steps.push({
    step: "teardown",
    lines: [
      ...Object.entries(diff(beforeTeardown, afterTeardown)).map(([k, v]) => `  ${k} ${signed(v)}`),
      "  after the flush-queue timer:",
      ...Object.entries(diff(afterTeardown, afterTimer)).map(([k, v]) => `  ${k} ${signed(v)}`),
    ],
    data: { unmap: diff(beforeTeardown, afterTeardown), timer: diff(afterTeardown, afterTimer) },
  });
  return steps;
}

/** One step's lines that differ between two traces of the same I/O. */
export interface TraceDifference {
  readonly step: string;
  /** Lines only the first trace has. */
  readonly only0: readonly string[];
  /** Lines only the second trace has. */
  readonly only1: readonly string[];
}

/**
 * What changes between two traces of the same I/O (under two kernel versions, say): for each
 * step name either trace has, the lines only one of them shows. The "kernel" step is left out.
 */
export function traceDifferences(
  a: readonly TraceStep[],
  b: readonly TraceStep[],
): TraceDifference[] {
  const names = [...new Set([...a.map((s) => s.step), ...b.map((s) => s.step)])];
  const out: TraceDifference[] = [];
  for (const name of names) {
    if (name === "kernel") continue;
    const la = a.filter((s) => s.step === name).flatMap((s) => s.lines);
    const lb = b.filter((s) => s.step === name).flatMap((s) => s.lines);
    const sb = new Set(lb);
    const sa = new Set(la);
    const only0 = la.filter((l) => !sb.has(l));
    const only1 = lb.filter((l) => !sa.has(l));
    if (only0.length > 0 || only1.length > 0) out.push({ step: name, only0, only1 });
  }
  return out;
}
