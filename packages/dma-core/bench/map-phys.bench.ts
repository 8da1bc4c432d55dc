/**
 * dma_map_phys + dma_unmap_phys of one 4 KiB buffer on each backend (dma-debug off), the
 * figure the kernel's dma_map_benchmark reports as map + unmap latency.
 */
import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { DMA_TO_DEVICE, type Device, dmaMapPhys, dmaUnmapPhys } from "../src/index.ts";
import { machine } from "../src/testing/index.ts";

const OPS = 1000;

function device(mode: "direct" | "strict" | "lazy" | "untrusted") {
  const { memory, dev, clock, domain } = machine(mode === "direct" ? "none" : mode, {
    debug: false,
    dev: { name: `bench-${mode}` },
  });
  // The buffer, above 4 GiB. Another buffer stays mapped, as in a running system, so that the
  // page-table levels above the leaf stay allocated: the iommu package frees a table as soon as
  // its last entry goes, so without it every cycle would allocate, zero and free three table
  // pages (about 23 us per cycle).
  const phys = memory.allocPages(0) * 4096;
  if (domain) dmaMapPhys(dev, memory.allocPages(0) * 4096, 4096, DMA_TO_DEVICE);
  return { dev, phys, clock };
}

const direct = device("direct");
const strict = device("strict");
const lazy = device("lazy");
const untrusted = device("untrusted");

function cycle(dev: Device, phys: number, size: number): void {
  for (let i = 0; i < OPS; i++) {
    const a = dmaMapPhys(dev, phys, size, DMA_TO_DEVICE);
    dmaUnmapPhys(dev, a, size, DMA_TO_DEVICE);
  }
}

export default defineBenchmarks([
  {
    name: "map-phys+unmap/4k/direct",
    ops: OPS,
    targetNs: 100,
    note: "dmaMapPhys + dmaUnmapPhys of 4 KiB, no IOMMU, coherent 64-bit device",
    fn: () => cycle(direct.dev, direct.phys, 4096),
  },
  {
    name: "map-phys+unmap/4k/strict",
    ops: OPS,
    targetNs: 500,
    note: "IOMMU strict: IOVA from the rcache, map + sync, unmap + IOTLB invalidate (Linux on SMMUv3: 0.1 + 0.6 us)",
    fn: () => cycle(strict.dev, strict.phys, 4096),
  },
  {
    name: "map-phys+unmap/4k/lazy",
    ops: OPS,
    note: "IOMMU lazy: unmap queues the IOVA in the flush queue (whole-domain flush when the ring fills)",
    fn: () => {
      cycle(lazy.dev, lazy.phys, 4096);
      lazy.clock.advance(10_000_000);
    },
  },
  {
    name: "map-phys+unmap/4k/untrusted-bounce",
    ops: OPS,
    note: "untrusted device, 512-byte buffer at offset 0x100: SWIOTLB bounce + zeroed padding + strict IOMMU map",
    fn: () => cycle(untrusted.dev, untrusted.phys + 0x100, 512),
  },
]);
