/**
 * A small seeded pseudo-random generator (SplitMix32 seeding a xoshiro128** state), so that
 * every workload and every fault injection is reproducible from its seed.
 */
import { checkInt } from "./addr.ts";

/** A deterministic random source. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

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
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
    /* eslint-enable no-bitwise */
  }

  /** A uniformly distributed 32-bit unsigned integer. */
  nextU32(): number {
    /* eslint-disable no-bitwise -- 32-bit generator state, not addresses */
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
    /* eslint-enable no-bitwise */
  }

  /** A float in [0, 1) with 53 random bits. */
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
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
