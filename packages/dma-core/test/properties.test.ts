import { BLK_STS, type Request } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DmaIovaState,
  blkDmaIter,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  dmaUnmapPhys,
  rqDmaDir,
} from "../src/index.ts";
import {
  BACKENDS,
  type Backend,
  G4,
  type Machine,
  NO_LEAKS,
  baseline,
  concat,
  fillRandom,
  leaks,
  machine,
  request,
} from "../src/testing/index.ts";

const MAX_SEGS = 12;
const word = (max: number) => fc.integer({ min: 0, max }).map((x) => x * 4);

/** A random request shape: segment count, sizes, offsets, fragmented or contiguous pages. */
const shapeArb = fc.record({
  op: fc.constantFrom("read" as const, "write" as const),
  contiguous: fc.boolean(),
  /** Interior segments whole pages (the IOVA path's shape) or anything. */
  pageShaped: fc.boolean(),
  n: fc.integer({ min: 1, max: MAX_SEGS }),
  offs: fc.array(word(1022), { minLength: MAX_SEGS, maxLength: MAX_SEGS }),
  lens: fc.array(
    word(1023).map((x) => x + 4),
    { minLength: MAX_SEGS, maxLength: MAX_SEGS },
  ),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});
type Shape = typeof shapeArb extends fc.Arbitrary<infer T> ? T : never;

function build(m: Machine, s: Shape) {
  let pages: number[];
  if (s.contiguous) {
    const order = Math.ceil(Math.log2(s.n));
    const first = m.memory.allocPages(order);
    pages = Array.from({ length: s.n }, (_, i) => first + i);
  } else {
    pages = m.memory.allocScattered(s.n, s.seed);
  }
  const ranges = pages.map((p, i) => {
    let off: number;
    let len: number;
    if (s.pageShaped) {
      off = i === 0 ? s.offs[0]! : 0;
      const end = i === s.n - 1 ? Math.max(off + 4, Math.min(4096, s.lens[i]! * 4)) : 4096;
      len = Math.min(end, 4096) - off;
    } else {
      off = s.offs[i]!;
      len = Math.min(s.lens[i]!, 4096 - off);
    }
    // 4 KiB-sized pieces at the start of each page (of a 64 KiB page too); contiguous ones
    // are consecutive 4 KiB pieces of one allocation.
    const ps = m.memory.pageSize;
    const base = s.contiguous ? pages[0]! * ps + i * 4096 : p * ps;
    return { phys: base + off, len };
  });
  return ranges;
}

function mapAll(req: Request, m: Machine) {
  const state = new DmaIovaState();
  const iter = blkDmaIter();
  const segs: { addr: number; len: number }[] = [];
  expect(blkRqDmaMapIterStart(req, m.dev, state, iter)).toBe(true);
  segs.push({ addr: iter.addr, len: iter.len });
  while (blkRqDmaMapIterNext(req, m.dev, state, iter))
    segs.push({ addr: iter.addr, len: iter.len });
  expect(iter.status).toBe(BLK_STS.OK);
  return { state, iter, segs };
}

interface Seen {
  iova: number;
  perSegment: number;
  bounced: number;
}

function roundTrip(backend: Backend, s: Shape, seen: Seen): void {
  const m = machine(backend);
  const ranges = build(m, s);
  const total = ranges.reduce((n, r) => n + r.len, 0);
  const data = concat(ranges.map((r, i) => fillRandom(m.memory, r.phys, r.len, s.seed + i)));
  const b = baseline(m);
  const req = request(s.op, ranges);
  const { state, iter, segs } = mapAll(req, m);
  if (state.size !== 0) seen.iova++;
  else seen.perSegment++;
  if ((m.swiotlb?.counters.c.maps ?? 0) > 0) seen.bounced++;
  expect(segs.reduce((n, x) => n + x.len, 0)).toBe(total);
  if (s.op === "write") {
    // The device reads the request's bytes at the returned addresses.
    const got = concat(
      segs.map((x) => {
        const buf = new Uint8Array(x.len);
        expect(m.dma.read(x.addr, buf).ok).toBe(true);
        return buf;
      }),
    );
    expect(got).toEqual(data);
  } else {
    // The device writes; after teardown the request's pages hold exactly those bytes.
    const pattern = data.map((x) => 255 - x);
    let at = 0;
    for (const x of segs) {
      expect(m.dma.write(x.addr, pattern, at, x.len).ok).toBe(true);
      at += x.len;
    }
  }
  if (!blkRqDmaUnmap(req, m.dev, state, total, iter.p2p)) {
    for (const x of segs) dmaUnmapPhys(m.dev, x.addr, x.len, rqDmaDir(req));
  }
  if (s.op === "read") {
    const got = concat(ranges.map((r) => m.memory.readBytes(r.phys, r.len)));
    expect(got).toEqual(data.map((x) => 255 - x));
  }
  expect(leaks(m, b)).toEqual(NO_LEAKS);
  expect(m.debug!.errors).toEqual([]);
}

describe("properties", () => {
  for (const backend of BACKENDS) {
    it(`maps any request so the device sees exactly its bytes and leaks nothing (${backend})`, () => {
      const seen: Seen = { iova: 0, perSegment: 0, bounced: 0 };
      fc.assert(
        fc.property(shapeArb, (s) => roundTrip(backend, s, seen)),
        { numRuns: 40 },
      );
      // The generator reaches both mapping paths wherever both exist, and bouncing.
      const iommu = backend !== "none" && backend !== "passthrough";
      expect(seen.iova > 0).toBe(iommu);
      expect(seen.perSegment).toBeGreaterThan(0);
      if (backend === "untrusted") expect(seen.bounced).toBeGreaterThan(0);
    });
  }

  it("uses buffers above 4 GiB in the generated requests", () => {
    const m = machine("none");
    const ranges = build(m, {
      op: "write",
      contiguous: false,
      pageShaped: true,
      n: 8,
      offs: new Array<number>(MAX_SEGS).fill(0),
      lens: new Array<number>(MAX_SEGS).fill(4096),
      seed: 3,
    });
    expect(ranges.filter((r) => r.phys >= G4).length).toBeGreaterThan(4);
  });
});
