import { describe, expect, it } from "vitest";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaUnmapPhys,
} from "../src/index.ts";
import { GiB, fillRandom, machine } from "./machine.ts";

describe("device-dma", () => {
  it("returns a fault record for a device in a blocked domain", () => {
    const m = machine("blocked", { debug: false });
    const r = m.dma.read(5 * GiB, new Uint8Array(8));
    expect(r.ok).toBe(false);
    expect(r.fault?.reason).toBe("blocked");
    expect(m.dma.counters.c.faults).toBe(1);
    expect(m.domain!.faultLog.entries()).toHaveLength(1);
  });

  it("returns a not-present fault for an IOVA that was never mapped, and -1 from readU32", () => {
    const m = machine("strict", { debug: false });
    expect(m.dma.readU32(0x1234_0000)).toBe(-1);
    expect(m.dma.lastResult.fault?.reason).toBe("not-present");
    expect(m.dma.lastResult.fault?.iova).toBe(0x1234_0000);
  });

  it("returns a permission fault when the device writes a TO_DEVICE mapping", () => {
    const m = machine("strict", { debug: false });
    const p = m.memory.allocPages(0) * 4096;
    const a = dmaMapPhys(m.dev, p, 0x100, DMA_TO_DEVICE);
    expect(m.dma.write(a, new Uint8Array(4)).fault?.reason).toBe("permission");
    expect(m.dma.read(a, new Uint8Array(4)).ok).toBe(true);
    dmaUnmapPhys(m.dev, a, 0x100, DMA_TO_DEVICE);
    const f = dmaMapPhys(m.dev, p, 0x100, DMA_FROM_DEVICE);
    expect(m.dma.read(f, new Uint8Array(4)).fault?.reason).toBe("permission");
    dmaUnmapPhys(m.dev, f, 0x100, DMA_FROM_DEVICE);
  });

  it("still reaches memory through a stale IOTLB entry in lazy mode until the flush", () => {
    const m = machine("lazy", { debug: false });
    const p = m.memory.allocPages(0) * 4096;
    const data = fillRandom(m.memory, p, 64, 1);
    const s = new DmaIovaState();
    dmaIovaTryAlloc(m.dev, s, p, 0x1000);
    dmaIovaLink(m.dev, s, p, 0, 0x1000, DMA_TO_DEVICE);
    dmaIovaSync(m.dev, s, 0, 0x1000);
    const got = new Uint8Array(64);
    m.dma.read(s.addr, got);
    dmaIovaDestroy(m.dev, s, 0x1000, DMA_TO_DEVICE);
    got.fill(0);
    expect(m.dma.read(s.addr, got).ok).toBe(true);
    expect(got).toEqual(data);
    expect(m.domain!.counters.c.staleTranslations).toBe(1);
    m.clock.advance(10_000_000);
    expect(m.dma.read(s.addr, got).fault?.reason).toBe("not-present");
  });

  it("cannot reach memory through a stale entry in strict mode", () => {
    const m = machine("strict", { debug: false });
    const p = m.memory.allocPages(0) * 4096;
    const a = dmaMapPhys(m.dev, p, 0x1000, DMA_TO_DEVICE);
    m.dma.read(a, new Uint8Array(8));
    dmaUnmapPhys(m.dev, a, 0x1000, DMA_TO_DEVICE);
    expect(m.dma.read(a, new Uint8Array(8)).ok).toBe(false);
    expect(m.domain!.counters.c.staleTranslations).toBe(0);
  });

  it("moves bytes at the physical address in passthrough and reports a bus error for holes", () => {
    const m = machine("passthrough", { debug: false });
    const p = 6 * GiB + 0x10;
    m.dma.write(p, new Uint8Array([1, 2, 3, 4]));
    expect(m.memory.readU32(p)).toBe(0x04030201);
    expect(m.dma.readU32(p)).toBe(0x04030201);
    const none = machine("none", { debug: false });
    const r = none.dma.read(3 * GiB, new Uint8Array(4));
    expect(r.ok).toBe(false);
    expect(r.fault).toBeUndefined();
    expect(r.busError).toMatch(/0xc0000000/);
    expect(none.dma.counters.c.busErrors).toBe(1);
  });

  it("counts bytes moved in each direction", () => {
    const m = machine("none", { debug: false });
    m.dma.write(5 * GiB, new Uint8Array(100));
    m.dma.read(5 * GiB, new Uint8Array(30));
    expect(m.dma.counters.c.bytesWritten).toBe(100);
    expect(m.dma.counters.c.bytesRead).toBe(30);
  });
});
