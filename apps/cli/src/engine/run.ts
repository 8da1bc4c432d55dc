/**
 * The discrete-event run. Each simulated CPU has one timeline that everything it does is charged
 * to: submitting I/Os through the real host driver, handling its queues' completions (unmap
 * included), and the flush-queue timer work of the domains whose timer it armed. A piece of work
 * runs the packages' code at its start time, is priced from the counters it moved (cost.ts), and
 * keeps the CPU busy for its CPU time plus its acquisitions of shared resources (resources.ts),
 * which are served first come, first served on the simulated clock. The doorbell at the end of a
 * submission reaches the controller, whose service time (device-time.ts) decides when the
 * completion is posted; its interrupt (or the polling CPU) then starts the completion work on the
 * CPU that owns the queue. Events are processed in time order from one heap (event-heap.ts) and
 * the simulated clock's own queue (device completions, timers); no step scans all CPUs.
 * The same job and seed give the same numbers.
 */
import {
  BLK_STS,
  Bio,
  type BlkStatus,
  InternalError,
  Rng,
  bioAddPage,
  bioSplitToLimits,
  blkRqFromBios,
  fastMod,
  type Request,
} from "@dmasim/bvec";
import { COST_CATEGORIES, type CostCategory, type CostTable, Pricer } from "./cost.ts";
import { DeviceTiming } from "./device-time.ts";
import { EventHeap } from "./event-heap.ts";
import { type Job, jobIos, rampOf } from "./job.ts";
import {
  type Machine,
  buildMachine,
  counterRef,
  counterSources,
  ioQueuesOf,
  snapshotCounters,
} from "./machine.ts";
import { profileCosts } from "./profiles.ts";
import { type Resource, ResourceSet } from "./resources.ts";
import { type RunResult, boundOf, shortPercentiles } from "./results.ts";
import { DepthHistogram, LatencyHistogram, TimeAverage } from "./stats.ts";
import { Verifier } from "./verify.ts";
import { SlotBuffers, Workload } from "./workload.ts";

export type { BoundBy, CpuReport, Percentiles, RunResult } from "./results.ts";

/** Options of a run. */
export interface RunOptions {
  /** The whole cost table (default: the job's `machine.profile`). */
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

interface InFlight {
  readonly cpu: number;
  readonly slot: number;
  readonly unit: number;
  readonly qid: number;
  readonly write: boolean;
  readonly offset: number;
  readonly bytes: number;
  readonly gen: number;
  readonly readyAt: number;
  readonly counted: boolean;
  doorbellAt: number;
  pending: number;
  status: BlkStatus;
}

const IDLE = 0;
const STEPS = 1;
const END = 2;
const SEG_SUBMIT = 1;
const SEG_COMPLETE = 2;
const SEG_SOFTIRQ = 3;
const EV_CPU = 0;
const EV_STEP = 1;

interface SoftIrq {
  readonly unit: number;
  readonly cpuNs: number;
  readonly counts: Float64Array;
}

/** One CPU's timeline. */
interface Cpu {
  readonly id: number;
  /** The queue this CPU submits to (1-based), the same on every controller. */
  readonly qid: number;
  phase: number;
  /** Where the timeline is: the next step's arrival, or when the CPU is free. */
  cursor: number;
  wakePending: boolean;
  segKind: number;
  segUnit: number;
  segStart: number;
  segWait: number;
  readonly steps: Resource[];
  readonly stepCount: number[];
  readonly stepHold: number[];
  stepIdx: number;
  /** Submissions of this piece of work, to ring at its end (unit × 256 + qid). */
  readonly commits: number[];
  /** I/Os submitted (SEG_SUBMIT) or completed (SEG_COMPLETE) by this piece of work. */
  readonly segIos: InFlight[];
  /** Completion queues with an interrupt pending (or posts a polling CPU will find). */
  readonly cqPending: number[];
  readonly softirq: SoftIrq[];
  /** Free queue slots ready for their next I/O. */
  readonly ready: number[];
  readonly backlog: { req: Request; io: InFlight; unit: number }[];
  retryBacklog: boolean;
  /** I/Os submitted and not yet completed. */
  inflight: number;
  ios: number;
  busyNs: number;
  waitNs: number;
}

/** Runs `job` and returns its results. */
export function runJob(job: Job, options: RunOptions = {}): RunResult {
  const wall = options.now ?? (() => performance.now());
  const t0 = wall();
  const costs = options.costs ?? profileCosts(job.machine.profile);
  const rng = new Rng(job.seed);
  const timing = new DeviceTiming(job, new Rng(job.seed + 2));
  const nCpus = job.machine.cpus;
  const nUnits = job.machine.controllers;
  const nQueues = ioQueuesOf(job);
  const polled = job.host.completion === "poll";
  const depth = job.workload.iodepth;
  const batch = job.workload.batchSubmit;
  const heap = new EventHeap();
  const cpus: Cpu[] = [];
  const queueOf = (c: number) => Math.floor((c * nQueues) / nCpus) + 1;
  const ownerOf = (qid: number) => Math.ceil(((qid - 1) * nCpus) / nQueues);
  const cqFlag = new Uint8Array(nUnits * 256);
  /** The CPUs submitting to each queue (index qid). */
  const sharers: number[][] = Array.from({ length: nQueues + 1 }, () => []);
  for (let c = 0; c < nCpus; c++) (sharers[queueOf(c)] as number[]).push(c);

  // The device hook prices the IOMMU walks of each command from the device entries' counters
  // (it first runs for I/O commands, after the pricer below exists).
  let devMark = 0;
  const m: Machine = buildMachine(job, {
    debug: options.debug ?? false,
    serviceTimeNs: (u, _op, bytes) => {
      const d = p.device();
      const walk = d - devMark;
      devMark = d;
      return timing.serviceNs(u, m.clock.now, bytes, walk);
    },
    irq: (u, cqid) => {
      const key = u * 256 + cqid;
      if (cqFlag[key] === 1) return; // already pending: the handler will find this entry too
      cqFlag[key] = 1;
      const cpu = cpus[ownerOf(cqid)] as Cpu;
      cpu.cqPending.push(key);
      wake(cpu, m.clock.now);
    },
  });
  options.setup?.(m);
  const sources = counterSources(m);
  const p = new Pricer(costs, (n) => counterRef(m, sources, n));
  const res = new ResourceSet(job);
  const nRes = p.resources.length;
  const resCounts = new Float64Array(nRes);
  const resLast = new Float64Array(nRes);
  let cpuLast = 0;
  devMark = p.device();
  const fqs = m.units.map((u) => u.dev.cookie?.fq ?? null);
  const armsLast = fqs.map((f) => f?.counters.c.timerArms ?? 0);
  const flushesLast = fqs.map((f) => f?.counters.c.timerFlushes ?? 0);
  const armer = fqs.map(() => 0);
  const iovads = m.units.map((u) => u.dev.cookie?.iovad ?? null);
  const pushesLast = iovads.map((d) => d?.counters.c.depotPushes ?? 0);
  const trimsLast = iovads.map((d) => d?.counters.c.depotTrims ?? 0);
  const depotOwner = iovads.map(() => 0);

  const workload = new Workload(job, rng);
  const slots = nCpus * depth;
  const buffers = new SlotBuffers(job, m.memory, slots, workload.maxBs);
  const verifier = job.workload.verify ? new Verifier(job.seed, m.memory, workload.maxBs) : null;
  const readyAt = new Float64Array(slots);
  const lim = m.host.limits;
  const ps = m.memory.pageSize;

  // Statistics.
  const lat = new LatencyHistogram();
  const clat = new LatencyHistogram();
  const slat = new LatencyHistogram();
  const depths = new DepthHistogram();
  const qdSystem = new TimeAverage();
  const qdDevice = new TimeAverage();
  let inSystem = 0;
  let atDevice = 0;
  const ramp = rampOf(job);
  const measuredIos = jobIos(job);
  const seconds = job.workload.seconds;
  /** Time-based runs end `seconds` after the ramp (set when the ramp ends). */
  let endNs = Infinity;
  let measuring = false;
  let windowStart = 0;
  let lastDone = 0;
  let issued = 0;
  let readySlots = 0;
  let completed = 0;
  let counted = 0;
  let rampIos = 0;
  let reads = 0;
  let writes = 0;
  let bytesDone = 0;
  let errors = 0;
  let genCounter = 0;
  let startCounters = snapshotCounters(m, sources);
  let startCat = p.byCategory();
  let startDevice = units().map((u) => timing.busy(u));

  function units(): number[] {
    return Array.from({ length: nUnits }, (_, i) => i);
  }

  for (let c = 0; c < nCpus; c++) {
    const cpu: Cpu = {
      id: c,
      qid: queueOf(c),
      phase: IDLE,
      cursor: 0,
      wakePending: false,
      segKind: 0,
      segUnit: 0,
      segStart: 0,
      segWait: 0,
      steps: [],
      stepCount: [],
      stepHold: [],
      stepIdx: 0,
      commits: [],
      segIos: [],
      cqPending: [],
      softirq: [],
      ready: [],
      backlog: [],
      retryBacklog: false,
      inflight: 0,
      ios: 0,
      busyNs: 0,
      waitNs: 0,
    };
    cpus.push(cpu);
    for (let s = depth - 1; s >= 0; s--) makeReady(cpu, c * depth + s, 0);
    wake(cpu, 0);
  }

  /** Whether the run still issues I/Os (by count, counting ready slots, or by time). */
  function wantMore(now: number): boolean {
    if (!measuring) return true;
    return measuredIos !== undefined ? issued - rampIos + readySlots < measuredIos : now < endNs;
  }

  /** A freed slot becomes ready for its next I/O at `t` when the run wants more. */
  function makeReady(cpu: Cpu, slot: number, t: number): boolean {
    if (!wantMore(t)) return false;
    readySlots++;
    readyAt[slot] = t;
    cpu.ready.push(slot);
    inSystem++;
    qdSystem.set(inSystem, t);
    return true;
  }

  function wake(cpu: Cpu, t: number): void {
    if (cpu.phase !== IDLE || cpu.wakePending) return;
    cpu.wakePending = true;
    heap.push(Math.max(t, cpu.cursor), EV_CPU, cpu.id);
  }

  /** Whether work at `t` may run now: nothing else is due before it. */
  function canRun(t: number): boolean {
    return t <= heap.peekTime() && t < m.clock.nextAt();
  }

  function clockTo(t: number): void {
    const ti = Math.floor(t);
    if (ti > m.clock.now) m.clock.advanceTo(ti);
  }

  /** Prices what the work just run moved: CPU ns, and resource acquisitions into `resCounts`. */
  function price(): number {
    const c = p.cpu();
    const ns = c - cpuLast;
    cpuLast = c;
    p.counts(resCounts);
    for (let i = 0; i < nRes; i++) {
      const v = resCounts[i] as number;
      resCounts[i] = v - (resLast[i] as number);
      resLast[i] = v;
    }
    return ns;
  }

  /** Turns the priced work into the CPU's steps, from `t`. */
  function plan(
    cpu: Cpu,
    kind: number,
    unit: number,
    t: number,
    cpuNs: number,
    counts: Float64Array,
  ): void {
    cpu.segKind = kind;
    cpu.segUnit = unit;
    cpu.segStart = t;
    cpu.segWait = 0;
    cpu.cursor = t + cpuNs;
    cpu.steps.length = 0;
    cpu.stepCount.length = 0;
    cpu.stepHold.length = 0;
    cpu.stepIdx = 0;
    for (let i = 0; i < nRes; i++) {
      const n = counts[i] as number;
      if (n <= 0) continue;
      const r = p.resources[i] as { kind: Parameters<ResourceSet["instance"]>[0]; ns: number };
      cpu.steps.push(res.instance(r.kind, unit, cpu.id, cpu.qid));
      cpu.stepCount.push(n);
      cpu.stepHold.push(r.ns);
    }
    cpu.phase = STEPS;
    // Deferred work runs on the CPU that queued it: the fq timer on the CPU whose unmap armed it,
    // the depot trimming work on the CPU whose free pushed a magazine.
    const f = fqs[unit];
    if (f) {
      const arms = f.counters.c.timerArms;
      if (arms !== armsLast[unit]) {
        armsLast[unit] = arms;
        armer[unit] = cpu.id;
      }
    }
    const d = iovads[unit];
    if (d) {
      const pushes = d.counters.c.depotPushes;
      if (pushes !== pushesLast[unit]) {
        pushesLast[unit] = pushes;
        depotOwner[unit] = cpu.id;
      }
    }
  }

  /** Runs `cpu` from where it is for as long as nothing else is due first. */
  function advance(cpu: Cpu): void {
    for (;;) {
      if (cpu.phase === STEPS) {
        while (cpu.stepIdx < cpu.steps.length) {
          if (!canRun(cpu.cursor)) {
            heap.push(cpu.cursor, EV_STEP, cpu.id);
            return;
          }
          const i = cpu.stepIdx++;
          const r = cpu.steps[i] as Resource;
          const hold = (cpu.stepCount[i] as number) * (cpu.stepHold[i] as number);
          const end = r.acquire(cpu.cursor, cpu.stepCount[i] as number, cpu.stepHold[i] as number);
          cpu.segWait += end - cpu.cursor - hold;
          cpu.cursor = end;
        }
        cpu.phase = END;
      }
      if (cpu.phase === END) {
        if (!canRun(cpu.cursor)) {
          heap.push(cpu.cursor, EV_STEP, cpu.id);
          return;
        }
        clockTo(cpu.cursor);
        finish(cpu);
        cpu.phase = IDLE;
      }
      // Idle: take the next piece of work, if any.
      if (!hasWork(cpu)) return;
      if (!canRun(cpu.cursor)) {
        cpu.wakePending = true;
        heap.push(cpu.cursor, EV_CPU, cpu.id);
        return;
      }
      clockTo(cpu.cursor);
      if (!start(cpu, cpu.cursor)) return;
    }
  }

  function hasWork(cpu: Cpu): boolean {
    return (
      cpu.softirq.length > 0 ||
      cpu.cqPending.length > 0 ||
      (cpu.backlog.length > 0 ? cpu.retryBacklog : cpu.ready.length > 0)
    );
  }

  /** Starts the next piece of work on an idle CPU at `t`; false when it has none. */
  function start(cpu: Cpu, t: number): boolean {
    const soft = cpu.softirq.shift();
    if (soft !== undefined) {
      plan(cpu, SEG_SOFTIRQ, soft.unit, t, soft.cpuNs, soft.counts);
      return true;
    }
    const key = cpu.cqPending.shift();
    if (key !== undefined) {
      cqFlag[key] = 0;
      const unit = Math.floor(key / 256);
      const qid = key - unit * 256;
      const u = m.units[unit] as (typeof m.units)[number];
      u.dev.cpu = cpu.id;
      cpu.segIos.length = 0;
      doneNow = cpu.segIos;
      u.host.poll(qid);
      doneNow = null;
      if (polled) m.engine.polls++;
      else m.engine.irqs++;
      // Tags came back: the CPUs submitting to this queue may retry what they could not queue.
      for (const c of sharers[qid] as number[]) {
        const sc = cpus[c] as Cpu;
        if (sc.backlog.length > 0) sc.retryBacklog = true;
      }
      const ns = price();
      plan(cpu, SEG_COMPLETE, unit, t, ns, resCounts);
      return true;
    }
    if (cpu.backlog.length > 0 && cpu.retryBacklog) {
      cpu.retryBacklog = false;
      cpu.commits.length = 0;
      cpu.segIos.length = 0;
      let unit = 0;
      while (cpu.backlog.length > 0) {
        const b = cpu.backlog[0] as { req: Request; io: InFlight; unit: number };
        const u = m.units[b.unit] as (typeof m.units)[number];
        u.dev.cpu = cpu.id;
        const st = u.host.submit(b.req, pieceDone(b.io), { qid: cpu.qid, last: false });
        if (st === BLK_STS.RESOURCE) break;
        cpu.backlog.shift();
        if (st !== BLK_STS.OK) pieceDone(b.io)(st);
        else addCommit(cpu, b.unit);
        unit = b.unit;
      }
      plan(cpu, SEG_SUBMIT, unit, t, price(), resCounts);
      return true;
    }
    if (cpu.backlog.length === 0 && cpu.ready.length > 0) {
      cpu.commits.length = 0;
      cpu.segIos.length = 0;
      let unit = 0;
      for (let k = 0; k < batch && cpu.ready.length > 0; k++) unit = submitIo(cpu, t);
      plan(cpu, SEG_SUBMIT, unit, t, price(), resCounts);
      return true;
    }
    return false;
  }

  function addCommit(cpu: Cpu, unit: number): void {
    const k = unit * 256 + cpu.qid;
    if (!cpu.commits.includes(k)) cpu.commits.push(k);
  }

  let doneNow: InFlight[] | null = null;
  const pieceDone = (io: InFlight) => (status: BlkStatus) => {
    if (status !== BLK_STS.OK && io.status === BLK_STS.OK) io.status = status;
    io.pending--;
    if (io.pending === 0) {
      if (doneNow !== null) doneNow.push(io);
      else failed.push(io);
    }
  };
  /** I/Os that ended outside completion work (refused at submission). */
  const failed: InFlight[] = [];

  /** Queues one I/O from the CPU's next ready slot; returns its controller. */
  function submitIo(cpu: Cpu, t: number): number {
    const slot = cpu.ready.pop() as number;
    readySlots--;
    if (!measuring && issued >= ramp.ios && t >= ramp.ns) startMeasuring(t);
    const unit = fastMod(slot - cpu.id * depth, nUnits);
    const u = m.units[unit] as (typeof m.units)[number];
    u.dev.cpu = cpu.id;
    const bytes = workload.nextBs();
    const write = workload.nextIsWrite();
    const offset = workload.nextOffset(bytes);
    const io: InFlight = {
      cpu: cpu.id,
      slot,
      unit,
      qid: cpu.qid,
      write,
      offset,
      bytes,
      gen: ++genCounter,
      readyAt: readyAt[slot] as number,
      counted: measuring,
      doorbellAt: t,
      pending: 0,
      status: BLK_STS.OK,
    };
    issued++;
    if (measuring) depths.record(cpu.inflight + 1);
    else rampIos++;
    workload.start(offset, bytes);
    const rs = buffers.ranges(slot, bytes);
    if (write && verifier) verifier.fill(rs, offset, bytes, io.gen);
    const bio = new Bio(write ? "write" : "read", offset / 512, rs.length);
    for (const r of rs) bioAddPage(bio, Math.floor(r.phys / ps), r.len, fastMod(r.phys, ps), ps);
    const pieces = bioSplitToLimits(bio, lim);
    io.pending = pieces.length;
    cpu.inflight++;
    cpu.segIos.push(io);
    for (const piece of pieces) {
      const req = blkRqFromBios(lim, [piece]);
      if (job.host.mapping === "scatterlist" && req.nrPhysSegments > 1)
        m.engine.sgEntries += req.nrPhysSegments;
      const st = u.host.submit(req, pieceDone(io), { qid: cpu.qid, last: false });
      if (st === BLK_STS.RESOURCE) cpu.backlog.push({ req, io, unit });
      else if (st !== BLK_STS.OK) pieceDone(io)(st);
      else addCommit(cpu, unit);
    }
    m.engine.ios++;
    return unit;
  }

  /** The end of a piece of work at `cpu.cursor`: ring doorbells, or complete I/Os. */
  function finish(cpu: Cpu): void {
    const t = cpu.cursor;
    if (cpu.segKind === SEG_SUBMIT) {
      for (const io of cpu.segIos) {
        io.doorbellAt = t;
        atDevice++;
      }
      qdDevice.set(atDevice, t);
      for (const k of cpu.commits) {
        const unit = Math.floor(k / 256);
        devMark = p.device();
        (m.units[unit] as (typeof m.units)[number]).host.commit(k - unit * 256);
      }
      // The doorbell writes are the CPU's too (they cost what the table says, and hold nothing).
      cpu.cursor += price();
      for (const io of failed.splice(0)) complete(io, cpu.cursor);
    } else if (cpu.segKind === SEG_COMPLETE) {
      for (const io of cpu.segIos) complete(io, t);
    }
    account(cpu);
  }

  function account(cpu: Cpu): void {
    if (!measuring || cpu.segStart < windowStart) return;
    cpu.busyNs += cpu.cursor - cpu.segStart;
    cpu.waitNs += cpu.segWait;
  }

  /** An I/O whose every piece is done, at `t`. */
  function complete(io: InFlight, t: number): void {
    const cpu = cpus[io.cpu] as Cpu;
    cpu.inflight--;
    completed++;
    workload.end(io.offset, io.bytes);
    atDevice--;
    qdDevice.set(atDevice, t);
    inSystem--;
    qdSystem.set(inSystem, t);
    if (io.counted) {
      counted++;
      cpu.ios++;
      bytesDone += io.bytes;
      if (io.write) writes++;
      else reads++;
      lat.record(t - io.readyAt);
      clat.record(t - io.doorbellAt);
      slat.record(io.doorbellAt - io.readyAt);
      if (t > lastDone) lastDone = t;
    }
    if (io.status !== BLK_STS.OK) {
      if (io.counted) errors++;
    } else if (verifier) {
      if (io.write) verifier.recordWrite(io.offset, io.bytes, io.gen);
      else verifier.check(buffers.ranges(io.slot, io.bytes), io.offset, io.bytes);
    }
    makeReady(cpu, io.slot, t);
    if (hasWork(cpu)) wake(cpu, t);
  }

  /** The end of the ramp: statistics start from here. */
  function startMeasuring(t: number): void {
    measuring = true;
    windowStart = t;
    if (seconds !== undefined) endNs = t + seconds * 1e9;
    qdSystem.restart(t);
    qdDevice.restart(t);
    res.resetStats();
    startCounters = snapshotCounters(m, sources);
    startCat = p.byCategory();
    startDevice = units().map((u) => timing.busy(u));
  }

  /**
   * Fires the clock's next callbacks (device completions, timers). Work a timer did is charged,
   * as a softirq, to the CPU that queued it: the flush-queue timer's to the CPU that armed it, the
   * depot trimming's to the CPU that filled the depot.
   */
  function clockEvent(t: number): void {
    m.clock.advanceTo(t);
    let owner = -1;
    let unit = 0;
    for (let u = 0; u < nUnits; u++) {
      const f = fqs[u];
      if (f && f.counters.c.timerFlushes !== flushesLast[u]) {
        flushesLast[u] = f.counters.c.timerFlushes;
        owner = armer[u] as number;
        unit = u;
      }
      const d = iovads[u];
      if (d && d.counters.c.depotTrims !== trimsLast[u]) {
        trimsLast[u] = d.counters.c.depotTrims;
        if (owner < 0) owner = depotOwner[u] as number;
        unit = u;
      }
    }
    if (owner < 0) return;
    const ns = price();
    const cpu = cpus[owner] as Cpu;
    cpu.softirq.push({ unit, cpuNs: ns, counts: Float64Array.from(resCounts) });
    wake(cpu, t);
  }

  const progressEvery = 4096;
  let loops = 0;
  for (;;) {
    const te = heap.peekTime();
    const tc = m.clock.nextAt();
    if (tc <= te) {
      if (tc === Infinity) break;
      clockEvent(tc);
    } else {
      const kind = heap.peekKind();
      const cpu = cpus[heap.peekArg()] as Cpu;
      heap.pop();
      cpu.cursor = Math.max(cpu.cursor, te);
      if (kind === EV_CPU) cpu.wakePending = false;
      if (kind === EV_CPU && cpu.phase !== IDLE) continue;
      advance(cpu);
    }
    if (++loops % progressEvery === 0) options.onProgress?.(counted, measuredIos ?? -1);
    if (heap.size === 0 && m.clock.nextAt() === Infinity && completed < issued) {
      // Requests that keep getting BLK_STS_RESOURCE with nothing in flight would be requeued
      // forever: fail them so the run ends (and reports the errors).
      let any = false;
      for (const cpu of cpus)
        for (const b of cpu.backlog.splice(0)) {
          any = true;
          pieceDone(b.io)(BLK_STS.RESOURCE);
        }
      for (const io of failed.splice(0)) complete(io, m.clock.now);
      if (!any && completed < issued)
        throw new InternalError(
          `the run stalled with ${issued - completed} I/Os in flight and nothing scheduled`,
        );
    }
  }
  const windowEnd = Math.max(lastDone, windowStart);
  const measuredNs = windowEnd - windowStart;
  // Let the lazy timer run so the exposure window of the last unmaps is recorded.
  m.clock.advance(2_000_000_000);
  return summarise();

  function summarise(): RunResult {
    const endCounters = snapshotCounters(m, sources);
    const endCat = p.byCategory();
    const perIo: Record<string, number> = {};
    for (const [k, v] of Object.entries(endCounters)) {
      const d = v - (startCounters[k] ?? 0);
      if (d !== 0 && counted > 0) perIo[k] = d / counted;
    }
    const resources = res.report(measuredNs, counted);
    const waitTotal = cpus.reduce((a, c) => a + c.waitNs, 0);
    const byCat = Object.fromEntries(
      COST_CATEGORIES.map((c) => [
        c,
        counted > 0 ? (c === "wait" ? waitTotal : endCat[c] - startCat[c]) / counted : 0,
      ]),
    ) as Record<CostCategory, number>;
    const cpuNsPerIo = Object.values(byCat).reduce((a, b) => a + b, 0);
    const devBusy = units().map((u) => {
      const b = timing.busy(u);
      const s = startDevice[u] as typeof b;
      return { pipe: b.pipeNs - s.pipeNs, cmd: b.cmdNs - s.cmdNs, walk: b.walkNs - s.walkNs };
    });
    const util = (x: number) => (measuredNs > 0 ? Math.min(1, x / measuredNs) : 0);
    const bandwidth = Math.max(0, ...devBusy.map((d) => util(d.pipe)));
    const commands = Math.max(0, ...devBusy.map((d) => util(d.cmd)));
    const qdMean = qdSystem.mean(windowEnd);
    const cpuBusy = cpus.map((c) => util(c.busyNs));
    const latSummary = lat.summary();
    const us = (ns: number) => ns / 1000;
    const fq = m.dev.cookie?.fq;
    const exposure = fq ? fq.exposure() : null;
    const iotlb = m.iotlb?.counters.c;
    const delta = (k: string) => (endCounters[k] ?? 0) - (startCounters[k] ?? 0);
    const hostMem =
      (m.host.mapping === "new" ? 190 : 184) +
      (counted > 0
        ? (delta("nvmehost.smallDescriptors") * 256 +
            delta("nvmehost.largeDescriptors") * 4096 +
            delta("nvmehost.vecArrays") * m.host.vecPool.objectBytes +
            delta("nvmehost.sgTables") * m.host.sgPool.objectBytes) /
          counted
        : 0);
    const wallMs = wall() - t0;
    const debugReports = m.units.flatMap((u) =>
      u.debug ? u.debug.errors.map((r) => `${r.class}: ${r.message}`) : [],
    );
    const tables = m.units.reduce(
      (a, u) =>
        u.domain?.pgtable
          ? {
              tables: a.tables + u.domain.pgtable.tablePages,
              bytes: a.bytes + u.domain.pgtable.tableMemoryPages * ps,
            }
          : a,
      { tables: 0, bytes: 0 },
    );
    const hist = lat.buckets();
    return {
      job,
      ios: counted,
      reads,
      writes,
      bytes: bytesDone,
      rampIos,
      simulatedNs: measuredNs,
      iops: measuredNs > 0 ? (counted * 1e9) / measuredNs : 0,
      bandwidthMBps: measuredNs > 0 ? (bytesDone * 1e3) / measuredNs : 0,
      perCpu: cpus.map((c) => ({
        cpu: c.id,
        ios: c.ios,
        iops: measuredNs > 0 ? (c.ios * 1e9) / measuredNs : 0,
        busyPct: 100 * util(c.busyNs),
        waitPct: 100 * util(c.waitNs),
      })),
      cpuNsPerIo,
      cpuNsPerIoByCategory: byCat,
      lat: latSummary,
      clat: clat.summary(),
      slat: slat.summary(),
      latencyUs: shortPercentiles(latSummary),
      latencyHistogram: {
        upperUs: hist.map((b) => us(b.upperNs)),
        counts: hist.map((b) => b.count),
      },
      latencyCdf: lat.cdf().map((x) => ({ us: us(x.ns), fraction: x.fraction })),
      qd: {
        mean: qdMean,
        deviceMean: qdDevice.mean(windowEnd),
        configured: slots,
        distribution: depths.distribution(),
      },
      resources,
      boundBy: boundOf({
        cpuBusy,
        resources,
        bandwidth,
        commands,
        qdMean,
        qdConfigured: slots,
      }),
      device: {
        bandwidthUtilisation: bandwidth,
        commandUtilisation: commands,
        walkNsPerIo: counted > 0 ? devBusy.reduce((a, d) => a + d.walk, 0) / counted : 0,
      },
      perIo,
      hostMemoryPerIo: hostMem,
      iotlbHitRate: iotlb && iotlb.lookups > 0 ? iotlb.hits / iotlb.lookups : null,
      pageTables: m.domain?.pgtable ? tables : null,
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
      faults: m.units.reduce((a, u) => a + (u.domain?.counters.c.faults ?? 0), 0),
      errors,
      verify: {
        enabled: verifier !== null,
        checkedBytes: verifier?.checkedBytes ?? 0,
        mismatches: verifier?.mismatches ?? 0,
        ok: (verifier?.mismatches ?? 0) === 0 && errors === 0,
      },
      debugReports,
      costTable: costs,
      simulator: { wallMs, iosPerSecond: wallMs > 0 ? (completed * 1000) / wallMs : 0 },
    };
  }
}
