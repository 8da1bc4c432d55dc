/**
 * Shared resources as contended servers on the simulated clock. Each is a first-come,
 * first-served server: an acquisition that arrives while another CPU holds it waits (the CPU
 * spins, as on a spinlock or on `qi_submit_sync`'s wait descriptor / SMMUv3's CMD_SYNC), then
 * holds it for the cost table's time. The engine issues acquisitions in simulated-time order, so
 * the order of service is the order of arrival.
 *
 * What a machine has, and who uses it:
 * - `iommu-invalidation-queue`: one per IOMMU unit (VT-d's invalidation queue, AMD-Vi's command
 *   buffer, SMMUv3's command queue), shared by every controller behind it: strict unmaps,
 *   sync-maps that flush, and flush-queue flushes;
 * - `iova-tree-lock`: `iova_rbtree_lock`, one per DMA domain: tree allocations and frees, drains;
 * - `rcache-depot-lock`: the rcache's lock, one per domain (the model keeps one for all size
 *   classes): depot pushes and pops;
 * - `fq-lock`: the flush queue's lock, one per CPU and domain (one per domain with a single
 *   queue): queueing and reclaiming IOVAs;
 * - `swiotlb-area-lock`: one per SWIOTLB area; Linux sizes the areas to the CPUs, rounded up to a
 *   power of two (`swiotlb_adjust_nareas`; at most one per memory block of the pool here, as the
 *   pool's `nareas`), and a CPU starts in area `cpu & (nareas - 1)`;
 * - `nvme-sq-lock`: `nvmeq->sq_lock`, one per submission queue: contended when CPUs share a queue
 *   (`controller.ioQueues` below `machine.cpus`).
 *
 * Statistics are kept per instance and reported per kind, as lock_stat reports per lock class:
 * acquisitions, contended acquisitions, utilisation, wait per I/O and the longest wait.
 *
 * An instance only one timeline can ever take (a CPU's own flush-queue lock, the lock of a queue
 * no other CPU submits to, everything on a one-CPU machine) is `exclusive`: nobody can hold it
 * when that timeline arrives, so its acquisitions need not wait for the other timelines' events
 * and the scheduler takes them at once (see `Timelines`). Their statistics are the same, except
 * that an acquisition just after the ramp's end or the window's close may be counted on the
 * other side of it.
 */
import type { ResourceKind } from "./cost.ts";
import type { Job } from "./job.ts";
import { swiotlbNareas } from "@dmasim/dma-core";
import { ioQueuesOf, queueOfCpu } from "./machine.ts";

/** One instance of a shared resource. */
export class Resource {
  readonly name: string;
  readonly kind: ResourceKind;
  /** Only one timeline ever takes it (it is never contended). */
  readonly exclusive: boolean;
  /** When the holder releases it. */
  freeAt = 0;
  acquisitions = 0;
  contended = 0;
  holdNs = 0;
  waitNs = 0;
  maxWaitNs = 0;

  constructor(kind: ResourceKind, name: string, exclusive = false) {
    this.kind = kind;
    this.name = name;
    this.exclusive = exclusive;
  }

  /**
   * `count` back-to-back acquisitions arriving at `arrival`, each held `holdNs`: returns when the
   * last is released (the caller is busy until then).
   */
  acquire(arrival: number, count: number, holdNs: number): number {
    const start = arrival > this.freeAt ? arrival : this.freeAt;
    const wait = start - arrival;
    this.acquisitions += count;
    if (wait > 0) {
      // The back-to-back acquisitions of one piece of work all waited behind the holder.
      this.contended += count;
      this.waitNs += wait;
      if (wait > this.maxWaitNs) this.maxWaitNs = wait;
    }
    const hold = count * holdNs;
    this.holdNs += hold;
    this.freeAt = start + hold;
    return this.freeAt;
  }

  /** Forgets the statistics (the end of a ramp), keeping the current holder. */
  resetStats(): void {
    this.acquisitions = 0;
    this.contended = 0;
    this.holdNs = 0;
    this.waitNs = 0;
    this.maxWaitNs = 0;
  }
}

/** What a run reports for one kind of resource. */
export interface ResourceReport {
  /** The kind, spelled as the cost table spells it. */
  readonly name: ResourceKind;
  /** What it stands for in Linux. */
  readonly description: string;
  readonly instances: number;
  readonly acquisitions: number;
  /** Acquisitions that had to wait. */
  readonly contended: number;
  /** Of the busiest instance: held time over the measured time (0..1). */
  readonly utilisation: number;
  /** The busiest instance. */
  readonly busiest: string;
  readonly waitNsPerIo: number;
  readonly holdNsPerIo: number;
  readonly maxWaitNs: number;
}

const DESCRIPTIONS: Readonly<Record<ResourceKind, string>> = {
  "iommu-invalidation-queue":
    "the IOMMU's invalidation/command queue (qi_submit_sync, CMD_SYNC): one per IOMMU unit",
  "iova-tree-lock": "iova_rbtree_lock: one per DMA domain",
  "rcache-depot-lock": "the IOVA rcache depot lock: one per DMA domain",
  "fq-lock": "the flush queue's fq->lock: one per CPU and domain",
  "swiotlb-area-lock": "a SWIOTLB area lock: one per area",
  "nvme-sq-lock": "nvmeq->sq_lock: one per NVMe submission queue",
};

/** Every shared resource of a machine, indexed for the engine's hot path. */
export class ResourceSet {
  readonly invalidationQueue: Resource;
  private readonly tree: Resource[] = [];
  private readonly depot: Resource[] = [];
  /** [unit][ring] */
  private readonly fq: Resource[][] = [];
  private readonly swiotlb: Resource[] = [];
  /** [unit][qid - 1] */
  private readonly sq: Resource[][] = [];
  private readonly singleFq: boolean;
  private readonly nareas: number;
  private readonly all: Resource[] = [];

  /**
   * The resources of `job`'s machine, taken by `timelinesPerCpu` timelines on each CPU (one in a
   * workload run; map-bench may put several threads on one CPU).
   */
  constructor(job: Job, timelinesPerCpu = 1) {
    /** An instance `cpus` CPUs take. */
    const add = (kind: ResourceKind, name: string, cpus: number): Resource => {
      const r = new Resource(kind, name, cpus * timelinesPerCpu === 1);
      this.all.push(r);
      return r;
    };
    const cpus = job.machine.cpus;
    this.invalidationQueue = add("iommu-invalidation-queue", "IOMMU invalidation queue", cpus);
    this.singleFq = job.iommu.singleQueue;
    this.nareas =
      job.device.swiotlbMiB > 0
        ? swiotlbNareas(job.device.swiotlbMiB * 1024 * 1024, job.machine.pageSize, cpus)
        : 1;
    const queues = ioQueuesOf(job);
    const onQueue = new Array<number>(queues + 1).fill(0);
    for (let c = 0; c < cpus; c++) {
      const q = queueOfCpu(job, c);
      onQueue[q] = (onQueue[q] as number) + 1;
    }
    for (let u = 0; u < job.machine.controllers; u++) {
      this.tree.push(add("iova-tree-lock", `nvme${u} IOVA tree lock`, cpus));
      this.depot.push(add("rcache-depot-lock", `nvme${u} rcache depot lock`, cpus));
      const rings: Resource[] = [];
      if (this.singleFq) rings.push(add("fq-lock", `nvme${u} flush-queue lock`, cpus));
      else
        for (let c = 0; c < cpus; c++)
          rings.push(add("fq-lock", `nvme${u} flush-queue lock (CPU ${c})`, 1));
      this.fq.push(rings);
      const sqs: Resource[] = [];
      for (let q = 1; q <= queues; q++)
        sqs.push(add("nvme-sq-lock", `nvme${u} SQ ${q} lock`, onQueue[q] as number));
      this.sq.push(sqs);
    }
    // A CPU takes area `cpu % nareas` (the pool's areas: the CPUs rounded up to a power of two,
    // at most one per memory block of the pool), so a small pool's areas are shared.
    if (job.device.swiotlbMiB > 0)
      for (let a = 0; a < this.nareas; a++)
        this.swiotlb.push(
          add("swiotlb-area-lock", `SWIOTLB area ${a} lock`, Math.ceil((cpus - a) / this.nareas)),
        );
  }

  /** The instance of `kind` that work of controller `unit` on `cpu` through queue `qid` uses. */
  instance(kind: ResourceKind, unit: number, cpu: number, qid: number): Resource {
    switch (kind) {
      case "iommu-invalidation-queue":
        return this.invalidationQueue;
      case "iova-tree-lock":
        return this.tree[unit] as Resource;
      case "rcache-depot-lock":
        return this.depot[unit] as Resource;
      case "fq-lock":
        return (this.fq[unit] as Resource[])[this.singleFq ? 0 : cpu] as Resource;
      case "swiotlb-area-lock":
        // Without a SWIOTLB pool nothing bounces; the area is never asked for.
        return this.swiotlb[cpu % this.nareas] ?? this.invalidationQueue;
      case "nvme-sq-lock":
        return (this.sq[unit] as Resource[])[Math.max(0, qid - 1)] as Resource;
    }
  }

  /** Every instance. */
  instances(): readonly Resource[] {
    return this.all;
  }

  /** Forgets every instance's statistics (the end of a ramp). */
  resetStats(): void {
    for (const r of this.all) r.resetStats();
  }

  /** The report per kind over `measuredNs` of simulated time and `ios` measured I/Os. */
  report(measuredNs: number, ios: number): ResourceReport[] {
    const out: ResourceReport[] = [];
    const kinds = [...new Set(this.all.map((r) => r.kind))];
    for (const kind of kinds) {
      const list = this.all.filter((r) => r.kind === kind);
      let busiest = list[0] as Resource;
      for (const r of list) if (r.holdNs > busiest.holdNs) busiest = r;
      const sum = (f: (r: Resource) => number) => list.reduce((a, r) => a + f(r), 0);
      out.push({
        name: kind,
        description: DESCRIPTIONS[kind],
        instances: list.length,
        acquisitions: sum((r) => r.acquisitions),
        contended: sum((r) => r.contended),
        utilisation: measuredNs > 0 ? Math.min(1, busiest.holdNs / measuredNs) : 0,
        busiest: busiest.name,
        waitNsPerIo: ios > 0 ? sum((r) => r.waitNs) / ios : 0,
        holdNsPerIo: ios > 0 ? sum((r) => r.holdNs) / ios : 0,
        maxWaitNs: Math.max(0, ...list.map((r) => r.maxWaitNs)),
      });
    }
    return out;
  }
}
