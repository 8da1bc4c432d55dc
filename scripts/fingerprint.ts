/**
 * Behaviour fingerprint for refactors: runs a fixed set of jobs through the engine and prints,
 * per job, a hash of its JSON result (the simulator's own speed left out) and a hash of every
 * materialised page of simulated memory at the end of the run. A change that only moves code
 * must leave every line identical.
 *
 *   node_modules/.bin/tsx --conditions=@dmasim/source scripts/fingerprint.ts > before.txt
 *   ... refactor ...
 *   node_modules/.bin/tsx --conditions=@dmasim/source scripts/fingerprint.ts | diff before.txt -
 */
import { createHash } from "node:crypto";
import { parseJob, runJob, type Machine } from "../apps/cli/src/engine/index.ts";

const jobs: Record<string, unknown> = {
  default: {},
  strict: { iommu: { mode: "strict" } },
  none: { iommu: { mode: "none" } },
  passthrough: { iommu: { mode: "passthrough" } },
  scatterlist: { host: { mapping: "scatterlist" }, controller: { sgl: "none" } },
  "per-segment": { host: { mapping: "per-segment" } },
  "sgl-byte-mixed": {
    controller: { sgl: "byte" },
    workload: {
      rw: "randrw",
      bs: [
        { bs: "4k", weight: 3 },
        { bs: "128k", weight: 1 },
      ],
    },
  },
  "scattered-64k-granule": {
    iommu: { granule: 65536 },
    machine: { pageSize: 65536 },
    workload: { buffers: "scattered", bs: "64k" },
  },
  "offset-untrusted": {
    device: { trusted: false },
    workload: { buffers: "offset", bs: { min: "4k", max: "32k" } },
  },
  "32-bit-direct": { iommu: { mode: "none" }, device: { dmaMaskBits: 32 } },
  "cpus-4-two-controllers": {
    machine: { cpus: 4, controllers: 2 },
    workload: { rw: "randwrite", iodepth: 8 },
  },
  "shared-queue-poll": {
    machine: { cpus: 4 },
    controller: { ioQueues: 2 },
    host: { completion: "poll" },
  },
  "kernel-6.17": { kernel: "6.17", controller: { sgl: "dword" } },
  "kernel-6.19-hugepage": {
    kernel: "6.19",
    controller: { sgl: "byte", mdts: 5 },
    workload: { buffers: "hugepage", bs: "1m", iodepth: 2 },
  },
  "small-namespace-write-read": {
    controller: { namespaceGiB: 1 / 1024, lbaSize: 4096 },
    workload: { rw: "randrw", bs: "16k" },
  },
};

/** Hash of every materialised page (pfn and bytes), region by region. */
function memoryHash(m: Machine): string {
  const h = createHash("sha256");
  const page = m.memory.pageSize;
  for (const r of m.memory.regions) {
    const first = Math.floor(r.start / page);
    const end = Math.floor((r.start + r.size) / page);
    for (let pfn = first; pfn < end; pfn++) {
      if (!m.memory.isMaterialized(pfn)) continue;
      const bytes = m.memory.pageBytes(pfn);
      if (bytes.every((b) => b === 0)) continue;
      h.update(String(pfn));
      h.update(bytes);
    }
  }
  return h.digest("hex").slice(0, 16);
}

for (const [name, input] of Object.entries(jobs)) {
  const base = { workload: { ios: 600 } };
  const merged = {
    ...base,
    ...(input as object),
    workload: { ...base.workload, ...((input as { workload?: object }).workload ?? {}) },
  };
  let machine: Machine | undefined;
  const r = runJob(parseJob(merged), {
    now: () => 0,
    setup: (m) => {
      machine = m;
    },
  });
  const json = JSON.stringify({ ...r, simulator: null });
  const jsonHash = createHash("sha256").update(json).digest("hex").slice(0, 16);
  const mem = machine === undefined ? "-" : memoryHash(machine);
  console.log(`${name.padEnd(28)} result ${jsonHash}  memory ${mem}  ios ${r.ios}`);
}
