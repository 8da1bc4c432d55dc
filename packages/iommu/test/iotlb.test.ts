import { describe, expect, it } from "vitest";
import { Iotlb, IommuError } from "../src/index.ts";

const RW = 3;

describe("Iotlb", () => {
  it("hits after a fill, page-size aware, above 2^32 and near 2^48", () => {
    const t = new Iotlb();
    t.fill(1, 2 ** 47 - 0x200000, 0x200000, 2 ** 40, RW);
    const s = t.lookup(1, 2 ** 47 - 1);
    expect(s).toBeGreaterThanOrEqual(0);
    expect(t.entryPhys(s)).toBe(2 ** 40);
    expect(t.entrySize(s)).toBe(0x200000);
    expect(t.lookup(2, 2 ** 47 - 1)).toBe(-1); // other domain tag
    expect(t.lookup(1, 2 ** 47)).toBe(-1);
    expect(t.counters.snapshot()).toMatchObject({ lookups: 3, hits: 1, misses: 2 });
  });

  it("evicts the least recently used way of a full set", () => {
    const t = new Iotlb({ entries: 4, ways: 2 });
    // Same set: page numbers 0, 2, 4 with 2 sets.
    t.fill(1, 0, 0x1000, 0xa000, RW);
    t.fill(1, 0x2000, 0x1000, 0xb000, RW);
    t.lookup(1, 0); // 0 is now more recent than 0x2000
    t.fill(1, 0x4000, 0x1000, 0xc000, RW);
    expect(t.lookup(1, 0x2000)).toBe(-1);
    expect(t.lookup(1, 0)).toBeGreaterThanOrEqual(0);
    expect(t.counters.c.evictions).toBe(1);
    expect(t.occupancy).toBe(2);
  });

  it("keeps an entry after unmap as stale until a range invalidation drops it", () => {
    const t = new Iotlb();
    t.fill(7, 2 ** 32, 0x1000, 0x5000, RW);
    t.fill(7, 2 ** 32 + 0x1000, 0x1000, 0x9000, RW);
    t.markStale(7, 2 ** 32, 0x1000);
    const s = t.lookup(7, 2 ** 32 + 4);
    expect(t.entryStale(s)).toBe(true);
    expect(t.entryPhys(s)).toBe(0x5000);
    expect(t.counters.c.staleHits).toBe(1);
    t.invalidateRange(7, 2 ** 32, 0x1000);
    expect(t.lookup(7, 2 ** 32)).toBe(-1);
    expect(t.lookup(7, 2 ** 32 + 0x1000)).toBeGreaterThanOrEqual(0);
    expect(t.counters.snapshot()).toMatchObject({ invalidateRangeCmds: 1, entriesDropped: 1 });
  });

  it("drops only the domain's entries on a whole-domain invalidation, and big ranges by scanning", () => {
    const t = new Iotlb({ entries: 64, ways: 4 });
    for (let i = 0; i < 8; i++) {
      t.fill(1, 2 ** 40 + i * 0x1000, 0x1000, i * 0x1000, RW);
      t.fill(2, 2 ** 40 + i * 0x1000, 0x1000, i * 0x1000, RW);
    }
    t.fill(1, 2 ** 41, 0x40000000, 0, RW);
    t.invalidateRange(1, 2 ** 40, 2 ** 41); // far larger than the TLB: scan
    expect(t.countFor(1)).toBe(0);
    expect(t.countFor(2)).toBe(8);
    t.invalidateAll(2);
    expect(t.occupancy).toBe(0);
    expect(t.counters.c.invalidateAllCmds).toBe(1);
    expect(t.entries()).toEqual([]);
  });

  it("rejects a geometry whose ways do not divide the entries", () => {
    expect(() => new Iotlb({ entries: 10, ways: 4 })).toThrow(IommuError);
  });
});
