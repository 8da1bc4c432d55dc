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
 *
 * Every failure also names the check that failed in `DmaRanges.reason` (QEMU's trace event
 * where it has one; see error-log.ts), which the controller keeps in its error log.
 */
import { InternalError, fastMod, getU32, getU64Hi } from "@dmasim/bvec";
import type { DeviceDma } from "@dmasim/dma-core";
import { NVME_SC, NVME_STATUS_DNR, getAddr64 } from "../spec/commands.ts";
import {
  NVME_SGL_DESC_SIZE,
  NVME_SGL_SUBTYPE,
  NVME_SGL_TYPE,
  sglDescLen,
  sglDescSubtype,
  sglDescType,
} from "../spec/sgl.ts";
import { NVME_ERR, type NvmeErrReason } from "./error-log.ts";

/** PRP entries are 8 bytes. */
const PRP_ENTRY_SIZE = 8;
/** QEMU `nvme_map_sgl`'s `SEG_CHUNK_SIZE`: a segment is read 256 descriptors (4 KiB) at a time. */
const SEG_CHUNK_SIZE = 256;
/** An SGL segment's address must be qword aligned. */
const SGL_SEGMENT_ALIGN = 8;

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
  /** Why the walk failed (see `NVME_ERR`), when it returned a status. */
  reason: NvmeErrReason | "" = "";

  reset(): void {
    this.count = 0;
    this.reason = "";
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
/** The walk's descriptor buffer (one 4 KiB page; walks are synchronous, so one serves all). */
const buf = new Uint8Array(SEG_CHUNK_SIZE * NVME_SGL_DESC_SIZE);

/** Records why the walk fails and returns `status`. */
function fail(out: DmaRanges, reason: NvmeErrReason, status: number): number {
  out.reason = reason;
  return status;
}

/**
 * QEMU's wrap check on an SGL descriptor (`UINT64_MAX - addr < len` in `nvme_map_sgl` and
 * `nvme_map_sgl_data`): true when the 64-bit address plus `len` (below 2^32) passes 2^64 - 1,
 * worked on the two 32-bit halves so that no address above 2^53 is ever a JS number.
 */
function wraps64(b: Uint8Array, off: number, len: number): boolean {
  return getU64Hi(b, off) === 0xffffffff && getU32(b, off) + len > 0xffffffff;
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
 * A list page is read as far as the transfer needs it (the entries used, and the link). QEMU
 * reads the first list page to its end (`MIN(max_prp_ents, nents)` entries) whatever the
 * length; the model keeps the smaller read on purpose, as a controller fetching by need, so
 * `descriptorBytes` counts what the walk used.
 *
 * PRP1's bits 1:0 are treated as 00b: NVMe Base 2.2 §4.3.1 (PRP Entry) lets a controller either
 * fail them with PRP Offset Invalid or operate as if they were cleared; QEMU `nvme_map_prp` does
 * not check them (it keeps them in the offset, which the specification does not allow), so the
 * model takes the specification's second choice.
 */
export function nvmeMapPrp(
  dma: DeviceDma,
  prp1: number,
  prp2: number,
  len: number,
  pageSize: number,
  out: DmaRanges,
  hook?: DescriptorHook,
): number {
  out.reset();
  if (prp1 < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
  prp1 -= fastMod(prp1, 4); // bits 1:0 are reserved: operate as if cleared
  const first = Math.min(len, pageSize - fastMod(prp1, pageSize));
  out.push(prp1, first);
  let rem = len - first;
  if (rem === 0) return 0;
  if (rem <= pageSize) {
    if (prp2 < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
    if (fastMod(prp2, pageSize) !== 0)
      return fail(out, NVME_ERR.INVALID_PRP2_ALIGN, dnr(NVME_SC.PRP_INVALID_OFFSET));
    out.push(prp2, rem);
    return 0;
  }
  // PRP2 points at a list, possibly in the middle of a page.
  if (prp2 < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
  let cursor = prp2;
  for (;;) {
    const slots = Math.floor((pageSize - fastMod(cursor, pageSize)) / PRP_ENTRY_SIZE);
    const need = Math.min(slots, Math.ceil(rem / pageSize));
    if (!readDescriptors(dma, cursor, need * PRP_ENTRY_SIZE, out, hook, "prp-list"))
      return fail(out, NVME_ERR.ADDR_READ, NVME_SC.DATA_XFER_ERROR);
    let linked = false;
    for (let i = 0; i < need; i++) {
      const e = getAddr64(buf, i * PRP_ENTRY_SIZE);
      if (e < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
      if (i === slots - 1 && rem > pageSize) {
        if (fastMod(e, pageSize) !== 0)
          return fail(out, NVME_ERR.INVALID_PRPLIST_ENT, dnr(NVME_SC.PRP_INVALID_OFFSET));
        cursor = e;
        linked = true;
        break;
      }
      if (fastMod(e, pageSize) !== 0)
        return fail(out, NVME_ERR.INVALID_PRPLIST_ENT, dnr(NVME_SC.PRP_INVALID_OFFSET));
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
  const type = sglDescType(b, off);
  if (type === NVME_SGL_TYPE.SEGMENT || type === NVME_SGL_TYPE.LAST_SEGMENT)
    return fail(out, NVME_ERR.INVALID_NUM_SGLD, dnr(NVME_SC.SGL_INVALID_COUNT));
  const bucket = type === NVME_SGL_TYPE.BIT_BUCKET && caps.bitBucket;
  if (type !== NVME_SGL_TYPE.DATA && !bucket)
    return fail(out, NVME_ERR.INVALID_SGLD, dnr(NVME_SC.SGL_INVALID_TYPE));
  // Over PCIe only the Address sub type is defined for these descriptors (NVMe Base 2.2 §4.3.2);
  // QEMU ignores the sub type nibble, the model reports it as the specification asks.
  if (sglDescSubtype(b, off) !== NVME_SGL_SUBTYPE.ADDRESS)
    return fail(out, NVME_ERR.INVALID_SGLD, dnr(NVME_SC.SGL_INVALID_TYPE));
  const dlen = sglDescLen(b, off);
  if (dlen === 0) return 0;
  if (bucket) {
    if (!isRead) return 0;
    const n = Math.min(state.rem, dlen);
    out.push(-1, n);
    out.bitBucket += n;
    state.rem -= n;
    return 0;
  }
  if (state.rem === 0)
    return caps.oversize
      ? -1
      : fail(out, NVME_ERR.INVALID_SGL_EXCESS_LENGTH, dnr(NVME_SC.SGL_INVALID_DATA));
  if (wraps64(b, off, dlen))
    return fail(out, NVME_ERR.SGL_ADDR_WRAPS, dnr(NVME_SC.SGL_INVALID_DATA));
  const addr = getAddr64(b, off);
  // An address the model cannot hold (at or above 2^53, without QEMU's 64-bit wrap) reaches no
  // memory: the DMA would fail, so it is a Data Transfer Error (QEMU: a failed transfer).
  if (addr < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
  if (caps.support === "dword" && (addr % 4 !== 0 || dlen % 4 !== 0))
    return fail(out, NVME_ERR.SGL_GRANULARITY, dnr(NVME_SC.SGL_INVALID_GRANULARITY));
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
export function nvmeMapSgl(
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
  const type = sglDescType(sgl1, sgl1Off);
  if (type === NVME_SGL_TYPE.DATA) {
    const s = dataDescriptor(sgl1, sgl1Off, caps, isRead, state, out);
    if (s > 0) return s;
    return state.rem > 0 ? fail(out, NVME_ERR.INVALID_DMA, dnr(NVME_SC.SGL_INVALID_DATA)) : 0;
  }
  // QEMU reports any other type in SGL1 (a Bit Bucket too) as an invalid segment descriptor.
  if (type !== NVME_SGL_TYPE.SEGMENT && type !== NVME_SGL_TYPE.LAST_SEGMENT)
    return fail(out, NVME_ERR.SGL_SEG_DESCR_TYPE, dnr(NVME_SC.SGL_INVALID_LAST));
  if (sglDescSubtype(sgl1, sgl1Off) !== NVME_SGL_SUBTYPE.ADDRESS)
    return fail(out, NVME_ERR.INVALID_SGLD, dnr(NVME_SC.SGL_INVALID_TYPE));
  let addr = getAddr64(sgl1, sgl1Off);
  let dlen = sglDescLen(sgl1, sgl1Off);
  let wrap = wraps64(sgl1, sgl1Off, dlen);
  let last = type === NVME_SGL_TYPE.LAST_SEGMENT;
  for (;;) {
    const prevRem = state.rem;
    if (dlen === 0 || dlen % NVME_SGL_DESC_SIZE !== 0)
      return fail(out, NVME_ERR.SGL_SEG_LEN, dnr(NVME_SC.SGL_INVALID_LAST));
    if (wrap) return fail(out, NVME_ERR.SGL_ADDR_WRAPS, dnr(NVME_SC.SGL_INVALID_DATA));
    // A segment the model cannot address (at or above 2^53) cannot be read.
    if (addr < 0) return fail(out, NVME_ERR.ADDR_OUT_OF_RANGE, NVME_SC.DATA_XFER_ERROR);
    if (addr % SGL_SEGMENT_ALIGN !== 0)
      return fail(out, NVME_ERR.SGL_SEG_ALIGN, dnr(NVME_SC.SGL_INVALID_LAST));
    const n = dlen / NVME_SGL_DESC_SIZE;
    let nextType = -1;
    let nextAddr = 0;
    let nextLen = 0;
    let nextWrap = false;
    // Read in chunks of SEG_CHUNK_SIZE descriptors (one 4 KiB page), as QEMU does.
    for (let i = 0; i < n; i += SEG_CHUNK_SIZE) {
      const chunk = Math.min(SEG_CHUNK_SIZE, n - i);
      const at = addr + i * NVME_SGL_DESC_SIZE;
      if (!readDescriptors(dma, at, chunk * NVME_SGL_DESC_SIZE, out, hook, "sgl-segment"))
        return fail(out, NVME_ERR.ADDR_READ, NVME_SC.DATA_XFER_ERROR);
      for (let k = 0; k < chunk; k++) {
        const off = k * NVME_SGL_DESC_SIZE;
        const t = sglDescType(buf, off);
        if (i + k === n - 1 && (t === NVME_SGL_TYPE.SEGMENT || t === NVME_SGL_TYPE.LAST_SEGMENT)) {
          // A segment pointer is allowed only in the last slot, and never in the last segment.
          if (last)
            return fail(out, NVME_ERR.SGL_SEG_IN_LAST_SEGMENT, dnr(NVME_SC.SGL_INVALID_LAST));
          if (sglDescSubtype(buf, off) !== NVME_SGL_SUBTYPE.ADDRESS)
            return fail(out, NVME_ERR.INVALID_SGLD, dnr(NVME_SC.SGL_INVALID_TYPE));
          nextType = t;
          nextAddr = getAddr64(buf, off);
          nextLen = sglDescLen(buf, off);
          nextWrap = wraps64(buf, off, nextLen);
          break;
        }
        const st = dataDescriptor(buf, off, caps, isRead, state, out);
        if (st < 0) return 0; // longer than the transfer, and the controller allows it
        if (st > 0) return st;
      }
    }
    if (nextType < 0)
      return state.rem > 0 ? fail(out, NVME_ERR.INVALID_DMA, dnr(NVME_SC.SGL_INVALID_DATA)) : 0;
    // QEMU `nvme_map_sgl`: "Reject if this segment made no forward progress" (a self-linked
    // segment, a cycle, or a segment of nothing but a pointer would otherwise loop forever).
    if (state.rem === prevRem)
      return fail(out, NVME_ERR.SGL_SEG_NO_PROGRESS, dnr(NVME_SC.SGL_INVALID_LAST));
    addr = nextAddr;
    dlen = nextLen;
    wrap = nextWrap;
    last = nextType === NVME_SGL_TYPE.LAST_SEGMENT;
  }
}
