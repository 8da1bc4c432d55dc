import { Rng } from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { IovaDomain } from "../src/index.ts";

const OPS = 1000;
const LIMIT = 2 ** 48 / 4096 - 1;

const hot = new IovaDomain({ granule: 4096, startPfn: 1, numCpus: 4 });
// Warm the rcache: one cached range of each size class used.
hot.freeIovaFast(hot.allocIovaFast(1, LIMIT, true, 0), 1, 0);

// 100 000 live ranges of mixed sizes, with holes, before measuring the tree path.
const big = new IovaDomain({ granule: 4096, startPfn: 1, numCpus: 4 });
const rng = new Rng(42);
const live: number[] = [];
for (let i = 0; i < 130_000; i++) {
  const p = big.allocIova(1 + rng.below(64), LIMIT);
  if (p !== undefined) live.push(p.pfnLo);
}
rng.shuffle(live);
while (live.length > 100_000) big.freeIova(live.pop()!);

export default defineBenchmarks([
  {
    name: "iova/alloc+free/rcache-hit",
    ops: OPS,
    targetNs: 40,
    note: "alloc_iova_fast + free_iova_fast of 1 page served by the per-CPU magazine",
    fn: () => {
      for (let i = 0; i < OPS; i++) hot.freeIovaFast(hot.allocIovaFast(1, LIMIT, true, 0), 1, 0);
    },
  },
  {
    name: "iova/alloc+free/tree/100k-live",
    ops: OPS,
    targetNs: 2000,
    note: "alloc_iova + free_iova (top-down from the cached node) with 100 000 live ranges",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        const r = big.allocIova(1 + (i % 48), LIMIT);
        if (r !== undefined) big.freeIova(r.pfnLo);
      }
    },
  },
]);
