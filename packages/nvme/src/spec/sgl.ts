/**
 * SGL descriptors (NVMe Base 2.2 §4.3.2; Linux `struct nvme_sgl_desc`, QEMU
 * `NvmeSglDescriptor`): 16 bytes of address, length and, in byte 15, the descriptor type (upper
 * nibble) and sub type (lower nibble).
 */
import { getU32, setU32, setU64 } from "@dmasim/bvec";

/** Bytes of one SGL descriptor. */
export const NVME_SGL_DESC_SIZE = 16;

/** The byte offsets inside a descriptor. */
export const SGL_DESC = { ADDR: 0, LEN: 8, TYPE: 15 } as const;

/** The flags byte of a command: PSDT in bits 7:6 (Linux `NVME_CMD_SGL_METABUF` / `_METASEG`). */
export const NVME_CMD_SGL_METABUF = 0x40;
export const NVME_CMD_SGL_METASEG = 0x80;

/** SGL descriptor types (upper nibble of byte 15). */
export const NVME_SGL_TYPE = {
  DATA: 0x0,
  BIT_BUCKET: 0x1,
  SEGMENT: 0x2,
  LAST_SEGMENT: 0x3,
  KEYED_DATA: 0x4,
  TRANSPORT_DATA: 0x5,
} as const;

/**
 * SGL descriptor sub types (lower nibble of byte 15; Linux `NVME_SGL_FMT_ADDRESS` /
 * `NVME_SGL_FMT_OFFSET`). Over PCIe only Address is defined; Offset is for NVMe over Fabrics.
 */
export const NVME_SGL_SUBTYPE = {
  ADDRESS: 0x0,
  OFFSET: 0x1,
} as const;

/** Writes a 16-byte SGL descriptor {addr, len, type and sub type} at `off` (sub type 0: Address). */
export function setSglDesc(
  b: Uint8Array,
  off: number,
  addr: number,
  len: number,
  type: number,
  subtype = 0,
): void {
  setU64(b, off + SGL_DESC.ADDR, addr);
  setU32(b, off + SGL_DESC.LEN, len);
  b[off + 12] = 0;
  b[off + 13] = 0;
  b[off + 14] = 0;
  b[off + SGL_DESC.TYPE] = type * 16 + subtype;
}

/** The descriptor type at `off` (QEMU `NVME_SGL_TYPE`). */
export function sglDescType(b: Uint8Array, off: number): number {
  return Math.floor((b[off + SGL_DESC.TYPE] as number) / 16);
}

/** The descriptor sub type at `off`. */
export function sglDescSubtype(b: Uint8Array, off: number): number {
  return (b[off + SGL_DESC.TYPE] as number) % 16;
}

/** The descriptor length at `off`. */
export function sglDescLen(b: Uint8Array, off: number): number {
  return getU32(b, off + SGL_DESC.LEN);
}
