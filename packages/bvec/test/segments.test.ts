import { describe, expect, it } from "vitest";
import {
  bioFromBvecs,
  blkMapIterNext,
  blkRqFromBios,
  blkRqMapIterInit,
  blkRqPhysSegments,
  bvec,
  countPhysSegments,
  getMaxSegmentSize,
  queueLimits,
} from "../src/index.ts";

const P32 = 2 ** 32;
const hi = P32 / 4096;

describe("physical segments (blk_map_iter_next)", () => {
  const lim = queueLimits({ maxSegments: 64, maxHwSectors: 8192, dmaAlignment: 3 });

  it("merges physically contiguous bvecs across bios", () => {
    const a = bioFromBvecs("read", 0, [bvec(hi, 0, 4096)]);
    const b = bioFromBvecs("read", 8, [bvec(hi + 1, 0, 4096)]);
    const req = blkRqFromBios(lim, [a, b]);
    expect(req.nrPhysSegments).toBe(2); // counted per bvec by the splitter
    expect(blkRqPhysSegments(req)).toEqual([{ paddr: P32, len: 8192 }]);
  });

  it("keeps non-contiguous bvecs apart", () => {
    const req = blkRqFromBios(lim, [
      bioFromBvecs("read", 0, [bvec(hi, 0, 4096), bvec(hi + 2, 0, 4096)]),
    ]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: P32, len: 4096 },
      { paddr: P32 + 8192, len: 4096 },
    ]);
  });

  it("splits a multi-page bvec at the max segment size", () => {
    const req = blkRqFromBios(lim, [bioFromBvecs("read", 0, [bvec(hi, 0, 160 * 1024)])]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: P32, len: 65536 },
      { paddr: P32 + 65536, len: 65536 },
      { paddr: P32 + 131072, len: 32768 },
    ]);
  });

  it("splits at the 4 GiB segment boundary and never merges across it", () => {
    const below = P32 / 4096 - 1;
    const req = blkRqFromBios(lim, [bioFromBvecs("read", 0, [bvec(below, 0, 8192)])]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: P32 - 4096, len: 4096 },
      { paddr: P32, len: 4096 },
    ]);
    const a = bioFromBvecs("read", 0, [bvec(below, 0, 4096)]);
    const b = bioFromBvecs("read", 8, [bvec(hi, 0, 4096)]);
    expect(countPhysSegments(blkRqFromBios(lim, [a, b]))).toBe(2);
  });

  it("merges the tail of a clamped bvec with the next contiguous bvec", () => {
    const a = bioFromBvecs("read", 0, [bvec(hi, 0, 96 * 1024)]);
    const b = bioFromBvecs("read", 192, [bvec(hi + 24, 0, 4096)]);
    const req = blkRqFromBios(lim, [a, b]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: P32, len: 65536 },
      { paddr: P32 + 65536, len: 36864 },
    ]);
  });

  it("does not merge when the merged length would exceed the clamp", () => {
    const a = bioFromBvecs("read", 0, [bvec(hi, 0, 61440)]);
    const b = bioFromBvecs("read", 120, [bvec(hi + 15, 0, 8192)]);
    const req = blkRqFromBios(lim, [a, b]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: P32, len: 61440 },
      { paddr: P32 + 61440, len: 8192 },
    ]);
  });

  it("honours a small segment boundary mask", () => {
    const l = queueLimits({ segBoundaryMask: 0xffff, dmaAlignment: 3 });
    expect(getMaxSegmentSize(l, 0xf000, 0xffffffff)).toBe(0x1000);
    const req = blkRqFromBios(l, [bioFromBvecs("read", 0, [bvec(0xf, 0, 8192)])]);
    expect(blkRqPhysSegments(req)).toEqual([
      { paddr: 0xf000, len: 4096 },
      { paddr: 0x10000, len: 4096 },
    ]);
  });

  it("iterates split bios from their own start, mid-bvec", () => {
    const l = queueLimits({ maxHwSectors: 16, dmaAlignment: 3 });
    const bio = bioFromBvecs("read", 0, [bvec(hi, 0, 3 * 4096)]);
    // The request covers only the first 8 KiB of the table.
    const req = blkRqFromBios(l, [bioFromBvecs("read", 0, [bvec(hi, 0, 8192)])]);
    expect(blkRqPhysSegments(req)).toEqual([{ paddr: P32, len: 8192 }]);
    expect(bio.size).toBe(12288);
  });

  it("is allocation-free to iterate with a reused vec", () => {
    const req = blkRqFromBios(lim, [
      bioFromBvecs("read", 0, [bvec(hi, 0, 4096), bvec(hi + 9, 0, 4096)]),
    ]);
    const it = blkRqMapIterInit(req);
    const v = { paddr: 0, len: 0 };
    expect(blkMapIterNext(req, it, v)).toBe(true);
    expect(v).toEqual({ paddr: P32, len: 4096 });
    expect(blkMapIterNext(req, it, v)).toBe(true);
    expect(v.paddr).toBe(P32 + 9 * 4096);
    expect(blkMapIterNext(req, it, v)).toBe(false);
  });
});
