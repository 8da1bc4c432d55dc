import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { Iotlb } from "../src/index.ts";

const OPS = 1000;
const tlb = new Iotlb();
const base = 2 ** 40;
for (let i = 0; i < 128; i++) tlb.fill(1, base + i * 0x1000, 0x1000, 2 ** 35 + i * 0x1000, 3);
let sink = 0;

export default defineBenchmarks([
  {
    name: "iotlb/lookup/hit",
    ops: OPS,
    note: "IOTLB lookup that hits (256 entries, 4 ways, 4K entries)",
    fn: () => {
      for (let i = 0; i < OPS; i++) sink += tlb.lookup(1, base + (i % 128) * 0x1000 + 8);
      if (sink === -1) throw new Error("unreachable");
    },
  },
]);
