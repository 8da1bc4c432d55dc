/**
 * The common DMA address/length pair (docs/review-points.md#common-dma-pair) and the one teardown call that unmaps
 * either an IOVA range or a list of per-segment mappings (docs/review-points.md#one-unmap).
 */
import { kernelHas } from "@dmasim/bvec";
import type { DmaDirection } from "./constants.ts";
import type { Device } from "./device.ts";
import { type DmaIovaState, dmaIovaDestroy, dmaUseIova } from "./iova-api.ts";
import { dmaUnmapPage, dmaUnmapPhys } from "./mapping.ts";

/** Linux `struct nvme_dma_vec` / `phys_vec`'s DMA twin: one mapped range. */
export interface DmaVec {
  addr: number;
  len: number;
}

/**
 * Tears down a mapping made either with the two-step API (`state` in use: one
 * `dmaIovaDestroy` of `mappedLen`) or segment by segment (`vecs`: one `dmaUnmapPhys` each, or
 * `dmaUnmapPage` on 6.17, which has no `dma_unmap_phys`: gate "dma-map-phys").
 * Callers never branch on which way the mapping was made.
 */
export function dmaUnmapRange(
  dev: Device,
  state: DmaIovaState,
  vecs: readonly DmaVec[],
  count: number,
  mappedLen: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  if (dmaUseIova(state)) {
    dmaIovaDestroy(dev, state, mappedLen, dir, attrs);
    return;
  }
  for (let i = 0; i < count; i++) {
    const v = vecs[i] as DmaVec;
    if (kernelHas(dev.kernel, "dma-map-phys")) dmaUnmapPhys(dev, v.addr, v.len, dir, attrs);
    else dmaUnmapPage(dev, v.addr, v.len, dir, attrs);
  }
}
