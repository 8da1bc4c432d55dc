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
import { BLK_STS, InternalError, Rng, fastMod, type Request } from "@dmasim/bvec";
import { Pricer, type ResourceKind } from "./cost.ts";
import { DeferredWork } from "./deferred.ts";
import { DeviceTiming } from "./device-time.ts";
import { type Job, jobIos, rampOf } from "./job.ts";
import {
  effectiveIommuMode,
  type Machine,
  buildMachine,
  counterRef,
  counterSources,
  ioQueuesOf,
  queueOfCpu,
  releaseMachine,
  snapshotCounters,
} from "./machine.ts";
import { jobCosts } from "./profiles.ts";
import { ResourceSet } from "./resources.ts";
import type { RunResult } from "./results.ts";
import { type WindowEnd, summarise } from "./summary.ts";
import { IntervalLog, Measurement, failureCause } from "./measure.ts";
import type { RunOptions } from "./run-options.ts";
import { REPORT_PERCENTILES } from "./stats.ts";
import { type TimelineWork, Timelines } from "./timeline.ts";
import { Verifier } from "./verify.ts";
import { SlotBuffers, SlotRequests, Workload } from "./workload.ts";
import {
  Cpu,
  type InFlight,
  SEG_COMPLETE,
  SEG_SOFTIRQ,
  SEG_SUBMIT,
  type SoftIrq,
  WorkList,
  slotRecords,
} from "./cpu-state.ts";

export type { BoundBy, CpuReport, Percentiles, RunResult } from "./results.ts";
export type { RunOptions } from "./run-options.ts";

/** Runs `job` and returns its results. */
export function runJob(job: Job, options: RunOptions = {}): RunResult {
  const wall = options.now ?? (() => performance.now());
  const t0 = wall();
  const costs = options.costs ?? jobCosts(job, effectiveIommuMode(job));
  const rng = new Rng(job.seed);
  const timing = new DeviceTiming(job, new Rng(job.seed + 2));
  const nCpus = job.machine.cpus;
  const nUnits = job.machine.controllers;
  const nQueues = ioQueuesOf(job);
  const polled = job.host.completion === "poll";
  const depth = job.workload.iodepth;
  const batch = job.workload.batchSubmit;
  const cpus: Cpu[] = [];
  const queueOf = (c: number) => queueOfCpu(job, c);
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
      tl.wake(cpu, m.clock.now);
    },
  });
  options.setup?.(m);
  const sources = counterSources(m);
  const p = new Pricer(costs, (n) => counterRef(m, sources, n));
  const res = new ResourceSet(job);
  devMark = p.device();
  const deferred = new DeferredWork(m);

  const workload = new Workload(job, rng);
  const slots = nCpus * depth;
  const buffers = new SlotBuffers(job, m.memory, slots, workload.maxBs);
  const verifier = job.workload.verify ? new Verifier(job.seed, m.memory, workload.maxBs) : null;
  const readyAt = new Float64Array(slots);
  const lim = m.host.limits;
  const ps = m.memory.pageSize;

  const mx = new Measurement(
    options.log === undefined ? null : new IntervalLog(options.log.intervalNs, options.log.emit),
  );
  /** What the window's end captured (null while it is open). */
  let end: WindowEnd | null = null;
  const ramp = rampOf(job);
  const measuredIos = jobIos(job);
  const seconds = job.workload.seconds;
  /** Time-based runs end `seconds` after the ramp (set when the ramp ends). */
  let endNs = Infinity;
  let issued = 0;
  let readySlots = 0;
  let completed = 0;
  let genCounter = 0;
  let startCounters = snapshotCounters(m, sources);
  let startCat = p.byCategory();
  let startDevice = units().map((u) => timing.busy(u));

  function units(): number[] {
    return Array.from({ length: nUnits }, (_, i) => i);
  }

  const work: TimelineWork<Cpu> = {
    hasWork,
    start,
    finish,
    clockEvent,
    drained,
  };
  const instance = (cpu: Cpu, kind: ResourceKind) =>
    res.instance(kind, cpu.segUnit, cpu.id, cpu.qid);
  for (let c = 0; c < nCpus; c++) {
    const cpu = new Cpu(c, queueOf(c), depth, nUnits * (nQueues + 1), instance);
    cpus.push(cpu);
  }
  const tl = new Timelines(m.clock, p, cpus, work);
  const resCounts = tl.counts;
  for (const cpu of cpus) {
    for (let s = depth - 1; s >= 0; s--) makeReady(cpu, cpu.id * depth + s, 0);
    tl.wake(cpu, 0);
  }

  /** Whether the run still issues I/Os (by count, counting ready slots, or by time). */
  function wantMore(now: number): boolean {
    if (!mx.measuring) return true;
    return measuredIos !== undefined ? issued - mx.rampIos + readySlots < measuredIos : now < endNs;
  }

  /** A freed slot becomes ready for its next I/O at `t` when the run wants more. */
  function makeReady(cpu: Cpu, slot: number, t: number): boolean {
    if (!wantMore(t)) return false;
    readySlots++;
    readyAt[slot] = t;
    cpu.ready.push(slot);
    mx.ready(t);
    return true;
  }

  const price = () => tl.price();

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
    tl.plan(cpu, t, cpuNs, counts, cpu.instance);
    deferred.noteWork(unit, cpu.id);
  }

  function hasWork(cpu: Cpu): boolean {
    return (
      cpu.softirq.length > 0 ||
      cpu.cqPending.size > 0 ||
      (cpu.backlog.length > 0 ? cpu.retryBacklog : cpu.ready.size > 0)
    );
  }

  /** Starts the next piece of work on an idle CPU at `t`; false when it has none. */
  function start(cpu: Cpu, t: number): boolean {
    if (cpu.softirq.length > 0) {
      const soft = cpu.softirq.shift() as SoftIrq;
      plan(cpu, SEG_SOFTIRQ, soft.unit, t, soft.cpuNs, soft.counts);
      return true;
    }
    if (cpu.cqPending.size > 0) {
      const key = cpu.cqPending.shift();
      cqFlag[key] = 0;
      const unit = Math.floor(key / 256);
      const qid = key - unit * 256;
      const u = m.units[unit] as (typeof m.units)[number];
      u.dev.cpu = cpu.id;
      cpu.segIos.clear();
      doneNow = cpu.segIos;
      u.host.pollCq(qid);
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
      cpu.commits.clear();
      cpu.segIos.clear();
      let unit = 0;
      while (cpu.backlog.length > 0) {
        const b = cpu.backlog[0] as { req: Request; io: InFlight; unit: number };
        const u = m.units[b.unit] as (typeof m.units)[number];
        u.dev.cpu = cpu.id;
        const st = u.host.queueRq(b.req, b.io.done, cpu.submitOpts);
        if (st === BLK_STS.RESOURCE) break;
        cpu.backlog.shift();
        if (st !== BLK_STS.OK) b.io.done(st);
        else addCommit(cpu, b.unit);
        unit = b.unit;
      }
      plan(cpu, SEG_SUBMIT, unit, t, price(), resCounts);
      return true;
    }
    if (cpu.backlog.length === 0 && cpu.ready.size > 0) {
      cpu.commits.clear();
      cpu.segIos.clear();
      let unit = 0;
      for (let k = 0; k < batch && cpu.ready.size > 0; k++) unit = submitIo(cpu, t);
      plan(cpu, SEG_SUBMIT, unit, t, price(), resCounts);
      return true;
    }
    return false;
  }

  function addCommit(cpu: Cpu, unit: number): void {
    const k = unit * 256 + cpu.qid;
    if (!cpu.commits.includes(k)) cpu.commits.push(k);
  }

  let doneNow: WorkList<InFlight> | null = null;
  /** One record per slot, made once; an I/O whose every request is done goes to the current
   * completion work, or (refused at submission) to `failed`. */
  const slotIo = slotRecords(slots, depth, queueOf, (io) => {
    if (doneNow !== null) doneNow.push(io);
    else failed.push(io);
  });
  /** I/Os that ended outside completion work (refused at submission). */
  const failed: InFlight[] = [];
  const slotRequests = new SlotRequests(buffers, slots, workload.maxBs, lim, ps);

  /** Queues one I/O from the CPU's next ready slot; returns its controller. */
  function submitIo(cpu: Cpu, t: number): number {
    // Oldest ready slot first, as fio reuses its io_u's in completion order.
    const slot = cpu.ready.shift();
    readySlots--;
    if (!mx.measuring && issued >= ramp.ios && t >= ramp.ns) startMeasuring(t);
    const unit = fastMod(slot - cpu.id * depth, nUnits);
    const u = m.units[unit] as (typeof m.units)[number];
    u.dev.cpu = cpu.id;
    const bytes = workload.nextBs();
    const write = workload.nextIsWrite();
    const offset = workload.nextOffset(bytes);
    const io = slotIo[slot] as InFlight;
    io.unit = unit;
    io.write = write;
    io.offset = offset;
    io.bytes = bytes;
    io.gen = ++genCounter;
    // A slot that became ready during the ramp is measured from the window's start.
    io.readyAt = mx.measuring
      ? Math.max(readyAt[slot] as number, mx.windowStart)
      : (readyAt[slot] as number);
    io.counted = mx.measuring;
    io.doorbellAt = t;
    io.pending = 0;
    io.status = BLK_STS.OK;
    io.nvmeStatus = 0;
    issued++;
    mx.issued(cpu.inflight + 1);
    workload.start(offset, bytes);
    const rs = buffers.ranges(slot, bytes);
    if (write && verifier) verifier.fill(rs, offset, bytes, io.gen);
    const n = slotRequests.build(slot, write, offset, rs);
    io.pending = n;
    cpu.inflight++;
    cpu.segIos.push(io);
    for (let i = 0; i < n; i++) {
      const req = slotRequests.request(slot, i);
      if (job.host.mapping === "scatterlist" && req.nrPhysSegments > 1)
        m.engine.sgEntries += req.nrPhysSegments;
      const st = u.host.queueRq(req, io.done, cpu.submitOpts);
      if (st === BLK_STS.RESOURCE) cpu.backlog.push({ req, io, unit });
      else if (st !== BLK_STS.OK) io.done(st);
      else addCommit(cpu, unit);
    }
    m.engine.ios++;
    return unit;
  }

  /** The end of a piece of work at `cpu.cursor`: ring doorbells, or complete I/Os. */
  function finish(cpu: Cpu): void {
    const t = cpu.cursor;
    if (cpu.segKind === SEG_SUBMIT) {
      const ios = cpu.segIos;
      for (let i = 0; i < ios.size; i++) (ios.items[i] as InFlight).doorbellAt = t;
      mx.doorbell(ios.size, t);
      for (let i = 0; i < cpu.commits.size; i++) {
        const k = cpu.commits.items[i] as number;
        const unit = Math.floor(k / 256);
        devMark = p.device();
        (m.units[unit] as (typeof m.units)[number]).host.commitRqs(k - unit * 256);
      }
      // The doorbell writes are the CPU's too (they cost what the table says, and hold nothing).
      cpu.cursor += price();
      if (failed.length > 0) for (const io of failed.splice(0)) complete(io, cpu.cursor);
    } else if (cpu.segKind === SEG_COMPLETE) {
      const ios = cpu.segIos;
      for (let i = 0; i < ios.size; i++) complete(ios.items[i] as InFlight, t);
    }
    account(cpu);
  }

  function account(cpu: Cpu): void {
    if (!mx.measuring || end !== null || cpu.segStart < mx.windowStart) return;
    cpu.busyNs += cpu.cursor - cpu.segStart;
    cpu.waitNs += cpu.segWait;
  }

  /** An I/O whose every piece is done, at `t`. */
  function complete(io: InFlight, t: number): void {
    const cpu = cpus[io.cpu] as Cpu;
    cpu.inflight--;
    completed++;
    workload.end(io.offset, io.bytes);
    mx.done(io, io.status === BLK_STS.OK, t);
    if (io.status !== BLK_STS.OK && io.counted) mx.failed(failureCause(io.status, io.nvmeStatus));
    if (io.counted) cpu.ios++;
    if (io.status === BLK_STS.OK && verifier) {
      if (io.write) verifier.recordWrite(io.offset, io.bytes, io.gen);
      else verifier.check(buffers.ranges(io.slot, io.bytes), io.offset, io.bytes);
    }
    makeReady(cpu, io.slot, t);
    if (hasWork(cpu)) tl.wake(cpu, t);
    if (end === null && mx.measuring && readySlots === 0 && mx.counted === issued - mx.rampIos)
      closeWindow(t);
  }

  /**
   * The last measured I/O completed at `t` and no more will be issued: the measured window ends
   * here. What happens after it (the flush queue's last timer, the drain) is not measured.
   */
  function closeWindow(t: number): void {
    end = capture(t);
  }

  function capture(t: number): WindowEnd {
    return {
      counters: snapshotCounters(m, sources),
      cat: p.byCategory(),
      device: units().map((u) => timing.busy(u)),
      resources: res.report(t - mx.windowStart, mx.counted),
      exposure: m.dev.cookie?.fq?.exposure() ?? null,
      exposureBins: m.dev.cookie?.fq?.exposureBins() ?? [],
    };
  }

  /** The end of the ramp: statistics start from here. */
  function startMeasuring(t: number): void {
    mx.begin(t);
    if (seconds !== undefined) endNs = t + seconds * 1e9;
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
    const ran = deferred.fired();
    if (ran === null) return;
    const ns = price();
    const cpu = cpus[ran.cpu] as Cpu;
    cpu.softirq.push({ unit: ran.unit, cpuNs: ns, counts: Float64Array.from(resCounts) });
    tl.wake(cpu, t);
  }

  /**
   * Nothing is scheduled: requests that keep getting BLK_STS_RESOURCE with nothing in flight
   * would be requeued forever, so they fail (and the report says so) and the run goes on.
   */
  /** When `drained` last failed requests (simulated ns; -1 before the first time). */
  let lastDrainAt = -1;
  function drained(): boolean {
    if (completed === issued) return false;
    let any = false;
    for (const cpu of cpus)
      for (const b of cpu.backlog.splice(0)) {
        any = true;
        b.io.done(BLK_STS.RESOURCE);
      }
    // They fail when the last piece of work ended (a CPU's cursor may be past the clock).
    let t = m.clock.now;
    for (const cpu of cpus) if (cpu.cursor > t) t = cpu.cursor;
    for (const io of failed.splice(0)) complete(io, t);
    // Failing at the instant of the last drain: nothing costs time (every request is refused at
    // once, with a cost table that prices the attempt at zero), so the clock stands still and a
    // time-based ramp or run would never end. The ramp ends now; a time-based run stops issuing.
    if (t <= lastDrainAt) {
      if (!mx.measuring) startMeasuring(t);
      else if (seconds !== undefined) endNs = t;
    }
    lastDrainAt = t;
    if (!any && completed < issued)
      throw new InternalError(
        `the run stalled with ${issued - completed} I/Os in flight and nothing scheduled`,
      );
    return true;
  }

  let events = 0;
  const progress = options.onProgress;
  tl.run(
    progress === undefined
      ? undefined
      : () => {
          if (++events % 4096 === 0) progress(mx.counted, measuredIos ?? -1);
        },
  );
  const windowEnd = mx.windowEnd;
  const measuredNs = windowEnd - mx.windowStart;
  // A run whose window never closed (I/Os failed and the run stopped) ends it here.
  const ended = (end as WindowEnd | null) ?? capture(windowEnd);
  mx.log?.close(windowEnd);
  // Let the lazy timer run so the exposure window of the last unmaps is recorded (used only
  // when no flush happened within the window).
  m.clock.advance(2_000_000_000);
  const result = summarise({
    job,
    m,
    costs,
    startCounters,
    startCat,
    startDevice,
    cpus,
    mx,
    end: ended,
    verifier,
    windowEnd,
    measuredNs,
    slots,
    completed,
    wallMs: wall() - t0,
    percentiles: options.percentiles ?? REPORT_PERCENTILES,
  });
  releaseMachine(m);
  return result;
}
