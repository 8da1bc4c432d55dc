/**
 * bvec benchmarks: bvecPhys, physical-segment iteration, and memory copies beside a plain
 * Uint8Array.set of the same size (the ratio is the figure that matters).
 */
import {
  PhysMemory,
  bioFromBvecs,
  blkMapIterNext,
  blkRqFromBios,
  blkRqMapIterInit,
  bvec,
  bvecPhys,
  queueLimits,
} from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";

const P32 = 2 ** 32;
const mem = new PhysMemory({ ramBytes: 16 * 1024 ** 3 });

// bvecPhys over a table of bvecs above 4 GiB.
const table = Array.from({ length: 1024 }, (_, i) =>
  bvec(P32 / 4096 + 3 * i, (i * 512) % 4096, 512),
);
let sink = 0;

// A 256-bvec request of scattered pages (every other bvec contiguous with the previous one,
// so both the merge and the no-merge branch run).
const lim = queueLimits({
  maxSegments: 256,
  maxHwSectors: 4096,
  maxSegmentSize: 0xffffffff,
  dmaAlignment: 3,
});
const bvs = [] as ReturnType<typeof bvec>[];
for (let i = 0; i < 256; i++) bvs.push(bvec(P32 / 4096 + 4 * i + (i % 2 === 1 ? -3 : 0), 0, 4096));
const req = blkRqFromBios(lim, [bioFromBvecs("read", 0, bvs)]);
const iter = blkRqMapIterInit(req);
const vec = { paddr: 0, len: 0 };

function copyCase(size: number) {
  const src = new Uint8Array(size).map((_, i) => i % 251);
  const dst = new Uint8Array(size);
  const at = P32 + 0x10000;
  mem.write(at, src);
  return {
    write: () => mem.write(at, src),
    read: () => mem.read(at, dst),
    plain: () => dst.set(src),
  };
}
const c4k = copyCase(4096);
const c128k = copyCase(128 * 1024);

export default defineBenchmarks([
  {
    name: "bvec/bvecPhys/1",
    ops: 1024,
    fn: () => {
      let s = 0;
      for (let i = 0; i < 1024; i++) s += bvecPhys(table[i]!);
      sink += s;
    },
  },
  {
    name: "segments/iterate-per-bvec/256-bvec",
    ops: 256,
    targetNs: 50,
    note: "blkMapIterNext over a 256-bvec request, per bvec",
    fn: () => {
      blkRqMapIterInit(req, iter);
      while (blkMapIterNext(req, iter, vec)) sink += vec.len;
    },
  },
  { name: "memcpy/plain-set/4k", fn: c4k.plain, ops: 1 },
  { name: "memory/write/4k", fn: c4k.write, baseline: "memcpy/plain-set/4k" },
  { name: "memory/read/4k", fn: c4k.read, baseline: "memcpy/plain-set/4k" },
  { name: "memcpy/plain-set/128k", fn: c128k.plain },
  {
    name: "memory/write/128k",
    fn: c128k.write,
    baseline: "memcpy/plain-set/128k",
    note: "target: within 2x of the plain copy",
  },
  {
    name: "memory/read/128k",
    fn: c128k.read,
    baseline: "memcpy/plain-set/128k",
    note: "target: within 2x of the plain copy",
  },
]);

export { sink };
