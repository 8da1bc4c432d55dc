import { PhysMemory, SimClock } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_HZ,
  FlushQueue,
  IOVA_SINGLE_FQ_TIMEOUT_NS,
  jiffiesAt,
  jiffyNs,
  msecsToJiffies,
  timerWheelExpiry,
} from "../src/flush-queue.ts";
import { IOMMU_DOMAIN, IOMMU_PROT, IommuDomain, IotlbGather, IovaDomain } from "../src/index.ts";

const G = 4096;
const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;

/** A lazy domain with its flush queue at `hz`; `queue` maps and lazily unmaps one page. */
function setup(opts: { hz?: number; single?: boolean } = {}) {
  const clock = new SimClock();
  const mem = new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
  const domain = new IommuDomain({ type: IOMMU_DOMAIN.DMA_FQ, mem, clock });
  const iovad = new IovaDomain({ granule: G, startPfn: 1, numCpus: 2, clock });
  const fq = new FlushQueue({
    domain,
    iovad,
    clock,
    single: opts.single ?? false,
    ...(opts.hz === undefined ? {} : { hz: opts.hz }),
  });
  let phys = 2 ** 40;
  const queue = (): void => {
    const pfn = iovad.allocIovaFast(1, 2 ** 48 / G - 1, true, 0);
    domain.map(pfn * G, phys, G, RW);
    phys += G;
    const gather = new IotlbGather();
    gather.queued = true;
    expect(domain.unmapFast(pfn * G, G, gather)).toBe(G);
    fq.queueIova(pfn, 1, gather.freelist, 0);
  };
  return { clock, fq, queue };
}

describe("msecsToJiffies (Linux _msecs_to_jiffies)", () => {
  it("rounds up for HZ dividing 1000 and for HZ=300", () => {
    expect(msecsToJiffies(10, 250)).toBe(3);
    expect(msecsToJiffies(8, 250)).toBe(2);
    expect(msecsToJiffies(9, 250)).toBe(3);
    expect(msecsToJiffies(10, 1000)).toBe(10);
    expect(msecsToJiffies(1000, 1000)).toBe(1000);
    expect(msecsToJiffies(10, 100)).toBe(1);
    expect(msecsToJiffies(1, 100)).toBe(1);
    expect(msecsToJiffies(10, 300)).toBe(3);
    expect(msecsToJiffies(11, 300)).toBe(4);
    expect(msecsToJiffies(1000, 300)).toBe(300);
  });
});

describe("timerWheelExpiry (Linux calc_wheel_index / calc_index)", () => {
  it("level 0 (deltas below 63) fires one jiffy after the expiry", () => {
    expect(timerWheelExpiry(3, 0, 250)).toBe(4);
    expect(timerWheelExpiry(1002, 1000, 250)).toBe(1003);
    expect(timerWheelExpiry(62, 0, 250)).toBe(63);
  });

  it("level 1 (63..503) rounds up to 8 jiffies, level 2 (504..4031) to 64", () => {
    expect(timerWheelExpiry(63, 0, 250)).toBe(64);
    expect(timerWheelExpiry(250, 0, 250)).toBe(256);
    expect(timerWheelExpiry(256, 0, 250)).toBe(264);
    expect(timerWheelExpiry(503, 0, 1000)).toBe(504);
    expect(timerWheelExpiry(504, 0, 1000)).toBe(512); // 504 = 7·64 + 56 → 8·64
    expect(timerWheelExpiry(1002, 2, 1000)).toBe(1024);
    expect(timerWheelExpiry(1030, 30, 1000)).toBe(1088);
  });

  it("an expiry already past fires at the wheel clock", () => {
    expect(timerWheelExpiry(5, 9, 250)).toBe(9);
  });
});

describe("jiffies and tick times", () => {
  it("counts the last tick at or before now, with whole-ns ticks at HZ=300", () => {
    expect(jiffiesAt(0, 250)).toBe(0);
    expect(jiffiesAt(3_999_999, 250)).toBe(0);
    expect(jiffiesAt(4_000_000, 250)).toBe(1);
    expect(jiffyNs(4, 300)).toBe(13_333_334);
    expect(jiffiesAt(13_333_333, 300)).toBe(3);
    expect(jiffiesAt(13_333_334, 300)).toBe(4);
    // Far from 0 the arithmetic stays exact (hours of simulated time, above 2^32 ns).
    const j = 3600 * 300 * 5 + 7;
    expect(jiffiesAt(jiffyNs(j, 300), 300)).toBe(j);
    expect(jiffiesAt(jiffyNs(j, 300) - 1, 300)).toBe(j - 1);
  });
});

describe("FlushQueue timer in jiffies", () => {
  it("defaults to HZ=250", () => {
    const s = setup();
    expect(DEFAULT_HZ).toBe(250);
    expect(s.fq.hz).toBe(250);
    expect(s.fq.timeoutJiffies).toBe(3);
  });

  it("HZ=250: a 10 ms timer armed between ticks fires at the 4th tick after its jiffy", () => {
    const s = setup({ hz: 250 });
    s.clock.advanceTo(5_000_000); // jiffy 1 (ticks every 4 ms)
    s.queue();
    // expires = 1 + 3 = jiffy 4; the level-0 bucket runs at tick 5 = 20 ms.
    expect(s.fq.timerExpiresAt).toBe(20_000_000);
    s.clock.advanceTo(19_999_999);
    expect(s.fq.counters.c.timerFlushes).toBe(0);
    expect(s.fq.pending).toBe(1);
    s.clock.advance(1);
    expect(s.fq.counters.c.timerFlushes).toBe(1);
    expect(s.fq.pending).toBe(0);
    expect(s.fq.exposure().maxNs).toBe(15_000_000);
  });

  it("HZ=250: armed on a tick it waits 16 ms, just before a tick barely over 12 ms", () => {
    const on = setup({ hz: 250 });
    on.clock.advanceTo(8_000_000);
    on.queue();
    expect(on.fq.timerExpiresAt).toBe(24_000_000);
    const before = setup({ hz: 250 });
    before.clock.advanceTo(7_999_999);
    before.queue();
    expect(before.fq.timerExpiresAt).toBe(20_000_000);
  });

  it("arms once per flush cycle: a range queued later waits less", () => {
    const s = setup({ hz: 250 });
    s.clock.advanceTo(5_000_000);
    s.queue();
    s.clock.advanceTo(18_000_000);
    s.queue();
    expect(s.fq.counters.c.timerArms).toBe(1);
    s.clock.advanceTo(20_000_000);
    const e = s.fq.exposure();
    expect(e.count).toBe(2);
    expect(e.maxNs).toBe(15_000_000);
    expect(e.meanNs).toBe((15_000_000 + 2_000_000) / 2);
    // The next range arms a new timer from its own jiffy (5 → expiry 8 → tick 9 = 36 ms).
    s.clock.advanceTo(21_000_000);
    s.queue();
    expect(s.fq.timerExpiresAt).toBe(36_000_000);
  });

  it("HZ=1000: the 10 ms timer is 10 jiffies at level 0", () => {
    const s = setup({ hz: 1000 });
    expect(s.fq.timeoutJiffies).toBe(10);
    s.clock.advanceTo(2_500_000); // jiffy 2
    s.queue();
    expect(s.fq.timerExpiresAt).toBe(13_000_000);
  });

  it("HZ=1000 single queue: 1000 jiffies go to level 2 and round up to 64 jiffies", () => {
    const s = setup({ hz: 1000, single: true });
    expect(s.fq.timeoutNs).toBe(IOVA_SINGLE_FQ_TIMEOUT_NS);
    expect(s.fq.timeoutJiffies).toBe(1000);
    s.clock.advanceTo(30_400_000); // jiffy 30: expires 1030 → bucket 17·64 = 1088
    s.queue();
    expect(s.fq.timerExpiresAt).toBe(1_088_000_000);
    s.clock.advanceTo(1_087_999_999);
    expect(s.fq.pending).toBe(1);
    s.clock.advance(1);
    expect(s.fq.pending).toBe(0);
    expect(s.fq.exposure().maxNs).toBe(1_088_000_000 - 30_400_000);
  });

  it("HZ=300 and HZ=100 tick where the kernel's would", () => {
    const a = setup({ hz: 300 });
    a.queue(); // jiffy 0 + 3 → tick 4 at 13.333334 ms
    expect(a.fq.timerExpiresAt).toBe(13_333_334);
    const b = setup({ hz: 100 });
    b.queue(); // msecs_to_jiffies(10) = 1 → tick 2 at 20 ms
    expect(b.fq.timerExpiresAt).toBe(20_000_000);
  });

  it("rejects an HZ that is not a whole number", () => {
    const clock = new SimClock();
    const mem = new PhysMemory({ ramBytes: 1024 ** 3 });
    const domain = new IommuDomain({ type: IOMMU_DOMAIN.DMA_FQ, mem, clock });
    const iovad = new IovaDomain({ granule: G, startPfn: 1, clock });
    expect(() => new FlushQueue({ domain, iovad, clock, hz: 0 })).toThrow(/HZ/);
    expect(() => new FlushQueue({ domain, iovad, clock, hz: 2.5 })).toThrow(/HZ/);
  });
});
