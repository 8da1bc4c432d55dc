import { PhysMemory } from "@dmasim/bvec";
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { IOMMU_PROT, IoPageTable, iommuMapRaw, iommuUnmapRaw } from "../src/index.ts";
import { formatCases } from "./pagetable-cases.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;
const OPS = 1000;

// 4K: a keeper page keeps the leaf table (and the tables above it) alive: warm tables.
const mem4k = new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
const pt4k = new IoPageTable(mem4k);
const base4k = 2 ** 47 - 0x200000;
pt4k.map(base4k, 2 ** 40, 0x1000, RW);

// 2M: a keeper block keeps the level-2 table alive.
const mem2m = new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
const pt2m = new IoPageTable(mem2m);
const base2m = 2 ** 40;
pt2m.map(base2m, 2 ** 40, 0x200000, RW);

export default defineBenchmarks([
  {
    name: "pagetable/map+unmap/4k",
    ops: OPS,
    targetNs: 150,
    note: "__iommu_map + __iommu_unmap (iommuMapRaw / iommuUnmapRaw, as IommuDomain calls them) of one 4 KiB page, warm tables (arm-lpae, 48-bit, 4 levels)",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        const iova = base4k + (1 + (i % 500)) * 0x1000;
        iommuMapRaw(pt4k, iova, 2 ** 41 + (iova % 2 ** 30), 0x1000, RW);
        iommuUnmapRaw(pt4k, iova, 0x1000, undefined);
      }
    },
  },
  {
    name: "pagetable/map+unmap/2m",
    ops: OPS,
    note: "__iommu_map + __iommu_unmap of one 2 MiB block, warm tables (arm-lpae)",
    fn: () => {
      for (let i = 0; i < OPS; i++) {
        const iova = base2m + (1 + (i % 500)) * 0x200000;
        iommuMapRaw(pt2m, iova, 2 ** 42 + (i % 500) * 0x200000, 0x200000, RW);
        iommuUnmapRaw(pt2m, iova, 0x200000, undefined);
      }
    },
  },
  ...formatCases("arm-lpae"),
]);
