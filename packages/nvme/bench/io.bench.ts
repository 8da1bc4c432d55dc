/**
 * NVMe benchmarks. `io/*` are whole I/Os end to end on one queue: map the request, build the
 * command and its PRPs, ring the doorbell, the controller fetches the command, walks the PRPs
 * through the IOMMU and copies the payload, posts the completion; the host polls, unmaps and
 * completes. The IOMMU is in lazy mode (the clock is advanced every batch so the flush queue
 * drains on its timer); dma-debug is off; the controller is PRP-only (SGLS 0). Reads into
 * fragmented pages above 4 GiB. `prp/build/2m` is the builder alone (map + PRP list + unmap) for
 * 512 scattered pages without an IOMMU. `memcpy/plain-set/128k` is the payload baseline.
 */
import {
  type BlkStatus,
  PhysMemory,
  REQ_OP,
  type Request,
  bioFromBvecs,
  blkRqFromBios,
  bvecFromPhys,
  queueLimits,
} from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import {
  type MappingStyle,
  NvmeIod,
  NvmeNamespace,
  nvmeMapData,
  nvmeUnmapData,
} from "../src/index.ts";
import { GiB, Rig } from "../src/testing/index.ts";

const BATCH = 64;

/** The benchmark machine: dma-debug off, a PRP-only controller, lazy IOMMU or none. */
function rig(mapping: MappingStyle, lazy: boolean): Rig {
  return new Rig({ mode: lazy ? "lazy" : "none", mapping, sgl: "none", debug: false });
}

function readCase(mapping: MappingStyle, pages: number, contiguous = false) {
  const m = rig(mapping, true);
  const buf = contiguous
    ? [bvecFromPhys(m.memory.allocPages(Math.ceil(Math.log2(pages))) * 4096, pages * 4096)]
    : m.memory.allocScattered(pages, 7).map((p) => bvecFromPhys(p * 4096, 4096));
  // Some data on the namespace, so reads copy real bytes.
  const src = m.memory.allocScattered(pages, 8).map((p) => bvecFromPhys(p * 4096, 4096));
  for (const b of src) m.memory.fill(b.page * 4096, 4096, 0x5a);
  const w = blkRqFromBios(m.host.limits, [bioFromBvecs(REQ_OP.WRITE, 0, src)]);
  let last: BlkStatus = 0;
  const cb = (st: BlkStatus) => {
    last = st;
  };
  m.host.queueRq(w, cb);
  m.host.drain();
  const req: Request = blkRqFromBios(m.host.limits, [bioFromBvecs(REQ_OP.READ, 0, buf)]);
  return () => {
    for (let i = 0; i < BATCH; i++) {
      m.host.queueRq(req, cb);
      m.host.pollCq();
    }
    m.clock.advance(BATCH * 2000);
    if (last !== 0) throw new Error(`I/O failed with block status ${last}`);
  };
}

function prpBuildCase() {
  const m = rig("two-step", false);
  const lim = queueLimits({
    maxHwSectors: 4096,
    maxSegments: 512,
    maxSegmentSize: 0xffffffff,
    virtBoundaryMask: 4095,
    dmaAlignment: 3,
  });
  const bv = m.memory.allocScattered(512, 9).map((p) => bvecFromPhys(p * 4096, 4096));
  const req = blkRqFromBios(lim, [bioFromBvecs(REQ_OP.READ, 0, bv)]);
  const iod = new NvmeIod(1, 0);
  const ctx = m.mapContext();
  return () => {
    iod.resetForSubmit();
    if (nvmeMapData(ctx, iod, req) !== 0) throw new Error("prp build failed");
    nvmeUnmapData(ctx, iod, req);
  };
}

/**
 * The payload alone: the 32 namespace-to-memory page copies a 128 KiB read into the same
 * scattered pages makes (`PhysMemory.writeFrom` from the namespace), with no command, mapping,
 * translation or completion. The floor under `io/128k-read/*`.
 */
function payloadCase() {
  const memory = new PhysMemory({ ramBytes: 16 * GiB });
  const pages = memory.allocScattered(32, 7);
  const ns = new NvmeNamespace(1, { blocks: 2048 });
  ns.write(0, new Uint8Array(128 * 1024).fill(0x5a), 0, 128 * 1024);
  return () => {
    for (let i = 0; i < pages.length; i++)
      memory.writeFrom((pages[i] as number) * 4096, ns, i * 4096, 4096);
  };
}

/**
 * A plain copy into scattered pages, without the simulator: 128 KiB from one buffer into 32
 * separate 64 KiB host buffers, 4 KiB each at a page offset, through ready-made views (no
 * lookup, no allocation). What the host's memory layout alone costs over `memcpy/plain-set/128k`.
 */
function scatteredSetCase() {
  const src = new Uint8Array(128 * 1024).fill(0x5a);
  const views = Array.from({ length: 32 }, (_, i) => src.subarray(i * 4096, (i + 1) * 4096));
  const dst = Array.from({ length: 32 }, () => new Uint8Array(65536));
  const offs = Array.from({ length: 32 }, (_, i) => ((i * 7) % 16) * 4096);
  return () => {
    for (let i = 0; i < 32; i++) (dst[i] as Uint8Array).set(views[i] as Uint8Array, offs[i]);
  };
}

const src128 = new Uint8Array(128 * 1024).map((_, i) => i % 251);
const dst128 = new Uint8Array(128 * 1024);

export default defineBenchmarks([
  {
    name: "memcpy/plain-set/128k",
    note: "Uint8Array.set of 128 KiB: the payload baseline",
    fn: () => dst128.set(src128),
  },
  {
    name: "memcpy/scattered-set/128k",
    baseline: "memcpy/plain-set/128k",
    note: "32 plain 4 KiB set calls into 32 separate host buffers: the host memory layout alone",
    fn: scatteredSetCase(),
  },
  {
    name: "payload/128k-scattered",
    baseline: "memcpy/plain-set/128k",
    note: "the payload copies of a 128 KiB read alone: 32 namespace-to-memory 4 KiB copies into scattered pages",
    fn: payloadCase(),
  },
  {
    name: "io/4k-read/lazy/new",
    ops: BATCH,
    targetNs: 3333,
    note: "one 4 KiB read end to end, two-step mapping (single-segment path)",
    fn: readCase("two-step", 1),
  },
  {
    name: "io/4k-read/lazy/old",
    ops: BATCH,
    note: "one 4 KiB read end to end, scatterlist-era driver (single-segment path)",
    fn: readCase("scatterlist", 1),
  },
  {
    name: "io/128k-read/lazy/new",
    ops: BATCH,
    baseline: "memcpy/plain-set/128k",
    note: "32 scattered pages: one IOVA range (link x32, one sync), PRP list of 31; target: ratio <= 2",
    fn: readCase("two-step", 32),
  },
  {
    name: "io/128k-read/lazy/old",
    ops: BATCH,
    baseline: "memcpy/plain-set/128k",
    note: "32 scattered pages: scatterlist from the mempool, dma_map_sg, PRP list of 31",
    fn: readCase("scatterlist", 32),
  },
  {
    name: "io/128k-read/lazy/new/contiguous",
    ops: BATCH,
    baseline: "memcpy/plain-set/128k",
    note: "one physically contiguous 128 KiB buffer (fio's default layout): one link of 32 pages, PRP list of 31",
    fn: readCase("two-step", 32, true),
  },
  {
    name: "prp/build/2m",
    note: "nvmeMapData + nvmeUnmapData, 512 scattered 4 KiB pages, no IOMMU: PRP list of 511",
    fn: prpBuildCase(),
  },
]);
