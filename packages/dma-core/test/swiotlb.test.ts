import { PhysMemory } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaError,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  Swiotlb,
} from "../src/index.ts";
import { G4, GiB, KiB, MiB, fillRandom, codeOf } from "../src/testing/index.ts";

function pool(size = MiB) {
  const memory = new PhysMemory({ ramBytes: 8 * GiB });
  const base0 = memory.pagesInUse;
  const sw = new Swiotlb(memory, { size });
  return { memory, sw, base0 };
}

describe("swiotlb", () => {
  it("allocates its pool below 4 GiB and frees it on destroy", () => {
    const { memory, sw, base0 } = pool(2 * MiB);
    expect(sw.nslabs).toBe(1024);
    expect(memory.pagesInUse - base0).toBe(512);
    const tlb = sw.mapSingle(5 * GiB, 16, 0, 0);
    expect(tlb).toBeLessThan(G4);
    expect(codeOf(() => sw.destroy())).toBe("EBUSY");
    sw.unmapSingle(tlb, 16, DMA_TO_DEVICE);
    sw.destroy();
    expect(memory.pagesInUse).toBe(base0);
  });

  it("rejects a pool size that is not a multiple of one segment", () => {
    const memory = new PhysMemory({ ramBytes: 8 * GiB });
    expect(codeOf(() => new Swiotlb(memory, { size: 100 * KiB }))).toBe("EINVAL");
  });

  it("takes ceil((size + kept offset) / 2 KiB) slots and keeps the min_align_mask bits", () => {
    const { sw } = pool();
    const c = sw.counters.c;
    const cases: [number, number, number, number][] = [
      // orig offset in page, size, min_align_mask, expected slots
      [0, 1, 0, 1],
      [0, 2048, 0, 1],
      [0, 2049, 0, 2],
      [0x900, 0x700, 0, 1], // offset not kept: 0x700 bytes from a slot start
      [0x900, 0x700, 4095, 1], // 0x100 + 0x700 = 0x800 bytes from a slot at the 0x800 half
      [0x900, 0x800, 4095, 2],
      [0x10, 128 * 2048 - 0x10, 4095, 128],
    ];
    for (const [off, size, mask, slots] of cases) {
      const orig = 5 * GiB + off;
      const before = c.slotsInUse;
      const tlb = sw.mapSingle(orig, size, 0, mask);
      expect(c.slotsInUse - before).toBe(slots);
      if (mask === 4095) expect(tlb % 4096).toBe(off);
      else expect(tlb % IO_TLB_SIZE).toBe(0);
      sw.unmapSingle(tlb, size, DMA_TO_DEVICE);
    }
    expect(c.slotsInUse).toBe(0);
    expect(c.slotsHighWater).toBe(128);
  });

  it("refuses more than 128 slots per mapping, counting a failure", () => {
    const { sw } = pool();
    expect(sw.maxMappingSize()).toBe(IO_TLB_SEGSIZE * IO_TLB_SIZE);
    expect(sw.maxMappingSize(4095)).toBe(IO_TLB_SEGSIZE * IO_TLB_SIZE - 4096);
    expect(codeOf(() => sw.mapSingle(5 * GiB, 256 * KiB + 1, 0, 0))).toBe("ENOMEM");
    // With a kept offset, 256 KiB no longer fits either.
    expect(codeOf(() => sw.mapSingle(5 * GiB + 0x10, 256 * KiB, 0, 4095))).toBe("ENOMEM");
    expect(sw.counters.c.failures).toBe(2);
    expect(sw.counters.c.slotsInUse).toBe(0);
  });

  it("never lets a mapping cross a 128-slot segment", () => {
    const { sw } = pool(MiB);
    const first = sw.mapSingle(5 * GiB, 100 * IO_TLB_SIZE, 0, 0);
    const second = sw.mapSingle(5 * GiB, 50 * IO_TLB_SIZE, 0, 0);
    // The second cannot take slots 100..149 (crossing slot 128): it starts at slot 128.
    expect(second - first).toBe(128 * IO_TLB_SIZE);
    // Next fit from there on; whatever slot it gets, no mapping spans two segments.
    const third = sw.mapSingle(5 * GiB, 100 * IO_TLB_SIZE, 0, 0);
    const slot = (third - first) / IO_TLB_SIZE;
    expect(Math.floor(slot / 128)).toBe(Math.floor((slot + 99) / 128));
    sw.unmapSingle(first, 1, DMA_TO_DEVICE);
    sw.unmapSingle(second, 1, DMA_TO_DEVICE);
    sw.unmapSingle(third, 1, DMA_TO_DEVICE);
    expect(sw.counters.c.slotsInUse).toBe(0);
  });

  it("aligns the slots to the IOMMU granule when asked, rounding the footprint to whole granules", () => {
    const { sw } = pool(MiB);
    const a = sw.mapSingle(5 * GiB + 0x10, 0x10, 0, 0);
    const before = sw.counters.c.slotsInUse;
    const b = sw.mapSingle(5 * GiB + 0x123, 0x100, 4095, 4095, 4096);
    expect(b % 4096).toBe(0x123);
    expect(sw.counters.c.slotsInUse - before).toBe(2);
    sw.unmapSingle(a, 0x10, DMA_TO_DEVICE);
    sw.unmapSingle(b, 0x100, DMA_TO_DEVICE);
  });

  it("copies the original in on map for every direction, out only for FROM_DEVICE and BIDIRECTIONAL", () => {
    const { memory, sw } = pool();
    const orig = 5 * GiB + 0x40;
    for (const dir of [DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL] as const) {
      const data = fillRandom(memory, orig, 0x300, dir);
      const tlb = sw.mapSingle(orig, 0x300, 0, 4095);
      expect(memory.readBytes(tlb, 0x300)).toEqual(data);
      memory.fill(tlb, 0x300, 0xab);
      sw.syncForCpu(tlb, 0x300, dir);
      const copiedOut = dir !== DMA_TO_DEVICE;
      expect(memory.readBytes(orig, 0x300).every((x) => x === 0xab)).toBe(copiedOut);
      memory.fill(orig, 0x300, 0xcd);
      sw.syncForDevice(tlb, 0x300, dir);
      expect(memory.readBytes(tlb, 0x300).every((x) => x === 0xcd)).toBe(dir !== DMA_FROM_DEVICE);
      memory.fill(tlb, 0x300, 0xef);
      sw.unmapSingle(tlb, 0x300, dir);
      expect(memory.readBytes(orig, 0x300).every((x) => x === 0xef)).toBe(copiedOut);
    }
    const c = sw.counters.c;
    // 3 maps + 2 syncs for device copy in; 2 syncs for cpu + 2 unmaps copy out.
    expect(c.bouncedBytesToDevice).toBe(5 * 0x300);
    expect(c.bouncedBytesFromDevice).toBe(4 * 0x300);
  });

  it("skips the copy-back when asked (SKIP_CPU_SYNC)", () => {
    const { memory, sw } = pool();
    const orig = 5 * GiB;
    memory.fill(orig, 0x10, 1);
    const tlb = sw.mapSingle(orig, 0x10, 0, 0);
    memory.fill(tlb, 0x10, 2);
    sw.unmapSingle(tlb, 0x10, DMA_FROM_DEVICE, true);
    expect(memory.readBytes(orig, 1)[0]).toBe(1);
  });

  it("resolves any address inside a mapping to its original and rejects foreign addresses", () => {
    const { sw } = pool();
    const orig = 5 * GiB + 0x777;
    const tlb = sw.mapSingle(orig, 0x2000, 0, 4095);
    expect(sw.origAddr(tlb)).toBe(orig);
    expect(sw.origAddr(tlb + 0x1234)).toBe(orig + 0x1234);
    expect(codeOf(() => sw.syncForCpu(tlb, 0x3000, DMA_FROM_DEVICE))).toBe("EINVAL");
    expect(codeOf(() => sw.unmapSingle(5 * GiB, 16, DMA_TO_DEVICE))).toBe("EINVAL");
    sw.unmapSingle(tlb, 0x2000, DMA_TO_DEVICE);
    expect(codeOf(() => sw.unmapSingle(tlb, 0x2000, DMA_TO_DEVICE))).toBe("EINVAL");
  });

  it("fails with ENOMEM when full, keeps the high water, and leaks nothing after unmapping", () => {
    const { memory, sw, base0 } = pool(256 * KiB);
    const c = sw.counters.c;
    const live: number[] = [];
    for (let i = 0; i < 64; i++) live.push(sw.mapSingle(5 * GiB + i * 4096, 4096, 0, 0));
    expect(c.slotsInUse).toBe(128);
    expect(codeOf(() => sw.mapSingle(6 * GiB, 1, 0, 0))).toBe("ENOMEM");
    expect(c.failures).toBe(1);
    expect(c.slotsInUse).toBe(128);
    sw.unmapSingle(live.pop()!, 4096, DMA_TO_DEVICE);
    const again = sw.mapSingle(6 * GiB, 4096, 0, 0);
    live.push(again);
    for (const t of live) sw.unmapSingle(t, 4096, DMA_TO_DEVICE);
    expect(c.slotsInUse).toBe(0);
    expect(c.slotsHighWater).toBe(128);
    sw.destroy();
    expect(memory.pagesInUse).toBe(base0);
  });

  it("fails a mapping when the fault hook says so", () => {
    const { sw } = pool();
    sw.faultHook = (size) => size === 0x30;
    expect(codeOf(() => sw.mapSingle(5 * GiB, 0x30, 0, 0))).toBe("ENOMEM");
    const t = sw.mapSingle(5 * GiB, 0x31, 0, 0);
    sw.unmapSingle(t, 0x31, DMA_TO_DEVICE);
    expect(sw.counters.c.failures).toBe(1);
  });

  it("never hands out overlapping slots and frees them all (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            off: fc.integer({ min: 0, max: 4095 }),
            size: fc.integer({ min: 1, max: 40 * KiB }),
            mask: fc.constantFrom(0, 2047, 4095, 0x3fff),
            free: fc.boolean(),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        (ops) => {
          const { sw } = pool(512 * KiB);
          const live: { tlb: number; size: number }[] = [];
          for (const op of ops) {
            const orig = 5 * GiB + op.off;
            let tlb: number;
            try {
              tlb = sw.mapSingle(orig, op.size, 0, op.mask);
            } catch (e) {
              expect((e as DmaError).code).toBe("ENOMEM");
              continue;
            }
            expect(tlb % (op.mask + 1)).toBe(orig % (op.mask + 1));
            for (const l of live)
              expect(tlb + op.size <= l.tlb || l.tlb + l.size <= tlb).toBe(true);
            live.push({ tlb, size: op.size });
            if (op.free) {
              const v = live.shift()!;
              sw.unmapSingle(v.tlb, v.size, DMA_TO_DEVICE);
            }
          }
          for (const l of live) sw.unmapSingle(l.tlb, l.size, DMA_TO_DEVICE);
          expect(sw.counters.c.slotsInUse).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});
