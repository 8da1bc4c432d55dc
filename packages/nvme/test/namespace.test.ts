import { describe, expect, it } from "vitest";
import { NvmeNamespace } from "../src/index.ts";
import { pattern } from "../src/testing/index.ts";

/** Bytes per chunk and chunks per slab, as the namespace stores them. */
const CHUNK = 4096;
const SLAB_CHUNKS = 256;

describe("NvmeNamespace", () => {
  it("reads unwritten blocks as zeros and stores nothing for them", () => {
    const ns = new NvmeNamespace(1, { lbaSize: 4096, blocks: 2 ** 20 });
    const out = new Uint8Array(3 * CHUNK).fill(0xee);
    ns.read(5 * CHUNK + 100, out, 0, out.length);
    expect(out).toEqual(new Uint8Array(3 * CHUNK));
    expect(ns.backedBytes).toBe(0);
  });

  it("reads back writes that cross chunk and slab boundaries, at any offsets", () => {
    const ns = new NvmeNamespace(1, { blocks: 2 ** 22 });
    // Chunks take slots in the order they are first written: fill all but one slot of the
    // first slab elsewhere, so that the write below runs from one slab into the next.
    const far = 2 ** 30;
    for (let i = 0; i < SLAB_CHUNKS - 1; i++) ns.write(far + i * CHUNK, pattern(1, i), 0, 1);
    const data = pattern(5 * CHUNK + 777, 3);
    const at = 7 * CHUNK - 333;
    ns.write(at, data, 0, data.length);
    expect(ns.backedBytes).toBe((SLAB_CHUNKS - 1 + 7) * CHUNK);
    const got = new Uint8Array(data.length + 20).fill(0xee);
    ns.read(at, got, 10, data.length);
    expect(got.subarray(10, 10 + data.length)).toEqual(data);
    expect(got.subarray(0, 10)).toEqual(new Uint8Array(10).fill(0xee));
    // A page inside, an unaligned piece, and the zeros around the write.
    const page = new Uint8Array(4096);
    ns.read(8 * CHUNK, page, 0, 4096);
    expect(page).toEqual(data.subarray(CHUNK + 333, CHUNK + 333 + 4096));
    const edge = new Uint8Array(400);
    ns.read(at - 200, edge, 0, 400);
    expect(edge.subarray(0, 200)).toEqual(new Uint8Array(200));
    expect(edge.subarray(200)).toEqual(data.subarray(0, 200));
  });

  it("gives its memory back on release, and a namespace reusing it never shows the old bytes", () => {
    const old = new NvmeNamespace(1, { blocks: 2 ** 22 });
    // Two slabs full of 0xaa.
    old.write(0, new Uint8Array(2 * SLAB_CHUNKS * CHUNK).fill(0xaa), 0, 2 * SLAB_CHUNKS * CHUNK);
    old.release();
    expect(old.backedBytes).toBe(0);
    const back = new Uint8Array(CHUNK).fill(0xee);
    old.read(3 * CHUNK, back, 0, CHUNK);
    expect(back).toEqual(new Uint8Array(CHUNK));

    // The next namespace takes the released slabs: chunks it writes in part read zeros around
    // the data, chunks it writes whole read the data, chunks it never wrote read zeros.
    const ns = new NvmeNamespace(2, { blocks: 2 ** 22 });
    const small = pattern(100, 1);
    ns.write(1000, small, 0, small.length);
    const whole = pattern(CHUNK, 2);
    ns.write(8 * CHUNK, whole, 0, CHUNK);
    const across = pattern(20, 3);
    ns.write(5 * CHUNK - 10, across, 0, across.length);
    const got = new Uint8Array(9 * CHUNK);
    ns.read(0, got, 0, got.length);
    const want = new Uint8Array(9 * CHUNK);
    want.set(small, 1000);
    want.set(whole, 8 * CHUNK);
    want.set(across, 5 * CHUNK - 10);
    expect(got).toEqual(want);
    expect(ns.backedBytes).toBe(4 * CHUNK);
    // Past the first reused slab, into the second.
    for (let i = 0; i < SLAB_CHUNKS; i++) ns.write(2 ** 28 + i * CHUNK + 7, pattern(1, i), 0, 1);
    const last = new Uint8Array(CHUNK);
    ns.read(2 ** 28 + (SLAB_CHUNKS - 1) * CHUNK, last, 0, CHUNK);
    const lastWant = new Uint8Array(CHUNK);
    lastWant.set(pattern(1, SLAB_CHUNKS - 1), 7);
    expect(last).toEqual(lastWant);
  });

  it("reads across written and unwritten chunks, and chunks written out of order", () => {
    const ns = new NvmeNamespace(1, { blocks: 2 ** 16 });
    const a = pattern(3 * CHUNK, 5);
    const b = pattern(2 * CHUNK, 6);
    ns.write(10 * CHUNK, a, 0, a.length); // chunks 10-12 in slots 0-2
    ns.write(6 * CHUNK, b, 0, b.length); // chunks 6-7 in slots 3-4
    const got = new Uint8Array(9 * CHUNK);
    ns.read(5 * CHUNK, got, 0, got.length);
    const want = new Uint8Array(9 * CHUNK);
    want.set(b, CHUNK);
    want.set(a, 5 * CHUNK);
    expect(got).toEqual(want);
  });

  it("reads the right chunk when chunks read lately share a cached view's place", () => {
    const ns = new NvmeNamespace(1, { blocks: 2 ** 16 });
    for (let c = 0; c < 600; c++) ns.write(c * CHUNK, pattern(CHUNK, c), 0, CHUNK);
    const got = new Uint8Array(CHUNK);
    for (const c of [0, 256, 512, 0, 256, 3, 259, 3]) {
      ns.read(c * CHUNK, got, 0, CHUNK);
      expect(got).toEqual(pattern(CHUNK, c));
    }
    // A read of one chunk's length that starts inside a chunk spans two.
    const odd = new Uint8Array(CHUNK);
    ns.read(5 * CHUNK + 1000, odd, 0, CHUNK);
    expect(odd.subarray(0, CHUNK - 1000)).toEqual(pattern(CHUNK, 5).subarray(1000));
    expect(odd.subarray(CHUNK - 1000)).toEqual(pattern(CHUNK, 6).subarray(0, 1000));
    // A cached view sees later writes.
    ns.write(3 * CHUNK + 10, pattern(20, 99), 0, 20);
    ns.read(3 * CHUNK, got, 0, CHUNK);
    expect(got.subarray(10, 30)).toEqual(pattern(20, 99));
  });

  it("overwrites in place and keeps the other bytes of a chunk", () => {
    const ns = new NvmeNamespace(1);
    ns.write(0, pattern(CHUNK, 1), 0, CHUNK);
    ns.write(1000, pattern(512, 2), 0, 512);
    const got = new Uint8Array(CHUNK);
    ns.read(0, got, 0, CHUNK);
    expect(got.subarray(0, 1000)).toEqual(pattern(CHUNK, 1).subarray(0, 1000));
    expect(got.subarray(1000, 1512)).toEqual(pattern(512, 2));
    expect(got.subarray(1512)).toEqual(pattern(CHUNK, 1).subarray(1512));
    expect(ns.backedBytes).toBe(CHUNK);
  });

  it("refuses accesses outside its capacity, naming the range", () => {
    const ns = new NvmeNamespace(3, { lbaSize: 512, blocks: 16 });
    expect(() => ns.read(8192 - 4, new Uint8Array(8), 0, 8)).toThrow(
      /namespace 3: access 0x1ffc\+0x8 is outside its 0x2000 bytes/,
    );
    expect(() => ns.write(-1, new Uint8Array(1), 0, 1)).toThrow(/outside/);
  });
});
