/**
 * The one little-endian codec of the project: fixed-width fields in byte arrays, as the NVMe
 * structures, page-table entries and simulated memory lay them out (every structure dmasim
 * models is little-endian, as on x86-64 and Arm in their usual configuration). 64-bit fields
 * are numbers below 2^53 (see addr.ts); `getU64Hi` reads the high half of one that may not be.
 */
import { TWO_POW_32, join64 } from "./addr.ts";

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

/** Whether this host's typed arrays are little-endian (every platform Node.js supports is). */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * `words` little-endian 32-bit words of `bytes` from its start, as a live `Uint32Array` view:
 * the codec's fast path for tables of aligned 32-bit fields read and written often, such as
 * I/O page-table entries (a 64-bit entry is two words, low first). The view is exact only on a
 * little-endian host; on any other this throws rather than lay the fields out wrongly.
 */
export function leU32View(bytes: Uint8Array, words: number): Uint32Array {
  if (!HOST_LITTLE_ENDIAN) throw new Error("little-endian 32-bit views need a little-endian host");
  return new Uint32Array(bytes.buffer, bytes.byteOffset, words);
}
