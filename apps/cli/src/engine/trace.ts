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
  hex,
  bioSegments,
  getU32,
  getU64,
} from "@dmasim/bvec";
import { dmaUseIova } from "@dmasim/dma-core";
import {
  CQE_SIZE,
  type NvmeFaultPlan,
  SQE,
  SQE_SIZE,
  cqeCid,
  cqePhase,
  cqeStatus,
  decodeCqe,
  decodePrpList,
  decodeSglSegment,
  decodeSqe,
  nvmeStatusName,
} from "@dmasim/nvme";
import { JobError } from "./errors.ts";
import { traceBuffers } from "./trace-buffers.ts";
import {
  type AccessMap,
  type TraceAccess,
  accessKind,
  accessLine,
  fieldLines,
  hexdump,
  iovaAllocations,
  iovaSource,
  pageTablePath,
  pteFieldsLine,
  pteLine,
  pteSnapshot,
} from "./trace-view.ts";
import type { Job } from "./job.ts";
import { buildMachine, counterSources, effectiveIommuMode, snapshotCounters } from "./machine.ts";

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
  const bufs = traceBuffers(job, m, o.bufs);
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
      `trace follows one request, and ${total} bytes in ${bv.length} bvec${bv.length === 1 ? "" : "s"} would be split after ${split * SECTOR_SIZE} bytes under the queue limits (max_sectors ${lim.maxSectors} = ${lim.maxSectors * SECTOR_SIZE} bytes, max_segments ${lim.maxSegments}, virt_boundary ${hex(lim.virtBoundaryMask)}); trace what fits in one request`,
    );
  const req = blkRqFromBios(lim, [bio]);
  const segs = blkRqPhysSegments(req);
  steps.push({
    step: "physical segments",
    lines: [
      `  queue limits: max_segments ${lim.maxSegments}, max_hw_sectors ${lim.maxHwSectors}, max_sectors ${lim.maxSectors}, virt_boundary ${hex(lim.virtBoundaryMask)}, seg_boundary ${hex(lim.segBoundaryMask)}`,
      `  nr_phys_segments ${req.nrPhysSegments}, gap bit ${req.physGapBit}`,
      ...segs.map((s, i) => `  segment ${i}: ${hex(s.paddr)} + ${hex(s.len)}`),
    ],
    data: { nrPhysSegments: req.nrPhysSegments, physGapBit: req.physGapBit, segments: segs },
  });
  // 2. Map and build (no doorbell yet).
  const pt = m.domain?.pgtable;
  const ptBefore = pt ? pteSnapshot(pt) : new Map<string, string>();
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
  const mapCounters = diff(before, afterMap);
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
  const path = iova
    ? `two-step IOVA (one range ${hex(iova.addr)} + ${hex(iova.size)})`
    : iod.sgt
      ? `scatterlist (dma_map_sgtable: ${iod.sgt.nents} DMA segment${iod.sgt.nents === 1 ? "" : "s"})`
      : mapped.length === 0
        ? "per-segment dma_map_phys (nothing to unmap)"
        : `per-segment dma_map_phys (${mapped.length} segment${mapped.length === 1 ? "" : "s"}${iod.nrDmaVecs === 0 ? ", read back from the SGL" : ""})`;
  steps.push({
    step: "DMA mapping",
    lines: [
      `  path: ${path}`,
      `  mapped length ${hex(iod.totalLen)}; descriptors ${iod.nrDescriptors}; dma_vec records ${iod.nrDmaVecs}${iod.dmaVecs ? " (array from the mempool)" : ""}`,
      ...Object.entries(mapCounters).map(([k, v]) => `  ${k} ${signed(v)}`),
    ],
    data: { iova, totalLen: iod.totalLen, counters: mapCounters, mapped },
  });
  // 3. The IOVA ranges, and the page-table entries on their walks.
  const cookie = m.dev.cookie;
  if (cookie !== null && pt !== undefined) {
    // The data's ranges, then the descriptor pages the controller reads (a pool page gets its
    // IOVA when the pool grows, so it may be new with this I/O).
    const descRanges = iod.descriptors
      .slice(0, iod.nrDescriptors)
      .flatMap((d) => (d === undefined ? [] : [{ addr: d.dmaAddr, len: sgl ? 16 : 8 }]));
    const allocations = iovaAllocations(cookie.iovad, [...mapped, ...descRanges]);
    const source = iovaSource(mapCounters);
    steps.push({
      step: "IOVA allocation",
      lines: [
        `  source: ${source}`,
        ...allocations.map(
          (a) =>
            `  range ${hex(a.start)}-${hex(a.end)} (${hex(a.size)} bytes, granule ${hex(cookie.iovad.granule)}) holds ${hex(a.mapped.addr)} + ${hex(a.mapped.len)}`,
        ),
      ],
      data: { source, granule: cookie.iovad.granule, allocations },
    });
    const tables = pageTablePath(pt, ptBefore, [...mapped, ...descRanges]);
    steps.push({
      step: "page tables",
      lines: tables.flatMap((t) => [
        `  level ${t.level} table at ${hex(t.tableAddr)} (${pt.format}):`,
        ...t.entries.flatMap((e) => [pteLine(e), pteFieldsLine(e)]),
      ]),
      data: { format: pt.format, granule: pt.granule, levels: pt.levels, tables },
    });
  } else {
    const direct = m.dev.domain === null;
    steps.push({
      step: "IOVA allocation",
      lines: [
        direct
          ? "  none: no IOMMU; the DMA address is the physical address plus the bus offset (dma-direct)"
          : "  none: an identity (passthrough) domain; the DMA address is the physical address",
      ],
      data: { source: null, allocations: [] },
    });
  }
  // 4. The command as it sits in the submission queue.
  const slot = (q.sqTail + q.depth - 1) % q.depth;
  const sqeAddr = q.sq.cpuAddr + slot * SQE_SIZE;
  const sqe = m.memory.readBytes(sqeAddr, SQE_SIZE);
  const sqeFields = decodeSqe(sqe);
  const dptr = sgl
    ? `SGL1 ${Math.floor((cmd[SQE.SGL_TYPE] as number) / 16) === 0 ? "Data Block" : "Last Segment"} addr ${hex(getU64(cmd, SQE.SGL_ADDR))} len ${hex(getU32(cmd, SQE.SGL_LEN))}`
    : `PRP1 ${hex(getU64(cmd, SQE.PRP1))} PRP2 ${hex(getU64(cmd, SQE.PRP2))}`;
  steps.push({
    step: "command",
    lines: [
      `  SQ 1 slot ${slot} at ${hex(sqeAddr)}: opcode ${hex(cmd[SQE.OPCODE] as number)} (${write ? "Write" : "Read"}), PSDT ${sgl ? "01b (SGL)" : "00b (PRP)"}, ${dptr}`,
      ...hexdump(sqe, sqeAddr),
      "  fields:",
      ...fieldLines(sqeFields),
    ],
    data: { slot, addr: sqeAddr, bytes: Array.from(sqe), fields: sqeFields },
  });
  // 5. Descriptor memory, decoded as the controller will read it.
  const descLines: string[] = [];
  const descData: { addr: number; dmaAddr: number; bytes: number[] }[] = [];
  const pages: Uint8Array[] = [];
  for (let i = 0; i < iod.nrDescriptors; i++) {
    const d = iod.descriptors[i];
    if (!d) continue;
    const n = sgl ? getU32(cmd, SQE.SGL_LEN) : Math.min(4096, 8 * Math.ceil(total / 4096) + 8);
    const bytes = m.memory.readBytes(d.cpuAddr, Math.min(n, 4096));
    descLines.push(
      `  descriptor ${i}: cpu ${hex(d.cpuAddr)} dma ${hex(d.dmaAddr)}`,
      ...hexdump(bytes.subarray(0, Math.min(bytes.length, 256)), d.cpuAddr),
    );
    descData.push({ addr: d.cpuAddr, dmaAddr: d.dmaAddr, bytes: Array.from(bytes) });
    pages.push(sgl ? bytes : m.memory.readBytes(d.cpuAddr, 4096));
  }
  const sglDescs = sgl && pages[0] !== undefined ? decodeSglSegment(pages[0]) : [];
  const prpEntries =
    !sgl && pages.length > 0 ? decodePrpList(pages, getU64(cmd, SQE.PRP1), total, 4096) : [];
  const entryLines = sgl
    ? sglDescs.map(
        (d) =>
          `  SGL descriptor ${d.index}: ${d.typeName} (${d.subtypeName}) addr ${hex(d.addr)} len ${hex(d.len)}`,
      )
    : prpEntries.map(
        (e) =>
          `  PRP entry ${e.page}.${e.index}: ${hex(e.addr)} ${e.role === "data" ? `data, ${hex(e.len)} bytes` : "pointer to the next list page"}`,
      );
  steps.push({
    step: sgl ? "SGL segment" : "PRP list",
    lines: descLines.length
      ? [...descLines, ...entryLines]
      : ["  none: the command holds the whole data pointer"],
    data: {
      descriptors: descData,
      ...(sgl ? { sglDescriptors: sglDescs } : { prpEntries }),
    },
  });
  // 6. Doorbell: the controller fetches the command, walks the PRP list or SGL, moves the data
  // and posts the completion, every access seen through the IOMMU as it happens.
  const accesses: TraceAccess[] = [];
  const accessMap: AccessMap = {
    sq: { addr: q.sq.dmaAddr, len: q.depth * SQE_SIZE },
    cq: { addr: q.cq.dmaAddr, len: q.depth * CQE_SIZE },
    descriptors: descData.map((d) => ({ addr: d.dmaAddr, len: 4096 })),
    sgl,
  };
  const ptc = pt?.counters.c;
  let pteReads = ptc?.pteReads ?? 0;
  let walkCache = ptc?.walkCacheHits ?? 0;
  m.ctrl.dma.observer = (e) => {
    const reads = (ptc?.pteReads ?? 0) - pteReads;
    const cached = (ptc?.walkCacheHits ?? 0) - walkCache;
    pteReads += reads;
    walkCache += cached;
    accesses.push({
      kind: accessKind(e, accessMap),
      addr: e.addr,
      len: e.len,
      write: e.write,
      runs: e.runs,
      translated: e.translated,
      pages: e.pages,
      iotlbHits: e.pages - e.walks,
      iotlbMisses: e.walks,
      staleHits: e.staleHits,
      pteReads: reads,
      walkCacheHits: cached,
      ok: e.ok,
      failure: e.fault?.reason ?? e.busError ?? null,
    });
  };
  const cqAddr = q.cq.cpuAddr + q.cqHead * CQE_SIZE;
  try {
    m.host.commitRqs(1);
  } finally {
    m.ctrl.dma.observer = undefined;
  }
  const cqe = m.memory.readBytes(cqAddr, CQE_SIZE);
  const nvmeStatus = cqeStatus(cqe);
  const transfers = accesses.filter((a) => a.kind === "data read" || a.kind === "data write");
  steps.push({
    step: "controller walk",
    lines: [
      `  ${accesses.length} device accesses; ${transfers.length} data transfer${transfers.length === 1 ? "" : "s"}; ${accesses.reduce((n, a) => n + a.iotlbMisses, 0)} IOTLB misses`,
      ...accesses.map(accessLine),
    ],
    data: {
      accesses,
      transfers: transfers.map((a) => ({ addr: a.addr, len: a.len, phys: a.runs })),
    },
  });
  // 7. The completion, as the driver reaps it.
  const beforeTeardown = snapshotCounters(m, sources);
  m.host.pollCq(1);
  // A failed command: the check that failed, as the controller logged it (QEMU's trace event).
  const failure = nvmeStatus === 0 ? undefined : m.ctrl.commandError(1, cqeCid(cqe));
  const cqeFields = decodeCqe(cqe);
  steps.push({
    step: "completion",
    lines: [
      `  CQE at ${hex(cqAddr)}: status ${hex(nvmeStatus)} phase ${cqePhase(cqe)}; block status ${done ? status : "pending"}`,
      ...(nvmeStatus === 0
        ? []
        : [`  failed: ${nvmeStatusName(nvmeStatus)}; reason ${failure?.reason ?? "not recorded"}`]),
      ...hexdump(cqe, cqAddr),
      "  fields:",
      ...fieldLines(cqeFields),
    ],
    data: {
      addr: cqAddr,
      bytes: Array.from(cqe),
      fields: cqeFields,
      blockStatus: status,
      ...(nvmeStatus === 0 ? {} : { reason: failure?.reason ?? null }),
    },
  });
  // 8. Teardown.
  const afterTeardown = snapshotCounters(m, sources);
  m.clock.advance(2_000_000_000);
  const afterTimer = snapshotCounters(m, sources);
  const unmap = diff(beforeTeardown, afterTeardown);
  const timer = diff(afterTeardown, afterTimer);
  const summary = teardownSummary(unmap, timer);
  steps.push({
    step: "teardown",
    lines: [
      `  ${summary}`,
      ...Object.entries(unmap).map(([k, v]) => `  ${k} ${signed(v)}`),
      "  after the flush-queue timer:",
      ...Object.entries(timer).map(([k, v]) => `  ${k} ${signed(v)}`),
    ],
    data: { summary, unmap, timer },
  });
  return steps;
}

/** What the teardown did to the IOMMU, in a sentence, from its counters. */
function teardownSummary(unmap: Record<string, number>, timer: Record<string, number>): string {
  const n = (c: Record<string, number>, k: string) => c[k] ?? 0;
  if (n(unmap, "fq.queued") > 0)
    return `lazy: the IOVA went into the flush queue (${n(unmap, "fq.queued")} entr${n(unmap, "fq.queued") === 1 ? "y" : "ies"}) with its IOTLB entries still live; the timer's flush invalidated the whole domain (${n(timer, "iotlb.invalidateAllCmds")} invalidate-all) and only then freed the IOVA`;
  if (n(unmap, "domain.unmapCalls") > 0)
    return `strict: the unmap cleared the PTEs and invalidated the IOTLB (${n(unmap, "iotlb.invalidateRangeCmds")} range invalidation${n(unmap, "iotlb.invalidateRangeCmds") === 1 ? "" : "s"}) before the IOVA was freed`;
  return "no IOMMU mapping to tear down";
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
