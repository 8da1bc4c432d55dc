import { describe, expect, it } from "vitest";
import { BvecError, SparseBytes } from "../src/index.ts";

function pattern(len: number, seed = 1): Uint8Array {
  const a = new Uint8Array(len);
  for (let i = 0; i < len; i++) a[i] = (i * 31 + seed * 7) % 251;
  return a;
}

describe("SparseBytes", () => {
  it("reads never-written bytes as zeros without creating a chunk", () => {
    const s = new SparseBytes(2 ** 20, 4096);
    const got = new Uint8Array(10_000).fill(0xaa);
    s.read(123, got, 0, got.length);
    expect(got.every((b) => b === 0)).toBe(true);
    expect(s.chunkCount).toBe(0);
    s.fill(0, 8192, 0);
    expect(s.chunkCount).toBe(0);
  });

  it("round-trips writes across chunk boundaries, small and large, and counts chunks", () => {
    let made = 0;
    const s = new SparseBytes(3 * 4096 + 100, 4096, () => made++);
    const big = pattern(3 * 4096 + 90, 2);
    s.write(5, big, 0, big.length);
    expect(made).toBe(4);
    expect(s.chunkCount).toBe(4);
    const back = new Uint8Array(big.length);
    s.read(5, back, 0, back.length);
    expect(back).toEqual(big);
    // A small copy straddling a boundary, at an offset in the source.
    const small = pattern(20, 3);
    s.write(4090, small, 4, 12);
    const one = new Uint8Array(12);
    s.read(4090, one, 0, 12);
    expect(one).toEqual(small.subarray(4, 16));
  });

  it("moves bytes to and from another store, through ByteSource and ByteSink", () => {
    const a = new SparseBytes(2 ** 18, 65536);
    const b = new SparseBytes(2 ** 18, 4096);
    const data = pattern(70_000, 4);
    a.write(1000, data, 0, data.length);
    b.writeFrom(3, a, 1000, data.length);
    const got = new Uint8Array(data.length);
    b.read(3, got, 0, got.length);
    expect(got).toEqual(data);
    // Bytes never written reach the sink as zeros.
    const c = new SparseBytes(2 ** 18, 4096);
    c.fill(0, 2 ** 18, 0x55);
    a.readTo(200_000, c, 0, 50_000);
    const z = new Uint8Array(50_000);
    c.read(0, z, 0, z.length);
    expect(z.every((x) => x === 0)).toBe(true);
  });

  it("gives a view of backing bytes inside one chunk, shared with read and write", () => {
    const s = new SparseBytes(2 ** 20, 65536);
    const v = s.view(65536 + 4096, 4096);
    v[7] = 9;
    const one = new Uint8Array(1);
    s.read(65536 + 4096 + 7, one, 0, 1);
    expect(one[0]).toBe(9);
    expect(s.isMaterialized(65536)).toBe(true);
    expect(s.isMaterialized(0)).toBe(false);
    expect(() => s.view(65536 - 8, 16)).toThrow(/crosses a 0x10000-byte chunk boundary/);
  });

  it("stores bytes at offsets above 2^32 in a store larger than 2^48", () => {
    const s = new SparseBytes(2 ** 49, 65536);
    const data = pattern(100, 5);
    for (const at of [2 ** 32 - 50, 2 ** 48 + 3]) {
      s.write(at, data, 0, data.length);
      const got = new Uint8Array(100);
      s.read(at, got, 0, 100);
      expect(got).toEqual(data);
    }
    expect(s.chunkCount).toBe(3);
  });

  it("refuses accesses past its end or at bad offsets", () => {
    const s = new SparseBytes(4096, 4096);
    const buf = new Uint8Array(8);
    expect(() => s.read(4090, buf, 0, 8)).toThrow(BvecError);
    expect(() => s.write(-1, buf, 0, 1)).toThrow(/not non-negative integers/);
    expect(() => s.fill(0.5, 1, 1)).toThrow(BvecError);
    expect(() => new SparseBytes(0)).toThrow(BvecError);
  });
});
