import { describe, expect, it } from "vitest";
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaAccessEvent,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaUnmapPhys,
} from "../src/index.ts";
import { IOMMU_PROT } from "@dmasim/iommu";
import { GiB, fillRandom, machine } from "../src/testing/index.ts";

/** A byte sink recording what reaches it. */
function recorder(size: number) {
  const bytes = new Uint8Array(size);
  let calls = 0;
  return {
    bytes,
    get calls() {
      return calls;
    },
    write(at: number, src: Uint8Array, srcOff: number, len: number): void {
      calls++;
      bytes.set(src.subarray(srcOff, srcOff + len), at);
    },
  };
}

describe("device-dma", () => {
  it("tells an observer each access: its runs, IOTLB misses, stale hits and faults", () => {
    const m = machine("lazy", { debug: false });
    const events: DmaAccessEvent[] = [];
    m.dma.observer = (e) => events.push(e);
    const p = m.memory.allocPages(1) * 4096;
    const s = new DmaIovaState();
    dmaIovaTryAlloc(m.dev, s, p, 0x2000);
    dmaIovaLink(m.dev, s, p, 0, 0x2000, DMA_TO_DEVICE);
    dmaIovaSync(m.dev, s, 0, 0x2000);
    m.dma.read(s.addr + 0x800, new Uint8Array(0x1000)); // two pages, both IOTLB misses
    m.dma.read(s.addr, new Uint8Array(16)); // a hit
    dmaIovaDestroy(m.dev, s, 0x2000, DMA_TO_DEVICE);
    m.dma.read(s.addr, new Uint8Array(16)); // a stale hit: lazy mode, before the flush
    m.dma.write(s.addr, new Uint8Array(16)); // still read-only: a permission fault
    expect(events).toHaveLength(4);
    expect(events[0]).toMatchObject({
      addr: s.addr + 0x800,
      len: 0x1000,
      write: false,
      translated: true,
      pages: 2,
      walks: 2,
      staleHits: 0,
      ok: true,
      runs: [{ phys: p + 0x800, len: 0x1000 }],
    });
    expect(events[1]).toMatchObject({ pages: 1, walks: 0, staleHits: 0, ok: true });
    expect(events[2]).toMatchObject({ pages: 1, walks: 0, staleHits: 1, ok: true });
    expect(events[3]).toMatchObject({ write: true, ok: false, runs: [] });
    expect(events[3]?.fault?.reason).toBe("permission");
    // The direct path: the bus address, no translation.
    const none = machine("none", { debug: false });
    const seen: DmaAccessEvent[] = [];
    none.dma.observer = (e) => seen.push(e);
    none.dma.read(6 * GiB, new Uint8Array(8));
    expect(seen).toEqual([
      expect.objectContaining({ translated: false, pages: 0, runs: [{ phys: 6 * GiB, len: 8 }] }),
    ]);
  });

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
    // The 10 ms timer in jiffies at HZ=250: 3 jiffies, fired at the 4th tick (at most 16 ms).
    m.clock.advance(16_000_000);
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

  it("reads straight into a byte sink the same bytes, counts and result as read", () => {
    const a = machine("strict", { debug: false });
    const b = machine("strict", { debug: false });
    const p = a.memory.allocPages(1) * 4096;
    expect(b.memory.allocPages(1) * 4096).toBe(p);
    const data = fillRandom(a.memory, p + 100, 6000, 3);
    fillRandom(b.memory, p + 100, 6000, 3);
    const ia = dmaMapPhys(a.dev, p, 8192, DMA_TO_DEVICE);
    const ib = dmaMapPhys(b.dev, p, 8192, DMA_TO_DEVICE);
    const sink = recorder(7000);
    expect(a.dma.readTo(ia + 100, sink, 500, 6000).ok).toBe(true);
    const got = new Uint8Array(6000);
    expect(b.dma.read(ib + 100, got).ok).toBe(true);
    expect(sink.bytes.subarray(500, 6500)).toEqual(data);
    expect(got).toEqual(data);
    expect(a.dma.counters.snapshot()).toEqual(b.dma.counters.snapshot());
    expect(a.memory.counters.snapshot()).toEqual(b.memory.counters.snapshot());
    expect(a.domain!.counters.snapshot()).toEqual(b.domain!.counters.snapshot());
  });

  it("gives a byte sink nothing when a later run of the access reaches no memory", () => {
    const mmio = { start: 20 * GiB, size: 0x10000, kind: "mmio" as const };
    const a = machine("strict", { debug: false, regions: [mmio] });
    const b = machine("strict", { debug: false, regions: [mmio] });
    const p = a.memory.allocPages(0) * 4096;
    expect(b.memory.allocPages(0) * 4096).toBe(p);
    fillRandom(a.memory, p, 4096, 5);
    fillRandom(b.memory, p, 4096, 5);
    // Two IOVA pages: RAM, then a register page (a mapping Linux would make with DMA_ATTR_MMIO).
    for (const m of [a, b]) {
      m.domain!.map(0x100000, p, 4096, IOMMU_PROT.READ);
      m.domain!.map(0x101000, mmio.start, 4096, IOMMU_PROT.READ + IOMMU_PROT.MMIO);
    }
    const sink = recorder(8192);
    const ra = a.dma.readTo(0x100000, sink, 0, 8192);
    expect(ra.ok).toBe(false);
    expect(ra.busError).toMatch(/reaches no memory/);
    expect(sink.calls).toBe(0);
    const rb = b.dma.read(0x100000, new Uint8Array(8192));
    expect(rb.busError).toBe(ra.busError);
    // The RAM run was read, as read reads it, before the register page stopped the access.
    expect(a.memory.counters.c.bytesRead).toBe(4096);
    expect(a.dma.counters.snapshot()).toEqual(b.dma.counters.snapshot());
    expect(a.memory.counters.snapshot()).toEqual(b.memory.counters.snapshot());
  });

  it("counts bytes moved in each direction", () => {
    const m = machine("none", { debug: false });
    m.dma.write(5 * GiB, new Uint8Array(100));
    m.dma.read(5 * GiB, new Uint8Array(30));
    expect(m.dma.counters.c.bytesWritten).toBe(100);
    expect(m.dma.counters.c.bytesRead).toBe(30);
  });
});
