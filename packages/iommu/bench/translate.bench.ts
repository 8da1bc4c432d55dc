import { PhysMemory } from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import {
  DMA_ACCESS,
  IOMMU_DOMAIN,
  IOMMU_PROT,
  IommuDomain,
  TranslationBuffer,
  translateInto,
} from "../src/index.ts";

const OPS = 1000;
const PAGES = 8192; // far more pages than the 256-entry IOTLB holds: every access misses
const domain = new IommuDomain({
  type: IOMMU_DOMAIN.DMA,
  mem: new PhysMemory({ ramBytes: 8 * 1024 ** 3 }),
});
const base = 2 ** 46;
for (let i = 0; i < PAGES; i++)
  domain.map(
    base + i * 0x1000,
    2 ** 36 + ((i * 7919) % PAGES) * 0x1000,
    0x1000,
    IOMMU_PROT.READ + IOMMU_PROT.WRITE,
  );
const out = new TranslationBuffer();
let next = 0;

export default defineBenchmarks([
  {
    name: "translate/4k/miss",
    ops: OPS,
    note: "device translation of 4 KiB: IOTLB miss, 4-level walk from memory, fill",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        next = (next + 257) % PAGES;
        if (!translateInto(domain, base + next * 0x1000, 0x1000, DMA_ACCESS.READ, out))
          throw new Error("fault");
      }
    },
  },
]);
