import { describe, expect, it } from "vitest";
import { PhysMemory, SimClock } from "@dmasim/bvec";
import { IOMMU_DOMAIN, IommuDomain, type IommuDomainType } from "@dmasim/iommu";
import {
  Device,
  DmaError,
  dmaAllocCoherent,
  dmaFreeCoherent,
  iommuSetupDmaOps,
} from "../src/index.ts";
import { G4, GiB, MiB, NO_LEAKS, baseline, leaks, machine } from "../src/testing/index.ts";

describe("coherent", () => {
  it("hands out zeroed memory even when the pages held data before", () => {
    const m = machine("none", { layout: [{ start: G4, size: MiB, kind: "ram", owner: "ram" }] });
    const all: number[] = [];
    for (let pfn = m.memory.tryAllocPages(0); pfn >= 0; pfn = m.memory.tryAllocPages(0)) {
      m.memory.fill(pfn * 4096, 4096, 0xff);
      all.push(pfn);
    }
    for (const pfn of all) m.memory.freePages(pfn, 0);
    const c = dmaAllocCoherent(m.dev, 0x3000);
    expect(m.memory.readBytes(c.cpuAddr, 0x4000).every((x) => x === 0)).toBe(true);
    expect(c.dmaAddr).toBe(c.cpuAddr);
    expect(m.dev.counters.c.coherentBytes).toBe(0x4000);
    dmaFreeCoherent(m.dev, 0x3000, c.cpuAddr, c.dmaAddr);
    expect(m.dev.counters.c.coherentBytes).toBe(0);
  });

  it("allocates below the coherent mask on the direct path", () => {
    for (const [bits, limit] of [
      [32, G4],
      [24, 16 * MiB],
    ] as const) {
      const m = machine("none", { dev: { coherentMaskBits: bits } });
      const c = dmaAllocCoherent(m.dev, 0x1000);
      expect(c.cpuAddr + 0x1000).toBeLessThanOrEqual(limit);
      dmaFreeCoherent(m.dev, 0x1000, c.cpuAddr, c.dmaAddr);
    }
    const m64 = machine("none");
    const c = dmaAllocCoherent(m64.dev, 0x1000);
    expect(c.cpuAddr).toBeGreaterThanOrEqual(G4);
    dmaFreeCoherent(m64.dev, 0x1000, c.cpuAddr, c.dmaAddr);
  });

  it("maps through the IOMMU with IOVA below the coherent mask", () => {
    const m = machine("strict", { dev: { coherentMaskBits: 32, pci: false } });
    const b = baseline(m);
    const c = dmaAllocCoherent(m.dev, 0x2000);
    expect(c.dmaAddr).toBeLessThan(G4);
    expect(c.cpuAddr).toBeGreaterThanOrEqual(G4);
    expect(m.domain!.iovaToPhys(c.dmaAddr + 0x1234)).toBe(c.cpuAddr + 0x1234);
    const w = new Uint8Array(16).fill(9);
    expect(m.dma.write(c.dmaAddr, w).ok).toBe(true);
    expect(m.memory.readBytes(c.cpuAddr, 16)).toEqual(w);
    dmaFreeCoherent(m.dev, 0x2000, c.cpuAddr, c.dmaAddr);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("allocates a whole 64 KiB page and IOMMU granule for a 4 KiB buffer (64 KiB pages)", () => {
    const m = machine("granule64k");
    expect(m.memory.pageSize).toBe(65536);
    const b = baseline(m);
    const c = dmaAllocCoherent(m.dev, 0x1000);
    expect(c.cpuAddr % 65536).toBe(0);
    expect(m.dev.counters.c.coherentBytes).toBe(65536);
    expect(m.domain!.iovaToPhys(c.dmaAddr)).toBe(c.cpuAddr);
    dmaFreeCoherent(m.dev, 0x1000, c.cpuAddr, c.dmaAddr);
    expect(leaks(m, b)).toEqual(NO_LEAKS);
  });

  it("refuses a DMA or DMA-FQ domain whose granule is above the CPU page; identity is fine", () => {
    const memory = new PhysMemory({ ramBytes: GiB, pageSize: 4096 });
    const domain = (type: IommuDomainType) =>
      new IommuDomain({ type, mem: memory, clock: new SimClock(), pgtable: { granule: 16384 } });
    for (const type of [IOMMU_DOMAIN.DMA, IOMMU_DOMAIN.DMA_FQ]) {
      const dev = new Device({ name: "d", memory, iommu: domain(type) });
      expect(() => iommuSetupDmaOps(dev)).toThrow(
        "IOVA granule 16384 bytes is larger than the 4096-byte CPU page",
      );
    }
    const id = new Device({ name: "d", memory, iommu: domain(IOMMU_DOMAIN.IDENTITY) });
    iommuSetupDmaOps(id);
    expect(id.dmaIommu).toBe(false);
  });

  it("refuses to free what is not a coherent allocation of that size", () => {
    const m = machine("none");
    const c = dmaAllocCoherent(m.dev, 0x1000);
    expect(() => dmaFreeCoherent(m.dev, 0x2000, c.cpuAddr, c.dmaAddr)).toThrow(DmaError);
    expect(() => dmaFreeCoherent(m.dev, 0x1000, c.cpuAddr + 8, c.dmaAddr)).toThrow(/0x/);
    dmaFreeCoherent(m.dev, 0x1000, c.cpuAddr, c.dmaAddr);
    expect(m.debug!.outstanding()).toBe(0);
  });
});
