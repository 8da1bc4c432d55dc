/**
 * The device-side walk of a command's data pointer (NVMe Base 2.2 §4.3, as QEMU's
 * `nvme_map_prp` / `nvme_map_sgl` implement it): turns PRP entries or SGL descriptors, read by
 * DMA through the IOMMU, into a list of DMA ranges, or a status code. The walk validates every
 * descriptor before any data moves (the specification allows either order; this model chooses
 * validate-first so a failed command never transfers part of its data).
 *
 * The walk returns QEMU's mapping statuses as `nvme_map_prp` / `nvme_map_sgl` return them: a
 * descriptor that cannot be read is 04h without DNR here; the controller's read/write path adds
 * DNR to every mapping failure (QEMU `nvme_read` / `nvme_do_write`: `invalid: return status |
 * NVME_DNR`).
 */
import type { DeviceDma } from "@dmasim/dma-core";
import { NVME_SC, NVME_SGL_SUBTYPE, NVME_SGL_TYPE, NVME_STATUS_DNR } from "./constants.ts";
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

/**
 * QEMU's wrap check on an SGL descriptor (`UINT64_MAX - addr < len` in `nvme_map_sgl` and
 * `nvme_map_sgl_data`): true when the 64-bit address plus `len` (below 2^32) passes 2^64 - 1,
 * worked on the two 32-bit halves so that no address above 2^53 is ever a JS number.
 */
function wraps64(b: Uint8Array, off: number, len: number): boolean {
  return getU64Hi(b, off) === 0xffffffff && getU32(b, off) + len > 0xffffffff;
}

/** The descriptor type (upper nibble of byte 15). */
function sglType(b: Uint8Array, off: number): number {
  return Math.floor((b[off + 15] as number) / 16);
}

/** The descriptor sub type (lower nibble of byte 15; NVMe Base 2.2 §4.3.2, Fig. "SGL Identifier"). */
function sglSubtype(b: Uint8Array, off: number): number {
  return (b[off + 15] as number) % 16;
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
 *
 * PRP1's bits 1:0 are treated as 00b: NVMe Base 2.2 §4.3.1 (PRP Entry) lets a controller either
 * fail them with PRP Offset Invalid or operate as if they were cleared; QEMU `nvme_map_prp` does
 * not check them (it keeps them in the offset, which the specification does not allow), so the
 * model takes the specification's second choice.
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
  prp1 -= fastMod(prp1, 4); // bits 1:0 are reserved: operate as if cleared
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

/**
 * One descriptor of a segment (or SGL1 as a Data Block), as QEMU `nvme_map_sgl_data` checks it:
 * type (and, here, sub type) first, then a zero length is skipped, then a descriptor past the
 * end of the transfer (0Fh, or -1 to stop when SGLS bit 18 allows it), then the 64-bit wrap
 * (0Fh). Returns 0, -1 or a status.
 */
function dataDescriptor(
  b: Uint8Array,
  off: number,
  caps: SglCaps,
  isRead: boolean,
  state: { rem: number },
  out: DmaRanges,
): number {
  const type = sglType(b, off);
  if (type === NVME_SGL_TYPE.SEGMENT || type === NVME_SGL_TYPE.LAST_SEGMENT)
    return dnr(NVME_SC.SGL_INVALID_COUNT);
  const bucket = type === NVME_SGL_TYPE.BIT_BUCKET && caps.bitBucket;
  if (type !== NVME_SGL_TYPE.DATA && !bucket) return dnr(NVME_SC.SGL_INVALID_TYPE);
  // Over PCIe only the Address sub type is defined for these descriptors (NVMe Base 2.2 §4.3.2);
  // QEMU ignores the sub type nibble, the model reports it as the specification asks.
  if (sglSubtype(b, off) !== NVME_SGL_SUBTYPE.ADDRESS) return dnr(NVME_SC.SGL_INVALID_TYPE);
  const dlen = getU32(b, off + 8);
  if (dlen === 0) return 0;
  if (bucket) {
    if (!isRead) return 0;
    const n = Math.min(state.rem, dlen);
    out.push(-1, n);
    out.bitBucket += n;
    state.rem -= n;
    return 0;
  }
  if (state.rem === 0) return caps.oversize ? -1 : dnr(NVME_SC.SGL_INVALID_DATA);
  if (wraps64(b, off, dlen)) return dnr(NVME_SC.SGL_INVALID_DATA);
  const addr = entry(b, off);
  // An address the model cannot hold (at or above 2^53, without QEMU's 64-bit wrap) reaches no
  // memory: the DMA would fail, so it is a Data Transfer Error (QEMU: a failed transfer).
  if (addr < 0) return NVME_SC.DATA_XFER_ERROR;
  if (caps.support === "dword" && (addr % 4 !== 0 || dlen % 4 !== 0))
    return dnr(NVME_SC.SGL_INVALID_GRANULARITY);
  const n = Math.min(state.rem, dlen);
  out.push(addr, n);
  state.rem -= n;
  return 0;
}

/**
 * QEMU `nvme_map_sgl` / NVMe §4.3.2: SGL1 is a Data Block (the whole transfer) or a (Last)
 * Segment descriptor; segments hold Data Blocks and, only in their last slot, a pointer to the
 * next segment. Returns 0 or a status: 0Dh bad segment descriptor (also SGL1 of any other type,
 * Bit Bucket included, and a segment that made no forward progress), 0Eh segment descriptor
 * not last, 0Fh length mismatch or a descriptor wrapping past 2^64, 11h unsupported type or sub
 * type, 1Eh granularity (dword-only), 04h read fault.
 *
 * A chain that loops (a segment pointing at itself, or a cycle) ends: as QEMU "rejects if this
 * segment made no forward progress", a segment that ends in a segment pointer without consuming
 * any of the transfer is 0Dh with DNR; one that keeps consuming ends when the transfer does.
 * Where QEMU, with SGLS bit 18, keeps walking after the transfer is consumed (and so rejects a
 * later pointer-only segment), the model stops at the first excess descriptor, which the
 * specification allows (the controller may ignore the rest of the SGL).
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
  const type = sglType(sgl1, sgl1Off);
  if (type === NVME_SGL_TYPE.DATA) {
    const s = dataDescriptor(sgl1, sgl1Off, caps, isRead, state, out);
    if (s > 0) return s;
    return state.rem > 0 ? dnr(NVME_SC.SGL_INVALID_DATA) : 0;
  }
  // QEMU reports any other type in SGL1 (a Bit Bucket too) as an invalid segment descriptor.
  if (type !== NVME_SGL_TYPE.SEGMENT && type !== NVME_SGL_TYPE.LAST_SEGMENT)
    return dnr(NVME_SC.SGL_INVALID_LAST);
  if (sglSubtype(sgl1, sgl1Off) !== NVME_SGL_SUBTYPE.ADDRESS) return dnr(NVME_SC.SGL_INVALID_TYPE);
  let addr = entry(sgl1, sgl1Off);
  let dlen = getU32(sgl1, sgl1Off + 8);
  let wrap = wraps64(sgl1, sgl1Off, dlen);
  let last = type === NVME_SGL_TYPE.LAST_SEGMENT;
  for (;;) {
    const prevRem = state.rem;
    if (dlen === 0 || dlen % 16 !== 0) return dnr(NVME_SC.SGL_INVALID_LAST);
    if (wrap) return dnr(NVME_SC.SGL_INVALID_DATA);
    // A segment the model cannot address (at or above 2^53) cannot be read.
    if (addr < 0) return NVME_SC.DATA_XFER_ERROR;
    if (addr % 8 !== 0) return dnr(NVME_SC.SGL_INVALID_LAST);
    const n = dlen / 16;
    let nextType = -1;
    let nextAddr = 0;
    let nextLen = 0;
    let nextWrap = false;
    // Read in chunks of 256 descriptors (one 4 KiB page), as QEMU does.
    for (let i = 0; i < n; i += 256) {
      const chunk = Math.min(256, n - i);
      if (!readDescriptors(dma, addr + i * 16, chunk * 16, out, hook, "sgl-segment"))
        return NVME_SC.DATA_XFER_ERROR;
      for (let k = 0; k < chunk; k++) {
        const off = k * 16;
        const t = sglType(buf, off);
        if (i + k === n - 1 && (t === NVME_SGL_TYPE.SEGMENT || t === NVME_SGL_TYPE.LAST_SEGMENT)) {
          // A segment pointer is allowed only in the last slot, and never in the last segment.
          if (last) return dnr(NVME_SC.SGL_INVALID_LAST);
          if (sglSubtype(buf, off) !== NVME_SGL_SUBTYPE.ADDRESS)
            return dnr(NVME_SC.SGL_INVALID_TYPE);
          nextType = t;
          nextAddr = entry(buf, off);
          nextLen = getU32(buf, off + 8);
          nextWrap = wraps64(buf, off, nextLen);
          break;
        }
        const st = dataDescriptor(buf, off, caps, isRead, state, out);
        if (st < 0) return 0; // longer than the transfer, and the controller allows it
        if (st > 0) return st;
      }
    }
    if (nextType < 0) return state.rem > 0 ? dnr(NVME_SC.SGL_INVALID_DATA) : 0;
    // QEMU `nvme_map_sgl`: "Reject if this segment made no forward progress" (a self-linked
    // segment, a cycle, or a segment of nothing but a pointer would otherwise loop forever).
    if (state.rem === prevRem) return dnr(NVME_SC.SGL_INVALID_LAST);
    addr = nextAddr;
    dlen = nextLen;
    wrap = nextWrap;
    last = nextType === NVME_SGL_TYPE.LAST_SEGMENT;
  }
}
