/**
 * The engine's event queue: a binary min-heap of (time, sequence) keyed events held in typed
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
    let i = this.n++;
    while (i > 0) {
      const p = Math.floor((i - 1) / 2);
      const pt = this.time[p] as number;
      if (pt < time || (pt === time && (this.seq[p] as number) < s)) break;
      this.move(p, i);
      i = p;
    }
    this.time[i] = time;
    this.seq[i] = s;
    this.kind[i] = kind;
    this.arg[i] = arg;
  }

  /** Removes the earliest event (read it first with the peek methods). */
  pop(): void {
    const last = --this.n;
    if (last <= 0) return;
    const t = this.time[last] as number;
    const s = this.seq[last] as number;
    const k = this.kind[last] as number;
    const a = this.arg[last] as number;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      let c = l;
      if (r < last) {
        const tr = this.time[r] as number;
        const tl = this.time[l] as number;
        if (tr < tl || (tr === tl && (this.seq[r] as number) < (this.seq[l] as number))) c = r;
      }
      const tc = this.time[c] as number;
      if (tc > t || (tc === t && (this.seq[c] as number) > s)) break;
      this.move(c, i);
      i = c;
    }
    this.time[i] = t;
    this.seq[i] = s;
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
