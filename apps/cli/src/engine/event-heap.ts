/**
 * The engine's event queue: a 4-ary min-heap of (time, sequence) keyed events held in typed
 * arrays, so that scheduling allocates nothing. Ties fire in the order they were scheduled.
 * Each event carries a kind and one integer argument (a CPU number, say).
 */
export class EventHeap {
  private time = new Float64Array(256);
  private seq = new Float64Array(256);
  private kind = new Int32Array(256);
  private arg = new Int32Array(256);
  private n = 0;
  private nextSeq = 0;

  /** Events queued. */
  get size(): number {
    return this.n;
  }

  /** The time of the earliest event, or Infinity. */
  peekTime(): number {
    return this.n > 0 ? (this.time[0] as number) : Infinity;
  }

  /** The kind of the earliest event (valid when size > 0). */
  peekKind(): number {
    return this.kind[0] as number;
  }

  /** The argument of the earliest event (valid when size > 0). */
  peekArg(): number {
    return this.arg[0] as number;
  }

  /** Queues an event. */
  push(time: number, kind: number, arg: number): void {
    if (this.n === this.time.length) this.grow();
    const s = this.nextSeq++;
    const tm = this.time;
    let i = this.n++;
    // Sequence numbers grow, so a new event never goes above one of equal time.
    while (i > 0) {
      const p = Math.floor((i - 1) / 4);
      const pt = tm[p] as number;
      if (pt <= time) break;
      this.move(p, i);
      i = p;
    }
    tm[i] = time;
    this.seq[i] = s;
    this.kind[i] = kind;
    this.arg[i] = arg;
  }

  /** Removes the earliest event (read it first with the peek methods). */
  pop(): void {
    const last = --this.n;
    if (last <= 0) return;
    const tm = this.time;
    const sq = this.seq;
    const t = tm[last] as number;
    const s = sq[last] as number;
    const k = this.kind[last] as number;
    const a = this.arg[last] as number;
    let i = 0;
    for (;;) {
      // A 4-ary heap: half the levels of a binary one, the children side by side.
      const first = 4 * i + 1;
      if (first >= last) break;
      const stop = first + 4 < last ? first + 4 : last;
      let c = first;
      let ct = tm[first] as number;
      for (let j = first + 1; j < stop; j++) {
        const jt = tm[j] as number;
        if (jt < ct || (jt === ct && (sq[j] as number) < (sq[c] as number))) {
          c = j;
          ct = jt;
        }
      }
      if (ct > t || (ct === t && (sq[c] as number) > s)) break;
      this.move(c, i);
      i = c;
    }
    tm[i] = t;
    sq[i] = s;
    this.kind[i] = k;
    this.arg[i] = a;
  }

  private move(from: number, to: number): void {
    this.time[to] = this.time[from] as number;
    this.seq[to] = this.seq[from] as number;
    this.kind[to] = this.kind[from] as number;
    this.arg[to] = this.arg[from] as number;
  }

  private grow(): void {
    const size = this.time.length * 2;
    const t = new Float64Array(size);
    t.set(this.time);
    this.time = t;
    const s = new Float64Array(size);
    s.set(this.seq);
    this.seq = s;
    const k = new Int32Array(size);
    k.set(this.kind);
    this.kind = k;
    const a = new Int32Array(size);
    a.set(this.arg);
    this.arg = a;
  }
}
