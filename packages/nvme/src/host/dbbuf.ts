/**
 * Doorbell buffers on the host side (Linux drivers/nvme/host/pci.c `nvme_dbbuf_*`): one
 * coherent page of shadow doorbells and one of event indexes, configured with the Doorbell
 * Buffer Config admin command; a doorbell write then goes to the shadow page and reaches the
 * controller's MMIO register only when the event index asks for it.
 */
import { getU16, setU32 } from "@dmasim/bvec";
import {
  type CoherentBuffer,
  type Device,
  dmaAllocCoherent,
  dmaFreeCoherent,
} from "@dmasim/dma-core";
import { oacsDbbufSupported } from "../spec/identify.ts";
import { NVME_CTRL_PAGE_SIZE } from "./limits.ts";

/** Bytes of one doorbell slot (CAP.DSTRD = 0). */
const DB_SLOT_BYTES = 4;

/** What a doorbell update counts. */
export interface DbbufCounters {
  shadowWrites: number;
  mmioDoorbellsSkipped: number;
}

/** Linux `nvme_dbbuf_need_event`: whether moving a doorbell from `old` to `newIdx` passes the
 * controller's event index, `(u16)(new_idx - event_idx - 1) < (u16)(new_idx - old)`. */
export function nvmeDbbufNeedEvent(eventIdx: number, newIdx: number, old: number): boolean {
  const u16 = (v: number) => ((v % 65536) + 65536) % 65536;
  return u16(newIdx - eventIdx - 1) < u16(newIdx - old);
}

/** Linux `dbbuf_dbs` / `dbbuf_eis`: the shadow doorbell and event index pages. */
export class NvmeDbbuf {
  readonly dbs: CoherentBuffer;
  readonly eis: CoherentBuffer;
  private readonly scratch = new Uint8Array(DB_SLOT_BYTES);

  constructor(dbs: CoherentBuffer, eis: CoherentBuffer) {
    this.dbs = dbs;
    this.eis = eis;
  }

  /**
   * Linux `nvme_dbbuf_update_and_check_event` for doorbell `slot` (2 * qid: SQ tail,
   * 2 * qid + 1: CQ head): `value` is stored in the shadow page and the event index decides
   * whether the MMIO doorbell must be written too (`nvme_dbbuf_need_event`). The pages are
   * coherent memory, so the CPU reads and writes them directly.
   */
  updateAndCheckEvent(dev: Device, slot: number, value: number, c: DbbufCounters): boolean {
    const mem = dev.memory;
    const b = this.scratch;
    mem.read(this.dbs.cpuAddr + slot * DB_SLOT_BYTES, b, 0, DB_SLOT_BYTES);
    const old = getU16(b, 0);
    setU32(b, 0, value);
    mem.write(this.dbs.cpuAddr + slot * DB_SLOT_BYTES, b, 0, DB_SLOT_BYTES);
    c.shadowWrites++;
    mem.read(this.eis.cpuAddr + slot * DB_SLOT_BYTES, b, 0, DB_SLOT_BYTES);
    const eventIdx = getU16(b, 0);
    if (nvmeDbbufNeedEvent(eventIdx, value, old)) return true;
    c.mmioDoorbellsSkipped++;
    return false;
  }
}

/**
 * Linux `nvme_dbbuf_dma_alloc`: when the controller supports Doorbell Buffer Config (OACS
 * bit 8), one coherent page for the shadow doorbells and one for the event indexes (Linux
 * sizes them by the queue count, `nvme_dbbuf_size`, which `dma_alloc_coherent` rounds up to
 * a page). An allocation failure leaves doorbell buffers off (null), as in Linux.
 */
export function nvmeDbbufDmaAlloc(dev: Device, oacs: number): NvmeDbbuf | null {
  if (!oacsDbbufSupported(oacs)) return null;
  let dbs: CoherentBuffer;
  try {
    dbs = dmaAllocCoherent(dev, NVME_CTRL_PAGE_SIZE);
  } catch {
    return null;
  }
  try {
    return new NvmeDbbuf(dbs, dmaAllocCoherent(dev, NVME_CTRL_PAGE_SIZE));
  } catch {
    dmaFreeCoherent(dev, NVME_CTRL_PAGE_SIZE, dbs.cpuAddr, dbs.dmaAddr);
    return null;
  }
}

/** Linux `nvme_dbbuf_dma_free`. */
export function nvmeDbbufDmaFree(dev: Device, d: NvmeDbbuf): void {
  dmaFreeCoherent(dev, NVME_CTRL_PAGE_SIZE, d.dbs.cpuAddr, d.dbs.dmaAddr);
  dmaFreeCoherent(dev, NVME_CTRL_PAGE_SIZE, d.eis.cpuAddr, d.eis.dmaAddr);
}
