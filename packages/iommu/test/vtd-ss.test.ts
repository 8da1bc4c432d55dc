/**
 * The vtd-ss format (VT-d second stage): generic_pt's KUnit cases for its configurations
 * (Linux `vtdss_kunit_fmt_cfgs`: 39, 48 and, within the model's 52-bit addresses, a 5-level
 * table), the missing present bit, and the PTE layout in memory.
 */
import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { IOMMU_PROT, IoPageTable, type LeafLookup } from "../src/index.ts";
import { iommuPtSuite } from "./kunit/iommu-pt.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

for (const ias of [39, 48, 52]) {
  iommuPtSuite({
    name: `vtd-ss ${ias}-bit VA`,
    make: (mem) => new IoPageTable(mem, { format: "vtd-ss", ias }),
    overmap: "EADDRINUSE",
    unmapSplit: true,
  });
}

function newMem(): PhysMemory {
  return new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
}

describe("vtd-ss PTEs: no present bit", () => {
  it("takes its levels from the VA size and covers it all (no sign extension)", () => {
    expect(new IoPageTable(newMem(), { format: "vtd-ss", ias: 39 }).levels).toBe(3);
    expect(new IoPageTable(newMem(), { format: "vtd-ss", ias: 48 }).levels).toBe(4);
    const pt = new IoPageTable(newMem(), { format: "vtd-ss", ias: 52 });
    expect(pt.levels).toBe(5);
    expect(pt.apertureEnd).toBe(2 ** 52 - 1);
  });

  it("writes R, W and PS as the IOMMU reads them", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "vtd-ss" });
    pt.map(0x200000, 0x40000000, 0x200000, IOMMU_PROT.WRITE);
    const w = pt.walk(0x200000);
    expect(mem.readU32(w.pteAddr)).toBe(0x40000082);
    expect(w.steps[0]!.pteLo % 0x1000).toBe(0x3);
    expect(w.prot).toBe(IOMMU_PROT.WRITE);
    const f = pt.dump().find((e) => e.kind === "block")!.fields;
    expect(f.map((x) => x.name)).toEqual(["R", "W", "PS", "A", "D", "SNP", "OA"]);
  });

  it("refuses a prot with neither READ nor WRITE", () => {
    const pt = new IoPageTable(newMem(), { format: "vtd-ss" });
    expect(() => pt.map(0x1000, 0x1000, 0x1000, IOMMU_PROT.CACHE)).toThrow(
      expect.objectContaining({ code: "EINVAL" }),
    );
  });

  it("an entry with neither R nor W is present to Linux but not to the IOMMU", () => {
    const mem = newMem();
    const pt = new IoPageTable(mem, { format: "vtd-ss" });
    pt.map(0x1000, 0x7000, 0x1000, RW);
    const w = pt.walk(0x1000);
    // Keep the address and SNP, clear R and W.
    mem.writeU32(w.pteAddr, 0x7000 + 0x800);
    expect(pt.iovaToPhys(0x1000)).toBe(0x7000);
    const out: LeafLookup = { pagePhys: 0, pageIova: 0, pageSize: 0, prot: 0 };
    expect(pt.lookupLeaf(0x1000, out, true)).toBe(false);
    // And an overmap sees it as mapped.
    expect(() => pt.map(0x1000, 0x8000, 0x1000, RW)).toThrow(
      expect.objectContaining({ code: "EADDRINUSE" }),
    );
  });
});
