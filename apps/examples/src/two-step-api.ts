import { PhysMemory, SimClock, hex } from "@dmasim/bvec";
import { IOMMU_DOMAIN, IommuDomain } from "@dmasim/iommu";
import {
  DMA_TO_DEVICE,
  Device,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  iommuSetupDmaOps,
} from "@dmasim/dma-core";

const clock = new SimClock();
const memory = new PhysMemory({ ramBytes: 16 * 2 ** 30 });
const domain = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: memory, clock });
const dev = new Device({ name: "nvme0", memory, iommu: domain, clock });
iommuSetupDmaOps(dev); // as the IOMMU core does when the device probes (iommu_setup_dma_ops)
const pages = memory.allocScattered(3, 1);
const state = new DmaIovaState();
if (dmaIovaTryAlloc(dev, state, 0, 3 * 4096)) {
  pages.forEach((p, i) => dmaIovaLink(dev, state, p * 4096, i * 4096, 4096, DMA_TO_DEVICE));
  dmaIovaSync(dev, state, 0, 3 * 4096);
  // The device reads state.addr .. state.addr + 12 KiB through the IOMMU.
  console.log(
    `IOVA ${hex(state.addr)}+${hex(state.size)} for pages ${pages.map((p) => hex(p * 4096)).join(" ")}`,
  );
  console.log(
    `PTE writes ${domain.pgtable?.counters.c.pteWrites}, sync-map calls ${domain.counters.c.syncMapCalls}`,
  );
  dmaIovaDestroy(dev, state, 3 * 4096, DMA_TO_DEVICE);
}
