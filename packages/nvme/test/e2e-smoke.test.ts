import { BLK_STS, PhysMemory, Rng, SimClock, bioFromBvecs, bvecFromPhys } from "@dmasim/bvec";
import { Device, DmaDebug, iommuSetupDmaOps } from "@dmasim/dma-core";
import { IOMMU_DOMAIN, IommuDomain } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import { type MappingStyle, NvmeController, NvmeHost } from "../src/index.ts";

const GiB = 1024 ** 3;

function setup(
  mode: "none" | "strict" | "lazy" | "passthrough",
  mapping: MappingStyle,
  sgl: "none" | "byte",
) {
  const clock = new SimClock();
  const memory = new PhysMemory({ ramBytes: 16 * GiB });
  const debug = new DmaDebug();
  const type =
    mode === "strict"
      ? IOMMU_DOMAIN.DMA
      : mode === "lazy"
        ? IOMMU_DOMAIN.DMA_FQ
        : IOMMU_DOMAIN.IDENTITY;
  const domain = mode === "none" ? null : new IommuDomain({ type, mem: memory, clock });
  const dev = new Device({ name: "nvme0", memory, iommu: domain, clock, debug });
  iommuSetupDmaOps(dev);
  const ctrl = new NvmeController({ dev, clock, sgl });
  const host = new NvmeHost({ dev, bar: ctrl, mapping });
  host.enable();
  return { clock, memory, debug, dev, ctrl, host };
}

describe("nvme end to end (smoke)", () => {
  for (const mode of ["none", "passthrough", "strict", "lazy"] as const) {
    for (const mapping of ["two-step", "scatterlist"] as const) {
      for (const sgl of ["none", "byte"] as const) {
        it(`writes then reads back scattered pages (${mode}, ${mapping}, sgl ${sgl})`, () => {
          const m = setup(mode, mapping, sgl);
          const n = 40;
          const src = m.memory.allocScattered(n, 11);
          const dst = m.memory.allocScattered(n, 12);
          const rng = new Rng(5);
          const data = new Uint8Array(n * 4096).map(() => rng.nextU32() % 256);
          src.forEach((p, i) => m.memory.write(p * 4096, data, i * 4096, 4096));
          let wdone = -1;
          const wbio = bioFromBvecs(
            "write",
            2048,
            src.map((p) => bvecFromPhys(p * 4096, 4096)),
          );
          wbio.endIo = (b) => (wdone = b.status);
          m.host.submitBio(wbio);
          m.host.drain();
          expect(wdone).toBe(BLK_STS.OK);
          let rdone = -1;
          const rbio = bioFromBvecs(
            "read",
            2048,
            dst.map((p) => bvecFromPhys(p * 4096, 4096)),
          );
          rbio.endIo = (b) => (rdone = b.status);
          m.host.submitBio(rbio);
          m.host.drain();
          expect(rdone).toBe(BLK_STS.OK);
          const got = new Uint8Array(n * 4096);
          dst.forEach((p, i) => m.memory.read(p * 4096, got, i * 4096, 4096));
          expect(Buffer.compare(got, data)).toBe(0);
          m.clock.advance(2e9);
          m.host.shutdown();
          expect(m.debug.errors).toEqual([]);
          expect(m.debug.outstanding()).toBe(0);
          expect(m.ctrl.fatal).toBe(false);
        });
      }
    }
  }
});
