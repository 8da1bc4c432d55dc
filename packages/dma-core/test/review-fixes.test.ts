/**
 * Review fixes: `dma_max_mapping_size` on the direct path, the skip-sync reset of every SWIOTLB
 * mapping, the scatterlist's IOMMU protection with host-bridge P2P, and SWIOTLB slot placement.
 */
import { protName } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaIovaState,
  SgTable,
  Swiotlb,
  dmaAddressingLimited,
  dmaGetRequiredMask,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMapSg,
  dmaMaxMappingSize,
  dmaNeedSync,
  dmaOptMappingSize,
  dmaSyncSingleForCpu,
  dmaUnmapPhys,
  dmaUnmapSg,
} from "../src/index.ts";
import { PhysMemory } from "@dmasim/bvec";
import {
  GiB,
  KiB,
  MiB,
  NO_LEAKS,
  baseline,
  fillRandom,
  leaks,
  machine,
} from "../src/testing/index.ts";

const NO_LIMIT = Number.MAX_SAFE_INTEGER;
const SWIOTLB_MAX = 256 * KiB - 4 * KiB; // 128 slots less the 4 KiB min_align_mask rounding

describe("dma_max_mapping_size / dma_opt_mapping_size (dma_direct_max_mapping_size)", () => {
  it("a direct 64-bit device with a SWIOTLB pool is not limited", () => {
    const m = machine("none", { swiotlbBytes: MiB });
    expect(dmaAddressingLimited(m.dev)).toBe(false);
    expect(dmaMaxMappingSize(m.dev)).toBe(NO_LIMIT);
    expect(dmaOptMappingSize(m.dev)).toBe(NO_LIMIT);
  });

  it("the SWIOTLB limit applies to an addressing-limited device, or with forced bouncing", () => {
    // 16 GiB of RAM, the part under the PCI hole remapped above 16 GiB: 35 bits are required.
    const m32 = machine("none", { swiotlbBytes: MiB, dev: { dmaMaskBits: 32 } });
    const top = Math.max(...m32.memory.regions.filter((r) => r.kind === "ram").map((r) => r.end));
    expect(top).toBeGreaterThan(16 * GiB);
    expect(dmaGetRequiredMask(m32.dev)).toBe(32 * GiB - 1);
    expect(dmaAddressingLimited(m32.dev)).toBe(true);
    expect(dmaMaxMappingSize(m32.dev)).toBe(SWIOTLB_MAX);
    expect(dmaOptMappingSize(m32.dev)).toBe(SWIOTLB_MAX);
    const bus = machine("none", { swiotlbBytes: MiB, dev: { busDmaLimit: 4 * GiB - 1 } });
    expect(dmaAddressingLimited(bus.dev)).toBe(true);
    expect(dmaMaxMappingSize(bus.dev)).toBe(SWIOTLB_MAX);
    const forced = machine("none", { swiotlbBytes: MiB, dev: { forceBounce: true } });
    expect(dmaAddressingLimited(forced.dev)).toBe(false);
    expect(dmaMaxMappingSize(forced.dev)).toBe(SWIOTLB_MAX);
    // 34 bits do not reach the top of RAM; 35 bits do.
    const m34 = machine("none", { swiotlbBytes: MiB, dev: { dmaMaskBits: 34 } });
    expect(dmaAddressingLimited(m34.dev)).toBe(true);
    const m35 = machine("none", { swiotlbBytes: MiB, dev: { dmaMaskBits: 35 } });
    expect(dmaAddressingLimited(m35.dev)).toBe(false);
    expect(dmaMaxMappingSize(m35.dev)).toBe(NO_LIMIT);
    // Limited but without a pool: nothing to bounce through, no limit.
    expect(dmaMaxMappingSize(machine("none", { dev: { dmaMaskBits: 32 } }).dev)).toBe(NO_LIMIT);
  });

  it("a dma_range_map that leaves RAM out makes the device addressing-limited", () => {
    const m = machine("none", {
      swiotlbBytes: MiB,
      dev: { dmaRangeMap: [{ cpuStart: 0, dmaStart: 0, size: 8 * GiB }] },
    });
    expect(dmaAddressingLimited(m.dev)).toBe(true);
    expect(dmaMaxMappingSize(m.dev)).toBe(SWIOTLB_MAX);
  });

  it("under an IOMMU: 32 bits are enough; opt size is min(max size, iova_rcache_range)", () => {
    expect(dmaAddressingLimited(machine("strict", { dev: { dmaMaskBits: 32 } }).dev)).toBe(false);
    expect(dmaAddressingLimited(machine("strict", { dev: { dmaMaskBits: 31 } }).dev)).toBe(true);
    const s = machine("strict", { swiotlbBytes: MiB });
    expect(dmaMaxMappingSize(s.dev)).toBe(NO_LIMIT);
    expect(dmaOptMappingSize(s.dev)).toBe(128 * KiB);
    const u = machine("untrusted");
    expect(dmaMaxMappingSize(u.dev)).toBe(SWIOTLB_MAX);
    expect(dmaOptMappingSize(u.dev)).toBe(128 * KiB);
  });
});

describe("every SWIOTLB mapping clears skip-sync (swiotlb_tbl_map_single -> dma_reset_need_sync)", () => {
  it("a coherent untrusted device: FROM_DEVICE sub-granule map, sync for CPU copies the bytes out", () => {
    const m = machine("untrusted", { debug: false });
    expect(m.dev.coherent).toBe(true);
    expect(m.dev.dmaSkipSync).toBe(true);
    const phys = m.memory.allocPages(0) * 4096 + 0x80;
    const b = baseline(m);
    const addr = dmaMapPhys(m.dev, phys, 0x200, DMA_FROM_DEVICE);
    expect(m.swiotlb!.isSwiotlbBuffer(m.domain!.iovaToPhys(addr))).toBe(true);
    expect(dmaNeedSync(m.dev, addr)).toBe(true);
    const data = new Uint8Array(0x200).map((_, i) => (i * 7 + 3) % 256);
    expect(m.dma.write(addr, data).ok).toBe(true);
    // The original has not seen the device's write yet: it is in the bounce slot.
    expect(m.memory.readBytes(phys, 0x200)).not.toEqual(data);
    dmaSyncSingleForCpu(m.dev, addr, 0x200, DMA_FROM_DEVICE);
    expect(m.memory.readBytes(phys, 0x200)).toEqual(data);
    dmaUnmapPhys(m.dev, addr, 0x200, DMA_FROM_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("a dma_iova_link head bounce clears it", () => {
    const m = machine("untrusted", { debug: false });
    const phys = m.memory.allocPages(0) * 4096 + 0x200;
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(m.dev, state, phys, 0x100)).toBe(true);
    expect(m.dev.dmaSkipSync).toBe(true);
    const addr = dmaIovaLink(m.dev, state, phys, 0, 0x100, DMA_FROM_DEVICE);
    expect(m.dev.dmaSkipSync).toBe(false);
    expect(dmaNeedSync(m.dev, addr)).toBe(true);
    dmaIovaDestroy(m.dev, state, 0x100, DMA_FROM_DEVICE);
  });

  it("a scatterlist bounce clears it", () => {
    const m = machine("untrusted", { debug: false });
    const sgt = new SgTable(1);
    sgt.sgl[0]!.phys = m.memory.allocPages(0) * 4096 + 0x40;
    sgt.sgl[0]!.length = 0x100;
    expect(m.dev.dmaSkipSync).toBe(true);
    expect(dmaMapSg(m.dev, sgt, 1, DMA_TO_DEVICE)).toBe(1);
    expect(m.dev.dmaSkipSync).toBe(false);
    dmaUnmapSg(m.dev, sgt, 1, DMA_TO_DEVICE);
  });
});

describe("iommu_dma_map_sg: the protection is the caller's attrs alone", () => {
  it("a host-bridge P2P entry gets a regular IOVA; the RAM entry keeps IOMMU_CACHE", () => {
    const bar = 2 ** 40;
    const m = machine("strict", {
      regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
      dev: { p2p: { gpu0: { map: "thru-host-bridge" } } },
    });
    const ram = m.memory.allocPages(0) * 4096;
    fillRandom(m.memory, ram, 0x1000, 3);
    const b = baseline(m);
    const sgt = new SgTable(2);
    sgt.sgl[0]!.phys = ram;
    sgt.sgl[0]!.length = 0x1000;
    sgt.sgl[1]!.phys = bar;
    sgt.sgl[1]!.length = 0x1000;
    const n = dmaMapSg(m.dev, sgt, 2, DMA_TO_DEVICE);
    expect(n).toBeGreaterThanOrEqual(1);
    const base = sgt.sgl[0]!.dmaAddress;
    const pt = m.domain!.pgtable!;
    expect(pt.walk(base).phys).toBe(ram);
    expect(protName(pt.walk(base).prot)).toBe("READ|CACHE");
    expect(pt.walk(base + 0x1000).phys).toBe(bar);
    expect(protName(pt.walk(base + 0x1000).prot)).toBe("READ|CACHE");
    dmaUnmapSg(m.dev, sgt, 2, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });
});

describe("SWIOTLB slot placement (swiotlb_search_pool_area)", () => {
  /** A 32-bit direct device with no min_align_mask: RAM above 4 GiB is bounced. */
  function bouncing(segmentBoundaryMask?: number) {
    const m = machine("none", {
      swiotlbBytes: MiB,
      dev: {
        dmaMaskBits: 32,
        minAlignMask: 0,
        ...(segmentBoundaryMask !== undefined ? { segmentBoundaryMask } : {}),
      },
    });
    const buf = m.memory.allocPages(2) * 4096;
    expect(buf).toBeGreaterThan(2 ** 32);
    return { m, buf };
  }

  it("an 8 KiB direct bounce lands page-aligned; 2 KiB ones pack slot after slot", () => {
    const { m, buf } = bouncing();
    const b = baseline(m);
    const small = [0, 1, 2].map((i) => dmaMapPhys(m.dev, buf + i * 0x800, 0x800, DMA_TO_DEVICE));
    expect(small[1]).toBe(small[0]! + 0x800);
    expect(small[2]).toBe(small[0]! + 0x1000);
    // The next free slot is at +0x1800; the 8 KiB bounce skips to the next page.
    const big = dmaMapPhys(m.dev, buf + 0x2000, 0x2000, DMA_TO_DEVICE);
    expect(m.swiotlb!.isSwiotlbBuffer(big)).toBe(true);
    expect(big % 4096).toBe(0);
    expect(big).toBe(small[0]! + 0x2000);
    expect(m.memory.readBytes(big, 0x2000)).toEqual(m.memory.readBytes(buf + 0x2000, 0x2000));
    for (const a of small) dmaUnmapPhys(m.dev, a, 0x800, DMA_TO_DEVICE);
    dmaUnmapPhys(m.dev, big, 0x2000, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("the slots never cross the device's segment boundary", () => {
    const { m, buf } = bouncing(0x1fff);
    const small = dmaMapPhys(m.dev, buf, 0x800, DMA_TO_DEVICE);
    // 6 KiB: page-aligned at +0x1000 would cross the 8 KiB boundary at +0x2000.
    const big = dmaMapPhys(m.dev, buf + 0x1000, 0x1800, DMA_TO_DEVICE);
    expect(big % 4096).toBe(0);
    expect(Math.floor(big / 0x2000)).toBe(Math.floor((big + 0x1800 - 1) / 0x2000));
    dmaUnmapPhys(m.dev, big, 0x1800, DMA_TO_DEVICE);
    dmaUnmapPhys(m.dev, small, 0x800, DMA_TO_DEVICE);
    expect(m.swiotlb!.counters.c.slotsInUse).toBe(0);
  });
});

describe("SWIOTLB per-CPU areas (swiotlb_adjust_nareas, swiotlb_find_slots)", () => {
  const pool = (cpus: number, size = 64 * MiB) => {
    const memory = new PhysMemory({ ramBytes: 16 * GiB, pageSize: 4096 });
    return new Swiotlb(memory, { size, cpus });
  };
  const dev = (cpu: number) => ({ segmentBoundaryMask: 0, dmaRangeMap: [], cpu });

  it("rounds the CPUs up to a power of two, at most one area per memory block of the pool", () => {
    expect(pool(1).nareas).toBe(1);
    expect(pool(3).nareas).toBe(4);
    expect(pool(8).nareas).toBe(8);
    // 64 MiB is 16 blocks of 4 MiB: 64 CPUs share 16 areas.
    expect(pool(64).nareas).toBe(16);
    expect(pool(64, 4 * MiB).nareas).toBe(1);
  });

  it("a CPU searches its own area first (cpu & (nareas - 1)), then the next ones", () => {
    const p = pool(4);
    const quarter = 16 * MiB;
    const at = (cpu: number) =>
      p.mapSingle(p.memory.allocPages(0) * 4096, 0x800, 0, 0, 0, dev(cpu));
    const a = [0, 1, 2, 3, 4].map(at);
    const base = a[0] as number;
    // Each CPU's first bounce lands in its own quarter of the pool; CPU 4 shares CPU 0's area.
    // (The pool's blocks are allocated one after another, so the areas are in address order.)
    const areaOf = (x: number) => Math.floor((x - base) / quarter);
    expect(a.map(areaOf)).toEqual([0, 1, 2, 3, 0]);
    expect(a[4]).toBe(base + 0x800);
    for (const x of a) p.unmapSingle(x, 0x800, DMA_TO_DEVICE, true);
    expect(p.counters.c.slotsInUse).toBe(0);
  });
});
