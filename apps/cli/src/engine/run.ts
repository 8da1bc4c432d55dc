/**
 * The discrete-event run: simulated CPUs submit I/Os up to the queue depth through the real
 * host driver; each CPU's work costs the CPU time the cost model prices from the counters; the
 * controller serves commands with the job's latency and bandwidth; completions cost CPU time;
 * the lazy flush timer fires on simulated time. The same job and seed give the same numbers.
 */
import {
  BLK_STS,
  Bio,
  type BlkStatus,
  InternalError,
  Rng,
  SECTOR_SIZE,
  bioAddPage,
  bioSplitToLimits,
  blkRqFromBios,
  fastMod,
  type Request,
} from "@dmasim/bvec";
import { NVME_CMD } from "@dmasim/nvme";
import {
  COST_CATEGORIES,
  type CostCategory,
  type CostTable,
  DEFAULT_COSTS,
  Pricer,
} from "./cost.ts";
import { type Job, jobIos, sizeOf } from "./job.ts";
import {
  type Machine,
  buildMachine,
  counterRef,
  counterSources,
  snapshotCounters,
} from "./machine.ts";

/** Options of a run. */
export interface RunOptions {
  readonly costs?: CostTable;
  /** Attach dma-debug and report its findings. */
  readonly debug?: boolean;
  /** Called now and then with progress (completed, total or -1 for time-bound runs). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Host wall clock in ms, injected (defaults to performance.now). */
  readonly now?: () => number;
  /**
   * Called once with the machine before the first I/O: to configure the controller's fault
   * injection, attach instrumentation, or tamper with a device model to see what the report
   * makes of it.
   */
  readonly setup?: (m: Machine) => void;
}

/** Latency percentiles in microseconds. */
export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** What a run reports. */
export interface RunResult {
  readonly job: Job;
  readonly ios: number;
  readonly reads: number;
  readonly writes: number;
  readonly bytes: number;
  readonly simulatedNs: number;
  readonly iops: number;
  readonly bandwidthMBps: number;
  readonly perCpu: readonly {
    readonly cpu: number;
    readonly ios: number;
    readonly iops: number;
    readonly busyPct: number;
  }[];
  /** CPU ns per I/O: total and by category. */
  readonly cpuNsPerIo: number;
  readonly cpuNsPerIoByCategory: Readonly<Record<CostCategory, number>>;
  readonly latencyUs: Percentiles;
  /** Latency histogram: bucket upper bounds (µs, log-spaced) and counts. */
  readonly latencyHistogram: {
    readonly upperUs: readonly number[];
    readonly counts: readonly number[];
  };
  /** Per-I/O means of every counter that moved. */
  readonly perIo: Readonly<Record<string, number>>;
  /** Host memory per in-flight I/O, bytes (iod + descriptors + vec arrays + scatterlists). */
  readonly hostMemoryPerIo: number;
  readonly iotlbHitRate: number | null;
  /**
   * The IOMMU page tables at the end of the run (null without a paging domain): tables linked
   * (the root included) and the memory they hold. Tables that empty stay linked, as in Linux,
   * unless the job sets `iommu.freeEmptyTables`.
   */
  readonly pageTables: { readonly tables: number; readonly bytes: number } | null;
  /** Lazy mode: time from unmap to invalidation (µs) and stale IOTLB hits. */
  readonly exposure: {
    readonly mode: "lazy" | "strict";
    readonly maxUs: number;
    readonly p99Us: number;
    readonly staleHits: number;
  } | null;
  readonly faults: number;
  readonly errors: number;
  readonly verify: {
    readonly enabled: boolean;
    readonly checkedBytes: number;
    readonly mismatches: number;
    readonly ok: boolean;
  };
  readonly debugReports: readonly string[];
  readonly costTable: CostTable;
  /** The simulator's own speed (varies from run to run; not part of the model's results). */
  readonly simulator: { readonly wallMs: number; readonly iosPerSecond: number };
}

interface InFlight {
  readonly id: number;
  readonly cpu: number;
  readonly slot: number;
  readonly write: boolean;
  readonly offset: number;
  readonly bytes: number;
  readonly submitNs: number;
  readonly gen: number;
  pending: number;
  status: BlkStatus;
}

interface Cpu {
  readonly id: number;
  busyUntil: number;
  busyNs: number;
  inflight: number;
  ios: number;
  readonly freeSlots: number[];
  /** Requests that could not get a tag, waiting for a completion. */
  readonly backlog: { req: Request; io: InFlight }[];
}

const PATTERN_BYTES = 65536;
/** Sectors one pattern slice may cover (the pattern repeats this many sectors past its end). */
const RUN_SECTORS = 8;
const ZERO_RUN = new Uint8Array(RUN_SECTORS * SECTOR_SIZE);

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** A log-spaced histogram of latencies (ns in, µs bounds out): 8 buckets per decade from 1 µs. */
function histogram(sortedNs: Float64Array): { upperUs: number[]; counts: number[] } {
  const upperUs: number[] = [];
  const counts: number[] = [];
  if (sortedNs.length === 0) return { upperUs, counts };
  const maxUs = (sortedNs[sortedNs.length - 1] as number) / 1000;
  for (let b = 0; ; b++) {
    const ub = Number((10 ** (b / 8)).toPrecision(3));
    upperUs.push(ub);
    counts.push(0);
    if (ub >= maxUs) break;
  }
  let i = 0;
  for (const ns of sortedNs) {
    const v = ns / 1000;
    while (i < upperUs.length - 1 && v > (upperUs[i] as number)) i++;
    counts[i] = (counts[i] as number) + 1;
  }
  return { upperUs, counts };
}

/** Runs `job` and returns its results. */
export function runJob(job: Job, options: RunOptions = {}): RunResult {
  const wall = options.now ?? (() => performance.now());
  const t0 = wall();
  const costs = options.costs ?? DEFAULT_COSTS;
  const rng = new Rng(job.seed);
  const cpus: Cpu[] = [];
  // The device: fixed latency plus a bandwidth-limited pipe.
  let pipeFree = 0;
  const bwBytesPerNs = (job.controller.bandwidthMBps * 1e6) / 1e9;
  const latencyNs = job.controller.latencyUs * 1000;
  let submitOffsetNs = 0;
  const serviceTimeNs = (op: number, bytes: number): number => {
    const now = m.clock.now;
    if (op === NVME_CMD.FLUSH || bytes === 0) return submitOffsetNs;
    const start = now + submitOffsetNs + latencyNs;
    const end = Math.max(pipeFree, start) + bytes / bwBytesPerNs;
    pipeFree = end;
    return end - now;
  };
  const m: Machine = buildMachine(job, { debug: options.debug ?? false, serviceTimeNs });
  options.setup?.(m);
  const sources = counterSources(m);
  const pricer = new Pricer(costs, (n) => counterRef(m, sources, n));
  const startCounters = snapshotCounters(m, sources);
  const startCat = pricer.byCategory();
  const mem = m.memory;
  const ps = mem.pageSize;
  const lim = m.host.limits;
  const lba = job.controller.lbaSize;
  const nsBytes = Math.floor((job.controller.namespaceGiB * 1024 ** 3) / lba) * lba;

  // Block sizes.
  const bsSpec = job.workload.bs;
  let pickBs: () => number;
  let maxBs: number;
  if (Array.isArray(bsSpec)) {
    const sizes = bsSpec.map((x) => sizeOf(x.bs));
    const weights = bsSpec.map((x) => x.weight);
    const total = weights.reduce((a, b) => a + b, 0);
    maxBs = Math.max(...sizes);
    pickBs = () => {
      let r = rng.nextFloat() * total;
      for (let i = 0; i < sizes.length; i++) {
        r -= weights[i] as number;
        if (r < 0) return sizes[i] as number;
      }
      return sizes[sizes.length - 1] as number;
    };
  } else if (typeof bsSpec === "object") {
    const lo = sizeOf(bsSpec.min);
    const hi = sizeOf(bsSpec.max);
    if (hi < lo) throw new Error(`workload.bs: max ${hi} is below min ${lo}`);
    maxBs = hi;
    pickBs = () => lo + rng.below(Math.floor((hi - lo) / lba) + 1) * lba;
  } else {
    const b = sizeOf(bsSpec);
    maxBs = b;
    pickBs = () => b;
  }
  for (const b of Array.isArray(bsSpec)
    ? bsSpec.map((x) => sizeOf(x.bs))
    : typeof bsSpec === "object"
      ? [sizeOf(bsSpec.min), sizeOf(bsSpec.max)]
      : [sizeOf(bsSpec)]) {
    if (b % lba !== 0)
      throw new Error(`workload.bs: ${b} is not a multiple of the ${lba}-byte LBA size`);
    if (b > nsBytes) throw new Error(`workload.bs: ${b} exceeds the namespace`);
  }

  // Buffers: one per CPU per queue slot, laid out as the job asks.
  const layout = job.workload.buffers;
  const bufOffset = layout === "offset" ? job.workload.bufferOffset : 0;
  const slotsPerCpu = job.workload.iodepth;
  const slotPages: number[][] = [];
  const pagesPerSlot = Math.ceil((maxBs + bufOffset) / ps);
  for (let c = 0; c < job.machine.cpus; c++) {
    for (let s = 0; s < slotsPerCpu; s++) {
      let pages: number[];
      if (layout === "scattered") {
        pages = mem.allocScattered(pagesPerSlot, job.seed * 7919 + c * 131 + s);
      } else if (layout === "hugepage") {
        const hugePages = (2 * 1024 * 1024) / ps;
        const order = Math.log2(hugePages);
        pages = [];
        for (let left = pagesPerSlot; left > 0; left -= hugePages) {
          const base = mem.allocPages(order);
          for (let i = 0; i < Math.min(left, hugePages); i++) pages.push(base + i);
        }
      } else {
        const order = Math.ceil(Math.log2(pagesPerSlot));
        if (order > 10)
          throw new Error(
            `workload.buffers: ${layout} buffers of ${maxBs} bytes exceed the largest contiguous block (${1024 * ps} bytes)`,
          );
        const base = mem.allocPages(order);
        pages = Array.from({ length: pagesPerSlot }, (_, i) => base + i);
      }
      slotPages.push(pages);
    }
    cpus.push({
      id: c,
      busyUntil: 0,
      busyNs: 0,
      inflight: 0,
      ios: 0,
      freeSlots: Array.from({ length: slotsPerCpu }, (_, i) => slotsPerCpu - 1 - i),
      backlog: [],
    });
  }

  // Verification: a deterministic pattern per (sector, write generation). Consecutive sectors
  // of one write take consecutive 512-byte slices of the pattern, and the pattern repeats its
  // first RUN_SECTORS sectors after its end, so up to RUN_SECTORS sectors are one slice: one
  // copy when writing and one comparison when checking, instead of one per sector.
  const verify = job.workload.verify;
  const pattern = new Uint8Array(PATTERN_BYTES + RUN_SECTORS * SECTOR_SIZE);
  {
    const pr = new Rng(job.seed + 1);
    for (let i = 0; i < PATTERN_BYTES; i++) pattern[i] = pr.nextU32() % 256;
    pattern.copyWithin(PATTERN_BYTES, 0, RUN_SECTORS * SECTOR_SIZE);
  }
  const written = new SectorGens(); // sector -> generation of its last write
  let genCounter = 0;
  let checkedBytes = 0;
  let mismatches = 0;
  const ioBuf = new Uint8Array(maxBs);
  const patternAt = (sector: number, gen: number) =>
    fastMod(sector + gen * 104729, PATTERN_BYTES / SECTOR_SIZE) * SECTOR_SIZE;
  // The I/Os in flight, so that a random offset avoids the 4 KiB blocks one of them covers (a
  // read racing a write to the same sectors would make verification meaningless).
  const active: InFlight[] = [];
  const busy = (o: number, bytes: number): boolean => {
    const first = Math.floor(o / 4096);
    const end = Math.ceil((o + bytes) / 4096);
    for (const io of active)
      if (Math.floor(io.offset / 4096) < end && first < Math.ceil((io.offset + io.bytes) / 4096))
        return true;
    return false;
  };

  const ranges = (slot: number, bytes: number): { phys: number; len: number }[] => {
    const pages = slotPages[slot] as number[];
    const out: { phys: number; len: number }[] = [];
    let left = bytes;
    let off = bufOffset;
    for (let i = 0; left > 0; i++) {
      const n = Math.min(ps - off, left);
      out.push({ phys: (pages[i] as number) * ps + off, len: n });
      left -= n;
      off = 0;
    }
    return out;
  };

  // Workload state.
  const totalIos = jobIos(job);
  const endNs = job.workload.seconds !== undefined ? job.workload.seconds * 1e9 : Infinity;
  let issued = 0;
  let completed = 0;
  let reads = 0;
  let writes = 0;
  let bytesDone = 0;
  let errors = 0;
  let seqOffset = 0;
  const latencies: number[] = [];
  let lastPrice = pricer.total();
  const completedNow: InFlight[] = [];
  let nextId = 0;

  const chargeBackground = (): number => {
    const p = pricer.total();
    if (p > lastPrice) {
      const cpu0 = cpus[0] as Cpu;
      cpu0.busyUntil = Math.max(cpu0.busyUntil, m.clock.now) + (p - lastPrice);
      cpu0.busyNs += p - lastPrice;
    }
    lastPrice = p;
    return p;
  };

  const pickOffset = (bytes: number): number => {
    const rw = job.workload.rw;
    const align = Math.min(4096, bytes);
    if (rw === "read" || rw === "write") {
      if (seqOffset + bytes > nsBytes) seqOffset = 0;
      const o = seqOffset;
      seqOffset += bytes;
      return o;
    }
    const slots = Math.floor((nsBytes - bytes) / align) + 1;
    for (let tries = 0; tries < 16; tries++) {
      const o = rng.below(slots) * align;
      if (!busy(o, bytes)) return o;
    }
    return rng.below(slots) * align;
  };

  const onPieceDone = (io: InFlight) => (status: BlkStatus) => {
    if (status !== BLK_STS.OK && io.status === BLK_STS.OK) io.status = status;
    io.pending--;
    if (io.pending === 0) completedNow.push(io);
  };

  const submitIo = (cpu: Cpu): void => {
    const slot = cpu.freeSlots.pop();
    if (slot === undefined) throw new InternalError("no free buffer slot below the queue depth");
    const bytes = pickBs();
    const rw = job.workload.rw;
    const write =
      rw === "write" ||
      rw === "randwrite" ||
      (rw === "randrw" && rng.below(100) >= job.workload.rwmixread);
    const offset = pickOffset(bytes);
    const gen = ++genCounter;
    const io: InFlight = {
      id: nextId++,
      cpu: cpu.id,
      slot: cpu.id * slotsPerCpu + slot,
      write,
      offset,
      bytes,
      submitNs: Math.max(m.clock.now, cpu.busyUntil),
      gen,
      pending: 0,
      status: BLK_STS.OK,
    };
    active.push(io);
    const rs = ranges(io.slot, bytes);
    if (write && verify) {
      const n = bytes / SECTOR_SIZE;
      for (let s = 0; s < n; s += RUN_SECTORS) {
        const k = Math.min(RUN_SECTORS, n - s);
        const p = patternAt(offset / SECTOR_SIZE + s, gen);
        ioBuf.set(pattern.subarray(p, p + k * SECTOR_SIZE), s * SECTOR_SIZE);
      }
      let at = 0;
      for (const r of rs) {
        mem.write(r.phys, ioBuf, at, r.len);
        at += r.len;
      }
    }
    const before = chargeBackground();
    const bio = new Bio(write ? "write" : "read", offset / SECTOR_SIZE, rs.length);
    for (const r of rs) bioAddPage(bio, Math.floor(r.phys / ps), r.len, fastMod(r.phys, ps), ps);
    const pieces = bioSplitToLimits(bio, lim);
    io.pending = pieces.length;
    const qid = cpu.id + 1;
    for (const p of pieces) {
      const req = blkRqFromBios(lim, [p]);
      if (job.host.mapping === "scatterlist" && req.nrPhysSegments > 1)
        m.engine.sgEntries += req.nrPhysSegments;
      const st = m.host.submit(req, onPieceDone(io), { qid, last: false });
      if (st === BLK_STS.RESOURCE) cpu.backlog.push({ req, io });
      else if (st !== BLK_STS.OK) onPieceDone(io)(st);
    }
    m.engine.ios++;
    lastPrice = pricer.total();
    const cost = lastPrice - before;
    const start = Math.max(m.clock.now, cpu.busyUntil);
    cpu.busyUntil = start + cost;
    cpu.busyNs += cost;
    submitOffsetNs = cpu.busyUntil - m.clock.now;
    m.host.commit(qid);
    submitOffsetNs = 0;
    cpu.inflight++;
    issued++;
    if (write) writes++;
    else reads++;
  };

  const finishIo = (io: InFlight, endNs: number): void => {
    const cpu = cpus[io.cpu] as Cpu;
    cpu.inflight--;
    cpu.ios++;
    cpu.freeSlots.push(io.slot - cpu.id * slotsPerCpu);
    completed++;
    bytesDone += io.bytes;
    latencies.push(endNs - io.submitNs);
    const idx = active.indexOf(io);
    if (idx >= 0) {
      active[idx] = active[active.length - 1] as InFlight;
      active.pop();
    }
    if (io.status !== BLK_STS.OK) {
      errors++;
      return;
    }
    if (!verify) return;
    const first = io.offset / SECTOR_SIZE;
    const n = io.bytes / SECTOR_SIZE;
    if (io.write) {
      for (let s = 0; s < n; s++) written.set(first + s, io.gen);
      return;
    }
    let at = 0;
    for (const r of ranges(io.slot, io.bytes)) {
      mem.read(r.phys, ioBuf, at, r.len);
      at += r.len;
    }
    // Runs of up to RUN_SECTORS sectors last written together (or never) are checked as one
    // slice; a run that differs is checked sector by sector to count the sectors that differ.
    for (let s = 0; s < n;) {
      const g = written.get(first + s);
      let k = 1;
      while (k < RUN_SECTORS && s + k < n && written.get(first + s + k) === g) k++;
      const got = ioBuf.subarray(s * SECTOR_SIZE, (s + k) * SECTOR_SIZE);
      const p = g === undefined ? 0 : patternAt(first + s, g);
      const want =
        g === undefined
          ? ZERO_RUN.subarray(0, k * SECTOR_SIZE)
          : pattern.subarray(p, p + k * SECTOR_SIZE);
      if (Buffer.compare(got, want) !== 0) {
        for (let j = 0; j < k; j++) {
          const a = got.subarray(j * SECTOR_SIZE, (j + 1) * SECTOR_SIZE);
          const b = want.subarray(j * SECTOR_SIZE, (j + 1) * SECTOR_SIZE);
          if (Buffer.compare(a, b) !== 0) mismatches++;
        }
      }
      s += k;
    }
    checkedBytes += io.bytes;
  };

  const wantMore = (): boolean =>
    totalIos !== undefined ? issued < totalIos : m.clock.now < endNs;
  const progressEvery = 1000;
  let loops = 0;
  for (;;) {
    // Submit on every CPU that is free and below its depth.
    for (const cpu of cpus) {
      while (cpu.backlog.length > 0 && cpu.busyUntil <= m.clock.now) {
        const b = cpu.backlog[0] as { req: Request; io: InFlight };
        const before = chargeBackground();
        const st = m.host.submit(b.req, onPieceDone(b.io), { qid: cpu.id + 1, last: false });
        if (st === BLK_STS.RESOURCE) break;
        cpu.backlog.shift();
        if (st !== BLK_STS.OK) onPieceDone(b.io)(st);
        lastPrice = pricer.total();
        const cost = lastPrice - before;
        cpu.busyUntil = Math.max(m.clock.now, cpu.busyUntil) + cost;
        cpu.busyNs += cost;
        submitOffsetNs = cpu.busyUntil - m.clock.now;
        m.host.commit(cpu.id + 1);
        submitOffsetNs = 0;
      }
      while (
        cpu.busyUntil <= m.clock.now &&
        cpu.inflight < slotsPerCpu &&
        cpu.backlog.length === 0 &&
        wantMore()
      )
        submitIo(cpu);
    }
    // Deliver completions that were posted.
    for (const cpu of cpus) {
      const before = chargeBackground();
      const n = m.host.poll(cpu.id + 1);
      if (n === 0) continue;
      lastPrice = pricer.total();
      const cost = lastPrice - before;
      cpu.busyUntil = Math.max(m.clock.now, cpu.busyUntil) + cost;
      cpu.busyNs += cost;
      for (const io of completedNow.splice(0)) finishIo(io, cpu.busyUntil);
    }
    if (completed === issued && !wantMore() && cpus.every((c) => c.backlog.length === 0)) break;
    // Next event: a controller posting, a timer, or a CPU becoming free with work to do.
    let next = m.clock.nextAt();
    for (const cpu of cpus) {
      const canWork = (cpu.inflight < slotsPerCpu && wantMore()) || cpu.backlog.length > 0;
      if (canWork && cpu.busyUntil > m.clock.now) next = Math.min(next, cpu.busyUntil);
    }
    if (next === Infinity) {
      if (completed === issued) break;
      // Requests that keep getting BLK_STS_RESOURCE while nothing is in flight would be requeued
      // forever; fail them so the run ends (and reports the errors) instead.
      let failed = false;
      for (const cpu of cpus) {
        for (const b of cpu.backlog.splice(0)) {
          onPieceDone(b.io)(BLK_STS.RESOURCE);
          failed = true;
        }
        for (const io of completedNow.splice(0)) finishIo(io, Math.max(m.clock.now, cpu.busyUntil));
      }
      if (failed) continue;
      throw new InternalError(
        `the run stalled with ${issued - completed} I/Os in flight and nothing scheduled`,
      );
    }
    // CPU costs may be fractional nanoseconds; the clock moves in whole ones.
    m.clock.advanceTo(Math.max(Math.ceil(next), m.clock.now));
    if (++loops % progressEvery === 0) options.onProgress?.(completed, totalIos ?? -1);
  }
  chargeBackground();
  const simNs = Math.max(m.clock.now, ...cpus.map((c) => c.busyUntil));
  // Let the lazy timer run so the exposure window of the last unmaps is recorded.
  m.clock.advance(2_000_000_000);
  chargeBackground();

  const endCounters = snapshotCounters(m, sources);
  const endCat = pricer.byCategory();
  const perIo: Record<string, number> = {};
  for (const [k, v] of Object.entries(endCounters)) {
    const d = v - (startCounters[k] ?? 0);
    if (d !== 0 && completed > 0) perIo[k] = d / completed;
  }
  const byCat = Object.fromEntries(
    COST_CATEGORIES.map((c) => [c, completed > 0 ? (endCat[c] - startCat[c]) / completed : 0]),
  ) as Record<CostCategory, number>;
  const cpuNsPerIo = Object.values(byCat).reduce((a, b) => a + b, 0);
  const lat = Float64Array.from(latencies).sort();
  const us = (ns: number) => ns / 1000;
  const fq = m.dev.cookie?.fq;
  const exposure = fq ? fq.exposure() : null;
  const iotlb = m.domain?.iotlb.counters.c;
  const hostMem =
    (m.host.mapping === "new" ? 190 : 184) +
    (completed > 0
      ? ((endCounters["nvmehost.smallDescriptors"] ?? 0) * 256 +
          (endCounters["nvmehost.largeDescriptors"] ?? 0) * 4096 +
          (endCounters["nvmehost.vecArrays"] ?? 0) * m.host.vecPool.objectBytes +
          (endCounters["nvmehost.sgTables"] ?? 0) * m.host.sgPool.objectBytes) /
        completed
      : 0);
  const wallMs = wall() - t0;
  const debugReports = m.debug ? m.debug.errors.map((r) => `${r.class}: ${r.message}`) : [];
  return {
    job,
    ios: completed,
    reads,
    writes,
    bytes: bytesDone,
    simulatedNs: simNs,
    iops: simNs > 0 ? (completed * 1e9) / simNs : 0,
    bandwidthMBps: simNs > 0 ? (bytesDone * 1e3) / simNs : 0,
    perCpu: cpus.map((c) => ({
      cpu: c.id,
      ios: c.ios,
      iops: simNs > 0 ? (c.ios * 1e9) / simNs : 0,
      busyPct: simNs > 0 ? (100 * c.busyNs) / simNs : 0,
    })),
    cpuNsPerIo,
    cpuNsPerIoByCategory: byCat,
    latencyUs: {
      p50: us(percentile(lat, 50)),
      p90: us(percentile(lat, 90)),
      p99: us(percentile(lat, 99)),
      p999: us(percentile(lat, 99.9)),
      max: us(lat.length ? (lat[lat.length - 1] as number) : 0),
      mean: us(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)),
    },
    latencyHistogram: histogram(lat),
    perIo,
    hostMemoryPerIo: hostMem,
    iotlbHitRate: iotlb && iotlb.lookups > 0 ? iotlb.hits / iotlb.lookups : null,
    pageTables: m.domain?.pgtable
      ? {
          tables: m.domain.pgtable.tablePages,
          bytes: m.domain.pgtable.tableMemoryPages * m.memory.pageSize,
        }
      : null,
    // Lazy: the flush queue's histogram. Strict: every unmap invalidated before its IOVA was
    // freed, so the window is zero by construction (stale hits are still counted, as proof).
    exposure: exposure
      ? {
          mode: "lazy" as const,
          maxUs: us(exposure.maxNs),
          p99Us: us(exposure.p99Ns),
          staleHits: iotlb?.staleHits ?? 0,
        }
      : m.dev.cookie !== null
        ? { mode: "strict" as const, maxUs: 0, p99Us: 0, staleHits: iotlb?.staleHits ?? 0 }
        : null,
    faults: m.domain?.counters.c.faults ?? 0,
    errors,
    verify: { enabled: verify, checkedBytes, mismatches, ok: mismatches === 0 && errors === 0 },
    debugReports,
    costTable: costs,
    simulator: { wallMs, iosPerSecond: wallMs > 0 ? (completed * 1000) / wallMs : 0 },
  };
}

/**
 * The write generation of every written sector, for verification: a sparse two-level table of
 * typed arrays (64 Ki sectors per page, 0 = never written) instead of a `Map` of every sector,
 * which a long random-write run fills with millions of entries.
 */
class SectorGens {
  private static readonly PAGE = 65536;
  private readonly pages: (Uint32Array | undefined)[] = [];

  /** Records that `sector` was last written with generation `gen` (0 or more). */
  set(sector: number, gen: number): void {
    const pi = Math.floor(sector / SectorGens.PAGE);
    let page = this.pages[pi];
    if (page === undefined) {
      page = new Uint32Array(SectorGens.PAGE);
      this.pages[pi] = page;
    }
    page[sector - pi * SectorGens.PAGE] = gen + 1;
  }

  /** The generation `sector` was last written with, or undefined when never written. */
  get(sector: number): number | undefined {
    const pi = Math.floor(sector / SectorGens.PAGE);
    const v = this.pages[pi]?.[sector - pi * SectorGens.PAGE] ?? 0;
    return v === 0 ? undefined : v - 1;
  }
}
