import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  getU16,
  getU32,
  getU64,
  getU64Hi,
  leU32View,
  setU16,
  setU32,
  setU64,
} from "../src/index.ts";

describe("little-endian codec", () => {
  it("lays a 64-bit value above 2^48 out byte by byte, low byte first", () => {
    const b = new Uint8Array(8);
    setU64(b, 0, 0x1f_2345_6789_abcd);
    expect([...b]).toEqual([0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x1f, 0x00]);
    expect(getU64(b, 0)).toBe(0x1f_2345_6789_abcd);
    expect(getU64Hi(b, 0)).toBe(0x1f_2345);
  });

  it("round-trips 16-, 32- and 64-bit fields at any offset", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.maxSafeNat(),
        fc.integer({ min: 0, max: 9 }),
        (a, b, c, off) => {
          const buf = new Uint8Array(32);
          setU16(buf, off, a);
          setU32(buf, off + 2, b);
          setU64(buf, off + 6, c);
          expect(getU16(buf, off)).toBe(a);
          expect(getU32(buf, off + 2)).toBe(b);
          expect(getU64(buf, off + 6)).toBe(c);
        },
      ),
    );
  });

  it("gives 32-bit word views with the same layout as the byte codec", () => {
    const bytes = new Uint8Array(16);
    const words = leU32View(bytes.subarray(8), 2);
    words[0] = 0x6789_abcd;
    words[1] = 0x1f_2345;
    expect(getU64(bytes, 8)).toBe(0x1f_2345_6789_abcd);
    setU32(bytes, 12, 0xdead_beef);
    expect(words[1]).toBe(0xdead_beef);
    expect(words.length).toBe(2);
  });
});
