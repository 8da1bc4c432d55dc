import { describe, expect, it } from "vitest";
import { IommuError, iommuPgsize, pgsizeList } from "../src/index.ts";

const K4 = 0x1000;
const M2 = 0x200000;
const G1 = 0x40000000;
const BITMAP = K4 + M2 + G1;

describe("iommuPgsize", () => {
  it("picks one 4K page, then two 2M pages once IOVA and paddr are both 2M-aligned", () => {
    const a = iommuPgsize(BITMAP, 0x1ff000, 0x5ff000, 0x401000);
    expect(a).toEqual({ pgsize: K4, count: 1 });
    const b = iommuPgsize(BITMAP, 0x200000, 0x600000, 0x400000);
    expect(b).toEqual({ pgsize: M2, count: 2 });
  });

  it("picks 1G pages when iova and paddr are 1G-aligned above 2^32", () => {
    expect(iommuPgsize(BITMAP, 2 ** 33, 2 ** 34, 3 * G1)).toEqual({ pgsize: G1, count: 3 });
  });

  it("stays at 4K when iova and paddr are not congruent modulo 2M", () => {
    expect(iommuPgsize(BITMAP, 0x1000, 0x2000, 0x400000)).toEqual({ pgsize: K4, count: 0x400 });
  });

  it("shortens the 2M run so a 1G page can start at the next 1G boundary near 2^48", () => {
    const iova = 2 ** 48 - 2 * G1 - 2 * M2;
    const r = iommuPgsize(BITMAP, iova, iova, 2 * M2 + G1);
    expect(r).toEqual({ pgsize: M2, count: 2 });
    expect(iommuPgsize(BITMAP, iova + 2 * M2, iova + 2 * M2, G1)).toEqual({ pgsize: G1, count: 1 });
  });

  it("treats iova = paddr = 0 as aligned to everything", () => {
    expect(iommuPgsize(BITMAP, 0, 0, 2 * G1 + M2)).toEqual({ pgsize: G1, count: 2 });
  });

  it("throws EINVAL naming the values when misaligned", () => {
    expect(() => iommuPgsize(BITMAP, 0x1800, 0, K4)).toThrow(IommuError);
    expect(() => iommuPgsize(BITMAP, 0x1800, 0, K4)).toThrow(/0x1800/);
  });

  it("lists the sizes of a bitmap above 2^32", () => {
    expect(pgsizeList(K4 + 2 ** 42)).toEqual([K4, 2 ** 42]);
  });
});
