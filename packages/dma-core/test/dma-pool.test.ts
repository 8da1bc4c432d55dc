import { describe, expect, it } from "vitest";
import { DmaPool } from "../src/index.ts";
import { NO_LEAKS, baseline, leaks, machine, codeOf } from "../src/testing/index.ts";

describe("dma-pool", () => {
  it("carves aligned blocks from one page, lowest address first", () => {
    const m = machine("none");
    const pool = new DmaPool("prp", m.dev, 100, 64);
    expect(pool.size).toBe(128);
    const blocks = Array.from({ length: 32 }, () => pool.alloc());
    const base = blocks[0]!.cpuAddr;
    expect(base % 4096).toBe(0);
    expect(blocks.map((b) => b.cpuAddr - base)).toEqual(
      Array.from({ length: 32 }, (_, i) => i * 128),
    );
    expect(pool.counters.c.pages).toBe(1);
    // The 33rd block needs a second page.
    const extra = pool.alloc();
    expect(pool.counters.c.pages).toBe(2);
    expect(Math.floor(extra.cpuAddr / 4096)).not.toBe(Math.floor(base / 4096));
    for (const b of [...blocks, extra]) pool.freeBlock(b.cpuAddr, b.dmaAddr);
    pool.destroy();
    expect(m.debug!.errors).toEqual([]);
  });

  it("never lets a block cross its boundary", () => {
    const m = machine("none");
    const pool = new DmaPool("bnd", m.dev, 384, 8, 1024);
    const live = Array.from({ length: 8 }, () => pool.alloc());
    const offs = live.map((b) => b.cpuAddr % 4096);
    expect(offs).toEqual([0, 384, 1024, 1408, 2048, 2432, 3072, 3456]);
    for (const b of live) {
      expect(Math.floor(b.cpuAddr / 1024)).toBe(Math.floor((b.cpuAddr + 383) / 1024));
      pool.freeBlock(b.cpuAddr, b.dmaAddr);
    }
    pool.destroy();
  });

  it("reuses the block freed last", () => {
    const m = machine("none");
    const pool = new DmaPool("r", m.dev, 256, 256);
    const a = pool.alloc();
    const b = pool.alloc();
    pool.freeBlock(a.cpuAddr, a.dmaAddr);
    expect(pool.alloc()).toEqual(a);
    expect(pool.counters.c.blocksInUse).toBe(2);
    expect(pool.counters.c.allocs).toBe(3);
    expect(pool.counters.c.frees).toBe(1);
    pool.freeBlock(a.cpuAddr, a.dmaAddr);
    pool.freeBlock(b.cpuAddr, b.dmaAddr);
    pool.destroy();
  });

  it("refuses to be destroyed while a block is busy (EBUSY), and double frees (EINVAL)", () => {
    const m = machine("strict");
    const b0 = baseline(m);
    const pool = new DmaPool("busy", m.dev, 64, 64);
    const b = pool.alloc();
    expect(codeOf(() => pool.destroy())).toBe("EBUSY");
    pool.freeBlock(b.cpuAddr, b.dmaAddr);
    expect(codeOf(() => pool.freeBlock(b.cpuAddr, b.dmaAddr))).toBe("EINVAL");
    pool.destroy();
    expect(leaks(m, b0)).toEqual(NO_LEAKS);
  });

  it("rejects an alignment that is not a power of two and a boundary smaller than a block", () => {
    const m = machine("none");
    expect(codeOf(() => new DmaPool("a", m.dev, 64, 48))).toBe("EINVAL");
    expect(codeOf(() => new DmaPool("b", m.dev, 512, 8, 256))).toBe("EINVAL");
  });

  it("hands out DMA addresses the device reaches through the IOMMU", () => {
    for (const backend of ["strict", "lazy", "granule64k"] as const) {
      const m = machine(backend);
      const b0 = baseline(m);
      const pool = new DmaPool("iommu", m.dev, 512, 512);
      const blk = pool.alloc();
      expect(blk.dmaAddr).not.toBe(blk.cpuAddr);
      expect(m.domain!.iovaToPhys(blk.dmaAddr)).toBe(blk.cpuAddr);
      m.memory.fill(blk.cpuAddr, 512, 0x3c);
      const got = new Uint8Array(512);
      expect(m.dma.read(blk.dmaAddr, got).ok).toBe(true);
      expect(got.every((x) => x === 0x3c)).toBe(true);
      pool.freeBlock(blk.cpuAddr, blk.dmaAddr);
      pool.destroy();
      expect(leaks(m, b0)).toEqual(NO_LEAKS);
    }
  });
});
