/**
 * Builds the simulated machine a job describes: memory, clock, one IOMMU unit (its IOTLB), SWIOTLB,
 * and for each NVMe controller its PCI function (a DMA device with its own domain), the controller
 * and the host driver.
 */
import { type CounterSet, PhysMemory, SimClock, SimError, hex } from "@dmasim/bvec";
import { Device, DmaDebug, Swiotlb, iommuSetupDmaOps } from "@dmasim/dma-core";
import { IOMMU_DOMAIN, IommuDomain, Iotlb } from "@dmasim/iommu";
import { NvmeController, type NvmeFaultPlan, NvmeHost } from "@dmasim/nvme";
import type { CounterRef } from "./cost.ts";
import { JobError } from "./errors.ts";
import type { Job } from "./job.ts";
import { jobSchema } from "./job-schema.ts";
import { CACHING_MODE, type CachingModeBit, pageTableFormat } from "./profiles.ts";

/** One NVMe controller with what belongs to it: its PCI function, DMA domain and driver. */
export interface NvmeUnit {
  /** 0-based; the device is named `nvme<index>`. */
  readonly index: number;
  readonly domain: IommuDomain | null;
  readonly dev: Device;
  readonly ctrl: NvmeController;
  readonly host: NvmeHost;
  readonly debug: DmaDebug | null;
}

/** Everything a run needs. */
export interface Machine {
  readonly job: Job;
  readonly clock: SimClock;
  readonly memory: PhysMemory;
  /** The IOMMU unit's IOTLB, shared by every domain behind it (entries are tagged by domain). */
  readonly iotlb: Iotlb | null;
  readonly swiotlb: Swiotlb | null;
  /** The controllers (`machine.controllers`), all behind the one IOMMU unit. */
  readonly units: readonly NvmeUnit[];
  /** The first controller's domain, device, controller, driver and dma-debug. */
  readonly domain: IommuDomain | null;
  readonly dev: Device;
  readonly ctrl: NvmeController;
  readonly host: NvmeHost;
  readonly debug: DmaDebug | null;
  /** Engine-side counters (events the packages do not count themselves). */
  readonly engine: { sgEntries: number; ios: number; irqs: number; polls: number };
}

/** Options beyond the job. */
export interface MachineOptions {
  /** Attach dma-debug (slower; catches driver bugs). */
  readonly debug?: boolean;
  /** The per-command device time model of controller `unit`. */
  readonly serviceTimeNs?: (unit: number, opcode: number, bytes: number, qid: number) => number;
  /** The completion-queue interrupt of controller `unit`. */
  readonly irq?: (unit: number, cqid: number) => void;
}

/**
 * True when the job's IOMMU reports caching mode and Linux acts on it: VT-d CAP.CM
 * (`intel_iommu_init`: "IOMMU batching disallowed due to virtualization", then
 * `iommu_set_dma_strict`) or AMD-Vi NpCache (`iommu_init_pci`: "Using strict mode due to
 * virtualization", `iommu_set_dma_strict`). An SMMUv3 has no such bit (parseJob refuses it).
 * Linux skips the VT-d case when first-stage translation is the default
 * (`first_level_by_default`); the model's VT-d is second-stage, QEMU's default vIOMMU.
 */
export function cachingModeForcesStrict(job: Job): boolean {
  return job.iommu.cachingMode && CACHING_MODE[job.machine.profile] !== null;
}

/**
 * Why the device's IOMMU mode differs from the one asked, or null: an untrusted device gets a
 * strict domain (`iommu_get_default_domain_type`, lazy and passthrough alike); caching mode
 * turns lazy into strict (`iommu_set_dma_strict` leaves passthrough alone).
 */
export function forcedModeReason(job: Job): string | null {
  const mode = job.iommu.mode;
  if (!job.device.trusted && (mode === "passthrough" || mode === "lazy"))
    return "untrusted devices get a strict domain";
  if (mode === "lazy" && cachingModeForcesStrict(job))
    return (CACHING_MODE[job.machine.profile] as CachingModeBit).reason;
  return null;
}

/** The IOMMU mode a job's device really gets (see `forcedModeReason`). */
export function effectiveIommuMode(job: Job): Job["iommu"]["mode"] {
  return forcedModeReason(job) === null ? job.iommu.mode : "strict";
}

/** I/O queue pairs per controller: `controller.ioQueues`, or one per CPU. */
export function ioQueuesOf(job: Job): number {
  return Math.min(job.controller.ioQueues ?? job.machine.cpus, job.machine.cpus);
}

/**
 * The I/O queue CPU `cpu` submits to (1-based qid): the CPUs are spread evenly over the queues,
 * as blk-mq's `blk_mq_map_queues` groups consecutive CPUs onto one hardware context.
 */
export function queueOfCpu(job: Job, cpu: number): number {
  return Math.floor((cpu * ioQueuesOf(job)) / job.machine.cpus) + 1;
}

/**
 * Builds and brings up the machine of `job`. A job that the machine cannot hold (memory for
 * SWIOTLB, queues and buffers exhausted) or whose device cannot reach what it must (a DMA mask
 * below RAM on the direct path with no SWIOTLB pool it reaches) is bad input: `JobError`.
 */
export function buildMachine(job: Job, options: MachineOptions = {}): Machine {
  let m: Machine;
  try {
    m = bringUp(job, options);
  } catch (e) {
    if (e instanceof SimError && e.code === "ENOMEM") throw new JobError([outOfMemory(job, e)]);
    throw e;
  }
  const problems = reachProblems(job, m.memory, m.swiotlb?.end ?? null);
  if (problems.length > 0) throw new JobError(problems);
  return m;
}

/**
 * On the direct path (no DMA domain) a streaming mapping that the mask cannot reach bounces
 * through SWIOTLB (`dma_direct_map_phys` → `swiotlb_map`), which fails when the pool itself
 * lies above the mask: then every I/O to a buffer above the mask would fail. `poolEnd` is one
 * past the pool's last byte (null without a pool).
 */
function reachProblems(job: Job, memory: PhysMemory, poolEnd: number | null): string[] {
  const mode = effectiveIommuMode(job);
  if (mode === "strict" || mode === "lazy") return [];
  const bits = job.device.dmaMaskBits;
  const reach = 2 ** bits;
  const top = Math.max(...memory.regions.map((r) => r.end));
  if (top <= reach) return [];
  if (poolEnd === null)
    return [
      `device.dmaMaskBits: ${bits} does not reach RAM up to ${hex(top)} and device.swiotlbMiB is 0, so iommu.mode ${mode} has nothing to bounce through; give dmaMaskBits >= ${Math.ceil(Math.log2(top))}, a SWIOTLB pool, or an IOMMU (strict or lazy)`,
    ];
  if (poolEnd > reach)
    return [
      `device.dmaMaskBits: ${bits} does not reach the SWIOTLB pool (below ${hex(poolEnd)}), so every bounce under iommu.mode ${mode} would fail; give dmaMaskBits >= ${Math.ceil(Math.log2(poolEnd))} or an IOMMU (strict or lazy)`,
    ];
  return [];
}

/** The machine's memory and SWIOTLB pool, as `buildMachine` makes them first. */
function memoryOf(job: Job): { memory: PhysMemory; swiotlb: Swiotlb | null } {
  const memory = new PhysMemory({
    ramBytes:
      Math.round((job.machine.memoryGiB * 1024 ** 3) / job.machine.pageSize) * job.machine.pageSize,
    pageSize: job.machine.pageSize,
  });
  const swiotlb =
    job.device.swiotlbMiB > 0
      ? new Swiotlb(memory, { size: job.device.swiotlbMiB * 1024 * 1024, cpus: job.machine.cpus })
      : null;
  return { memory, swiotlb };
}

/**
 * The problems `buildMachine` would refuse `job` for, found cheaply (memory and the SWIOTLB
 * pool only), so that a command can check every job before it runs the first.
 */
export function machineProblems(job: Job): string[] {
  try {
    const { memory, swiotlb } = memoryOf(job);
    return reachProblems(job, memory, swiotlb?.end ?? null);
  } catch (e) {
    if (e instanceof SimError && e.code === "ENOMEM") return [outOfMemory(job, e)];
    throw e;
  }
}

function outOfMemory(job: Job, e: Error): string {
  return `machine.memoryGiB: ${job.machine.memoryGiB} runs out while building the machine (${e.message}); give more memory or a smaller device.swiotlbMiB`;
}

function bringUp(job: Job, options: MachineOptions): Machine {
  const clock = new SimClock();
  const { memory, swiotlb } = memoryOf(job);
  // Linux gives an untrusted (external-facing) PCI device a strict DMA domain whatever the
  // default domain type is (iommu_get_default_domain_type): no passthrough, no flush queue.
  // Caching mode (a virtualised IOMMU) makes lazy strict too.
  const mode = effectiveIommuMode(job);
  // In caching mode the IOMMU may cache not-present entries, so a new mapping is invalidated
  // too: VT-d `intel_iommu_iotlb_sync_map` → `cache_tag_flush_range_np` flushes when
  // `cap_caching_mode`; AMD-Vi `amd_iommu_iotlb_sync_map` → `domain_flush_np_cache` when
  // `amd_iommu_np_cache`.
  const needsSyncMap = job.iommu.syncMapNeeded || cachingModeForcesStrict(job);
  const format = pageTableFormat(job);
  const iotlb =
    mode === "none"
      ? null
      : new Iotlb({
          entries: job.iommu.iotlbEntries,
          ways: Math.min(job.iommu.iotlbWays, job.iommu.iotlbEntries),
        });
  const queues = ioQueuesOf(job);
  const units: NvmeUnit[] = [];
  for (let u = 0; u < job.machine.controllers; u++) {
    const domain =
      iotlb === null
        ? null
        : new IommuDomain({
            type:
              mode === "passthrough"
                ? IOMMU_DOMAIN.IDENTITY
                : mode === "strict"
                  ? IOMMU_DOMAIN.DMA
                  : IOMMU_DOMAIN.DMA_FQ,
            mem: memory,
            clock,
            pgtable:
              format === "arm-lpae"
                ? {
                    granule: job.iommu.granule,
                    ias: job.iommu.addressBits,
                    oas: job.iommu.granule === 65536 ? 52 : 48,
                    freeEmptyTables: job.iommu.freeEmptyTables,
                  }
                : {
                    format,
                    ias: job.iommu.addressBits,
                    oas: 52,
                    // An IOMMU caching non-present entries (VT-d caching mode, AMD's NpCache)
                    // makes the driver pick PT_FEAT_FLUSH_RANGE_NO_GAPS.
                    flushRangeNoGaps: needsSyncMap,
                    freeEmptyTables: job.iommu.freeEmptyTables,
                  },
            iotlb,
            needsSyncMap,
            // CONFIG_HZ: the flush queue's timer ticks in jiffies (FlushQueue).
            hz: job.machine.hz,
          });
    const debug = options.debug ? new DmaDebug() : null;
    const dev = new Device({
      name: `nvme${u}`,
      memory,
      kernel: job.kernel,
      dmaMaskBits: job.device.dmaMaskBits,
      coherent: job.device.coherent,
      untrusted: !job.device.trusted,
      // "per-segment": the new driver with the IOVA API unusable, so each segment is mapped alone.
      iovaApi: job.host.mapping !== "per-segment",
      iommu: domain,
      swiotlb,
      clock,
      debug,
    });
    iommuSetupDmaOps(dev, { numCpus: job.machine.cpus, singleQueue: job.iommu.singleQueue });
    const service = options.serviceTimeNs;
    const irq = options.irq;
    const ctrl = new NvmeController({
      dev,
      clock,
      sgl: job.controller.sgl,
      mdts: job.controller.mdts,
      maxQueueEntries: job.controller.queueDepth,
      maxIoQueues: queues,
      shadowDoorbells: job.controller.shadowDoorbells,
      namespaces: [
        {
          lbaSize: job.controller.lbaSize,
          blocks: Math.floor((job.controller.namespaceGiB * 1024 ** 3) / job.controller.lbaSize),
        },
      ],
      ...(service ? { serviceTimeNs: (op, bytes, qid) => service(u, op, bytes, qid) } : {}),
    });
    const host = new NvmeHost({
      dev,
      bar: ctrl,
      mapping: job.host.mapping === "scatterlist" ? "scatterlist" : "two-step",
      sglThreshold: job.host.sglThresholdKiB * 1024,
      ioQueues: queues,
      queueDepth: job.controller.queueDepth,
      // A mask narrower than 64 bits is a device quirk the driver applies at probe, before it
      // computes its limits (as NVME_QUIRK_DMA_ADDRESS_BITS_48 does).
      dmaAddressBits: job.device.dmaMaskBits,
    });
    host.enable();
    // Injected faults count from the first I/O command, after the driver's bring-up.
    // (zod types absent keys as `?: T | undefined`; the parsed object has none of them).
    if (job.controller.faults !== undefined) ctrl.setFaults(job.controller.faults as NvmeFaultPlan);
    // Interrupts are wired after bring-up: the admin queue is polled by the driver itself.
    if (irq) ctrl.irq = (cqid) => irq(u, cqid);
    units.push({ index: u, domain, dev, ctrl, host, debug });
  }
  const first = units[0] as NvmeUnit;
  return {
    job,
    clock,
    memory,
    iotlb,
    swiotlb,
    units,
    domain: first.domain,
    dev: first.dev,
    ctrl: first.ctrl,
    host: first.host,
    debug: first.debug,
    engine: { sgEntries: 0, ios: 0, irqs: 0, polls: 0 },
  };
}

/** Every counter set of the machine, under the names the cost table uses (one per controller). */
export function counterSources(m: Machine): Map<string, CounterSet<string>[]> {
  const out = new Map<string, CounterSet<string>[]>();
  const add = (name: string, set: CounterSet<string>) => {
    const list = out.get(name);
    if (list === undefined) out.set(name, [set]);
    else if (!list.includes(set)) list.push(set);
  };
  add("memory", m.memory.counters);
  if (m.swiotlb) add("swiotlb", m.swiotlb.counters);
  if (m.iotlb) add("iotlb", m.iotlb.counters);
  for (const u of m.units) {
    add("dma", u.dev.counters);
    add("devdma", u.ctrl.dma.counters);
    add("nvmehost", u.host.counters);
    add("nvmectrl", u.ctrl.counters);
    add("pool.small", u.host.small.counters);
    add("pool.large", u.host.large.counters);
    add("mempool.vec", u.host.vecPool.counters);
    add("mempool.sg", u.host.sgPool.counters);
    if (u.domain) {
      add("domain", u.domain.counters);
      if (u.domain.pgtable) add("pgtable", u.domain.pgtable.counters);
    }
    const cookie = u.dev.cookie;
    if (cookie) {
      add("iova", cookie.iovad.counters);
      if (cookie.fq) add("fq", cookie.fq.counters);
    }
  }
  return out;
}

const ENGINE_COUNTERS = ["sgEntries", "ios", "irqs", "polls"] as const;

/** Where `scope.name` (engine counters included) is read: one place per controller, or none. */
export function counterRef(
  m: Machine,
  sources: Map<string, CounterSet<string>[]>,
  name: string,
): CounterRef[] {
  const dot = name.lastIndexOf(".");
  const scope = name.slice(0, dot);
  const key = name.slice(dot + 1);
  if (scope === "engine")
    return (ENGINE_COUNTERS as readonly string[]).includes(key) ? [{ target: m.engine, key }] : [];
  const sets = sources.get(scope) ?? [];
  return sets.filter((s) => s.names.includes(key)).map((s) => ({ target: s.c, key }));
}

/** A getter for `scope.name` (summed over controllers), or undefined when absent. */
export function counterGetter(
  m: Machine,
  sources: Map<string, CounterSet<string>[]>,
  name: string,
): (() => number) | undefined {
  const refs = counterRef(m, sources, name);
  if (refs.length === 0) return undefined;
  return () => {
    let t = 0;
    for (const r of refs) t += r.target[r.key] ?? 0;
    return t;
  };
}

/**
 * The counters of `sources` that are gauges (levels such as `iova.liveRanges`, or high-water
 * marks such as `nvmehost.peakInflightBytes`), as `"scope.name"`: their value, not a difference,
 * is what a run reports.
 */
export function gaugeNames(sources: Map<string, CounterSet<string>[]>): Set<string> {
  const out = new Set<string>();
  for (const [scope, sets] of sources)
    for (const set of sets) for (const g of set.gauges) out.add(`${scope}.${g}`);
  return out;
}

/**
 * Gives back the host memory the machine's namespaces hold (`NvmeNamespace.release`), for the
 * next machines of the process to reuse: the engine calls it when a run is done with its machine.
 */
export function releaseMachine(m: Machine): void {
  for (const u of m.units) for (const ns of u.ctrl.namespaces) ns.release();
}

/** A flat snapshot of every counter (summed over controllers). */
export function snapshotCounters(
  m: Machine,
  sources: Map<string, CounterSet<string>[]>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [scope, sets] of sources)
    for (const set of sets)
      for (const n of set.names) {
        const k = `${scope}.${n}`;
        out[k] = (out[k] ?? 0) + (set.c[n] ?? 0);
      }
  for (const k of ENGINE_COUNTERS) out[`engine.${k}`] = m.engine[k];
  return out;
}

let catalogue: ReadonlySet<string> | undefined;

/**
 * Every counter name a cost entry may price (`scope.name`): those of a machine with every
 * optional part present (an IOMMU DMA domain with its IOVA caches and flush queue, an IOTLB, a
 * SWIOTLB pool, dma-debug) and the engine's own. Built once per process.
 */
export function knownCounters(): ReadonlySet<string> {
  if (catalogue !== undefined) return catalogue;
  const job = jobSchema.parse({ iommu: { mode: "lazy" }, machine: { memoryGiB: 1 } });
  const m = buildMachine(job, { debug: true });
  const names = new Set<string>();
  for (const [scope, sets] of counterSources(m))
    for (const s of sets) for (const n of s.names) names.add(`${scope}.${n}`);
  for (const n of ENGINE_COUNTERS) names.add(`engine.${n}`);
  catalogue = names;
  return names;
}
