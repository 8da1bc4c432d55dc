/**
 * io-pgtable-arm's selftests (drivers/iommu/io-pgtable-arm-selftests.c, `arm_lpae_run_tests`
 * over `arm_lpae_do_selftests`' configurations), for the stage-1 format dmasim models, through
 * the table's own `map_pages` / `unmap_pages`; and generic_pt's KUnit cases ported to
 * arm-lpae with its own semantics (EEXIST on overmap, no whole-large-page unmap).
 */
import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { IOMMU_PROT, IoPageTable, type IoPgtableGranule, type MappedBytes } from "../src/index.ts";
import { iommuPtSuite } from "./kunit/iommu-pt.ts";

const P = IOMMU_PROT;

describe("io-pgtable-arm selftests (arm_lpae_run_tests)", () => {
  const granules: IoPgtableGranule[] = [4096, 16384, 65536];
  const sizes = [32, 36, 40, 42, 44, 48];
  for (const granule of granules) {
    for (const [j, oas] of sizes.entries()) {
      for (const ias of sizes.slice(0, j + 1)) {
        it(`granule ${granule / 1024}K, IAS ${ias}, OAS ${oas}`, () => {
          const mem = new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
          const start = mem.pagesInUse;
          const pt = new IoPageTable(mem, { granule, ias, oas });
          const ops = pt.ops;
          const mapped: MappedBytes = { bytes: 0 };
          // Initial sanity checks: empty page tables provide no translations.
          expect(pt.iovaToPhys(42)).toBe(0);
          expect(pt.iovaToPhys(2 ** 30 + 42)).toBe(0);
          expect(pt.iovaToPhys(2 ** 31 + 42)).toBe(0);
          // Distinct mappings of different granule sizes.
          let iova = 0;
          for (const size of pt.pageSizes) {
            ops.mapPages(iova, iova, size, 1, P.READ + P.WRITE + P.NOEXEC + P.CACHE, mapped);
            // Overlapping mappings.
            expect(() =>
              ops.mapPages(iova, iova + size, size, 1, P.READ + P.NOEXEC, mapped),
            ).toThrow(expect.objectContaining({ code: "EEXIST" }));
            expect(pt.iovaToPhys(iova + 42)).toBe(iova + 42);
            iova += 2 ** 30;
          }
          // Full unmap, then remap of the full block.
          iova = 0;
          for (const size of pt.pageSizes) {
            expect(ops.unmapPages(iova, size, 1, undefined, [])).toBe(size);
            expect(pt.iovaToPhys(iova + 42)).toBe(0);
            ops.mapPages(iova, iova, size, 1, P.WRITE, mapped);
            expect(pt.iovaToPhys(iova + 42)).toBe(iova + 42);
            iova += 2 ** 30;
          }
          // Map/unmap the last largest supported page of the IAS.
          mapped.bytes = 0;
          const size = pt.pageSizes.at(-1)!;
          iova = 2 ** ias - size;
          ops.mapPages(iova, iova, size, 1, P.READ + P.WRITE + P.NOEXEC + P.CACHE, mapped);
          expect(mapped.bytes).toBe(size);
          expect(ops.unmapPages(iova, size, 1, undefined, [])).toBe(size);
          pt.destroy();
          expect(mem.pagesInUse).toBe(start);
        });
      }
    }
  }
});

for (const granule of [4096, 16384, 65536] as const) {
  iommuPtSuite({
    name: `arm-lpae ${granule / 1024}K granule, 48-bit`,
    make: (mem) => new IoPageTable(mem, { granule, ias: 48, oas: 48 }),
    overmap: "EEXIST",
    unmapSplit: false,
  });
}
