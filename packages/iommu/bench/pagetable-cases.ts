/**
 * The page-table benchmark cases of one format, shared by the per-format bench files (one
 * file per format, so that each runs in its own process with only its format's code warm, as
 * a kernel runs one format's compiled table code).
 */
import { PhysMemory } from "@dmasim/bvec";
import type { BenchCase } from "../../../scripts/bench-harness.ts";
import {
  IOMMU_PROT,
  IoPageTable,
  type IoPgtableFormat,
  iommuMapRaw,
  iommuUnmapRaw,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;
const OPS = 1000;
const BATCHES = 100;

/**
 * A warm table of `format`: a keeper page at `base` keeps the tables of its 2 MiB alive. The
 * base is in every format's lower half (x86-64 and RISC-V are sign-extended below 2^47).
 */
function warm(format: IoPgtableFormat): { pt: IoPageTable; base: number } {
  const base = 2 ** 46 - 0x200000;
  const pt = new IoPageTable(new PhysMemory({ ramBytes: 8 * 1024 ** 3 }), { format });
  pt.map(base, 2 ** 40, 0x1000, RW);
  return { pt, base };
}

/** `pagetable/map+unmap/4k/<format>` and `pagetable/map+unmap/256x4k/<format>`. */
export function formatCases(format: IoPgtableFormat): BenchCase[] {
  const one = warm(format);
  const batch = warm(format);
  const iova = batch.base + 0x100000;
  return [
    {
      name: `pagetable/map+unmap/4k/${format}`,
      ops: OPS,
      targetNs: 150,
      note: `__iommu_map + __iommu_unmap of one 4 KiB page, warm tables (${format}, ${one.pt.levels} levels, ${one.pt.code})`,
      fn: () => {
        for (let i = 0; i < OPS; i++) {
          const a = one.base + (1 + (i % 500)) * 0x1000;
          iommuMapRaw(one.pt, a, 2 ** 41 + (a % 2 ** 30), 0x1000, RW);
          iommuUnmapRaw(one.pt, a, 0x1000, undefined);
        }
      },
    },
    {
      // The physical address is 4 KiB off the IOVA's alignment, so that no larger page fits:
      // iommu_pgsize hands the table one map_pages of 256 pages.
      name: `pagetable/map+unmap/256x4k/${format}`,
      ops: BATCHES,
      note: `one iommu_map of 256 × 4 KiB pages (1 MiB) and its iommu_unmap, warm tables (${format}, ${batch.pt.code})`,
      fn: () => {
        for (let i = 0; i < BATCHES; i++) {
          iommuMapRaw(batch.pt, iova, 2 ** 41 + 0x1000, 0x100000, RW);
          iommuUnmapRaw(batch.pt, iova, 0x100000, undefined);
        }
      },
    },
  ];
}
