/**
 * The flush queue of lazy (DMA_FQ) domains, from drivers/iommu/dma-iommu.c: unmapped IOVA ranges
 * and the page-table pages their unmap freed wait in a ring until a whole-domain IOTLB flush
 * that started after they were queued has finished; only then are they reused.
 *
 * Per-CPU rings of 256 slots (255 usable, one slot kept empty) with a 10 ms timeout, or one
 * shared ring of 32768 slots with a 1 s timeout (IOMMUs where a flush is expensive). A full ring
 * forces a flush; the timer flushes and reclaims everything. Each queued range's exposure — the
 * simulated time from its unmap to the flush that invalidated it — is recorded.
 */
import { CounterSet, type SimClock, type TimerId, hex } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import { type HistogramSummary, NsHistogram } from "./histogram.ts";
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
  /** Timeout in ns; defaults per mode. */
  readonly timeoutNs?: number;
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
  /** Timeout in ns. */
  readonly timeoutNs: number;
  /** True for the single shared ring. */
  readonly single: boolean;
  /** Event counters (`flushStart`/`flushFinish` are Linux's fq_flush_start_cnt/finish_cnt). */
  readonly counters = new CounterSet<FlushQueueCounter>("fq", [
    "queued",
    "reclaimed",
    "flushStart",
    "flushFinish",
    "fullRingFlushes",
    "timerFlushes",
    "timerArms",
    "pending",
  ]);
  private readonly domain: FlushQueueDomain;
  private readonly iovad: IovaDomain;
  private readonly clock: SimClock;
  private readonly rings: Ring[] = [];
  private readonly mask: number;
  private timer: TimerId | undefined;
  private timerCpu = 0;
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

  /** Entries waiting in the ring `queueIova` would use for `cpu`. */
  ringLength(cpu: number): number {
    const r = this.ringFor(cpu);
    // eslint-disable-next-line no-bitwise -- ring indices are small integers
    return (r.tail - r.head) & this.mask;
  }

  /**
   * Linux `queue_iova`: reclaims what is already safe in this CPU's ring, flushes if the ring
   * is still full, appends the range with the table pages its unmap freed, and arms the timer.
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
      this.timer = this.clock.schedule(this.timeoutNs, () => {
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
