import { describe, expect, it } from "vitest";
import {
  BvecError,
  MAX_PAGE_ORDER,
  PhysMemory,
  REGION_KIND,
  standardLayout,
} from "../src/index.ts";

const GiB = 1024 ** 3;
const P32 = 2 ** 32;

function pattern(len: number, seed = 1): Uint8Array {
  const a = new Uint8Array(len);
  for (let i = 0; i < len; i++) a[i] = (i * 31 + seed * 7) % 251;
  return a;
}

describe("PhysMemory regions", () => {
  it("builds the usual layout with a hole below 4 GiB", () => {
    const mem = new PhysMemory({ ramBytes: 16 * GiB });
    const r = mem.regions;
    expect(r).toHaveLength(2);
    expect(r[0]).toMatchObject({ start: 0x100000, kind: "ram", owner: "ram-low" });
    expect(r[1]).toMatchObject({ start: P32, kind: "ram", owner: "ram-high" });
    expect(mem.ramBytes).toBe(16 * GiB);
    expect(mem.regionOf(0x9000_0000)).toBeUndefined();
    expect(mem.regionOf(P32 + 5)?.owner).toBe("ram-high");
    expect(mem.isRam(0x100000, 4096)).toBe(true);
    expect(mem.isRam(0x80000000)).toBe(false);
  });

  it("keeps small machines below 2 GiB", () => {
    expect(standardLayout(64 * 1024 * 1024)).toEqual([
      { start: 0x100000, size: 64 * 1024 * 1024, kind: "ram", owner: "ram-low" },
    ]);
  });

  it("adds P2P BARs and refuses overlaps and misalignment", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    const bar = mem.addRegion({
      start: 0x9000_0000,
      size: 0x10_0000,
      kind: REGION_KIND.P2P,
      owner: "nvme1-cmb",
    });
    expect(mem.regionOf(0x9000_1000)).toBe(bar);
    expect(() => mem.addRegion({ start: 0x9008_0000, size: 0x1000, kind: "mmio" })).toThrow(
      /overlaps nvme1-cmb/,
    );
    expect(() => mem.addRegion({ start: 0xa000_0100, size: 0x1000, kind: "mmio" })).toThrow(
      /not aligned/,
    );
    // Device memory holds bytes too (P2P transfers move real data).
    mem.write(0x9000_0010, pattern(32));
    expect(mem.readBytes(0x9000_0010, 32)).toEqual(pattern(32));
  });

  it("rejects bad page sizes", () => {
    expect(() => new PhysMemory({ pageSize: 8192 as 4096 })).toThrow(/page size 0x2000/);
  });
});

describe("PhysMemory bytes", () => {
  it.each([4096, 16384, 65536] as const)(
    "reads back writes across page boundaries with %i-byte pages",
    (pageSize) => {
      const mem = new PhysMemory({ ramBytes: 8 * GiB, pageSize });
      const at = P32 + 3 * pageSize - 100;
      const data = pattern(3 * pageSize + 300);
      mem.write(at, data);
      expect(mem.readBytes(at, data.length)).toEqual(data);
      // Partial reads at odd offsets.
      expect(mem.readBytes(at + 1, 10)).toEqual(data.subarray(1, 11));
    },
  );

  it("reads untouched memory as zeros without materialising pages", () => {
    const mem = new PhysMemory({ ramBytes: 64 * GiB });
    expect(mem.readBytes(40 * GiB, 8192)).toEqual(new Uint8Array(8192));
    expect(mem.counters.c.chunksMaterialized).toBe(0);
    mem.fill(40 * GiB, 2 ** 20, 0);
    expect(mem.counters.c.chunksMaterialized).toBe(0);
    mem.write(40 * GiB + 4096, pattern(1));
    expect(mem.counters.c.chunksMaterialized).toBe(1);
    expect(mem.backedBytes).toBe(65536);
    expect(mem.isMaterialized((40 * GiB + 4096) / 4096)).toBe(true);
    expect(mem.isMaterialized((40 * GiB + 65536) / 4096)).toBe(false);
    // pageBytes is a live one-page view of the same bytes.
    const page = mem.pageBytes((40 * GiB + 4096) / 4096);
    expect(page.length).toBe(4096);
    page[5] = 0x77;
    expect(mem.readBytes(40 * GiB + 4096 + 5, 1)[0]).toBe(0x77);
  });

  it("reads and writes 32- and 64-bit little-endian values above 2^48", () => {
    const mem = new PhysMemory({ regions: [{ start: 2 ** 48, size: 2 ** 20, kind: "ram" }] });
    const a = 2 ** 48 + 4094; // straddles a page boundary
    mem.writeU32(a, 0xdeadbeef);
    expect(mem.readU32(a)).toBe(0xdeadbeef);
    expect(mem.readBytes(a, 4)).toEqual(new Uint8Array([0xef, 0xbe, 0xad, 0xde]));
    const v = 2 ** 52 + 0x1234_5678_9;
    mem.writeU64(2 ** 48 + 16, v);
    expect(mem.readU64(2 ** 48 + 16)).toBe(v);
    expect(mem.readU32(2 ** 48 + 16)).toBe(v % P32);
    expect(mem.readU32(2 ** 48 + 20)).toBe(Math.floor(v / P32));
    expect(() => mem.writeU32(2 ** 48, P32)).toThrow(/does not fit in 32 bits/);
    mem.writeU32(2 ** 48 + 40, 0xffffffff);
    mem.writeU32(2 ** 48 + 44, 0xffffffff);
    expect(() => mem.readU64(2 ** 48 + 40)).toThrow(/does not fit below 2\^53/);
  });

  it("fills and copies inside memory", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    mem.fill(P32, 10000, 0xab);
    expect(mem.readBytes(P32 + 9990, 12)).toEqual(
      new Uint8Array([...new Array<number>(10).fill(0xab), 0, 0]),
    );
    mem.write(P32 + 0x10000, pattern(5000, 3));
    mem.copy(P32 + 0x20003, P32 + 0x10000, 5000);
    expect(mem.readBytes(P32 + 0x20003, 5000)).toEqual(pattern(5000, 3));
  });

  it("throws EFAULT for holes and for accesses running off RAM, naming the address", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    expect(() => mem.readBytes(0x9000_0000, 4)).toThrow(
      "access of 0x4 bytes at 0x90000000 falls in a hole of the physical map",
    );
    expect(() => mem.readBytes(0x7fff_f000, 0x2000)).toThrow(/reaches a hole at 0x80000000/);
    expect(() => mem.write(0, new Uint8Array(1))).toThrow(BvecError);
    try {
      mem.readU32(0);
    } catch (e) {
      expect((e as BvecError).code).toBe("EFAULT");
    }
    // Nothing was written by the refused access.
    expect(mem.counters.c.bytesWritten).toBe(0);
  });

  it("refuses a host buffer too short for the access, small or large, naming the sizes", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    const p = 2 ** 33 + 0x1000;
    mem.write(p, new Uint8Array(64).fill(7));
    for (const len of [16, 64, 8192]) {
      expect(() => mem.read(p, new Uint8Array(8), 0, len)).toThrow(
        `read of ${len} bytes at 0x200001000 into a 8-byte buffer at offset 0 does not fit`,
      );
      expect(() => mem.write(p, new Uint8Array(8), 4, len)).toThrow(/the buffer is too short/);
    }
    // Nothing was changed by the refused writes.
    expect(Array.from(mem.readBytes(p, 16))).toEqual(new Array<number>(16).fill(7));
  });

  it("allows accesses spanning adjacent regions", () => {
    const mem = new PhysMemory({
      regions: [
        { start: 0x100000, size: 0x1000, kind: "ram" },
        { start: 0x101000, size: 0x1000, kind: "ram" },
      ],
    });
    mem.write(0x100ff0, pattern(0x20));
    expect(mem.readBytes(0x100ff0, 0x20)).toEqual(pattern(0x20));
  });

  it("counts bytes read and written", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    mem.write(P32, pattern(100));
    mem.readBytes(P32, 40);
    expect(mem.counters.c.bytesWritten).toBe(100);
    expect(mem.counters.c.bytesRead).toBe(40);
  });

  it("hands a sink what read would copy, chunk by chunk, zeros for untouched memory", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    // 200 written bytes across a chunk boundary, then 100 untouched ones.
    const at = P32 + 65536 - 100;
    mem.write(at, pattern(200));
    const got = new Uint8Array(300).fill(0xee);
    const calls: number[] = [];
    const sink = {
      write(to: number, src: Uint8Array, srcOff: number, len: number): void {
        calls.push(len);
        got.set(src.subarray(srcOff, srcOff + len), to - 1000);
      },
    };
    mem.readTo(at, sink, 1000, 300);
    expect(calls).toEqual([100, 200]);
    expect(got.subarray(0, 200)).toEqual(pattern(200));
    expect(got.subarray(200)).toEqual(new Uint8Array(100));
    expect(mem.counters.c.bytesRead).toBe(300);
    expect(mem.counters.c.chunksMaterialized).toBe(2);
  });

  it("refuses a readTo that reaches a hole before the sink gets anything", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    let written = 0;
    const sink = {
      write: () => {
        written++;
      },
    };
    expect(() => mem.readTo(0x80000000 - 16, sink, 0, 32)).toThrow(BvecError);
    expect(written).toBe(0);
    expect(mem.counters.c.bytesRead).toBe(0);
  });
});

describe("PhysMemory page allocator", () => {
  it("allocates naturally aligned blocks from the Normal zone first", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
      const pfn = mem.allocPages(order);
      expect(pfn % 2 ** order).toBe(0);
      expect(pfn * 4096).toBeGreaterThanOrEqual(P32);
      expect(mem.allocatedOrder(pfn)).toBe(order);
    }
  });

  it("honours zone limits for DMA32 and DMA allocations", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    expect(mem.allocPages(0, { zone: "dma32" }) * 4096).toBeLessThan(P32);
    expect(mem.allocPages(2, { zone: "dma" }) * 4096).toBeLessThan(16 * 1024 * 1024);
  });

  it("merges buddies back so that everything freed is whole again", () => {
    const mem = new PhysMemory({ regions: [{ start: P32, size: 4 * 1024 * 1024, kind: "ram" }] });
    const total = mem.freePageCount();
    expect(total).toBe(1024);
    const pfns = [] as number[];
    for (let i = 0; i < 1024; i++) pfns.push(mem.allocPages(0));
    expect(mem.pagesInUse).toBe(1024);
    expect(mem.tryAllocPages(0)).toBe(-1);
    expect(() => mem.allocPages(0)).toThrow(/no free block of order 0/);
    for (const p of pfns.reverse()) mem.freePages(p, 0);
    expect(mem.pagesInUse).toBe(0);
    // Whole again: a max-order block is available.
    const big = mem.allocPages(MAX_PAGE_ORDER);
    expect(big * 4096).toBe(P32);
  });

  it("rejects double frees and order mismatches", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    const p = mem.allocPages(2);
    expect(() => mem.freePages(p, 1)).toThrow(/allocated with order 2/);
    mem.freePages(p, 2);
    expect(() => mem.freePages(p, 2)).toThrow(/not allocated/);
  });

  it("fails allocations on demand through the fault hook", () => {
    const mem = new PhysMemory({ ramBytes: 8 * GiB });
    let n = 0;
    mem.allocFaultHook = () => ++n === 2;
    expect(mem.tryAllocPages(0)).toBeGreaterThan(0);
    expect(mem.tryAllocPages(0)).toBe(-1);
    expect(mem.tryAllocPages(0)).toBeGreaterThan(0);
    expect(mem.counters.c.allocFailures).toBe(1);
  });

  it("hands out scattered, never adjacent pages, reproducibly from a seed", () => {
    const mem = new PhysMemory({ ramBytes: 64 * GiB });
    const a = mem.allocScattered(256, 42);
    expect(new Set(a).size).toBe(256);
    for (let i = 1; i < a.length; i++)
      expect(Math.abs((a[i] as number) - (a[i - 1] as number))).toBeGreaterThan(1);
    expect(a.some((p) => p * 4096 >= P32)).toBe(true);
    const mem2 = new PhysMemory({ ramBytes: 64 * GiB });
    expect(mem2.allocScattered(256, 42)).toEqual(a);
    expect(mem.pagesInUse).toBe(256);
    for (const p of a) mem.freePages(p, 0);
    expect(mem.pagesInUse).toBe(0);
    expect(mem.allocPages(MAX_PAGE_ORDER)).toBeGreaterThan(0);
  });

  it("claims a specific page and splits around it", () => {
    const mem = new PhysMemory({ regions: [{ start: P32, size: 4 * 1024 * 1024, kind: "ram" }] });
    const want = P32 / 4096 + 777;
    expect(mem.allocPageAt(want)).toBe(true);
    expect(mem.allocPageAt(want)).toBe(false);
    expect(mem.freePageCount()).toBe(1023);
    mem.freePages(want, 0);
    expect(mem.freePageCount()).toBe(1024);
    expect(mem.allocPages(MAX_PAGE_ORDER)).toBe(P32 / 4096);
  });
});
