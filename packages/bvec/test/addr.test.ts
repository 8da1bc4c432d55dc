import { describe, expect, it } from "vitest";
import {
  BvecError,
  MAX_ADDR,
  alignDown,
  alignUp,
  and53,
  checkAddr,
  checkMask,
  ffs,
  fls,
  hex,
  hi32,
  ilog2,
  isAligned,
  isPow2,
  join64,
  lo32,
  lowestSetBit,
  or53,
  orderBase2,
  parseAddress,
  pfnOf,
  rounddownPow2,
  roundupPow2,
  xor53,
} from "../src/index.ts";

const P32 = 2 ** 32;
const P48 = 2 ** 48;

describe("addr", () => {
  it.each([
    [0, 4096, 0, 0],
    [1, 4096, 0, 4096],
    [4095, 4096, 0, 4096],
    [4096, 4096, 4096, 4096],
    [P32 - 1, 4096, P32 - 4096, P32],
    [P32 + 1, 4096, P32, P32 + 4096],
    [P48 + 0x1234, 2 ** 21, P48, P48 + 2 ** 21],
    [MAX_ADDR - 4095 - 4096, 4096, MAX_ADDR - 4095 - 4096, MAX_ADDR - 4095 - 4096],
    [MAX_ADDR - 4095 - 4100, 4096, MAX_ADDR - 4095 - 8192, MAX_ADDR - 4095 - 4096],
  ])("aligns %s to %s as [%s, %s]", (x, a, down, up) => {
    expect(alignDown(x, a)).toBe(down);
    expect(alignUp(x, a)).toBe(up);
    expect(isAligned(down, a)).toBe(true);
  });

  it("computes power-of-two helpers exactly above 2^32", () => {
    expect(isPow2(P32)).toBe(true);
    expect(isPow2(P48)).toBe(true);
    expect(isPow2(P32 + 4096)).toBe(false);
    expect(isPow2(0)).toBe(false);
    expect(roundupPow2(P32 + 1)).toBe(2 ** 33);
    expect(roundupPow2(5)).toBe(8);
    expect(roundupPow2(1)).toBe(1);
    expect(rounddownPow2(P48 + 7)).toBe(P48);
    expect(orderBase2(1)).toBe(0);
    expect(orderBase2(32)).toBe(5);
    expect(orderBase2(33)).toBe(6);
    expect(orderBase2(P32 + 1)).toBe(33);
    expect(ilog2(P48 + 5)).toBe(48);
    expect(fls(0)).toBe(0);
    expect(fls(1)).toBe(1);
    expect(fls(P32)).toBe(33);
    expect(fls(MAX_ADDR)).toBe(53);
  });

  it("finds the lowest set bit in either half", () => {
    expect(lowestSetBit(0)).toBe(0);
    expect(lowestSetBit(12)).toBe(4);
    expect(lowestSetBit(2 ** 31)).toBe(2 ** 31);
    expect(lowestSetBit(P32)).toBe(P32);
    expect(lowestSetBit(P48 + P32 * 2)).toBe(P32 * 2);
    expect(lowestSetBit(P48 + 0x200)).toBe(0x200);
    expect(ffs(0)).toBe(0);
    expect(ffs(1)).toBe(1);
    expect(ffs(0x1000)).toBe(13);
    expect(ffs(P48)).toBe(49);
  });

  it("does bitwise AND/OR/XOR exactly on values above 2^32", () => {
    expect(and53(P48 + 0xfff, 0xfff)).toBe(0xfff);
    expect(and53(P48 + P32 + 5, P32 + 4)).toBe(P32 + 4);
    expect(or53(P48, 0x1000)).toBe(P48 + 0x1000);
    expect(or53(P32, P32)).toBe(P32);
    expect(xor53(P48 + 1, 1)).toBe(P48);
    // A 32-bit operator would lose the high half: make sure ours does not.
    expect(and53(MAX_ADDR, MAX_ADDR)).toBe(MAX_ADDR);
  });

  it("splits and joins 64-bit fields", () => {
    const v = P48 + 0x12345678;
    expect(lo32(v)).toBe(0x12345678);
    expect(hi32(v)).toBe(0x10000);
    expect(join64(lo32(v), hi32(v))).toBe(v);
    expect(() => join64(0, 0x200000)).toThrow(/does not fit below 2\^53/);
  });

  it("formats and parses hex", () => {
    expect(hex(0)).toBe("0x0");
    expect(hex(P48 + 0xabc)).toBe("0x1000000000abc");
    expect(parseAddress("0x1_2345_6000")).toBe(0x123456000);
    expect(parseAddress("8192")).toBe(8192);
    expect(parseAddress("64K")).toBe(65536);
    expect(parseAddress("2m")).toBe(2 * 1024 * 1024);
    expect(parseAddress("1G")).toBe(2 ** 30);
    expect(() => parseAddress("0xzz")).toThrow(/not an address or size: "0xzz"/);
    expect(() => parseAddress("0x20000000000000")).toThrow(BvecError);
  });

  it("rejects non-integers, negatives and values beyond the width, naming them in hex", () => {
    expect(checkAddr(P48)).toBe(P48);
    expect(() => checkAddr(1.5, "iova")).toThrow("iova 1.5 is not an integer");
    expect(() => checkAddr(-4096, "iova")).toThrow("iova -0x1000 is negative");
    expect(() => checkAddr(2 ** 52, "phys")).toThrow(
      "phys 0x10000000000000 is beyond the 52-bit address width",
    );
    expect(() => checkAddr(2 ** 53, "phys", 53)).toThrow(/not below 2\^53/);
    try {
      checkAddr(-1);
    } catch (e) {
      expect(e).toBeInstanceOf(BvecError);
      expect((e as BvecError).code).toBe("ERANGE");
    }
    expect(() => checkMask(4096, "mask")).toThrow("mask 0x1000 is not of the form 2^k - 1");
    expect(checkMask(MAX_ADDR, "mask")).toBe(MAX_ADDR);
  });

  it("computes page frame numbers above 2^32", () => {
    expect(pfnOf(P48 + 0x1fff, 4096)).toBe(P48 / 4096 + 1);
    expect(pfnOf(P32, 65536)).toBe(65536);
  });
});
