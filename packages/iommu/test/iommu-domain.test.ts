import { PhysMemory } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_ACCESS,
  FAULT_REASON,
  IOMMU_DOMAIN,
  IOMMU_PROT,
  IommuDomain,
  IotlbGather,
  Iotlb,
  translate,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;
const mem = () => new PhysMemory({ ramBytes: 8 * 1024 ** 3 });

describe("IommuDomain", () => {
  it("uses Linux's type values and names", () => {
    expect(IOMMU_DOMAIN).toEqual({ BLOCKED: 0, IDENTITY: 4, UNMANAGED: 1, DMA: 3, DMA_FQ: 11 });
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA_FQ, mem: mem() });
    expect([d.typeName, d.isDma, d.isLazy, d.isPaging]).toEqual(["DMA-FQ", true, true, true]);
    d.downgradeToStrict();
    expect([d.typeName, d.isLazy]).toEqual(["DMA", false]);
    expect(d.pgsizeBitmap).toBe(0x1000 + 0x200000 + 0x40000000);
    expect(d.geometry).toEqual({ apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true });
  });

  it("translates 1:1 in an identity domain and faults everything in a blocked one", () => {
    const id = new IommuDomain({ type: IOMMU_DOMAIN.IDENTITY });
    expect(id.iovaToPhys(2 ** 40 + 5)).toBe(2 ** 40 + 5);
    expect(translate(id, 2 ** 40, 100, DMA_ACCESS.WRITE)).toEqual({
      ok: true,
      runs: [{ phys: 2 ** 40, len: 100 }],
      staleHits: 0,
    });
    expect(() => id.map(0, 0, 0x1000, RW)).toThrow(expect.objectContaining({ code: "EINVAL" }));
    const bl = new IommuDomain({ type: IOMMU_DOMAIN.BLOCKED });
    expect(bl.iovaToPhys(0x1000)).toBe(0);
    const r = translate(bl, 0x1000, 4, DMA_ACCESS.READ);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.fault).toMatchObject({ iova: 0x1000, reason: FAULT_REASON.BLOCKED, access: "read" });
    expect(bl.faultLog.entries()).toHaveLength(1);
    expect(bl.unmapFast(0x1000, 0x1000, new IotlbGather())).toBe(0);
  });

  it("maps with sync, unmaps strictly, and the device then faults", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: mem() });
    const iova = 2 ** 47 - 0x4000;
    d.map(iova, 2 ** 33, 0x4000, RW);
    expect(d.counters.c.syncMapCalls).toBe(1);
    expect(translate(d, iova + 0x10, 0x3000, DMA_ACCESS.READ)).toMatchObject({
      ok: true,
      runs: [{ phys: 2 ** 33 + 0x10, len: 0x3000 }],
    });
    expect(d.unmap(iova, 0x4000)).toBe(0x4000);
    const r = translate(d, iova + 0x10, 4, DMA_ACCESS.READ);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault.reason).toBe(FAULT_REASON.NOT_PRESENT);
    expect(d.iotlb.counters.c.staleHits).toBe(0);
  });

  it("issues a range invalidation on syncMap only when configured to need it", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.UNMANAGED, mem: mem(), needsSyncMap: true });
    d.map(2 ** 32, 0x1000, 0x1000, RW);
    expect(d.counters.c.syncMapFlushes).toBe(1);
    expect(d.iotlb.counters.c.invalidateRangeCmds).toBe(1);
  });

  it("syncs the gathered range once for a contiguous unmap and releases table pages after it (eager table freeing)", () => {
    const m = mem();
    const start = m.pagesInUse;
    const d = new IommuDomain({
      type: IOMMU_DOMAIN.DMA,
      mem: m,
      pgtable: { freeEmptyTables: true },
    });
    const iova = 2 ** 36;
    d.map(iova, 0x100000, 0x10000, RW);
    for (let i = 0; i < 16; i++) translate(d, iova + i * 0x1000, 1, DMA_ACCESS.READ);
    expect(d.iotlb.countFor(d.id)).toBe(16);
    const g = new IotlbGather();
    expect(d.unmapFast(iova, 0x10000, g)).toBe(0x10000);
    expect([g.start, g.end]).toEqual([iova, iova + 0xffff]);
    expect(g.freelist.length).toBe(3);
    expect(m.pagesInUse).toBe(start + 4);
    d.iotlbSync(g);
    expect(d.iotlb.countFor(d.id)).toBe(0);
    expect(d.iotlb.counters.c.invalidateRangeCmds).toBe(1);
    expect(m.pagesInUse).toBe(start + 1);
    d.pgtable!.destroy();
    expect(m.pagesInUse).toBe(start);
  });

  it("faults outside the aperture and with the wrong permission", () => {
    const d = new IommuDomain({
      type: IOMMU_DOMAIN.DMA,
      mem: mem(),
      geometry: { apertureStart: 0x100000, apertureEnd: 2 ** 40 - 1 },
    });
    d.map(0x100000, 0x5000, 0x1000, IOMMU_PROT.READ);
    d.map(0x200000, 0x9000, 0x1000, RW + IOMMU_PROT.PRIV);
    const out = translate(d, 0xff000, 0x2000, DMA_ACCESS.READ);
    expect(out.ok ? null : out.fault.reason).toBe(FAULT_REASON.OUTSIDE_APERTURE);
    const top = translate(d, 2 ** 40 - 4, 8, DMA_ACCESS.READ);
    expect(top.ok ? null : [top.fault.reason, top.fault.iova]).toEqual([
      FAULT_REASON.OUTSIDE_APERTURE,
      2 ** 40,
    ]);
    const w = translate(d, 0x100000, 4, DMA_ACCESS.WRITE);
    expect(w.ok ? null : w.fault.reason).toBe(FAULT_REASON.PERMISSION);
    expect(translate(d, 0x100000, 4, DMA_ACCESS.READ).ok).toBe(true);
    const p = translate(d, 0x200000, 4, DMA_ACCESS.WRITE);
    expect(p.ok ? null : p.fault.reason).toBe(FAULT_REASON.PERMISSION);
    expect(translate(d, 0x200000, 4, DMA_ACCESS.WRITE, true).ok).toBe(true);
    expect(d.counters.c.faults).toBe(4);
  });

  it("keeps a bounded fault log", () => {
    const d = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: mem(), faultLogSize: 3 });
    for (let i = 0; i < 5; i++) translate(d, 2 ** 32 + i * 0x1000, 1, DMA_ACCESS.READ);
    expect(d.faultLog.entries().map((f) => f.iova)).toEqual([
      2 ** 32 + 0x2000,
      2 ** 32 + 0x3000,
      2 ** 32 + 0x4000,
    ]);
    expect(d.faultLog.total).toBe(5);
  });

  it("shares one IOTLB between domains with separate tags", () => {
    const tlb = new Iotlb();
    const a = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: mem(), iotlb: tlb });
    const b = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: mem(), iotlb: tlb });
    a.map(0x1000, 0xa000, 0x1000, RW);
    b.map(0x1000, 0xb000, 0x1000, RW);
    expect(translate(a, 0x1000, 1, DMA_ACCESS.READ)).toMatchObject({ runs: [{ phys: 0xa000 }] });
    expect(translate(b, 0x1000, 1, DMA_ACCESS.READ)).toMatchObject({ runs: [{ phys: 0xb000 }] });
    a.flushIotlbAll();
    expect(tlb.countFor(a.id)).toBe(0);
    expect(tlb.countFor(b.id)).toBe(1);
  });
});
