/**
 * Byte layouts of the 64-byte submission queue entry and the 16-byte completion queue entry
 * (Linux `struct nvme_command` / `struct nvme_completion`, NVMe Base 2.2 Figs 92, 99). 64-bit
 * fields are written and read as two little-endian 32-bit halves.
 */
import { TWO_POW_32, join64 } from "@dmasim/bvec";

/** Size of a submission queue entry. */
export const SQE_SIZE = 64;
/** Size of a completion queue entry. */
export const CQE_SIZE = 16;

/** Byte offsets of the command fields. */
export const SQE = {
  OPCODE: 0,
  FLAGS: 1,
  CID: 2,
  NSID: 4,
  CDW2: 8,
  CDW3: 12,
  MPTR: 16,
  PRP1: 24,
  PRP2: 32,
  SGL_ADDR: 24,
  SGL_LEN: 32,
  SGL_TYPE: 39,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;

/** Reads a little-endian 16-bit value. */
export function getU16(b: Uint8Array, off: number): number {
  return (b[off] as number) + (b[off + 1] as number) * 0x100;
}

/*
 * The writers below lean on the typed-array store itself: storing a number into a Uint8Array
 * keeps its integer part modulo 256 (ToUint8), so `b[i] = v / 2^k` stores byte k/8 of any
 * non-negative integer v below 2^53 exactly, with no `%` (a libm call on doubles) and no
 * bitwise operator.
 */

/** Writes a little-endian 16-bit value. */
export function setU16(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v / 0x100;
}

/** Reads a little-endian 32-bit value. */
export function getU32(b: Uint8Array, off: number): number {
  return (
    (b[off] as number) +
    (b[off + 1] as number) * 0x100 +
    (b[off + 2] as number) * 0x10000 +
    (b[off + 3] as number) * 0x1000000
  );
}

/** Writes a little-endian 32-bit value. */
export function setU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v / 0x100;
  b[off + 2] = v / 0x10000;
  b[off + 3] = v / 0x1000000;
}

/** Reads a 64-bit value as two halves (throws above 2^53). */
export function getU64(b: Uint8Array, off: number): number {
  return join64(getU32(b, off), getU32(b, off + 4));
}

/** The high 32-bit half of a 64-bit field (for values that may exceed 2^53). */
export function getU64Hi(b: Uint8Array, off: number): number {
  return getU32(b, off + 4);
}

/** Writes a 64-bit value (below 2^53) as two halves. */
export function setU64(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v / 0x100;
  b[off + 2] = v / 0x10000;
  b[off + 3] = v / 0x1000000;
  b[off + 4] = v / TWO_POW_32;
  b[off + 5] = v / 0x10000000000;
  b[off + 6] = v / 0x1000000000000;
  b[off + 7] = v / 0x100000000000000;
}

/** Writes a 16-byte SGL descriptor {addr, len, type and sub type} at `off` (sub type 0: Address). */
export function setSglDesc(
  b: Uint8Array,
  off: number,
  addr: number,
  len: number,
  type: number,
  subtype = 0,
): void {
  setU64(b, off, addr);
  setU32(b, off + 8, len);
  b[off + 12] = 0;
  b[off + 13] = 0;
  b[off + 14] = 0;
  b[off + 15] = type * 16 + subtype;
}
