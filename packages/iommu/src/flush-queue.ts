/**
 * The flush queue of lazy (DMA_FQ) domains, from drivers/iommu/dma-iommu.c: unmapped IOVA ranges
 * and the page-table pages their unmap freed wait in a ring until a whole-domain IOTLB flush
 * that started after they were queued has finished; only then are they reused.
 *
 * Per-CPU rings of 256 slots (255 usable, one slot kept empty) with a 10 ms timeout, or one
 * shared ring of 32768 slots with a 1 s timeout (IOMMUs where a flush is expensive). A full ring
 * forces a flush; the timer flushes and reclaims everything. Each queued range's exposure — the
 * simulated time from its unmap to the flush that invalidated it — is recorded.
 *
 * The timer is a jiffies timer, as in Linux: simulated time has a tick every 1e9/HZ ns, the
 * timeout becomes `msecs_to_jiffies(fq_timeout)` ticks after the jiffy the timer is armed in,
 * and the timer wheel rounds that expiry up to its level's granularity (`calc_wheel_index`), so
 * the 10 ms timer at HZ=250 fires 12–16 ms after it is armed.
 */
import { CounterSet, type SimClock, type TimerId, hex } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { type HistogramBin, type HistogramSummary, NsHistogram } from "./histogram.ts";
import type { FreedTablePage } from "./iotlb-gather.ts";
import type { IovaDomain } from "./iova-domain.ts";

/** Linux `IOVA_DEFAULT_FQ_SIZE`: slots per per-CPU ring. */
export const IOVA_DEFAULT_FQ_SIZE = 256;
/** Linux `IOVA_DEFAULT_FQ_TIMEOUT`: 10 ms, in ns. */
export const IOVA_DEFAULT_FQ_TIMEOUT_NS = 10_000_000;
/** Linux `IOVA_SINGLE_FQ_SIZE`: slots of the single shared ring. */
export const IOVA_SINGLE_FQ_SIZE = 32768;
/** Linux `IOVA_SINGLE_FQ_TIMEOUT`: 1000 ms, in ns. */
export const IOVA_SINGLE_FQ_TIMEOUT_NS = 1_000_000_000;
/** CONFIG_HZ the flush queue assumes unless told (the kernel's Kconfig default). */
export const DEFAULT_HZ = 250;

/**
 * Linux `msecs_to_jiffies` (include/linux/jiffies.h `_msecs_to_jiffies`): rounds up. For HZ
 * dividing 1000 it is `(m + 1000/HZ - 1) / (1000/HZ)`, for HZ=300 the MSEC_TO_HZ_MUL32 form; both
 * are DIV_ROUND_UP(m * HZ, 1000) for the values used here. A fractional `ms` rounds up the same way.
 */
export function msecsToJiffies(ms: number, hz: number): number {
  return Math.ceil((ms * hz) / 1000);
}

/** Linux `LVL_CLK_SHIFT`, `LVL_BITS` and `LVL_START(n)` of kernel/time/timer.c (as plain numbers). */
const LVL_CLK_DIV = 8;
const LVL_SIZE = 64;
const lvlStart = (n: number): number => (LVL_SIZE - 1) * LVL_CLK_DIV ** (n - 1);

/**
 * The jiffy a timer wheel timer really fires at: Linux `calc_wheel_index` picks the level from
 * `expires - clk` (level n for deltas below LVL_START(n + 1) = 63·8^n, granularity 8^n jiffies)
 * and `calc_index` rounds the expiry up — `((expires >> LVL_SHIFT(lvl)) + 1) << LVL_SHIFT(lvl)`,
 * the bucket expiry — so the timer never fires early, even at level 0 (one jiffy after
 * `expires`: a timer armed just before a tick still waits its full timeout). Expiries beyond the
 * wheel's capacity (WHEEL_TIMEOUT_CUTOFF) are capped as Linux caps them.
 */
export function timerWheelExpiry(expires: number, clk: number, hz: number): number {
  checkNum(expires, "timer expiry (jiffies)");
  checkNum(clk, "timer wheel clock (jiffies)");
  if (expires < clk) return clk;
  const depth = hz > 100 ? 9 : 8; // LVL_DEPTH
  const delta = expires - clk;
  let lvl = 0;
  while (lvl < depth - 1 && delta >= lvlStart(lvl + 1)) lvl++;
  let e = expires;
  if (lvl === depth - 1 && delta >= lvlStart(depth)) {
    // WHEEL_TIMEOUT_MAX = WHEEL_TIMEOUT_CUTOFF - LVL_GRAN(LVL_DEPTH - 1)
    e = clk + lvlStart(depth) - LVL_CLK_DIV ** (depth - 1);
  }
  const gran = LVL_CLK_DIV ** lvl;
  return (Math.floor(e / gran) + 1) * gran;
}

/** The jiffy `now` falls in: the last tick at or before it (ticks every 1e9/HZ ns). */
export function jiffiesAt(nowNs: number, hz: number): number {
  const sec = Math.floor(nowNs / 1e9);
  return sec * hz + Math.floor(((nowNs - sec * 1e9) * hz) / 1e9);
}

/**
 * The simulated time of tick `j` in ns: j·1e9/HZ, rounded up to a whole ns where HZ does not
 * divide 1e9 (HZ=300), since the clock counts whole ns.
 */
export function jiffyNs(j: number, hz: number): number {
  const sec = Math.floor(j / hz);
  return sec * 1e9 + Math.ceil(((j - sec * hz) * 1e9) / hz);
}

/** What the flush queue needs from the domain. */
export interface FlushQueueDomain {
  /** Linux `flush_iotlb_all`. */
  flushIotlbAll(): void;
  /** Releases page-table pages (`iommu_put_pages_list`). */
  putPages(list: readonly FreedTablePage[]): void;
}

/** Options of a `FlushQueue`. */
export interface FlushQueueOptions {
  readonly domain: FlushQueueDomain;
  readonly iovad: IovaDomain;
  readonly clock: SimClock;
  /** One shared ring (Linux `IOMMU_DMA_OPTS_SINGLE_QUEUE`, for shadow_on_flush IOMMUs). */
  readonly single?: boolean;
  /** Slots per ring (a power of two); defaults per mode. */
  readonly size?: number;
  /** Timeout in ns (Linux `fq_timeout`, ms there); defaults per mode. */
  readonly timeoutNs?: number;
  /** CONFIG_HZ: the tick the timer runs on (default 250). */
  readonly hz?: number;
}

/** Counter names of `FlushQueue`. */
export type FlushQueueCounter =
  | "queued"
  | "reclaimed"
  | "flushStart"
  | "flushFinish"
  | "fullRingFlushes"
  | "timerFlushes"
  | "timerArms"
  | "pending";

class Ring {
  head = 0;
  tail = 0;
  /** First entry whose exposure is not recorded yet. */
  mark = 0;
  readonly pfn: Float64Array;
  readonly pages: Float64Array;
  readonly counter: Float64Array;
  readonly queuedAt: Float64Array;
  readonly freelist: (readonly FreedTablePage[] | undefined)[];

  constructor(size: number) {
    this.pfn = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counter = new Float64Array(size);
    this.queuedAt = new Float64Array(size);
    this.freelist = new Array<readonly FreedTablePage[] | undefined>(size).fill(undefined);
  }
}

/** The lazy-mode flush queue (Linux `iommu_dma_cookie` fq state, `queue_iova`, `fq_flush_timeout`). */
export class FlushQueue {
  /** Slots per ring. */
  readonly size: number;
  /** Timeout in ns, as configured (Linux `fq_timeout`). */
  readonly timeoutNs: number;
  /** CONFIG_HZ of the timer. */
  readonly hz: number;
  /** The timeout in jiffies (Linux `msecs_to_jiffies(fq_timeout)`). */
  readonly timeoutJiffies: number;
  /** True for the single shared ring. */
  readonly single: boolean;
  /** Event counters (`flushStart`/`flushFinish` are Linux's fq_flush_start_cnt/finish_cnt). */
  readonly counters = new CounterSet<FlushQueueCounter>(
    "fq",
    [
      "queued",
      "reclaimed",
      "flushStart",
      "flushFinish",
      "fullRingFlushes",
      "timerFlushes",
      "timerArms",
      "pending",
    ],
    ["pending"],
  );
  private readonly domain: FlushQueueDomain;
  private readonly iovad: IovaDomain;
  private readonly clock: SimClock;
  private readonly rings: Ring[] = [];
  private readonly mask: number;
  private timer: TimerId | undefined;
  private timerCpu = 0;
  private timerAt = 0;
  private readonly exposureHist = new NsHistogram();

  constructor(options: FlushQueueOptions) {
    this.domain = options.domain;
    this.iovad = options.iovad;
    this.clock = options.clock;
    this.single = options.single ?? false;
    const size = options.size ?? (this.single ? IOVA_SINGLE_FQ_SIZE : IOVA_DEFAULT_FQ_SIZE);
    checkNum(size, "flush queue size", 2);
    if (Math.log2(size) % 1 !== 0)
      throw new IommuError("EINVAL", `flush queue size ${hex(size)} is not a power of two`);
    this.size = size;
    this.mask = size - 1;
    this.timeoutNs = checkNum(
      options.timeoutNs ?? (this.single ? IOVA_SINGLE_FQ_TIMEOUT_NS : IOVA_DEFAULT_FQ_TIMEOUT_NS),
      "flush queue timeout (ns)",
      1,
    );
    const hz = checkNum(options.hz ?? DEFAULT_HZ, "HZ", 1);
    if (hz > 1e9) throw new IommuError("EINVAL", `HZ ${String(hz)} is above one tick per ns`);
    this.hz = hz;
    this.timeoutJiffies = msecsToJiffies(this.timeoutNs / 1e6, hz);
    const n = this.single ? 1 : this.iovad.numCpus;
    for (let i = 0; i < n; i++) this.rings.push(new Ring(size));
  }

  /** Entries waiting (all rings). */
  get pending(): number {
    return this.counters.c.pending;
  }

  /** True while the flush timer is armed (Linux `fq_timer_on`). */
  get timerOn(): boolean {
    return this.timer !== undefined;
  }

  /** When the armed timer fires (simulated ns), or undefined when it is not armed. */
  get timerExpiresAt(): number | undefined {
    return this.timer === undefined ? undefined : this.timerAt;
  }

  /**
   * When a timer armed now would fire: Linux `mod_timer(&fq_timer, jiffies +
   * msecs_to_jiffies(fq_timeout))` on a wheel whose clock is the current jiffy (the base is
   * forwarded to jiffies on enqueue, `forward_timer_base`), at the tick of the bucket expiry.
   */
  timerFireTime(nowNs: number): number {
    const j = jiffiesAt(nowNs, this.hz);
    return jiffyNs(timerWheelExpiry(j + this.timeoutJiffies, j, this.hz), this.hz);
  }

  /** Entries waiting in the ring `queueIova` would use for `cpu`. */
  ringLength(cpu: number): number {
    const r = this.ringFor(cpu);
    // eslint-disable-next-line no-bitwise -- ring indices are small integers
    return (r.tail - r.head) & this.mask;
  }

  /**
   * Linux `queue_iova`: reclaims what is already safe in this CPU's ring, flushes if the ring
   * is still full, appends the range with the table pages its unmap freed, and arms the timer
   * if it is not armed (once per flush cycle: a range queued later in the cycle waits less).
   */
  queueIova(pfn: number, pages: number, freelist: readonly FreedTablePage[], cpu: number): void {
    checkNum(pfn, "pfn", 1);
    checkNum(pages, "pages", 1);
    const r = this.ringFor(cpu);
    const c = this.counters.c;
    this.ringFree(r, cpu);
    if (this.full(r)) {
      c.fullRingFlushes++;
      this.flushIotlb();
      this.ringFree(r, cpu);
    }
    const idx = r.tail;
    r.pfn[idx] = pfn;
    r.pages[idx] = pages;
    r.counter[idx] = c.flushStart;
    r.queuedAt[idx] = this.clock.now;
    r.freelist[idx] = freelist.length === 0 ? undefined : freelist;
    // eslint-disable-next-line no-bitwise -- ring index wrap
    r.tail = (idx + 1) & this.mask;
    c.queued++;
    c.pending++;
    if (this.timer === undefined) {
      c.timerArms++;
      this.timerCpu = cpu;
      this.timerAt = this.timerFireTime(this.clock.now);
      this.timer = this.clock.scheduleAt(this.timerAt, () => {
        this.timer = undefined;
        this.flushTimeout();
      });
    }
  }

  /** Linux `fq_flush_iotlb`: start count, whole-domain invalidation, finish count. */
  flushIotlb(): void {
    const c = this.counters.c;
    c.flushStart++;
    this.domain.flushIotlbAll();
    c.flushFinish++;
    this.recordExposures();
  }

  /** Flushes and reclaims everything (used before tearing a domain down, and by tests). */
  drain(cpu = 0): void {
    if (this.timer !== undefined) this.clock.cancel(this.timer);
    this.timer = undefined;
    if (this.counters.c.pending > 0) this.flushIotlb();
    for (const r of this.rings) this.ringFree(r, cpu);
  }

  /** Exposure window of every invalidated range: count, max, mean, p50, p99 (ns). */
  exposure(): HistogramSummary {
    return this.exposureHist.summary();
  }

  /** The distribution of the exposure windows in log-spaced bins (`NsHistogram.bins`). */
  exposureBins(perDecade = 10): HistogramBin[] {
    return this.exposureHist.bins(perDecade);
  }

  // -------------------------------------------------------------------------------------

  private ringFor(cpu: number): Ring {
    if (this.single) {
      if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < this.iovad.numCpus)) {
        throw new IommuError(
          "EINVAL",
          `cpu ${String(cpu)} is outside 0..${this.iovad.numCpus - 1}`,
        );
      }
      return this.rings[0] as Ring;
    }
    const r = this.rings[cpu];
    if (r === undefined || !Number.isInteger(cpu)) {
      throw new IommuError("EINVAL", `cpu ${String(cpu)} is outside 0..${this.rings.length - 1}`);
    }
    return r;
  }

  private full(r: Ring): boolean {
    // eslint-disable-next-line no-bitwise -- ring index wrap
    return ((r.tail + 1) & this.mask) === r.head;
  }

  /** Linux `fq_ring_free_locked`: frees entries from the head while a later flush has finished. */
  private ringFree(r: Ring, cpu: number): void {
    const c = this.counters.c;
    const finish = c.flushFinish;
    while (r.head !== r.tail && (r.counter[r.head] as number) < finish) {
      const idx = r.head;
      const fl = r.freelist[idx];
      if (fl !== undefined) {
        this.domain.putPages(fl);
        r.freelist[idx] = undefined;
      }
      this.iovad.freeIovaFast(r.pfn[idx] as number, r.pages[idx] as number, cpu);
      // eslint-disable-next-line no-bitwise -- ring index wrap
      r.head = (idx + 1) & this.mask;
      c.reclaimed++;
      c.pending--;
    }
  }

  /** Linux `fq_flush_timeout`: one flush, then every ring is reclaimed. */
  private flushTimeout(): void {
    this.counters.c.timerFlushes++;
    this.flushIotlb();
    // Linux frees on the CPU the timer runs on; the model uses the CPU that armed it.
    for (const r of this.rings) this.ringFree(r, this.timerCpu);
  }

  /** Every entry queued before the flush that just finished has been invalidated now. */
  private recordExposures(): void {
    const now = this.clock.now;
    for (const r of this.rings) {
      let i = r.mark;
      while (i !== r.tail) {
        this.exposureHist.record(now - (r.queuedAt[i] as number));
        // eslint-disable-next-line no-bitwise -- ring index wrap
        i = (i + 1) & this.mask;
      }
      r.mark = i;
    }
  }
}
