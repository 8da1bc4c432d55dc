/**
 * Data verification: every write puts a deterministic pattern per (sector, write generation) in
 * its buffer; every read compares what the device delivered with the pattern of each sector's
 * last completed write (or zeros). Consecutive sectors of one write take consecutive 512-byte
 * slices of the pattern, and the pattern repeats its first RUN_SECTORS sectors after its end, so
 * up to RUN_SECTORS sectors are one slice: one copy when writing and one comparison when checking.
 */
import { type ByteSink, type PhysMemory, Rng, SECTOR_SIZE, fastMod } from "@dmasim/bvec";
import type { BufferRange } from "./workload.ts";

const PATTERN_BYTES = 65536;
/** Sectors one pattern slice may cover (the pattern repeats this many sectors past its end). */
const RUN_SECTORS = 8;
const RUN_BYTES = RUN_SECTORS * SECTOR_SIZE;
const ZERO_RUN = Buffer.alloc(RUN_BYTES);

/**
 * The patterns made lately, by seed: a sweep or a validation set runs many jobs with one seed,
 * and making a pattern draws 64 Ki random numbers. Patterns are only ever read.
 */
const patterns = new Map<number, Buffer>();
const PATTERNS_KEPT = 4;

/** The verification pattern of `seed` (made once, then shared). */
function patternOf(seed: number): Buffer {
  const cached = patterns.get(seed);
  if (cached !== undefined) return cached;
  const pattern = Buffer.alloc(PATTERN_BYTES + RUN_BYTES);
  const pr = new Rng(seed + 1);
  for (let i = 0; i < PATTERN_BYTES; i++) pattern[i] = pr.nextU32() % 256;
  pattern.copyWithin(PATTERN_BYTES, 0, RUN_BYTES);
  if (patterns.size >= PATTERNS_KEPT) patterns.delete(patterns.keys().next().value as number);
  patterns.set(seed, pattern);
  return pattern;
}

/** The verifier of one run. */
export class Verifier {
  checkedBytes = 0;
  mismatches = 0;
  private readonly pattern: Buffer;
  private readonly written = new SectorGens();
  private readonly mem: PhysMemory;
  /** The read being checked: its first sector and its sectors. */
  private first = 0;
  private sectors = 0;
  /** Sectors of the read being checked found to differ (1), and whether there are any. */
  private readonly bad: Uint8Array;
  private anyBad = false;
  /** What `check` hands `PhysMemory.readTo`: each piece of the read goes to `comparePiece`. */
  private readonly sink: ByteSink = {
    write: (at, src, srcOff, len) => this.comparePiece(at, src, srcOff, len),
  };

  constructor(seed: number, mem: PhysMemory, maxBs: number) {
    this.pattern = patternOf(seed);
    this.bad = new Uint8Array(Math.ceil(maxBs / SECTOR_SIZE));
    this.mem = mem;
  }

  /**
   * Fills the buffer of a write of generation `gen` at byte `offset`: each run of up to
   * RUN_SECTORS sectors is one slice of the pattern, copied straight into the buffer's pieces.
   */
  fill(ranges: readonly BufferRange[], offset: number, bytes: number, gen: number): void {
    const first = offset / SECTOR_SIZE;
    let ri = 0;
    let r = ranges[0] as BufferRange;
    let rDone = 0;
    for (let at = 0; at < bytes; at += RUN_BYTES) {
      const runLen = Math.min(RUN_BYTES, bytes - at);
      const p = this.patternAt(first + at / SECTOR_SIZE, gen);
      for (let done = 0; done < runLen;) {
        if (rDone === r.len) {
          r = ranges[++ri] as BufferRange;
          rDone = 0;
        }
        const n = Math.min(runLen - done, r.len - rDone);
        this.mem.write(r.phys + rDone, this.pattern, p + done, n);
        done += n;
        rDone += n;
      }
    }
  }

  /** Records that a write of generation `gen` completed. */
  recordWrite(offset: number, bytes: number, gen: number): void {
    this.written.setRange(offset / SECTOR_SIZE, bytes / SECTOR_SIZE, gen);
  }

  /**
   * Checks the data of a completed read, compared where it lies in simulated memory (read
   * through `PhysMemory.readTo`, which counts the bytes as `read` does, without copying them
   * out). Runs of up to RUN_SECTORS sectors last written together (or never) are compared as one
   * slice; a slice that differs is compared sector by sector to count the sectors that differ.
   */
  check(ranges: readonly BufferRange[], offset: number, bytes: number): void {
    this.first = offset / SECTOR_SIZE;
    this.sectors = bytes / SECTOR_SIZE;
    let at = 0;
    for (const r of ranges) {
      this.mem.readTo(r.phys, this.sink, at, r.len);
      at += r.len;
    }
    if (this.anyBad) {
      const bad = this.bad;
      for (let s = 0; s < this.sectors; s++) {
        if (bad[s] === 1) this.mismatches++;
        bad[s] = 0;
      }
      this.anyBad = false;
    }
    this.checkedBytes += bytes;
  }

  /** Compares bytes `[at, at + len)` of the read being checked, `src[srcOff..]`. */
  private comparePiece(at: number, src: Uint8Array, srcOff: number, len: number): void {
    const gens = this.written;
    const end = at + len;
    let pos = at;
    while (pos < end) {
      const s = Math.floor(pos / SECTOR_SIZE);
      const sector = this.first + s;
      const g = gens.get(sector);
      const k = gens.runLength(sector, Math.min(RUN_SECTORS, this.sectors - s));
      const n = Math.min(end, (s + k) * SECTOR_SIZE) - pos;
      const want = g === undefined ? ZERO_RUN : this.pattern;
      const p = (g === undefined ? 0 : this.patternAt(sector, g)) + pos - s * SECTOR_SIZE;
      const o = srcOff + pos - at;
      if (want.compare(src, o, o + n, p, p + n) !== 0) this.markBad(want, p, src, o, pos, n);
      pos += n;
    }
  }

  /** Marks the sectors of `[pos, pos + n)` (of the read) whose bytes differ from `want`'s. */
  private markBad(
    want: Buffer,
    p: number,
    src: Uint8Array,
    o: number,
    pos: number,
    n: number,
  ): void {
    let done = 0;
    while (done < n) {
      const at = pos + done;
      const s = Math.floor(at / SECTOR_SIZE);
      const k = Math.min(n - done, (s + 1) * SECTOR_SIZE - at);
      if (want.compare(src, o + done, o + done + k, p + done, p + done + k) !== 0) {
        this.bad[s] = 1;
        this.anyBad = true;
      }
      done += k;
    }
  }

  private patternAt(sector: number, gen: number): number {
    return fastMod(sector + gen * 104729, PATTERN_BYTES / SECTOR_SIZE) * SECTOR_SIZE;
  }
}

/**
 * The write generation of every written sector: a sparse two-level table of typed arrays
 * (64 Ki sectors per page, 0 = never written) instead of a `Map` of every sector, which a long
 * random-write run fills with millions of entries. (Not bvec's `SparseBytes`: what it stores
 * is one 32-bit generation per sector and the question it answers is the run of equal ones.)
 */
class SectorGens {
  private static readonly PAGE = 65536;
  private readonly pages: (Uint32Array | undefined)[] = [];

  /** Records that `n` sectors from `first` were last written with generation `gen` (0 or more). */
  setRange(first: number, n: number, gen: number): void {
    const P = SectorGens.PAGE;
    let s = first;
    const end = first + n;
    while (s < end) {
      const pi = Math.floor(s / P);
      let page = this.pages[pi];
      if (page === undefined) {
        page = new Uint32Array(P);
        this.pages[pi] = page;
      }
      const o = s - pi * P;
      const k = Math.min(end - s, P - o);
      page.fill(gen + 1, o, o + k);
      s += k;
    }
  }

  /** How many of the (up to `max`) sectors from `sector` share its generation (at least 1). */
  runLength(sector: number, max: number): number {
    const P = SectorGens.PAGE;
    const pi = Math.floor(sector / P);
    const o = sector - pi * P;
    const page = this.pages[pi];
    const lim = Math.min(max, P - o);
    let k = 1;
    if (page === undefined) {
      // Never written here: the run goes on through the unwritten page, or stops at its end.
      k = lim;
    } else {
      const g = page[o] as number;
      while (k < lim && page[o + k] === g) k++;
    }
    // A run that reaches the end of a page continues on the next one sector by sector.
    while (k < max && this.get(sector + k) === this.get(sector)) k++;
    return k;
  }

  /** The generation `sector` was last written with, or undefined when never written. */
  get(sector: number): number | undefined {
    const pi = Math.floor(sector / SectorGens.PAGE);
    const v = this.pages[pi]?.[sector - pi * SectorGens.PAGE] ?? 0;
    return v === 0 ? undefined : v - 1;
  }
}
