/**
 * Byte layouts of the 64-byte submission queue entry and the 16-byte completion queue entry
 * (Linux `struct nvme_command` / `struct nvme_completion`, NVMe Base 2.2 Figs 92, 99). 64-bit
 * fields are written and read as two little-endian 32-bit halves.
 */
import { getU16, getU32, getU64, getU64Hi, setU16, setU32, setU64 } from "@dmasim/bvec";

export { getU16, getU32, getU64, getU64Hi, setU16, setU32, setU64 };

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
