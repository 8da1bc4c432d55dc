import { describe, expect, it } from "vitest";
import {
  BLK_DEF_MAX_SECTORS_CAP,
  BLK_STS,
  UINT_MAX,
  blkStatusName,
  Bio,
  and53,
  bioAddPage,
  bioAddPhys,
  bioChain,
  bioEndio,
  bioFromBvecs,
  bioReset,
  bioSegments,
  bioSplit,
  bioSplitIoAt,
  bioSplitToLimits,
  blkRqAppendBio,
  blkRqFromBios,
  blkRqInit,
  blkRqPayloadBytes,
  bvec,
  bvecPhys,
  queueLimits,
  reqPhysGapMask,
} from "../src/index.ts";

const P32 = 2 ** 32;
const pfnHigh = P32 / 4096;

describe("bioAddPage", () => {
  it("merges physically contiguous additions into the previous bvec", () => {
    const bio = new Bio("read", 0, 4);
    expect(bioAddPage(bio, pfnHigh, 4096, 0)).toBe(4096);
    expect(bioAddPage(bio, pfnHigh + 1, 2048, 0)).toBe(2048);
    expect(bio.vcnt).toBe(1);
    expect(bio.bvecs[0]).toEqual({ page: pfnHigh, offset: 0, len: 6144, pageSize: 4096 });
    // Not contiguous: a new bvec.
    expect(bioAddPage(bio, pfnHigh + 5, 512, 0)).toBe(512);
    expect(bio.vcnt).toBe(2);
    expect(bio.size).toBe(6656);
  });

  it("returns 0 when the bio is full or cloned", () => {
    const bio = new Bio("write", 0, 1);
    bioAddPage(bio, 100, 4096, 0);
    expect(bioAddPage(bio, 200, 4096, 0)).toBe(0);
    expect(bioAddPage(bio, 101, 4096, 0)).toBe(4096); // merges, so still fits
    const clone = bioSplit(bio, 8);
    expect(bioAddPage(clone, 102, 512, 0)).toBe(0);
  });

  it("refuses a page of another pgmap (host and P2P memory never share a bio)", () => {
    const bio = new Bio("read", 0, 4);
    const samePgmap = (a: number, b: number) => a < 0x90000000 === b < 0x90000000;
    expect(bioAddPage(bio, 0x8ffff, 4096, 0, 4096, samePgmap)).toBe(4096);
    // Contiguous, but from another pgmap: refused, not merged and not appended.
    expect(bioAddPage(bio, 0x90000, 4096, 0, 4096, samePgmap)).toBe(0);
    expect(bio.vcnt).toBe(1);
    expect(bio.size).toBe(4096);
    // The same pgmap, not contiguous: a new bvec.
    expect(bioAddPage(bio, 0x80000, 4096, 0, 4096, samePgmap)).toBe(4096);
    expect(bio.vcnt).toBe(2);
  });

  it("adds by physical address", () => {
    const bio = new Bio("read", 0, 4);
    bioAddPhys(bio, P32 + 0x200, 0x400);
    expect(bvecPhys(bio.bvecs[0]!)).toBe(P32 + 0x200);
  });
});

describe("bio chaining and splitting", () => {
  it("completes a parent only after all chained children, keeping the first error", () => {
    const parent = new Bio("read", 0);
    const a = new Bio("read", 0);
    const b = new Bio("read", 0);
    bioChain(a, parent);
    bioChain(b, parent);
    let done = 0;
    parent.endIo = () => done++;
    bioEndio(a, BLK_STS.IOERR);
    bioEndio(b);
    expect(done).toBe(0);
    bioEndio(parent);
    expect(done).toBe(1);
    expect(parent.status).toBe(BLK_STS.IOERR);
    expect(() => bioEndio(parent)).toThrow(/more times/);
  });

  it("splits a bio into a clone sharing the table", () => {
    const bio = bioFromBvecs("read", 100, [bvec(10, 0, 4096), bvec(20, 0, 4096)]);
    const first = bioSplit(bio, 12); // 6 KiB
    expect(first.cloned).toBe(true);
    expect(first.bvecs).toBe(bio.bvecs);
    expect(bioSegments(first)).toEqual([bvec(10, 0, 4096), bvec(20, 0, 2048)]);
    expect(bioSegments(bio)).toEqual([bvec(20, 2048, 2048)]);
    expect(bio.iter.sector).toBe(112);
    expect(() => bioSplit(bio, 4)).toThrow(/cannot split a bio of 2048 bytes at 2048 bytes/);
  });
});

describe("bioSplitIoAt", () => {
  const nvmePrp = queueLimits({
    virtBoundaryMask: 4095,
    maxSegments: 127,
    maxHwSectors: 1024,
    dmaAlignment: 3,
  });

  it("keeps a bio that fits and counts one segment per bvec", () => {
    const bio = bioFromBvecs("read", 0, [bvec(10, 0, 4096), bvec(20, 0, 4096), bvec(30, 0, 4096)]);
    expect(bioSplitIoAt(bio, nvmePrp)).toEqual({ sectors: 0, segs: 3 });
  });

  it("splits at a virt-boundary gap", () => {
    const bio = bioFromBvecs("read", 0, [bvec(10, 0, 4096), bvec(20, 512, 1024)]);
    expect(bioSplitIoAt(bio, nvmePrp)).toEqual({ sectors: 8, segs: 1 });
  });

  it("splits at max_segments", () => {
    const bvs = Array.from({ length: 200 }, (_, i) => bvec(1000 + 2 * i, 0, 4096));
    const bio = bioFromBvecs("write", 0, bvs);
    const lim = queueLimits({ maxSegments: 128, maxHwSectors: 4096 });
    expect(bioSplitIoAt(bio, lim)).toEqual({ sectors: 128 * 8, segs: 128 });
  });

  it("splits a large contiguous bvec by max_hw_sectors and counts its segments", () => {
    const bio = bioFromBvecs("read", 0, [bvec(pfnHigh, 0, 1024 * 1024)]);
    const lim = queueLimits({ maxSegmentSize: 65536, maxHwSectors: 256 });
    expect(bioSplitIoAt(bio, lim)).toEqual({ sectors: 256, segs: 2 });
  });

  it("splits pieces on logical block boundaries", () => {
    const lim = queueLimits({
      logicalBlockSize: 4096,
      maxSegments: 2,
      maxHwSectors: 2048,
      dmaAlignment: 511,
    });
    const bio = bioFromBvecs("read", 0, [bvec(10, 0, 4096), bvec(20, 0, 2048), bvec(30, 0, 2048)]);
    // Two segments fit (6 KiB) but only one whole 4 KiB block of them.
    expect(bioSplitIoAt(bio, lim).sectors).toBe(8);
  });

  it("refuses bvecs that break the DMA alignment", () => {
    const lim = queueLimits({ dmaAlignment: 511 });
    const bio = bioFromBvecs("read", 0, [bvec(10, 4, 512)]);
    expect(() => bioSplitIoAt(bio, lim)).toThrow(
      "bvec at 0xa004+0x200 breaks the queue DMA alignment 0x1ff (offset) or 0x1ff (length)",
    );
  });

  it("records the lowest gap bit from bvec offsets, as bio_split_io_at does", () => {
    const lim = queueLimits({ dmaAlignment: 3 });
    const aligned = bioFromBvecs("read", 0, [bvec(10, 0, 4096), bvec(20, 0, 4096)]);
    bioSplitIoAt(aligned, lim);
    expect(aligned.gapBit).toBe(13); // joint at 0x1000 | 0x0
    const odd = bioFromBvecs("read", 0, [bvec(10, 0, 4096), bvec(20, 512, 1024)]);
    bioSplitIoAt(odd, lim);
    expect(odd.gapBit).toBe(10); // 0x200
    const single = bioFromBvecs("read", 0, [bvec(10, 0, 4096)]);
    bioSplitIoAt(single, lim);
    expect(single.gapBit).toBe(0);
  });

  it("splits regular I/O at max_sectors (4 MiB by default), not at max_hw_sectors", () => {
    // NVMe without MDTS and without an IOMMU: max_hw_sectors is NVME_MAX_BYTES, 8 MiB.
    const lim = queueLimits({ maxHwSectors: 16384, maxSegments: 256, maxSegmentSize: UINT_MAX });
    expect(lim.maxSectors).toBe(BLK_DEF_MAX_SECTORS_CAP);
    const bvs = Array.from({ length: 3 }, (_, i) => bvec(pfnHigh + 1024 * i, 0, 4 * 1024 * 1024));
    const mib12 = bioFromBvecs("read", 0, bvs);
    expect(bioSplitIoAt(mib12, lim).sectors).toBe(8192);
    const pieces = bioSplitToLimits(mib12, lim);
    expect(pieces.map((p) => p.size / 1024 / 1024)).toEqual([4, 4, 4]);
    // Passthrough (blk_rq_append_bio) checks max_hw_sectors: an 8 MiB bio fits one request.
    const mib8 = bioFromBvecs("read", 0, bvs.slice(0, 2));
    expect(bioSplitIoAt(mib8, lim, lim.maxHwSectors * 512).sectors).toBe(0);
    expect(blkRqFromBios(lim, [mib8]).dataLen).toBe(8 * 1024 * 1024);
  });

  it("splits to limits preserving every byte, pieces chained to the original", () => {
    const bvs = Array.from({ length: 300 }, (_, i) => bvec(pfnHigh + 3 * i, 0, 4096));
    const bio = bioFromBvecs("read", 0, bvs);
    const pieces = bioSplitToLimits(bio, nvmePrp);
    expect(pieces.map((p) => p.size)).toEqual([127 * 4096, 127 * 4096, 46 * 4096]);
    expect(pieces.flatMap((p) => bioSegments(p).map((b) => bvecPhys(b)))).toEqual(
      bvs.map((b) => bvecPhys(b)),
    );
    expect(pieces[2]).toBe(bio);
    expect(bio.remaining).toBe(3);
    expect(pieces[0]!.iter.sector).toBe(0);
    expect(pieces[1]!.iter.sector).toBe(127 * 8);
  });
});

describe("Request", () => {
  const lim = queueLimits({ maxSegments: 8, maxHwSectors: 256, dmaAlignment: 3 });

  it("builds from bios and sums bytes and segments", () => {
    const a = bioFromBvecs("write", 64, [bvec(10, 0, 4096)]);
    const b = bioFromBvecs("write", 72, [bvec(20, 0, 8192)]);
    const req = blkRqFromBios(lim, [a, b]);
    expect(blkRqPayloadBytes(req)).toBe(12288);
    expect(req.nrPhysSegments).toBe(2);
    expect(req.sector).toBe(64);
    expect(req.bios()).toEqual([a, b]);
  });

  it("computes req_phys_gap_mask from joints inside and between bios", () => {
    const a = bioFromBvecs("read", 0, [bvec(10, 0, 4096)]);
    const b = bioFromBvecs("read", 8, [bvec(30, 0, 4096)]);
    const req = blkRqFromBios(lim, [a, b]);
    expect(req.physGapBit).toBe(13);
    expect(and53(reqPhysGapMask(req), 4095)).toBe(0);
    expect(and53(reqPhysGapMask(req), 0xffff)).not.toBe(0);

    const c = bioFromBvecs("read", 0, [bvec(10, 0, 2048)]);
    const d = bioFromBvecs("read", 4, [bvec(30, 0, 2048)]);
    const gappy = blkRqFromBios(lim, [c, d]);
    expect(gappy.physGapBit).toBe(12); // joint at 0x800
    expect(and53(reqPhysGapMask(gappy), 4095)).toBe(0x800);

    // Physically contiguous bios add no gap.
    const e = bioFromBvecs("read", 0, [bvec(10, 0, 2048)]);
    const f = bioFromBvecs("read", 4, [bvec(10, 2048, 2048)]);
    const contiguous = blkRqFromBios(lim, [e, f]);
    expect(contiguous.physGapBit).toBe(0);
    expect(reqPhysGapMask(contiguous)).toBe(0);
  });

  it("refuses bios that break the limits or mix operations", () => {
    const big = bioFromBvecs("read", 0, [bvec(10, 0, 256 * 1024)]);
    expect(() => blkRqFromBios(lim, [big])).toThrow(/split it with bioSplitToLimits first/);
    const r = blkRqFromBios(lim, [bioFromBvecs("read", 0, [bvec(10, 0, 4096)])]);
    expect(() => blkRqAppendBio(r, bioFromBvecs("write", 8, [bvec(11, 0, 4096)]))).toThrow(
      /cannot append a write bio to a read request/,
    );
    const nine = Array.from({ length: 8 }, (_, i) =>
      bioFromBvecs("read", 8 * i, [bvec(100 + 2 * i, 0, 4096)]),
    );
    const r2 = blkRqFromBios(lim, nine);
    expect(() => blkRqAppendBio(r2, bioFromBvecs("read", 64, [bvec(500, 0, 4096)]))).toThrow(
      /above max_segments 8/,
    );
    const vb = queueLimits({ virtBoundaryMask: 4095, dmaAlignment: 3 });
    const r3 = blkRqFromBios(vb, [bioFromBvecs("read", 0, [bvec(10, 0, 2048)])]);
    expect(() => blkRqAppendBio(r3, bioFromBvecs("read", 4, [bvec(20, 0, 2048)]))).toThrow(
      /gap at the virt boundary/,
    );
    expect(() => blkRqFromBios(lim, [])).toThrow(/at least one bio/);
  });
});

describe("queueLimits", () => {
  it("fills Linux defaults", () => {
    const l = queueLimits();
    expect(l).toMatchObject({
      maxSegmentSize: 65536,
      segBoundaryMask: 0xffffffff,
      virtBoundaryMask: 0,
      maxSegments: 128,
      logicalBlockSize: 512,
    });
  });

  it("derives max_sectors from max_hw_sectors, the 4 MiB cap and the logical block size", () => {
    expect(queueLimits().maxSectors).toBe(255);
    expect(queueLimits({ maxHwSectors: 4096 }).maxSectors).toBe(4096);
    expect(queueLimits({ maxHwSectors: 65536 }).maxSectors).toBe(8192);
    // A user limit (max_user_sectors) wins, rounded down to whole 4 KiB blocks.
    expect(queueLimits({ maxHwSectors: 65536, maxSectors: 1000 }).maxSectors).toBe(1000);
    expect(
      queueLimits({ maxHwSectors: 65536, maxSectors: 1001, logicalBlockSize: 4096 }).maxSectors,
    ).toBe(1000);
    expect(() => queueLimits({ maxHwSectors: 256, maxSectors: 512 })).toThrow(
      "max_user_sectors 512 is outside 8..max_hw_sectors 256",
    );
    expect(() => queueLimits({ maxHwSectors: 256, maxSectors: 4 })).toThrow(/max_user_sectors 4/);
  });

  it("forces UINT_MAX segments with a virt boundary and refuses a conflicting size", () => {
    expect(queueLimits({ virtBoundaryMask: 4095 }).maxSegmentSize).toBe(0xffffffff);
    expect(() => queueLimits({ virtBoundaryMask: 4095, maxSegmentSize: 65536 })).toThrow(
      /cannot be combined with virt_boundary_mask 0xfff/,
    );
  });

  it.each([
    [{ virtBoundaryMask: 4096 }, "virt_boundary_mask 0x1000 is not of the form 2^k - 1"],
    [{ segBoundaryMask: 0x7ff }, "seg_boundary_mask 0x7ff is below 0xfff"],
    [{ maxSegmentSize: 0 }, "max_segment_size 0 is below 1"],
    [{ maxSegmentSize: 2048 }, "max_segment_size 0x800 is below 0x1000"],
    [{ logicalBlockSize: 1000 }, "logical_block_size 1000 is not a power of two in 512..65536"],
    [{ maxSegments: 0 }, "max_segments 0 is below 1"],
    [{ dmaAlignment: 6 }, "dma_alignment 0x6 is not of the form 2^k - 1"],
  ])("rejects %o", (partial, message) => {
    expect(() => queueLimits(partial)).toThrow(message);
  });
});

describe("blkStatusName", () => {
  it("names a status as the kernel writes it", () => {
    expect(blkStatusName(BLK_STS.IOERR)).toBe("BLK_STS_IOERR");
    expect(blkStatusName(BLK_STS.RESOURCE)).toBe("BLK_STS_RESOURCE");
    expect(blkStatusName(99)).toBe("blk_status 99");
  });
});

describe("bioReset and blkRqInit", () => {
  it("make a finished bio and request as good as new ones, above 2^32", () => {
    const lim = queueLimits({ maxHwSectors: 8, maxSegments: 4 });
    const bio = new Bio("write", 8, 4);
    bioAddPage(bio, pfnHigh, 4096, 0);
    bioAddPage(bio, pfnHigh + 9, 4096, 0);
    const pieces = bioSplitToLimits(bio, lim);
    expect(pieces).toHaveLength(2);
    const req = blkRqFromBios(lim, [pieces[0] as Bio]);
    bioEndio(pieces[0] as Bio, BLK_STS.IOERR);
    bioEndio(bio);
    expect([bio.status, bio.remaining]).toEqual([BLK_STS.IOERR, 0]);

    bioReset(bio, "read", 2 ** 33);
    expect(bio.op).toBe("read");
    expect(bio.vcnt).toBe(0);
    expect(bio.size).toBe(0);
    expect(bio.maxVecs).toBe(4);
    expect(bio.iter).toEqual({ size: 0, idx: 0, done: 0, sector: 2 ** 33 });
    expect([bio.status, bio.remaining, bio.gapBit, bio.next, bio.parent]).toEqual([
      BLK_STS.OK,
      1,
      0,
      null,
      null,
    ]);
    bioAddPage(bio, pfnHigh + 2 ** 20, 2048, 512);
    blkRqInit(req, "read");
    expect([req.bio, req.dataLen, req.nrPhysSegments, req.tag]).toEqual([null, 0, 0, -1]);
    blkRqAppendBio(req, bio);
    const fresh = blkRqFromBios(lim, [
      bioFromBvecs("read", 2 ** 33, [bvec(pfnHigh + 2 ** 20, 512, 2048)]),
    ]);
    expect([req.op, req.sector, req.dataLen, req.nrPhysSegments, req.physGapBit]).toEqual([
      fresh.op,
      fresh.sector,
      fresh.dataLen,
      fresh.nrPhysSegments,
      fresh.physGapBit,
    ]);
  });

  it("refuse to reset a clone, which shares its parent's table", () => {
    const bio = new Bio("read", 0, 2);
    bioAddPage(bio, pfnHigh, 4096, 0);
    bioAddPage(bio, pfnHigh + 3, 4096, 0);
    const clone = bioSplit(bio, 8);
    expect(() => bioReset(clone, "read", 0)).toThrow(/cloned/);
    expect(() => bioReset(bio, "read", -1)).toThrow();
  });
});
