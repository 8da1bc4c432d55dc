import { describe, expect, it } from "vitest";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaError,
  dmaCapable,
  dmaMapPhys,
  dmaMapResource,
  dmaNeedSync,
  dmaNeedUnmap,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaToPhys,
  dmaUnmapPhys,
  dmaUnmapResource,
  physToDma,
} from "../src/index.ts";
import {
  G4,
  GiB,
  MiB,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
} from "../src/testing/index.ts";

function errorOf(fn: () => unknown): DmaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e;
    throw e;
  }
  throw new Error("expected a DmaError");
}

describe("direct", () => {
  describe("bus offsets (dma_range_map)", () => {
    it("translates phys to bus addresses and the device reaches the bytes through the offset", () => {
      const m = machine("none", {
        dev: { dmaRangeMap: [{ cpuStart: 4 * GiB, dmaStart: 0x1_0000_0000_0, size: 8 * GiB }] },
      });
      const phys = 5 * GiB + 0x345;
      const data = fillRandom(m.memory, phys, 0x200, 1);
      const addr = dmaMapPhys(m.dev, phys, 0x200, DMA_TO_DEVICE);
      expect(addr).toBe(phys - 4 * GiB + 0x1_0000_0000_0);
      expect(physToDma(m.dev, phys)).toBe(addr);
      expect(dmaToPhys(m.dev, addr)).toBe(phys);
      const got = new Uint8Array(0x200);
      expect(m.dma.read(addr, got).ok).toBe(true);
      expect(got).toEqual(data);
      // An address outside every bus range is a bus error for the device (data, not a throw).
      const r = m.dma.read(0x10, new Uint8Array(4));
      expect(r.ok).toBe(false);
      expect(r.busError).toMatch(/0x10/);
      dmaUnmapPhys(m.dev, addr, 0x200, DMA_TO_DEVICE);
      expect(m.debug!.errors.map((e) => e.class)).toEqual(["device-access-not-mapped"]);
    });

    it("fails with EIO for memory no bus range covers", () => {
      const m = machine("none", {
        dev: { dmaRangeMap: [{ cpuStart: 4 * GiB, dmaStart: 0, size: GiB }] },
      });
      expect(physToDma(m.dev, 6 * GiB)).toBe(-1);
      expect(dmaToPhys(m.dev, 2 * GiB)).toBe(-1);
      expect(errorOf(() => dmaMapPhys(m.dev, 6 * GiB, 16, DMA_TO_DEVICE)).code).toBe("EIO");
    });
  });

  describe("reachability", () => {
    it("fails with EIO naming the address and mask when a 32-bit device cannot reach RAM above 4 GiB", () => {
      const m = machine("none", { dev: { dmaMaskBits: 32 } });
      const e = errorOf(() => dmaMapPhys(m.dev, 4 * GiB + 0x1000, 0x100, DMA_TO_DEVICE));
      expect(e.code).toBe("EIO");
      expect(e.message).toContain("0x100001000");
      expect(e.message).toContain("0xffffffff");
      expect(m.dev.counters.c.mapFailures).toBe(1);
      expect(m.debug!.outstanding()).toBe(0);
    });

    it("fails with EIO at the bus limit and checks the last byte of the range", () => {
      const m = machine("none", { dev: { busDmaLimit: 2 ** 33 - 1 } });
      expect(dmaCapable(m.dev, 2 ** 33 - 16, 16)).toBe(true);
      expect(dmaCapable(m.dev, 2 ** 33 - 16, 17)).toBe(false);
      expect(errorOf(() => dmaMapPhys(m.dev, 2 ** 33 - 16, 17, DMA_TO_DEVICE)).code).toBe("EIO");
      const ok = dmaMapPhys(m.dev, 2 ** 33 - 16, 16, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, ok, 16, DMA_TO_DEVICE);
    });

    it("reaches 2^48 with a 64-bit mask, and refuses it with a 48-bit mask", () => {
      const top = 2 ** 48;
      const regions = [{ start: top - 2 * MiB, size: 4 * MiB, kind: "ram" as const, owner: "top" }];
      const m = machine("none", { regions });
      const addr = dmaMapPhys(m.dev, top + 0x10, 0x20, DMA_TO_DEVICE);
      expect(addr).toBe(top + 0x10);
      dmaUnmapPhys(m.dev, addr, 0x20, DMA_TO_DEVICE);
      const m48 = machine("none", { regions, dev: { dmaMaskBits: 48 } });
      expect(dmaMapPhys(m48.dev, top - 0x20, 0x20, DMA_TO_DEVICE)).toBe(top - 0x20);
      expect(errorOf(() => dmaMapPhys(m48.dev, top - 0x20, 0x21, DMA_TO_DEVICE)).code).toBe("EIO");
    });
  });

  describe("SWIOTLB on the direct path", () => {
    it("bounces a 32-bit device's buffer above 4 GiB into the pool and copies by direction", () => {
      const m = machine("none", {
        debug: false,
        swiotlbBytes: 1 * MiB,
        dev: { dmaMaskBits: 32 },
      });
      const phys = 6 * GiB + 0x123;
      const data = fillRandom(m.memory, phys, 0x1800, 2);
      const b = baseline(m);
      expect(dmaNeedUnmap(m.dev)).toBe(false);
      const addr = dmaMapPhys(m.dev, phys, 0x1800, DMA_TO_DEVICE);
      expect(addr).toBeLessThan(G4);
      expect(m.swiotlb!.isSwiotlbBuffer(addr)).toBe(true);
      // min_align_mask 4095: the low 12 bits are kept.
      expect(addr % 4096).toBe(0x123);
      const got = new Uint8Array(0x1800);
      expect(m.dma.read(addr, got).ok).toBe(true);
      expect(got).toEqual(data);
      expect(m.dev.counters.c.bounceMaps).toBe(1);
      expect(m.dev.dmaSkipSync).toBe(false);
      expect(dmaNeedUnmap(m.dev)).toBe(true);
      expect(dmaNeedSync(m.dev, addr)).toBe(true);
      dmaUnmapPhys(m.dev, addr, 0x1800, DMA_TO_DEVICE);
      expect(m.swiotlb!.counters.c.bouncedBytesFromDevice).toBe(0);

      const back = dmaMapPhys(m.dev, phys, 0x1800, DMA_FROM_DEVICE);
      m.dma.write(back, new Uint8Array(0x1800).fill(0x5a));
      expect(m.memory.readBytes(phys, 1)[0]).toBe(data[0]);
      dmaUnmapPhys(m.dev, back, 0x1800, DMA_FROM_DEVICE);
      expect(m.memory.readBytes(phys, 0x1800).every((x) => x === 0x5a)).toBe(true);
      expect(m.swiotlb!.counters.c.bouncedBytesFromDevice).toBe(0x1800);
      expect(leaks(m, b)).toEqual(NO_LEAKS);
    });

    it("fails with ENOMEM when the buffer needs more than 128 slots", () => {
      const m = machine("none", { swiotlbBytes: 1 * MiB, dev: { dmaMaskBits: 32 } });
      const e = errorOf(() => dmaMapPhys(m.dev, 6 * GiB, 256 * 1024 + 1, DMA_TO_DEVICE));
      expect(e.code).toBe("ENOMEM");
      expect(m.swiotlb!.counters.c.failures).toBe(1);
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    });

    it("bounces every mapping when bouncing is forced, even for a 64-bit device", () => {
      const m = machine("none", { swiotlbBytes: 1 * MiB, dev: { forceBounce: true } });
      const phys = 6 * GiB;
      const data = fillRandom(m.memory, phys, 0x100, 3);
      const addr = dmaMapPhys(m.dev, phys, 0x100, DMA_BIDIRECTIONAL);
      expect(m.swiotlb!.isSwiotlbBuffer(addr)).toBe(true);
      const got = new Uint8Array(0x100);
      m.dma.read(addr, got);
      expect(got).toEqual(data);
      m.dma.write(addr, new Uint8Array(0x100).fill(7));
      dmaSyncSingleForCpu(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      expect(m.memory.readBytes(phys, 0x100).every((x) => x === 7)).toBe(true);
      m.memory.fill(phys, 0x100, 8);
      dmaSyncSingleForDevice(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      m.dma.read(addr, got);
      expect(got.every((x) => x === 8)).toBe(true);
      dmaUnmapPhys(m.dev, addr, 0x100, DMA_BIDIRECTIONAL);
      // MMIO cannot be bounced.
      expect(errorOf(() => dmaMapResource(m.dev, 6 * GiB, 0x100, DMA_TO_DEVICE)).code).toBe("EIO");
      expect(m.debug!.errors).toEqual([]);
    });

    it("refuses forced bouncing without a pool", () => {
      expect(() => machine("none", { dev: { forceBounce: true } })).toThrow(DmaError);
    });

    it("never bounces MMIO: the address is the phys and an unreachable one fails with EIO", () => {
      const m = machine("none", {
        swiotlbBytes: 1 * MiB,
        dev: { dmaMaskBits: 32 },
        regions: [
          { start: 0xc000_0000, size: MiB, kind: "mmio", owner: "low-bar" },
          { start: 2 ** 40, size: MiB, kind: "mmio", owner: "high-bar" },
        ],
      });
      const low = dmaMapResource(m.dev, 0xc000_0040, 0x40, DMA_TO_DEVICE);
      expect(low).toBe(0xc000_0040);
      dmaUnmapResource(m.dev, low, 0x40, DMA_TO_DEVICE);
      expect(
        errorOf(() => dmaMapPhys(m.dev, 2 ** 40, 0x40, DMA_TO_DEVICE, DMA_ATTR_MMIO)).code,
      ).toBe("EIO");
      expect(m.swiotlb!.counters.c.maps).toBe(0);
    });
  });

  describe("cache maintenance on a non-coherent device", () => {
    it("cleans on map and invalidates on unmap and sync by direction", () => {
      const m = machine("none", {
        dev: { coherent: false },
        regions: [{ start: 2 ** 40, size: MiB, kind: "mmio", owner: "bar" }],
      });
      const c = m.dev.counters.c;
      const phys = 5 * GiB;
      const a = dmaMapPhys(m.dev, phys, 0x1000, DMA_TO_DEVICE);
      expect(c.cacheCleanBytes).toBe(0x1000);
      dmaUnmapPhys(m.dev, a, 0x1000, DMA_TO_DEVICE);
      expect(c.cacheInvalidateBytes).toBe(0); // nothing for TO_DEVICE
      const b = dmaMapPhys(m.dev, phys, 0x800, DMA_FROM_DEVICE);
      expect(c.cacheCleanBytes).toBe(0x1800);
      dmaSyncSingleForCpu(m.dev, b, 0x800, DMA_FROM_DEVICE);
      expect(c.cacheInvalidateBytes).toBe(0x800);
      dmaSyncSingleForDevice(m.dev, b, 0x800, DMA_FROM_DEVICE);
      expect(c.cacheCleanBytes).toBe(0x2000);
      dmaUnmapPhys(m.dev, b, 0x800, DMA_FROM_DEVICE);
      expect(c.cacheInvalidateBytes).toBe(0x1000);
      // SKIP_CPU_SYNC: the caller owns cache maintenance.
      const d = dmaMapPhys(m.dev, phys, 0x400, DMA_BIDIRECTIONAL, DMA_ATTR_SKIP_CPU_SYNC);
      dmaUnmapPhys(m.dev, d, 0x400, DMA_BIDIRECTIONAL, DMA_ATTR_SKIP_CPU_SYNC);
      expect(c.cacheCleanBytes).toBe(0x2000);
      expect(c.cacheInvalidateBytes).toBe(0x1000);
      // MMIO never gets cache maintenance.
      const r = dmaMapResource(m.dev, 2 ** 40, 0x100, DMA_TO_DEVICE);
      dmaUnmapResource(m.dev, r, 0x100, DMA_TO_DEVICE);
      expect(c.cacheCleanBytes).toBe(0x2000);
      expect(m.dev.dmaSkipSync).toBe(false);
      expect(dmaNeedSync(m.dev, a)).toBe(true);
      expect(m.debug!.errors).toEqual([]);
    });

    it("does no cache maintenance on a coherent device", () => {
      const m = machine("none");
      const a = dmaMapPhys(m.dev, 5 * GiB, 0x1000, DMA_FROM_DEVICE);
      dmaSyncSingleForCpu(m.dev, a, 0x1000, DMA_FROM_DEVICE);
      dmaUnmapPhys(m.dev, a, 0x1000, DMA_FROM_DEVICE);
      expect(m.dev.counters.c.cacheCleanBytes + m.dev.counters.c.cacheInvalidateBytes).toBe(0);
    });
  });

  describe("dmaNeedUnmap", () => {
    it("is false for a coherent never-bounced direct device with debug off, true after a bounce", () => {
      const m = machine("none", { debug: false, swiotlbBytes: MiB, dev: { dmaMaskBits: 32 } });
      const low = dmaMapPhys(m.dev, 0x1000_0000, 0x100, DMA_TO_DEVICE);
      expect(low).toBe(0x1000_0000);
      expect(dmaNeedUnmap(m.dev)).toBe(false);
      expect(dmaNeedSync(m.dev, low)).toBe(false);
      const high = dmaMapPhys(m.dev, 5 * GiB, 0x100, DMA_TO_DEVICE);
      expect(dmaNeedUnmap(m.dev)).toBe(true);
      dmaUnmapPhys(m.dev, high, 0x100, DMA_TO_DEVICE);
      dmaUnmapPhys(m.dev, low, 0x100, DMA_TO_DEVICE);
      expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
    });
  });
});
