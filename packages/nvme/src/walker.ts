/**
 * The device-side walk of a command's data pointer (NVMe Base 2.2 §4.3, as QEMU's
 * `nvme_map_prp` / `nvme_map_sgl` implement it): turns PRP entries or SGL descriptors, read by
 * DMA through the IOMMU, into a list of DMA ranges, or a status code. The walk validates every
 * descriptor before any data moves (the specification allows either order; this model chooses
 * validate-first so a failed command never transfers part of its data).
 */
import type { DeviceDma } from "@dmasim/dma-core";
import { NVME_SC, NVME_SGL_TYPE, NVME_STATUS_DNR } from "./constants.ts";
import { getU32, getU64Hi } from "./sqe.ts";
import { InternalError, TWO_POW_32, fastMod } from "@dmasim/bvec";

/** A reusable list of DMA ranges produced by a walk. */
export class DmaRanges {
  count = 0;
  readonly addr: number[] = [];
  readonly len: number[] = [];
  /** Bytes the walk discards (SGL Bit Bucket on reads). Ranges with addr -1 are discarded bytes. */
  bitBucket = 0;
  /** Descriptor bytes the walk read by DMA. */
  descriptorBytes = 0;
  /** Descriptor reads (PRP list pages / SGL segments). */
  descriptorReads = 0;

  reset(): void {
    this.count = 0;
    this.bitBucket = 0;
    this.descriptorBytes = 0;
    this.descriptorReads = 0;
  }

  push(addr: number, len: number): void {
    this.addr[this.count] = addr;
    this.len[this.count] = len;
    this.count++;
  }
}

/** What the controller's SGL support allows. */
export interface SglCaps {
  /** "byte" (SGLS 01b) or "dword" (SGLS 10b). */
  readonly support: "byte" | "dword";
  /** SGLS bit 18: an SGL longer than the transfer is allowed. */
  readonly oversize: boolean;
  /** SGLS bit 16: Bit Bucket descriptors are supported. */
  readonly bitBucket: boolean;
}

/** Hook for fault injection: may change descriptor bytes the device just read. */
export type DescriptorHook = (
  bytes: Uint8Array,
  length: number,
  kind: "prp-list" | "sgl-segment",
) => void;

const dnr = (sc: number) => sc + NVME_STATUS_DNR;
const buf = new Uint8Array(4096);

/** Reads a 64-bit entry, or -1 when it does not fit below 2^53 (the model's address width). */
function entry(b: Uint8Array, off: number): number {
  const hi = getU64Hi(b, off);
  if (hi >= 0x200000) return -1;
  return hi * TWO_POW_32 + getU32(b, off);
}

function readDescriptors(
  dma: DeviceDma,
  addr: number,
  bytes: number,
  out: DmaRanges,
  hook: DescriptorHook | undefined,
  kind: "prp-list" | "sgl-segment",
): boolean {
  out.descriptorReads++;
  out.descriptorBytes += bytes;
  if (!dma.read(addr, buf, 0, bytes).ok) return false;
  hook?.(buf, bytes, kind);
  return true;
}

/**
 * QEMU `nvme_map_prp` / NVMe §4.3.1: PRP1 with its offset, PRP2 as data (offset 0) or as a
 * list pointer (may have an offset); the last slot of a list page is a link only while more
 * than one page remains. Returns 0 or a status (13h with DNR for a non-zero offset, 04h for a
 * failed list read).
 */
export function walkPrp(
  dma: DeviceDma,
  prp1: number,
  prp2: number,
  len: number,
  pageSize: number,
  out: DmaRanges,
  hook?: DescriptorHook,
): number {
  out.reset();
  if (prp1 < 0) return NVME_SC.DATA_XFER_ERROR;
  const first = Math.min(len, pageSize - fastMod(prp1, pageSize));
  out.push(prp1, first);
  let rem = len - first;
  if (rem === 0) return 0;
  if (rem <= pageSize) {
    if (prp2 < 0) return NVME_SC.DATA_XFER_ERROR;
    if (fastMod(prp2, pageSize) !== 0) return dnr(NVME_SC.PRP_INVALID_OFFSET);
    out.push(prp2, rem);
    return 0;
  }
  // PRP2 points at a list, possibly in the middle of a page.
  if (prp2 < 0) return NVME_SC.DATA_XFER_ERROR;
  let cursor = prp2;
  for (;;) {
    const slots = Math.floor((pageSize - fastMod(cursor, pageSize)) / 8);
    const need = Math.min(slots, Math.ceil(rem / pageSize));
    if (!readDescriptors(dma, cursor, need * 8, out, hook, "prp-list"))
      return NVME_SC.DATA_XFER_ERROR;
    let linked = false;
    for (let i = 0; i < need; i++) {
      const e = entry(buf, i * 8);
      if (e < 0) return NVME_SC.DATA_XFER_ERROR;
      if (i === slots - 1 && rem > pageSize) {
        if (fastMod(e, pageSize) !== 0) return dnr(NVME_SC.PRP_INVALID_OFFSET);
        cursor = e;
        linked = true;
        break;
      }
      if (fastMod(e, pageSize) !== 0) return dnr(NVME_SC.PRP_INVALID_OFFSET);
      const n = Math.min(rem, pageSize);
      out.push(e, n);
      rem -= n;
      if (rem === 0) return 0;
    }
    if (!linked)
      throw new InternalError(`PRP walk ended a list page with ${rem} bytes left and no link`);
  }
}

function dataDescriptor(
  type: number,
  addr: number,
  dlen: number,
  caps: SglCaps,
  isRead: boolean,
  state: { rem: number },
  out: DmaRanges,
): number {
  if (type === NVME_SGL_TYPE.SEGMENT || type === NVME_SGL_TYPE.LAST_SEGMENT)
    return dnr(NVME_SC.SGL_INVALID_COUNT);
  if (type === NVME_SGL_TYPE.BIT_BUCKET && caps.bitBucket) {
    if (dlen === 0) return 0;
    if (!isRead) return 0;
    const n = Math.min(state.rem, dlen);
    out.push(-1, n);
    out.bitBucket += n;
    state.rem -= n;
    return 0;
  }
  if (type !== NVME_SGL_TYPE.DATA) return dnr(NVME_SC.SGL_INVALID_TYPE);
  if (dlen === 0) return 0;
  if (caps.support === "dword" && (addr % 4 !== 0 || dlen % 4 !== 0))
    return dnr(NVME_SC.SGL_INVALID_GRANULARITY);
  if (addr < 0) return dnr(NVME_SC.SGL_INVALID_DATA);
  if (state.rem === 0) return caps.oversize ? -1 : dnr(NVME_SC.SGL_INVALID_DATA);
  const n = Math.min(state.rem, dlen);
  out.push(addr, n);
  state.rem -= n;
  return 0;
}

/**
 * QEMU `nvme_map_sgl` / NVMe §4.3.2: SGL1 is a Data Block (the whole transfer) or a (Last)
 * Segment descriptor; segments hold Data Blocks and, only in their last slot, a pointer to the
 * next segment. Returns 0 or a status: 0Dh bad segment descriptor, 0Eh segment descriptor not
 * last, 0Fh length mismatch, 11h unsupported type, 1Eh granularity (dword-only), 04h read fault.
 */
export function walkSgl(
  dma: DeviceDma,
  sgl1: Uint8Array,
  sgl1Off: number,
  len: number,
  caps: SglCaps,
  isRead: boolean,
  out: DmaRanges,
  hook?: DescriptorHook,
): number {
  out.reset();
  const state = { rem: len };
  const type = Math.floor((sgl1[sgl1Off + 15] as number) / 16);
  let addr = entry(sgl1, sgl1Off);
  let dlen = getU32(sgl1, sgl1Off + 8);
  if (type !== NVME_SGL_TYPE.SEGMENT && type !== NVME_SGL_TYPE.LAST_SEGMENT) {
    if (type === NVME_SGL_TYPE.DATA || type === NVME_SGL_TYPE.BIT_BUCKET) {
      const s = dataDescriptor(type, addr, dlen, caps, isRead, state, out);
      if (s > 0) return s;
      return state.rem > 0 ? dnr(NVME_SC.SGL_INVALID_DATA) : 0;
    }
    // QEMU reports any other type in SGL1 as an invalid segment descriptor.
    return dnr(NVME_SC.SGL_INVALID_LAST);
  }
  let last = type === NVME_SGL_TYPE.LAST_SEGMENT;
  for (;;) {
    if (dlen === 0 || dlen % 16 !== 0 || addr < 0 || addr % 8 !== 0)
      return dnr(NVME_SC.SGL_INVALID_LAST);
    const n = dlen / 16;
    let nextType = -1;
    let nextAddr = 0;
    let nextLen = 0;
    // Read in chunks of 256 descriptors (one 4 KiB page), as QEMU does.
    for (let i = 0; i < n; i += 256) {
      const chunk = Math.min(256, n - i);
      if (!readDescriptors(dma, addr + i * 16, chunk * 16, out, hook, "sgl-segment"))
        return NVME_SC.DATA_XFER_ERROR;
      for (let k = 0; k < chunk; k++) {
        const off = k * 16;
        const t = Math.floor((buf[off + 15] as number) / 16);
        const a = entry(buf, off);
        const l = getU32(buf, off + 8);
        if (i + k === n - 1 && (t === NVME_SGL_TYPE.SEGMENT || t === NVME_SGL_TYPE.LAST_SEGMENT)) {
          // A segment pointer is allowed only in the last slot, and never in the last segment.
          if (last) return dnr(NVME_SC.SGL_INVALID_LAST);
          nextType = t;
          nextAddr = a;
          nextLen = l;
          break;
        }
        const st = dataDescriptor(t, a, l, caps, isRead, state, out);
        if (st < 0) return 0; // longer than the transfer, and the controller allows it
        if (st > 0) return st;
      }
    }
    if (nextType < 0) return state.rem > 0 ? dnr(NVME_SC.SGL_INVALID_DATA) : 0;
    addr = nextAddr;
    dlen = nextLen;
    last = nextType === NVME_SGL_TYPE.LAST_SEGMENT;
  }
}
