/**
 * A small seeded pseudo-random generator (SplitMix32 seeding a xoshiro128** state), so that
 * every workload and every fault injection is reproducible from its seed.
 */
import { checkInt } from "./addr.ts";

/** A deterministic random source. */
export class Rng {
  /**
   * The generator's four 32-bit words (a, b, c, d) in one typed array: as object fields, values
   * of 2^30 and above are boxed numbers to V8, so every step read and replaced boxes; here each
   * is a plain 32-bit load or store (the bits, and so the sequence, are the same).
   */
  private readonly s = new Int32Array(4);

  constructor(seed: number) {
    checkInt(seed, "seed");
    /* eslint-disable no-bitwise -- 32-bit generator state, not addresses */
    let s = (seed % 4294967296) >>> 0;
    s = (s ^ Math.floor(seed / 4294967296)) >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    const st = this.s;
    st[0] = next();
    st[1] = next();
    st[2] = next();
    st[3] = next();
    if ((st[0] | st[1] | st[2] | st[3]) === 0) st[0] = 1;
    /* eslint-enable no-bitwise */
  }

  nextU32(): number {
    /* eslint-disable no-bitwise -- 32-bit generator state, not addresses */
    const st = this.s;
    const a = st[0] as number;
    const b = st[1] as number;
    const c = (st[2] as number) ^ a;
    const d = (st[3] as number) ^ b;
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    st[0] = a ^ d;
    st[1] = b ^ c;
    st[2] = c ^ (b << 9);
    st[3] = rotl(d, 11);
    return r;
    /* eslint-enable no-bitwise */
  }

  nextFloat(): number {
    const hi = Math.floor(this.nextU32() / 32); // 27 bits
    const lo = Math.floor(this.nextU32() / 64); // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** An integer uniformly distributed in [0, n) for 1 <= n <= 2^53. */
  below(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** An integer uniformly distributed in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** Shuffles `arr` in place (Fisher-Yates) and returns it. */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      const t = arr[i] as T;
      arr[i] = arr[j] as T;
      arr[j] = t;
    }
    return arr;
  }
}

function rotl(x: number, k: number): number {
  // eslint-disable-next-line no-bitwise -- 32-bit rotate
  return (x << k) | (x >>> (32 - k));
}
