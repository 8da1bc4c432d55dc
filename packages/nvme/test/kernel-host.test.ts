/**
 * The host driver's kernel-version gates: "bio-gap-tracking" (6.19+: no virt boundary on
 * SGL-capable I/O queues, sub-page gaps force SGLs; before, the 4 KiB boundary splits bios at
 * such joints) and "dma-map-phys" (6.18+: the single-segment path maps and unmaps with
 * `dma_map_phys`; 6.17: `dma_map_bvec` / `dma_unmap_page`).
 */
import {
  BLK_STS,
  type BlkStatus,
  type KernelVersion,
  PhysMemory,
  REQ_OP,
  SimClock,
  bioFromBvecs,
  blkRqFromBios,
  bvecFromPhys,
} from "@dmasim/bvec";
import { Device, DmaDebug, iommuSetupDmaOps } from "@dmasim/dma-core";
import { IOMMU_DOMAIN, IommuDomain } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import {
  NvmeController,
  NvmeHost,
  NvmeIod,
  USE_SGL,
  nvmeMapData,
  nvmePciUseSgls,
  nvmeUnmapData,
  type SglSupport,
} from "../src/index.ts";
import { limits, mapContextOf, pattern } from "../src/testing/index.ts";

const PAGE = 4096;
const GiB = 1024 ** 3;

/** A machine running `kernel`: memory, optional strict IOMMU, dma-debug, controller, host. */
class KernelRig {
  readonly clock = new SimClock();
  readonly memory = new PhysMemory({ ramBytes: 16 * GiB, pageSize: 4096 });
  readonly debug = new DmaDebug();
  readonly dev: Device;
  readonly ctrl: NvmeController;
  readonly host: NvmeHost;

  constructor(kernel: KernelVersion, o: { sgl?: SglSupport; strict?: boolean } = {}) {
    this.dev = new Device({
      name: "nvme0",
      memory: this.memory,
      kernel,
      clock: this.clock,
      debug: this.debug,
      iommu:
        (o.strict ?? false)
          ? new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: this.memory, clock: this.clock })
          : null,
    });
    iommuSetupDmaOps(this.dev);
    this.ctrl = new NvmeController({ dev: this.dev, clock: this.clock, sgl: o.sgl ?? "byte" });
    this.host = new NvmeHost({ dev: this.dev, bar: this.ctrl });
    this.host.enable();
  }

  /** Page `i` above 4 GiB, two pages apart from its neighbours. */
  page(i: number): number {
    const pfn = (5 * GiB) / PAGE + 2 * i;
    expect(this.memory.allocPageAt(pfn)).toBe(true);
    return pfn * PAGE;
  }

  /** Submits one bio of `parts` and drains; returns its status. */
  io(op: "read" | "write", sector: number, parts: readonly (readonly [number, number])[]) {
    let status: BlkStatus | -1 = -1;
    const bio = bioFromBvecs(
      op,
      sector,
      parts.map(([p, l]) => bvecFromPhys(p, l, PAGE)),
    );
    bio.endIo = (b) => (status = b.status);
    this.host.submitBio(bio);
    this.host.drain();
    return status;
  }

  /** The bytes at `parts`, concatenated. */
  gather(parts: readonly (readonly [number, number])[]): Uint8Array {
    const out = new Uint8Array(parts.reduce((n, [, l]) => n + l, 0));
    let at = 0;
    for (const [p, l] of parts) {
      this.memory.read(p, out, at, l);
      at += l;
    }
    return out;
  }

  /** Nothing left mapped, allocated or reported. */
  checkClean(): void {
    expect(this.host.small.inUse + this.host.large.inUse).toBe(0);
    expect(this.host.vecPool.counters.c.inUse).toBe(0);
    expect(this.debug.errors).toEqual([]);
    this.host.shutdown();
    expect(this.debug.outstanding()).toBe(0);
  }
}

describe('gate "bio-gap-tracking" (host limits and the SGL choice)', () => {
  // 0x200 bytes ending mid-page, then a whole page: a joint at 0x200 inside a controller page.
  function gapWrite(kernel: KernelVersion) {
    const r = new KernelRig(kernel, { sgl: "byte" });
    const parts = [
      [r.page(0), 0x200],
      [r.page(1), PAGE],
    ] as const;
    const data = pattern(0x200 + PAGE, 7);
    r.memory.write(parts[0][0], data.subarray(0, 0x200));
    r.memory.write(parts[1][0], data.subarray(0x200));
    expect(r.io("write", 0, parts)).toBe(BLK_STS.OK);
    const c = { ...r.host.counters.c };
    const back = [
      [r.page(2), 0x200],
      [r.page(3), PAGE],
    ] as const;
    expect(r.io("read", 0, back)).toBe(BLK_STS.OK);
    expect(Buffer.compare(r.gather(back), data)).toBe(0);
    return { r, c };
  }

  for (const kernel of ["6.19", "7.0"] as const) {
    it(`${kernel}: a 0x200 joint stays in one request, sent as one SGL command`, () => {
      const { r, c } = gapWrite(kernel);
      expect(r.host.limits.virtBoundaryMask).toBe(0);
      expect(c.submitted).toBe(1);
      expect(c.sglCommands).toBe(1);
      expect(c.prpCommands).toBe(0);
      r.checkClean();
    });
  }

  for (const kernel of ["6.17", "6.18"] as const) {
    it(`${kernel}: the 4 KiB virt boundary splits the bio at the joint into two PRP commands`, () => {
      const { r, c } = gapWrite(kernel);
      expect(r.host.limits.virtBoundaryMask).toBe(PAGE - 1);
      expect(c.submitted).toBe(2);
      expect(c.prpCommands).toBe(2);
      expect(c.sglCommands).toBe(0);
      r.checkClean();
    });
  }

  it("forces SGLs for a gappy request only from 6.19 (nvme_pci_use_sgls)", () => {
    for (const [kernel, want] of [
      ["6.17", USE_SGL.SUPPORTED],
      ["6.18", USE_SGL.SUPPORTED],
      ["6.19", USE_SGL.FORCED],
      ["7.0", USE_SGL.FORCED],
    ] as const) {
      const r = new KernelRig(kernel, { sgl: "byte" });
      const bv = [bvecFromPhys(r.page(0), 0x200, PAGE), bvecFromPhys(r.page(1), PAGE, PAGE)];
      const req = blkRqFromBios(limits(), [bioFromBvecs(REQ_OP.WRITE, 0, bv)]);
      expect(nvmePciUseSgls(mapContextOf(r.host), req, 1)).toBe(want);
      expect(nvmePciUseSgls(mapContextOf(r.host), req, 0)).toBe(USE_SGL.UNSUPPORTED);
      r.checkClean();
    }
  });
});

describe('gate "dma-map-phys" (the single-segment path)', () => {
  for (const [kernel, type] of [
    ["6.17", "single"],
    ["6.18", "phy"],
    ["7.0", "phy"],
  ] as const) {
    it(`${kernel}: single-segment I/O round-trips and dma-debug records it as "${type}"`, () => {
      const r = new KernelRig(kernel, { sgl: "byte", strict: true });
      const src = r.page(0);
      const data = pattern(PAGE, 3);
      r.memory.write(src, data);
      expect(r.io("write", 8, [[src, PAGE]])).toBe(BLK_STS.OK);
      const dst = r.page(1);
      expect(r.io("read", 8, [[dst, PAGE]])).toBe(BLK_STS.OK);
      expect(Buffer.compare(r.gather([[dst, PAGE]]), data)).toBe(0);
      expect(r.host.counters.c.singleSegment).toBe(2);
      expect(r.dev.counters.c.mapFailures).toBe(0);

      // A mapping left live shows the API it went through (dma-debug's "mapped as").
      const req = blkRqFromBios(r.host.limits, [
        bioFromBvecs(REQ_OP.WRITE, 0, [bvecFromPhys(src, PAGE, PAGE)]),
      ]);
      const iod = new NvmeIod(1, 0);
      iod.resetForSubmit();
      expect(nvmeMapData(mapContextOf(r.host), iod, req)).toBe(BLK_STS.OK);
      const before = r.debug.reports.length;
      r.debug.checkLeaks(r.dev);
      const leak = r.debug.reports.slice(before).filter((x) => x.addr === iod.dmaVec.addr);
      expect(leak.length).toBe(1);
      expect(leak[0]?.message).toContain(`[mapped as ${type}]`);
      r.debug.reports.length = before;
      nvmeUnmapData(mapContextOf(r.host), iod, req);
      expect(r.debug.errors).toEqual([]);
      r.checkClean();
    });
  }
});
