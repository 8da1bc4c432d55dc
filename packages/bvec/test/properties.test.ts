import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BioVec,
  PhysMemory,
  type QueueLimits,
  Rng,
  bioFromBvecs,
  bioSegments,
  bioSplitIoAt,
  bioSplitToLimits,
  blkRqFromBios,
  blkRqPhysSegments,
  bvec,
  bvecPhys,
  queueLimits,
} from "../src/index.ts";

const P32 = 2 ** 32;
const P48 = 2 ** 48;
const MiB = 1024 * 1024;

/** RAM placed around the interesting edges: just below and above 4 GiB, and above 2^48. */
const BASES = [0x100000, P32 - 32 * MiB, P48] as const;
function edgeMemory(): PhysMemory {
  return new PhysMemory({
    regions: [
      { start: 0x100000, size: 64 * MiB, kind: "ram" },
      { start: P32 - 32 * MiB, size: 64 * MiB, kind: "ram" },
      { start: P48, size: 64 * MiB, kind: "ram" },
    ],
  });
}

/** A bvec somewhere in edge memory: page index, offset and length around page boundaries. */
const bvecArb = fc
  .record({
    base: fc.constantFrom(...BASES),
    page: fc.oneof(
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 8180, max: 8200 }),
      fc.integer({ min: 0, max: 16000 }),
    ),
    // Block I/O moves whole sectors: offsets and lengths in 512-byte units, around page edges.
    offset: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: 7 }).map((x) => x * 512),
    ),
    len: fc.oneof(
      fc.constantFrom(512, 3584, 4096, 4608, 8192, 65536, 66048, 131072),
      fc.integer({ min: 1, max: 100 }).map((x) => x * 512),
    ),
  })
  .map(({ base, page, offset, len }) => bvec(base / 4096 + page, offset, len));

/** Several bvecs, often contiguous with the previous one so merging is exercised. */
const bvecListArb = fc
  .array(fc.tuple(bvecArb, fc.boolean()), { minLength: 1, maxLength: 16 })
  .map((list) => {
    const out: BioVec[] = [];
    for (const [b, contiguous] of list) {
      const prev = out[out.length - 1];
      if (contiguous && prev !== undefined) {
        const end = bvecPhys(prev) + prev.len;
        const off = end % 4096;
        out.push(bvec((end - off) / 4096, off, b.len));
      } else {
        out.push(b);
      }
    }
    return out;
  });

const limitsArb: fc.Arbitrary<QueueLimits> = fc
  .record({
    seg: fc.constantFrom(4096, 65536, 0xffffffff),
    boundary: fc.constantFrom(0xffff, 0xfffff, 0xffffffff, Number.MAX_SAFE_INTEGER),
    maxSegments: fc.constantFrom(1, 2, 8, 128, 256),
    maxHwSectors: fc.constantFrom(8, 255, 1024, 16384),
  })
  .map((p) =>
    queueLimits({
      maxSegmentSize: p.seg,
      segBoundaryMask: p.boundary,
      maxSegments: p.maxSegments,
      maxHwSectors: p.maxHwSectors,
      dmaAlignment: 3,
    }),
  );

function fillRandom(mem: PhysMemory, bvs: readonly BioVec[], seed: number): void {
  const rng = new Rng(Math.abs(seed));
  for (const b of bvs) {
    const buf = new Uint8Array(b.len);
    for (let i = 0; i < buf.length; i++) buf[i] = rng.nextU32() % 256;
    mem.write(bvecPhys(b), buf);
  }
}

function readVia(mem: PhysMemory, runs: readonly { paddr: number; len: number }[]): Uint8Array {
  const total = runs.reduce((n, r) => n + r.len, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const r of runs) {
    mem.read(r.paddr, out, at, r.len);
    at += r.len;
  }
  return out;
}

/** Byte equality without vitest's element-by-element diffing (fast on megabytes). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

const asRuns = (bvs: readonly BioVec[]) => bvs.map((b) => ({ paddr: bvecPhys(b), len: b.len }));

/** Physical address of every byte offset k at run boundaries, to compare two run lists. */
function sameMapping(
  a: readonly { paddr: number; len: number }[],
  b: readonly { paddr: number; len: number }[],
): boolean {
  let i = 0;
  let j = 0;
  let ai = 0;
  let bj = 0;
  while (i < a.length && j < b.length) {
    const ra = a[i]!;
    const rb = b[j]!;
    if (ra.paddr + ai !== rb.paddr + bj) return false;
    const step = Math.min(ra.len - ai, rb.len - bj);
    ai += step;
    bj += step;
    if (ai === ra.len) {
      i++;
      ai = 0;
    }
    if (bj === rb.len) {
      j++;
      bj = 0;
    }
  }
  return i === a.length && j === b.length;
}

describe("segment and split laws (fast-check)", () => {
  it("physical segments cover exactly the request's bytes, in order, within the limits", () => {
    const mem = edgeMemory();
    fc.assert(
      fc.property(bvecListArb, limitsArb, fc.integer(), (bvs, lim, seed) => {
        fillRandom(mem, bvs, seed);
        const bio = bioFromBvecs("read", 0, bvs);
        for (const piece of bioSplitToLimits(bio, lim)) {
          const req = blkRqFromBios(lim, [piece]);
          const segs = blkRqPhysSegments(req);
          const pieceBvecs = bioSegments(piece);
          // Same bytes through the segments as through the bvecs.
          expect(sameBytes(readVia(mem, segs), readVia(mem, asRuns(pieceBvecs)))).toBe(true);
          // Merged only where physically contiguous: every byte maps to the same address.
          expect(sameMapping(segs, asRuns(pieceBvecs))).toBe(true);
          expect(segs.length).toBeLessThanOrEqual(req.nrPhysSegments);
          for (const s of segs) {
            expect(s.len).toBeGreaterThan(0);
            expect(s.len).toBeLessThanOrEqual(lim.maxSegmentSize);
            if (lim.segBoundaryMask !== Number.MAX_SAFE_INTEGER) {
              const unit = lim.segBoundaryMask + 1;
              expect(Math.floor(s.paddr / unit)).toBe(Math.floor((s.paddr + s.len - 1) / unit));
            }
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("splitting preserves the bytes and every piece fits the limits", () => {
    const mem = edgeMemory();
    fc.assert(
      fc.property(bvecListArb, limitsArb, fc.integer(), (bvs, lim, seed) => {
        fillRandom(mem, bvs, seed);
        const whole = readVia(mem, asRuns(bvs));
        const pieces = bioSplitToLimits(bioFromBvecs("write", 0, bvs), lim);
        const joined = readVia(
          mem,
          pieces.flatMap((p) => asRuns(bioSegments(p))),
        );
        expect(sameBytes(joined, whole)).toBe(true);
        let sector = 0;
        for (const p of pieces) {
          expect(p.iter.sector).toBe(sector);
          sector += p.size / 512;
          const { sectors, segs } = bioSplitIoAt(p, lim);
          expect(sectors).toBe(0);
          expect(segs).toBeLessThanOrEqual(lim.maxSegments);
          expect(p.size).toBeLessThanOrEqual(lim.maxHwSectors * 512);
        }
      }),
      { numRuns: 150 },
    );
  });
});
