import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  IOMMU_PROT,
  IoPageTable,
  type PteField,
  iommuMapRaw,
  iommuUnmapRaw,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

function byName(fields: readonly PteField[]): Record<string, PteField> {
  return Object.fromEntries(fields.map((f) => [f.name, f]));
}

describe("arm-lpae PTEs decoded field by field", () => {
  it("names the format and decodes a page, a block and a table descriptor", () => {
    const pt = new IoPageTable(newMem());
    expect(pt.format).toBe("arm-lpae");
    expect(pt.code).toBe("io-pgtable-arm");
    pt.map(0x1000, 2 ** 40 + 0x5000, 0x1000, IOMMU_PROT.READ + IOMMU_PROT.CACHE);
    pt.map(2 ** 33, 2 ** 34, 0x200000, RW + IOMMU_PROT.NOEXEC + IOMMU_PROT.MMIO);
    const d = pt.dump();
    const page = d.find((e) => e.kind === "page")!;
    const f = byName(page.fields);
    expect(page.fields.map((x) => x.name)).toEqual([
      "VALID",
      "TYPE",
      "ATTRINDX",
      "AP[1]",
      "AP[2]",
      "SH",
      "AF",
      "OA",
      "XN",
      "SW_NOREAD",
    ]);
    expect(f.VALID).toMatchObject({ bits: "0", value: 1 });
    expect(f.TYPE).toMatchObject({ bits: "1", value: 1, text: "page" });
    expect(f.ATTRINDX).toMatchObject({ bits: "4:2", value: 1, text: "normal write-back" });
    expect(f["AP[1]"]).toMatchObject({ bits: "6", value: 1, text: "unprivileged" });
    expect(f["AP[2]"]).toMatchObject({ bits: "7", value: 1, text: "read-only" });
    expect(f.SH).toMatchObject({ bits: "9:8", value: 3, text: "inner shareable" });
    expect(f.AF).toMatchObject({ bits: "10", value: 1 });
    expect(f.OA).toMatchObject({ bits: "47:12", value: 2 ** 40 + 0x5000 });
    expect(f.XN).toMatchObject({ bits: "54", value: 0 });
    expect(f.SW_NOREAD).toMatchObject({ bits: "55", value: 0, text: "readable" });

    const block = byName(d.find((e) => e.kind === "block")!.fields);
    expect(block.TYPE).toMatchObject({ value: 0, text: "block" });
    expect(block.ATTRINDX).toMatchObject({ value: 2, text: "device" });
    expect(block["AP[2]"]).toMatchObject({ value: 0, text: "read/write" });
    expect(block.XN).toMatchObject({ value: 1, text: "execute never" });
    expect(block.OA!.value).toBe(2 ** 34);

    const table = d.find((e) => e.kind === "table")!;
    expect(table.fields.map((x) => x.name)).toEqual(["VALID", "TYPE", "NLTA"]);
    expect(byName(table.fields).NLTA!.value).toBe(table.addr);
  });

  it("decodes output address bits 51:48 of the 64 KiB granule", () => {
    const pt = new IoPageTable(newMem(), { granule: 65536, ias: 52, oas: 52 });
    const pa = 2 ** 51 + 2 ** 49 + 0x30000;
    pt.map(0x10000, pa, 0x10000, RW);
    const f = byName(pt.dump().find((e) => e.kind === "page")!.fields);
    expect(f["OA[51:48]"]).toMatchObject({ bits: "15:12", value: 0b1010 });
    expect(f.OA).toMatchObject({ bits: "47:16", value: pa });
  });
});

describe("iommu.c's page-size loop over map_pages / unmap_pages", () => {
  it("hands the table one page size per call, as __iommu_map does", () => {
    const pt = new IoPageTable(newMem());
    const calls: [number, number][] = [];
    const ops = pt.ops;
    const mapPages = ops.mapPages.bind(ops);
    ops.mapPages = (iova, paddr, pgsize, pgcount, prot, mapped) => {
      calls.push([pgsize, pgcount]);
      mapPages(iova, paddr, pgsize, pgcount, prot, mapped);
    };
    // The worked example of iommu_pgsize: 1 x 4K, then 2 x 2M.
    iommuMapRaw(pt, 0x1ff000, 0x5ff000, 0x401000, RW);
    expect(calls).toEqual([
      [0x1000, 1],
      [0x200000, 2],
    ]);
    expect(pt.iovaToPhys(0x5fffff)).toBe(0x9fffff);
    expect(iommuUnmapRaw(pt, 0x1ff000, 0x401000, undefined)).toBe(0x401000);
    expect(pt.iovaToPhys(0x200000)).toBe(0);
  });

  it("unmap_pages stops within one table and the loop goes on with the next", () => {
    const pt = new IoPageTable(newMem());
    const iova = 2 ** 21 - 0x2000;
    pt.map(iova, 0x1000000, 0x4000, RW);
    const got: number[] = [];
    const ops = pt.ops;
    const unmapPages = ops.unmapPages.bind(ops);
    ops.unmapPages = (a, pgsize, pgcount, gather, freed) => {
      const n = unmapPages(a, pgsize, pgcount, gather, freed);
      got.push(n);
      return n;
    };
    expect(pt.unmap(iova, 0x4000)).toBe(0x4000);
    // Two leaf tables: 0x2000 from the first, then 0x2000 from the second.
    expect(got).toEqual([0x2000, 0x2000]);
  });
});
