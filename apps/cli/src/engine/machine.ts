/**
 * Builds the simulated machine a job describes: memory, clock, IOMMU domain, the NVMe PCI
 * function (its DMA device), SWIOTLB, the controller and the host driver.
 */
import { type CounterSet, PhysMemory, SimClock } from "@dmasim/bvec";
import { Device, DmaDebug, Swiotlb } from "@dmasim/dma-core";
import { IOMMU_DOMAIN, IommuDomain, Iotlb } from "@dmasim/iommu";
import { NvmeController, NvmeHost } from "@dmasim/nvme";
import type { CounterRef } from "./cost.ts";
import type { Job } from "./job.ts";

/** Everything a run needs. */
export interface Machine {
  readonly job: Job;
  readonly clock: SimClock;
  readonly memory: PhysMemory;
  readonly domain: IommuDomain | null;
  readonly dev: Device;
  readonly swiotlb: Swiotlb | null;
  readonly ctrl: NvmeController;
  readonly host: NvmeHost;
  readonly debug: DmaDebug | null;
  /** Engine-side counters (events the packages do not count themselves). */
  readonly engine: { sgEntries: number; ios: number };
}

/** Options beyond the job. */
export interface MachineOptions {
  /** Attach dma-debug (slower; catches driver bugs). */
  readonly debug?: boolean;
  /** The per-command device time model. */
  readonly serviceTimeNs?: (opcode: number, bytes: number, qid: number) => number;
}

/** The IOMMU mode a job's device really gets: untrusted devices are forced to strict. */
export function effectiveIommuMode(job: Job): Job["iommu"]["mode"] {
  const mode = job.iommu.mode;
  return !job.device.trusted && (mode === "passthrough" || mode === "lazy") ? "strict" : mode;
}

/** Builds and brings up the machine of `job`. */
export function buildMachine(job: Job, options: MachineOptions = {}): Machine {
  const clock = new SimClock();
  const memory = new PhysMemory({
    ramBytes:
      Math.round((job.machine.memoryGiB * 1024 ** 3) / job.machine.pageSize) * job.machine.pageSize,
    pageSize: job.machine.pageSize,
  });
  // Linux gives an untrusted (external-facing) PCI device a strict DMA domain whatever the
  // default domain type is (iommu_get_default_domain_type): no passthrough, no flush queue.
  const mode = effectiveIommuMode(job);
  const domain =
    mode === "none"
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
          pgtable: {
            granule: job.iommu.granule,
            ias: job.iommu.addressBits,
            oas: job.iommu.granule === 65536 ? 52 : 48,
            freeEmptyTables: job.iommu.freeEmptyTables,
          },
          iotlb: new Iotlb({
            entries: job.iommu.iotlbEntries,
            ways: Math.min(job.iommu.iotlbWays, job.iommu.iotlbEntries),
          }),
          needsSyncMap: job.iommu.syncMapNeeded,
        });
  const swiotlb =
    job.device.swiotlbMiB > 0
      ? new Swiotlb(memory, { size: job.device.swiotlbMiB * 1024 * 1024 })
      : null;
  const debug = options.debug ? new DmaDebug() : null;
  const dev = new Device({
    name: "nvme0",
    memory,
    dmaMaskBits: job.device.dmaMaskBits,
    coherent: job.device.coherent,
    untrusted: !job.device.trusted,
    // "per-segment": the new driver with the IOVA API unusable, so each segment is mapped alone.
    iovaApi: job.host.mapping !== "per-segment",
    iommu: domain,
    iommuDma: { numCpus: job.machine.cpus, singleQueue: job.iommu.singleQueue },
    swiotlb,
    clock,
    debug,
  });
  const ctrl = new NvmeController({
    dev,
    clock,
    sgl: job.controller.sgl,
    mdts: job.controller.mdts,
    maxQueueEntries: job.controller.queueDepth,
    maxIoQueues: job.machine.cpus,
    namespaces: [
      {
        lbaSize: job.controller.lbaSize,
        blocks: Math.floor((job.controller.namespaceGiB * 1024 ** 3) / job.controller.lbaSize),
      },
    ],
    ...(options.serviceTimeNs ? { serviceTimeNs: options.serviceTimeNs } : {}),
  });
  const host = new NvmeHost({
    dev,
    ctrl,
    mapping: job.host.mapping === "scatterlist" ? "old" : "new",
    sglThreshold: job.host.sglThresholdKiB * 1024,
    ioQueues: job.machine.cpus,
    queueDepth: job.controller.queueDepth,
  });
  host.enable();
  // The dma_mask the job asks for applies after the driver's probe set 64 bits.
  dev.setMaskBits(job.device.dmaMaskBits);
  return {
    job,
    clock,
    memory,
    domain,
    dev,
    swiotlb,
    ctrl,
    host,
    debug,
    engine: { sgEntries: 0, ios: 0 },
  };
}

/** Every counter set of the machine, under the names the cost table uses. */
export function counterSources(m: Machine): Map<string, CounterSet<string>> {
  const out = new Map<string, CounterSet<string>>();
  out.set("memory", m.memory.counters);
  out.set("dma", m.dev.counters);
  out.set("devdma", m.ctrl.dma.counters);
  out.set("nvmehost", m.host.counters);
  out.set("nvmectrl", m.ctrl.counters);
  out.set("pool.small", m.host.small.counters);
  out.set("pool.large", m.host.large.counters);
  out.set("mempool.vec", m.host.vecPool.counters);
  out.set("mempool.sg", m.host.sgPool.counters);
  if (m.swiotlb) out.set("swiotlb", m.swiotlb.counters);
  if (m.domain) {
    out.set("domain", m.domain.counters);
    out.set("iotlb", m.domain.iotlb.counters);
    if (m.domain.pgtable) out.set("pgtable", m.domain.pgtable.counters);
  }
  const cookie = m.dev.cookie;
  if (cookie) {
    out.set("iova", cookie.iovad.counters);
    if (cookie.fq) out.set("fq", cookie.fq.counters);
  }
  return out;
}

/** Where `scope.name` (engine counters included) is read, or undefined when absent. */
export function counterRef(
  m: Machine,
  sources: Map<string, CounterSet<string>>,
  name: string,
): CounterRef | undefined {
  if (name === "engine.sgEntries" || name === "engine.ios")
    return { target: m.engine, key: name.slice(7) };
  const dot = name.lastIndexOf(".");
  const set = sources.get(name.slice(0, dot));
  const key = name.slice(dot + 1);
  if (set === undefined || !set.names.includes(key)) return undefined;
  return { target: set.c, key };
}

/** A getter for `scope.name` (engine counters included), or undefined when absent. */
export function counterGetter(
  m: Machine,
  sources: Map<string, CounterSet<string>>,
  name: string,
): (() => number) | undefined {
  const ref = counterRef(m, sources, name);
  if (ref === undefined) return undefined;
  const { target, key } = ref;
  return () => target[key] ?? 0;
}

/** A flat snapshot of every counter. */
export function snapshotCounters(
  m: Machine,
  sources: Map<string, CounterSet<string>>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [scope, set] of sources)
    for (const n of set.names) out[`${scope}.${n}`] = set.c[n] ?? 0;
  out["engine.sgEntries"] = m.engine.sgEntries;
  return out;
}
