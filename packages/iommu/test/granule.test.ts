import { describe, expect, it } from "vitest";
import { IommuError, IovaDomain } from "../src/index.ts";

describe("IOVA granule against the CPU page (init_iova_domain)", () => {
  it("refuses a granule larger than the CPU page in one line naming both sizes", () => {
    for (const [granule, pageSize] of [
      [16384, 4096],
      [65536, 4096],
      [65536, 16384],
    ] as const) {
      const make = () => new IovaDomain({ granule, startPfn: 1, pageSize });
      expect(make).toThrow(IommuError);
      expect(make).toThrow(
        `IOVA granule ${granule} bytes is larger than the ${pageSize}-byte CPU page`,
      );
      try {
        make();
      } catch (e) {
        expect((e as IommuError).code).toBe("EINVAL");
        expect((e as IommuError).message).not.toContain("\n");
      }
    }
  });

  it("accepts a granule up to the CPU page, and any granule when no page size is given", () => {
    for (const [granule, pageSize] of [
      [4096, 4096],
      [4096, 65536],
      [16384, 16384],
      [65536, 65536],
    ] as const) {
      const d = new IovaDomain({ granule, startPfn: 1, pageSize });
      expect(d.granule).toBe(granule);
      expect(d.allocIova(1, 2 ** 32 / granule - 1)).toBeDefined();
    }
    expect(new IovaDomain({ granule: 65536, startPfn: 1 }).granule).toBe(65536);
  });
});
