import { PhysMemory } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DMA_ACCESS,
  IOMMU_DOMAIN,
  IOMMU_PROT,
  IommuDomain,
  Iotlb,
  TranslationBuffer,
  translate,
  translateInto,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

describe("translate", () => {
  it("merges physically contiguous pages into runs and splits at discontinuities", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: new PhysMemory() });
    const iova = 2 ** 46 - 0x200000;
    d.map(iova, 2 ** 40, 0x2000, RW);
    d.map(iova + 0x2000, 2 ** 41, 0x1000, RW);
    const r = translate(d, iova + 0x800, 0x2000, DMA_ACCESS.WRITE);
    expect(r).toMatchObject({
      ok: true,
      runs: [
        { phys: 2 ** 40 + 0x800, len: 0x1800 },
        { phys: 2 ** 41, len: 0x800 },
      ],
    });
  });

  it("walks on a miss, hits after, and counts walks", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: new PhysMemory() });
    d.map(2 ** 32, 2 ** 32, 0x200000, RW);
    const out = new TranslationBuffer();
    expect(translateInto(d, 2 ** 32 + 0x1000, 0x100, DMA_ACCESS.READ, out)).toBe(true);
    expect(out.walks).toBe(1);
    expect(translateInto(d, 2 ** 32 + 0x1ff000, 0x1000, DMA_ACCESS.READ, out)).toBe(true);
    expect(out.walks).toBe(0); // the 2M entry covers it
    expect([out.count, out.phys[0], out.len[0]]).toEqual([1, 2 ** 32 + 0x1ff000, 0x1000]);
    expect(d.pgtable!.counters.c.walks).toBe(1);
    expect(d.iotlb.counters.c.hits).toBe(1);
  });

  it("reports the first faulting page of a range that runs into a hole", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: new PhysMemory() });
    d.map(2 ** 44, 0x1000, 0x1000, RW);
    const r = translate(d, 2 ** 44 + 0x800, 0x1000, DMA_ACCESS.READ);
    expect(r.ok ? null : r.fault).toMatchObject({ iova: 2 ** 44 + 0x1000, reason: "not-present" });
  });

  it("rejects an empty or invalid access range", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.IDENTITY });
    expect(() => translate(d, 0, 0, DMA_ACCESS.READ)).toThrow(/0 bytes/);
    expect(() => translate(d, -1, 1, DMA_ACCESS.READ)).toThrow();
  });

  it("always agrees with iovaToPhys, through a small IOTLB, for random mappings", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            slot: fc.integer({ min: 0, max: 31 }),
            pages: fc.integer({ min: 1, max: 3 }),
          }),
          { maxLength: 30 },
        ),
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 32 * 4 - 1 }), fc.integer({ min: 1, max: 0x3000 })),
          { maxLength: 50 },
        ),
        (maps, probes) => {
          const d = new IommuDomain({
            type: IOMMU_DOMAIN.DMA,
            mem: new PhysMemory(),
            iotlb: new Iotlb({ entries: 8, ways: 2 }),
          });
          const base = 2 ** 48 - 32 * 4 * 0x1000;
          const used = new Set<number>();
          for (const m of maps) {
            if (used.has(m.slot)) continue;
            used.add(m.slot);
            d.map(base + m.slot * 0x4000, 2 ** 35 + m.slot * 0x10000, m.pages * 0x1000, RW);
          }
          for (const [page, len] of probes) {
            const iova = base + page * 0x1000 + 0x10;
            const r = translate(d, iova, len, DMA_ACCESS.READ);
            let expectOk = true;
            for (let p = iova - (iova % 0x1000); p < iova + len; p += 0x1000)
              if (d.iovaToPhys(p) === 0) expectOk = false;
            expect(r.ok).toBe(expectOk);
            if (r.ok) {
              let pos = iova;
              for (const run of r.runs) {
                expect(run.phys).toBe(d.iovaToPhys(pos));
                pos += run.len;
              }
              expect(pos).toBe(iova + len);
            }
          }
        },
      ),
      { numRuns: 80 },
    );
  });
});
