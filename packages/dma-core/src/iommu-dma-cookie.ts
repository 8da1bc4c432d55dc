/**
 * Linux `struct iommu_dma_cookie` (drivers/iommu/dma-iommu.c): what the DMA layer keeps for a
 * DMA domain, in the domain (`domain->iova_cookie`). `iommuSetupDmaOps` (iommu-dma.ts) creates
 * it; this file only holds the structure, so that `Device` can name its type.
 */
import { type FlushQueue, type IommuDomain, IotlbGather, type IovaDomain } from "@dmasim/iommu";

/** Options of a domain's DMA cookie. */
export interface IommuDmaOptions {
  /** Linux `iommu.forcedac=1`: no 32-bit-first IOVA policy for PCI devices. */
  readonly forcedac: boolean;
  /** One shared flush queue (Linux `shadow_on_flush` IOMMUs) instead of one per CPU. */
  readonly singleQueue: boolean;
  /** Simulated CPUs (per-CPU IOVA caches and flush queues). */
  readonly numCpus: number;
}

/** Linux `struct iommu_dma_cookie`: the IOVA allocator and, in lazy mode, the flush queue. */
export class IommuDmaCookie {
  readonly domain: IommuDomain;
  readonly iovad: IovaDomain;
  /** The flush queue; non-null exactly when the domain is lazy (Linux `fq_domain`). */
  readonly fq: FlushQueue | null;
  readonly granule: number;
  readonly options: IommuDmaOptions;
  /**
   * The gather every unmap of this domain uses (Linux keeps it on the stack): reset before each
   * use, so unmapping allocates nothing unless page-table pages were freed.
   */
  readonly gather = new IotlbGather();

  constructor(
    domain: IommuDomain,
    iovad: IovaDomain,
    fq: FlushQueue | null,
    options: IommuDmaOptions,
  ) {
    this.domain = domain;
    this.iovad = iovad;
    this.fq = fq;
    this.granule = iovad.granule;
    this.options = options;
  }
}

/**
 * The cookie `domain->iova_cookie` holds, if the domain was set up for the DMA API. Only
 * `iommuSetupDmaOps` stores one, always an `IommuDmaCookie`, so the field is read as one
 * without a type test (this runs several times per mapping).
 */
export function domainIovaCookie(domain: IommuDomain): IommuDmaCookie | null {
  return (domain.iovaCookie as IommuDmaCookie | null | undefined) ?? null;
}
