/** The block layer's request mapper on a one-page request (strict IOMMU, dma-debug off). */
import { bioFromBvecs, blkRqFromBios, bvecFromPhys, queueLimits } from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import {
  DMA_TO_DEVICE,
  DmaIovaState,
  blkDmaIter,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaMapPhys,
} from "../src/index.ts";
import { machine } from "../src/testing/index.ts";

const OPS = 1000;
const { memory, dev } = machine("strict", {
  debug: false,
  dev: { name: "bench-rq", minAlignMask: 0 },
});
const phys = memory.allocPages(0) * 4096;
const req = blkRqFromBios(queueLimits({ dmaAlignment: 3 }), [
  bioFromBvecs("read", 0, [bvecFromPhys(phys, 4096)]),
]);
// A buffer that stays mapped keeps the page-table levels allocated (see map-phys.bench.ts).
dmaMapPhys(dev, memory.allocPages(0) * 4096, 4096, DMA_TO_DEVICE);
const state = new DmaIovaState();
const iter = blkDmaIter();

export default defineBenchmarks([
  {
    name: "request-map/4k",
    ops: OPS,
    note: "blkRqDmaMapIterStart (IOVA path: try-alloc, link, sync) + blkRqDmaUnmap (destroy), strict IOMMU",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        if (!blkRqDmaMapIterStart(req, dev, state, iter)) throw new Error("map failed");
        blkRqDmaUnmap(req, dev, state, 4096, iter.p2p);
      }
    },
  },
]);
