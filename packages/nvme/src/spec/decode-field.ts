/**
 * What the NVMe field decoders (decode.ts, decode-dptr.ts) share: the shape of one decoded
 * field, and builders that turn a dword's bit range or a whole 8-byte field into one, with the
 * byte range it occupies and the bit notation the NVMe Base Specification uses in its figures
 * ("07:00" for bits 7 down to 0, "16" for a single bit, "63:00" for a 64-bit field).
 *
 * Bit fields are cut out of 32-bit dwords with arithmetic, as the register accessors are
 * (registers.ts); 64-bit fields are read as two halves, so an address is a number below 2^53
 * and one at or above it is reported without being turned into a (rounded) number.
 */
import { getU32, getU64Hi } from "@dmasim/bvec";
import { getAddr64 } from "./commands.ts";

/** One decoded field. */
export interface NvmeField {
  /** The specification's mnemonic ("OPC", "PSDT", "CID", "SLBA", "NLB", ...). */
  readonly name: string;
  /** The specification's name of the field, in words ("Opcode", "Fused Operation", ...). */
  readonly label: string;
  /** First byte of the field within the structure. */
  readonly offset: number;
  /** Bytes the field occupies (for a bit field: the bytes its bit range touches). */
  readonly size: number;
  /** Bit range within its dword(s), in the specification's notation ("07:00", "16", "63:00"). */
  readonly bits: string;
  /** The dword(s) holding the field ("CDW0", "CDW10-11", "DW3", ...). */
  readonly dword: string;
  /** The field's numeric value; -1 for a 64-bit field at or above 2^53 (see `text`). */
  readonly value: number;
  /** What the value means, for people ("02h Read", "00b PRP", "0's based: 8 blocks"). */
  readonly text: string;
}

/** A value in the specification's hexadecimal notation, upper case: `hexH(2, 2)` is "02h". */
export function hexH(v: number, digits = 1): string {
  return `${v.toString(16).toUpperCase().padStart(digits, "0")}h`;
}

/** A value of `width` bits in the specification's binary notation: `binB(1, 2)` is "01b". */
export function binB(v: number, width: number): string {
  return `${v.toString(2).padStart(width, "0")}b`;
}

/** Bits `hi:lo` of a 32-bit dword value (arithmetic, no bitwise operators). */
export function dwBits(dw: number, hi: number, lo: number): number {
  return Math.floor(dw / 2 ** lo) % 2 ** (hi - lo + 1);
}

/** The specification's notation for bits `hi:lo` ("07:00", or "16" for one bit). */
function bitsText(hi: number, lo: number): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return hi === lo ? pad(hi) : `${pad(hi)}:${pad(lo)}`;
}

/** Where a field's dword sits: its name ("CDW12") and its first byte in the structure. */
export interface DwordAt {
  readonly dword: string;
  readonly at: number;
}

/** What a bit field means, from its value. */
export type FieldText = (value: number) => string;

/**
 * Bits `hi:lo` of the dword at `d` in `b`, as a field: its bytes are those the bit range
 * touches within the dword.
 */
export function bitField(
  b: Uint8Array,
  d: DwordAt,
  hi: number,
  lo: number,
  name: string,
  label: string,
  text: FieldText,
): NvmeField {
  const value = dwBits(getU32(b, d.at), hi, lo);
  const first = Math.floor(lo / 8);
  return {
    name,
    label,
    offset: d.at + first,
    size: Math.floor(hi / 8) - first + 1,
    bits: bitsText(hi, lo),
    dword: d.dword,
    value,
    text: text(value),
  };
}

/** A whole 32-bit dword as one field (bits 31:00). */
export function dwordField(
  b: Uint8Array,
  d: DwordAt,
  name: string,
  label: string,
  text: FieldText,
): NvmeField {
  return bitField(b, d, 31, 0, name, label, text);
}

/**
 * The 64-bit value at `off` in hexadecimal ("0x1_0000_2000" without the separators), worked on
 * the two halves so that it is exact whatever its size.
 */
export function hex64(b: Uint8Array, off: number): string {
  const hi = getU64Hi(b, off);
  const lo = getU32(b, off);
  return hi === 0
    ? `0x${lo.toString(16)}`
    : `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
}

/** What a 64-bit field means, from its value (below 2^53) and its hexadecimal spelling. */
export type Field64Text = (value: number, hex: string) => string;

/** An address's meaning: its hexadecimal value. */
export const addrText: Field64Text = (_v, hex) => hex;

/**
 * The 8-byte field at `at` (bits 63:00 of the dword pair `dword`). Its value is the number (an
 * address is below 2^53 in the model); one at or above 2^53 has value -1 and says so in its
 * text, with its exact hexadecimal value.
 */
export function qwordField(
  b: Uint8Array,
  at: number,
  dword: string,
  name: string,
  label: string,
  text: Field64Text,
): NvmeField {
  const value = getAddr64(b, at);
  const hex = hex64(b, at);
  return {
    name,
    label,
    offset: at,
    size: 8,
    bits: "63:00",
    dword,
    value,
    text: value < 0 ? `${hex} (at or above 2^53: beyond the model's addresses)` : text(value, hex),
  };
}

/** "1 block" / "8 blocks" ("1 entry" / "2 entries" with `many`). */
export function plural(n: number, unit: string, many = `${unit}s`): string {
  return `${n} ${n === 1 ? unit : many}`;
}

/** A one-bit flag's meaning: `off` or `on`. */
export function flagText(on: string, off = "not set"): FieldText {
  return (v) => `${binB(v, 1)} ${v === 1 ? on : off}`;
}
