import { describe, expect, it } from "vitest";
import {
  IotlbGather,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
} from "../src/index.ts";

function recorder() {
  const synced: [number, number][] = [];
  return {
    synced,
    iotlbSync(g: IotlbGather) {
      synced.push([g.start, g.end]);
      iommuIotlbGatherInit(g);
    },
  };
}

describe("IotlbGather", () => {
  it("merges adjacent and overlapping pages of one size without syncing", () => {
    const d = recorder();
    const g = new IotlbGather();
    const b = 2 ** 44;
    iommuIotlbGatherAddPage(d, g, b + 0x1000, 0x1000);
    iommuIotlbGatherAddPage(d, g, b, 0x1000);
    iommuIotlbGatherAddPage(d, g, b + 0x2000, 0x1000);
    expect(d.synced).toEqual([]);
    expect([g.start, g.end, g.pgsize]).toEqual([b, b + 0x2fff, 0x1000]);
  });

  it("syncs first when the range is disjoint", () => {
    const d = recorder();
    const g = new IotlbGather();
    iommuIotlbGatherAddPage(d, g, 2 ** 32, 0x1000);
    iommuIotlbGatherAddPage(d, g, 2 ** 32 + 0x3000, 0x1000);
    expect(d.synced).toEqual([[2 ** 32, 2 ** 32 + 0xfff]]);
    expect([g.start, g.end]).toEqual([2 ** 32 + 0x3000, 2 ** 32 + 0x3fff]);
  });

  it("syncs first when the page size changes", () => {
    const d = recorder();
    const g = new IotlbGather();
    iommuIotlbGatherAddPage(d, g, 0x1ff000, 0x1000);
    iommuIotlbGatherAddPage(d, g, 0x200000, 0x200000);
    expect(d.synced).toEqual([[0x1ff000, 0x1fffff]]);
    expect(g.pgsize).toBe(0x200000);
  });

  it("judges disjointness like Linux (an empty gather is never disjoint)", () => {
    const g = new IotlbGather();
    expect(iommuIotlbGatherIsDisjoint(g, 2 ** 48 - 0x1000, 0x1000)).toBe(false);
    iommuIotlbGatherAddRange(g, 0x10000, 0x1000);
    expect(iommuIotlbGatherIsDisjoint(g, 0x11000, 0x1000)).toBe(false);
    expect(iommuIotlbGatherIsDisjoint(g, 0xf000, 0x1000)).toBe(false);
    expect(iommuIotlbGatherIsDisjoint(g, 0x12000, 0x1000)).toBe(true);
    expect(iommuIotlbGatherIsDisjoint(g, 0xd000, 0x1000)).toBe(true);
  });
});
