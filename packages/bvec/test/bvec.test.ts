import { describe, expect, it } from "vitest";
import {
  bvec,
  bvecFromPhys,
  bvecIter,
  bvecIterAdvance,
  bvecIterBvec,
  bvecPhys,
  mpBvecIterBvec,
} from "../src/index.ts";

const P32 = 2 ** 32;
const P48 = 2 ** 48;

describe("bvec", () => {
  it("computes bvecPhys from page frame and offset, above 2^32 and 2^48", () => {
    expect(bvecPhys(bvec(1, 0x10, 0x100))).toBe(0x1010);
    expect(bvecPhys(bvec(P32 / 4096 + 3, 0x200, 512))).toBe(P32 + 0x3200);
    expect(bvecPhys(bvec(P48 / 65536, 0x10, 16, 65536))).toBe(P48 + 0x10);
    const b = bvecFromPhys(P48 + 0x1234, 100);
    expect(b).toEqual({ page: P48 / 4096 + 1, offset: 0x234, len: 100, pageSize: 4096 });
  });

  it("rejects bad fields clearly", () => {
    expect(() => bvec(1, 0, 0)).toThrow("bvec length 0 is below 1");
    expect(() => bvec(1.5, 0, 1)).toThrow(/bvec page frame 1.5 is not a safe integer/);
    expect(() => bvec(0, 0, 2 ** 32)).toThrow(/does not fit bv_len/);
    expect(() => bvecFromPhys(2 ** 52, 4096)).toThrow(/beyond the 52-bit address width/);
  });

  it("iterates multi-page bvecs and their single-page views", () => {
    // One bvec of 3 pages starting 0x100 into page 10, then one of 512 bytes.
    const bvs = [bvec(10, 0x100, 3 * 4096), bvec(100, 0, 512)];
    const it = bvecIter(3 * 4096 + 512);
    expect(mpBvecIterBvec(bvs, it)).toEqual({
      page: 10,
      offset: 0x100,
      len: 3 * 4096,
      pageSize: 4096,
    });
    expect(bvecIterBvec(bvs, it)).toEqual({
      page: 10,
      offset: 0x100,
      len: 4096 - 0x100,
      pageSize: 4096,
    });
    bvecIterAdvance(bvs, it, 4096);
    expect(it).toEqual({ size: 2 * 4096 + 512, idx: 0, done: 4096 });
    expect(bvecIterBvec(bvs, it)).toEqual({
      page: 11,
      offset: 0x100,
      len: 4096 - 0x100,
      pageSize: 4096,
    });
    expect(mpBvecIterBvec(bvs, it).offset).toBe(0x1100);
    bvecIterAdvance(bvs, it, 2 * 4096);
    expect(it).toEqual({ size: 512, idx: 1, done: 0 });
    bvecIterAdvance(bvs, it, 512);
    expect(it.size).toBe(0);
    expect(() => bvecIterAdvance(bvs, it, 1)).toThrow(/only 0 left/);
  });

  it("clamps the current segment to the bytes left in the iterator", () => {
    const bvs = [bvec(10, 0, 8192)];
    const it = bvecIter(1000);
    expect(mpBvecIterBvec(bvs, it).len).toBe(1000);
  });
});
