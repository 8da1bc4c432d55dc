/**
 * Review fixes of lower impact: `dma_need_sync` through `dma_to_phys`, `dma_set_mask`
 * re-deriving skip-sync, PCI's default segment boundary, `iommu_map_sg`'s run ends at a
 * bus-address entry, the smallest `dma_pool` block, and `errno_to_blk_status`.
 */
import { BLK_STS } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_TO_DEVICE,
  Device,
  DmaPool,
  SgTable,
  dmaMapPhys,
  dmaMapSg,
  dmaNeedSync,
  dmaUnmapPhys,
  dmaUnmapSg,
  errnoToBlkStatus,
} from "../src/index.ts";
import { GiB, MiB, NO_LEAKS, baseline, leaks, machine } from "../src/testing/index.ts";

describe("dma_need_sync on the direct path (dma_direct_need_sync)", () => {
  it("looks the bounce slot up by physical address, so a bus offset does not hide it", () => {
    // The bus sees RAM 1 TiB higher than the CPU does; every mapping bounces.
    const off = 2 ** 40;
    const m = machine("none", {
      swiotlbBytes: MiB,
      debug: false,
      dev: {
        forceBounce: true,
        dmaRangeMap: [{ cpuStart: 0, dmaStart: off, size: 64 * GiB }],
      },
    });
    const phys = m.memory.allocPages(0) * 4096;
    const addr = dmaMapPhys(m.dev, phys, 0x1000, DMA_TO_DEVICE);
    expect(addr).toBeGreaterThanOrEqual(off);
    expect(m.swiotlb!.isSwiotlbBuffer(addr - off)).toBe(true);
    expect(dmaNeedSync(m.dev, addr)).toBe(true);
    // A coherent device's address outside the pool needs no sync.
    expect(dmaNeedSync(m.dev, phys + off)).toBe(false);
    dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
  });
});

describe("dma_set_mask -> dma_setup_need_sync", () => {
  it("a coherent device skips syncs again after a new mask, until the next bounce", () => {
    const m = machine("none", { swiotlbBytes: MiB, debug: false, dev: { dmaMaskBits: 32 } });
    const phys = m.memory.allocPages(0) * 4096;
    expect(phys).toBeGreaterThan(2 ** 32);
    const addr = dmaMapPhys(m.dev, phys, 0x1000, DMA_TO_DEVICE);
    expect(m.dev.dmaSkipSync).toBe(false);
    dmaUnmapPhys(m.dev, addr, 0x1000, DMA_TO_DEVICE);
    m.dev.setMaskBits(64);
    expect(m.dev.dmaSkipSync).toBe(true);
    const nc = machine("none", { debug: false, dev: { coherent: false } });
    nc.dev.setMaskBits(64);
    expect(nc.dev.dmaSkipSync).toBe(false);
  });
});

describe("PCI's default DMA parameters (pci_device_add)", () => {
  it("a PCI device's segment boundary is 4 GiB, another device has none", () => {
    const { memory } = machine("none");
    expect(new Device({ name: "pci", memory }).getSegBoundary()).toBe(0xffffffff);
    expect(new Device({ name: "plat", memory, pci: false }).getSegBoundary()).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(new Device({ name: "set", memory, segmentBoundaryMask: 0xffff }).getSegBoundary()).toBe(
      0xffff,
    );
    expect(new Device({ name: "pci", memory }).maxSegmentSize).toBe(65536);
  });
});

describe("iommu_map_sg: a bus-address entry between two RAM entries", () => {
  it("ends the physically contiguous run, so the RAM on either side is mapped by two calls", () => {
    const bar = 2 ** 40;
    const m = machine("strict", {
      regions: [{ start: bar, size: MiB, kind: "p2p", owner: "gpu0" }],
      dev: { p2p: { gpu0: { map: "bus-addr", busOffset: 0 } } },
    });
    const ram = m.memory.allocPages(1) * 4096;
    const b = baseline(m);
    const sgt = new SgTable(3);
    const parts = [
      [ram, 0x1000],
      [bar, 0x1000],
      [ram + 0x1000, 0x1000],
    ] as const;
    parts.forEach(([phys, len], i) => {
      sgt.sgl[i]!.phys = phys;
      sgt.sgl[i]!.length = len;
    });
    const calls = m.domain!.counters.c.mapCalls;
    const n = dmaMapSg(m.dev, sgt, 3, DMA_TO_DEVICE);
    expect(m.domain!.counters.c.mapCalls - calls).toBe(2);
    expect(n).toBe(3);
    const pt = m.domain!.pgtable!;
    expect(pt.walk(sgt.sgl[0]!.dmaAddress).phys).toBe(ram);
    expect(sgt.sgl[1]!.dmaAddress).toBe(bar);
    expect(pt.walk(sgt.sgl[2]!.dmaAddress).phys).toBe(ram + 0x1000);
    dmaUnmapSg(m.dev, sgt, 3, DMA_TO_DEVICE);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });
});

describe("dma_pool_create", () => {
  it("hands out blocks of at least sizeof(struct dma_block), 16 bytes", () => {
    const m = machine("none");
    const pool = new DmaPool("tiny", m.dev, 4);
    expect(pool.size).toBe(16);
    const a = pool.alloc();
    const b = pool.alloc();
    expect(Math.abs(b.cpuAddr - a.cpuAddr)).toBe(16);
    pool.freeBlock(a.cpuAddr, a.dmaAddr);
    pool.freeBlock(b.cpuAddr, b.dmaAddr);
    pool.destroy();
  });
});

describe("errno_to_blk_status (blk_errors)", () => {
  it("gives ENODEV and EBUSY their own statuses", () => {
    expect(errnoToBlkStatus("ENODEV")).toBe(BLK_STS.OFFLINE);
    expect(errnoToBlkStatus("EBUSY")).toBe(BLK_STS.DEV_RESOURCE);
    expect(errnoToBlkStatus("EFAULT")).toBe(BLK_STS.IOERR);
    expect(errnoToBlkStatus("EEXIST")).toBe(BLK_STS.IOERR);
  });
});
