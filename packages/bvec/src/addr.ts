/**
 * Address arithmetic on JavaScript numbers.
 *
 * Physical addresses, IOVAs and DMA addresses are integers below 2^53. The 32-bit bitwise
 * operators would silently truncate them, so everything here is plain arithmetic, or works on
 * the two 32-bit halves of a value explicitly.
 */
import { BvecError } from "./errors.ts";

/** 2^32, the split point between the low and the high half of a 64-bit field. */
export const TWO_POW_32 = 4294967296;
/** The largest address the model can hold exactly: 2^53 - 1. */
export const MAX_ADDR = Number.MAX_SAFE_INTEGER;
/** The default modelled physical address width (bits), as on x86-64 and arm64 LPA. */
export const PHYS_ADDR_BITS = 52;

/** 2^n for n = 0..53, precomputed (the bound checks run on every mapping call). */
const POW2: readonly number[] = Array.from({ length: 54 }, (_, n) => 2 ** n);

/**
 * 2^n for an integer n (from a table for 0..53): the `**` operator with a computed exponent is
 * a call to the C library's pow on hot paths.
 */
export function pow2(n: number): number {
  return POW2[n] ?? 2 ** n;
}

/** Formats a number as lowercase hex with a 0x prefix (`0x1000`). */
export function hex(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return value < 0 ? `-0x${(-value).toString(16)}` : `0x${value.toString(16)}`;
}

/**
 * Parses an address or size: decimal, or hex with a 0x prefix; `_` separators allowed
 * (`0x1_2345_6000`); optional binary suffix K, M, G, T (`64K`, `2M`). Throws on anything else.
 */
export function parseAddress(text: string): number {
  const t = text.trim().replaceAll("_", "");
  const m = /^(0x[0-9a-f]+|[0-9]+)([kmgt]?)$/i.exec(t);
  if (!m) throw new BvecError("EINVAL", `not an address or size: ${JSON.stringify(text)}`);
  const digits = m[1] ?? "";
  const base = digits.toLowerCase().startsWith("0x")
    ? parseInt(digits.slice(2), 16)
    : parseInt(digits, 10);
  const suffix = (m[2] ?? "").toLowerCase();
  const mult =
    suffix === "k"
      ? 1024
      : suffix === "m"
        ? 1024 ** 2
        : suffix === "g"
          ? 1024 ** 3
          : suffix === "t"
            ? 1024 ** 4
            : 1;
  const v = base * mult;
  if (!Number.isSafeInteger(v)) {
    throw new BvecError("ERANGE", `${JSON.stringify(text)} does not fit below 2^53`);
  }
  return v;
}

/** True when `n` is a positive power of two (Linux `is_power_of_2`). */
export function isPow2(n: number): boolean {
  if (!Number.isSafeInteger(n) || n <= 0) return false;
  return lowestSetBit(n) === n;
}

/**
 * The value of the lowest set bit of `n` (`n & -n` for a 64-bit n; Linux `__ffs` as a value).
 * 0 for 0. Works on the two halves, so it is exact for every safe integer.
 */
export function lowestSetBit(n: number): number {
  if (n === 0) return 0;
  const lo = n % TWO_POW_32;
  if (lo !== 0) {
    // eslint-disable-next-line no-bitwise -- lo is a 32-bit half, not an address
    return (lo & -lo) >>> 0;
  }
  const hi = Math.floor(n / TWO_POW_32);
  // eslint-disable-next-line no-bitwise -- hi is a 32-bit half, not an address
  return ((hi & -hi) >>> 0) * TWO_POW_32;
}

/** Linux `ffs`: 1-based index of the lowest set bit, 0 when no bit is set. */
export function ffs(n: number): number {
  return n === 0 ? 0 : ilog2(lowestSetBit(n)) + 1;
}

/** Linux `fls64`: 1-based index of the highest set bit, 0 for 0. */
export function fls(n: number): number {
  if (n === 0) return 0;
  const hi = Math.floor(n / TWO_POW_32);
  if (hi !== 0) return 64 - Math.clz32(hi);
  return 32 - Math.clz32(n);
}

/** Linux `ilog2`: floor(log2(n)) for n >= 1. */
export function ilog2(n: number): number {
  if (n < 1) throw new BvecError("EINVAL", `ilog2 of ${n}`);
  return fls(n) - 1;
}

/** Linux `order_base_2`: ceil(log2(n)); 0 for n <= 1. */
export function orderBase2(n: number): number {
  if (n <= 1) return 0;
  return fls(n - 1);
}

/** Linux `roundup_pow_of_two`: the smallest power of two >= n (n >= 1). */
export function roundupPow2(n: number): number {
  if (n <= 1) return 1;
  return pow2(orderBase2(n));
}

/** Linux `rounddown_pow_of_two`: the largest power of two <= n (n >= 1). */
export function rounddownPow2(n: number): number {
  if (n < 1) throw new BvecError("EINVAL", `rounddown_pow_of_two of ${n}`);
  return pow2(ilog2(n));
}

/** Linux `ALIGN_DOWN(x, a)` for any positive integer `a` (usually a power of two). */
export function alignDown(x: number, a: number): number {
  return x - (x % a);
}

/** Linux `ALIGN(x, a)`: rounds `x` up to a multiple of `a`. */
export function alignUp(x: number, a: number): number {
  const r = x % a;
  return r === 0 ? x : x + (a - r);
}

/** Linux `IS_ALIGNED(x, a)`. */
export function isAligned(x: number, a: number): boolean {
  return x % a === 0;
}

/** Linux `offset_in_page` generalised: `x mod a`. */
export function offsetIn(x: number, a: number): number {
  return x % a;
}

/**
 * `x % a` for a positive integer `a`, with the same result, but without the C `fmod` call V8
 * makes once `x` is beyond the int32 range (addresses above 2 GiB): hot paths use it on IOVAs
 * and physical addresses. Negative `x`, and the rare quotient that rounds up to the next
 * integer, take `%` itself, so the result is the one `%` gives for every finite `x`.
 */
export function fastMod(x: number, a: number): number {
  if (x >= 0) {
    const r = x - Math.floor(x / a) * a;
    if (r >= 0) return r;
  }
  return x % a;
}

/** Page frame number of `addr` for pages of `pageSize` bytes (Linux `PHYS_PFN`). */
export function pfnOf(addr: number, pageSize: number): number {
  return Math.floor(addr / pageSize);
}

/** Physical address of page frame `pfn` (Linux `PFN_PHYS`). */
export function pfnPhys(pfn: number, pageSize: number): number {
  return pfn * pageSize;
}

/** Bitwise AND of two safe integers, exact above 2^32 (computed on the two halves). */
export function and53(a: number, b: number): number {
  const alo = fastMod(a, TWO_POW_32);
  const blo = fastMod(b, TWO_POW_32);
  const ahi = Math.floor(a / TWO_POW_32);
  const bhi = Math.floor(b / TWO_POW_32);
  // eslint-disable-next-line no-bitwise -- 32-bit halves
  return ((ahi & bhi) >>> 0) * TWO_POW_32 + ((alo & blo) >>> 0);
}

/** Bitwise OR of two safe integers, exact above 2^32 (computed on the two halves). */
export function or53(a: number, b: number): number {
  const alo = fastMod(a, TWO_POW_32);
  const blo = fastMod(b, TWO_POW_32);
  const ahi = Math.floor(a / TWO_POW_32);
  const bhi = Math.floor(b / TWO_POW_32);
  // eslint-disable-next-line no-bitwise -- 32-bit halves
  return ((ahi | bhi) >>> 0) * TWO_POW_32 + ((alo | blo) >>> 0);
}

/** Bitwise XOR of two safe integers, exact above 2^32 (computed on the two halves). */
export function xor53(a: number, b: number): number {
  const alo = fastMod(a, TWO_POW_32);
  const blo = fastMod(b, TWO_POW_32);
  const ahi = Math.floor(a / TWO_POW_32);
  const bhi = Math.floor(b / TWO_POW_32);
  // eslint-disable-next-line no-bitwise -- 32-bit halves
  return ((ahi ^ bhi) >>> 0) * TWO_POW_32 + ((alo ^ blo) >>> 0);
}

/** The low 32-bit half of a safe integer (what a 64-bit field stores at its first dword). */
export function lo32(v: number): number {
  return fastMod(v, TWO_POW_32);
}

/** The high 32-bit half of a safe integer (what a 64-bit field stores at its second dword). */
export function hi32(v: number): number {
  return Math.floor(v / TWO_POW_32);
}

/** Joins two 32-bit halves into a number; throws if the value does not fit below 2^53. */
export function join64(lo: number, hi: number): number {
  if (hi >= 0x200000) {
    throw new BvecError(
      "ERANGE",
      `64-bit value ${hex(hi)}_${lo.toString(16).padStart(8, "0")} does not fit below 2^53`,
    );
  }
  return hi * TWO_POW_32 + lo;
}

/** A mask of the low `bits` bits (`(1 << bits) - 1` for up to 53 bits). */
export function lowMask(bits: number): number {
  if (!Number.isInteger(bits) || bits < 0 || bits > 53) {
    throw new BvecError("ERANGE", `mask width ${bits} is outside 0..53 bits`);
  }
  return 2 ** bits - 1;
}

/**
 * Checks that `value` is an integer in [0, 2^bits) and returns it; otherwise throws a
 * `BvecError` naming `what` and the value in hex.
 */
export function checkAddr(value: number, what = "address", bits = PHYS_ADDR_BITS): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new BvecError("EINVAL", `${what} ${String(value)} is not an integer`);
  }
  if (value < 0) throw new BvecError("ERANGE", `${what} ${hex(value)} is negative`);
  if (!Number.isSafeInteger(value)) {
    throw new BvecError("ERANGE", `${what} ${hex(value)} is not below 2^53`);
  }
  if (bits < 53 && value >= (POW2[bits] ?? 2 ** bits)) {
    throw new BvecError("ERANGE", `${what} ${hex(value)} is beyond the ${bits}-bit address width`);
  }
  return value;
}

/** Checks that `value` is a safe integer >= `min` (default 0); throws a `BvecError` otherwise. */
export function checkInt(value: number, what: string, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new BvecError("EINVAL", `${what} ${String(value)} is not a safe integer`);
  }
  if (value < min) throw new BvecError("ERANGE", `${what} ${value} is below ${min}`);
  return value;
}

/** Checks that `value` is a power of two; throws a `BvecError` naming it otherwise. */
export function checkPow2(value: number, what: string): number {
  if (!isPow2(value)) throw new BvecError("EINVAL", `${what} ${hex(value)} is not a power of two`);
  return value;
}

/** Checks that `value` is a mask of the form 2^k - 1 (k >= 0); throws otherwise. */
export function checkMask(value: number, what: string): number {
  checkInt(value, what);
  if (value !== MAX_ADDR && !isPow2(value + 1))
    throw new BvecError("EINVAL", `${what} ${hex(value)} is not of the form 2^k - 1`);
  return value;
}
