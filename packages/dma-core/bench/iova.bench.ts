/**
 * The two-step IOVA API against the scatterlist path on the same 128 KiB request of 32
 * scattered 4 KiB pages (strict IOMMU, dma-debug off).
 */
import { bioFromBvecs, blkRqFromBios, bvecFromPhys, queueLimits } from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import {
  DMA_TO_DEVICE,
  DmaIovaState,
  SgTable,
  blkRqMapSg,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMapSgtable,
  dmaUnmapSgtable,
} from "../src/index.ts";
import { machine } from "../src/testing/index.ts";

const OPS = 50;
const SEGS = 32;
const { memory, dev } = machine("strict", {
  debug: false,
  dev: { name: "bench-iova", minAlignMask: 0 },
});
const pages = memory.allocScattered(SEGS, 7).map((p) => p * 4096);
const req = blkRqFromBios(queueLimits({ maxSegments: 128, maxHwSectors: 2048 }), [
  bioFromBvecs(
    "write",
    0,
    pages.map((p) => bvecFromPhys(p, 4096)),
  ),
]);
// A buffer that stays mapped keeps the page-table levels of the IOVA region allocated (see
// map-phys.bench.ts).
dmaMapPhys(dev, memory.allocPages(0) * 4096, 4096, DMA_TO_DEVICE);
const sgt = new SgTable(SEGS);
const state = new DmaIovaState();
const TOTAL = SEGS * 4096;

export default defineBenchmarks([
  {
    name: "map-sg/128k-32seg",
    ops: OPS,
    note: "blkRqMapSg + dmaMapSgtable (one IOVA, 32 maps, one sync, merged to 2 segments) + dmaUnmapSgtable",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        blkRqMapSg(req, sgt);
        dmaMapSgtable(dev, sgt, DMA_TO_DEVICE);
        dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE);
      }
    },
  },
  {
    name: "iova-two-step/128k-32seg",
    ops: OPS,
    baseline: "map-sg/128k-32seg",
    note: "dmaIovaTryAlloc + 32 dmaIovaLink + one dmaIovaSync + dmaIovaDestroy on the same pages",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        dmaIovaTryAlloc(dev, state, 0, TOTAL);
        for (let s = 0; s < SEGS; s++)
          dmaIovaLink(dev, state, pages[s] as number, s * 4096, 4096, DMA_TO_DEVICE);
        dmaIovaSync(dev, state, 0, TOTAL);
        dmaIovaDestroy(dev, state, TOTAL, DMA_TO_DEVICE);
      }
    },
  },
]);
