import { PhysMemory, SimClock, fastMod } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  DMA_ACCESS,
  FlushQueue,
  IOMMU_DOMAIN,
  IOMMU_PROT,
  IOVA_DEFAULT_FQ_TIMEOUT_NS,
  IOVA_SINGLE_FQ_TIMEOUT_NS,
  IommuDomain,
  IotlbGather,
  IovaDomain,
  translate,
} from "../src/index.ts";

const RW = IOMMU_PROT.READ + IOMMU_PROT.WRITE;
const G = 4096;
/**
 * When the 10 ms timer armed at t = 0 fires at HZ=250: msecs_to_jiffies(10) = 3, and the timer
 * wheel's level-0 bucket of expiry jiffy 3 runs at tick 4 (fq-jiffies.test.ts has the details).
 */
const FIRE_NS = 16_000_000;
/** The 1 s single-queue timer armed at t = 0, HZ=250: 250 jiffies, rounded to level 1's 8. */
const SINGLE_FIRE_NS = 1_024_000_000;

/** A minimal DMA layer over the package, the way dma-core will drive it. */
function setup(opts: { lazy: boolean; single?: boolean; cpus?: number }) {
  const clock = new SimClock();
  const mem = new PhysMemory({ ramBytes: 8 * 1024 ** 3 });
  const pagesAtStart = mem.pagesInUse;
  const domain = new IommuDomain({
    type: opts.lazy ? IOMMU_DOMAIN.DMA_FQ : IOMMU_DOMAIN.DMA,
    mem,
    clock,
  });
  const iovad = new IovaDomain({ granule: G, startPfn: 1, numCpus: opts.cpus ?? 2, clock });
  const fq = new FlushQueue({ domain, iovad, clock, single: opts.single ?? false });
  const limit = 2 ** 48 / G - 1;
  const map = (phys: number, pages: number, cpu = 0): number => {
    const pfn = iovad.allocIovaFast(pages, limit, true, cpu);
    domain.map(pfn * G, phys, pages * G, RW);
    return pfn;
  };
  const unmap = (pfn: number, pages: number, cpu = 0): void => {
    const gather = new IotlbGather();
    gather.queued = domain.isLazy;
    expect(domain.unmapFast(pfn * G, pages * G, gather)).toBe(pages * G);
    if (gather.queued) fq.queueIova(pfn, pages, gather.freelist, cpu);
    else {
      domain.iotlbSync(gather);
      iovad.freeIovaFast(pfn, pages, cpu);
    }
  };
  const read = (pfn: number) => translate(domain, pfn * G, 8, DMA_ACCESS.READ);
  return { clock, mem, pagesAtStart, domain, iovad, fq, map, unmap, read };
}

describe("FlushQueue", () => {
  it("strict: after unmap + sync the device faults at once", () => {
    const s = setup({ lazy: false });
    const pfn = s.map(2 ** 40, 1);
    expect(pfn * G).toBeGreaterThan(2 ** 32);
    expect(s.read(pfn).ok).toBe(true);
    s.unmap(pfn, 1);
    const r = s.read(pfn);
    expect(r.ok ? null : r.fault.reason).toBe("not-present");
    expect(s.domain.iotlb.counters.c.staleHits).toBe(0);
  });

  it("lazy: the device hits the stale entry until the flush, and never after", () => {
    const s = setup({ lazy: true });
    const pfn = s.map(2 ** 40 + 0x5000, 1);
    expect(s.read(pfn).ok).toBe(true);
    s.unmap(pfn, 1);
    expect(s.domain.iovaToPhys(pfn * G)).toBe(0);
    const stale = s.read(pfn);
    expect(stale).toMatchObject({ ok: true, staleHits: 1, runs: [{ phys: 2 ** 40 + 0x5000 }] });
    expect(s.domain.iotlb.counters.c.staleHits).toBe(1);
    // The IOVA is still allocated while queued.
    expect(s.iovad.findIova(pfn)).toBeDefined();
    s.clock.advance(FIRE_NS - 1);
    expect(s.read(pfn).ok).toBe(true);
    s.clock.advance(1);
    expect(s.fq.counters.c.timerFlushes).toBe(1);
    const after = s.read(pfn);
    expect(after.ok ? null : after.fault.reason).toBe("not-present");
    expect(s.domain.iotlb.counters.c.staleHits).toBe(2);
    expect(s.fq.exposure()).toMatchObject({ count: 1, maxNs: FIRE_NS });
    // Reclaimed: back in this CPU's rcache (still a tree range, as in Linux) and reusable.
    expect(s.fq.pending).toBe(0);
    expect(s.iovad.allocIovaFast(1, 2 ** 36 - 1, true, 0)).toBe(pfn);
  });

  it("a full per-CPU ring (255 usable) forces a flush and reclaims", () => {
    const s = setup({ lazy: true });
    const pfns: number[] = [];
    for (let i = 0; i < 256; i++) pfns.push(s.map(2 ** 41 + i * G, 1));
    for (let i = 0; i < 255; i++) s.unmap(pfns[i]!, 1);
    expect(s.fq.ringLength(0)).toBe(255);
    expect(s.fq.counters.c.flushStart).toBe(0);
    s.clock.advance(1000);
    s.unmap(pfns[255]!, 1);
    expect(s.fq.counters.c.fullRingFlushes).toBe(1);
    expect(s.fq.counters.c.flushFinish).toBe(1);
    expect(s.fq.ringLength(0)).toBe(1);
    expect(s.fq.counters.c.reclaimed).toBe(255);
    expect(s.domain.counters.c.flushAlls).toBe(1);
    expect(s.fq.exposure()).toMatchObject({ count: 255, maxNs: 1000 });
    // Another CPU's ring is independent.
    expect(s.fq.ringLength(1)).toBe(0);
  });

  it("reclaims an entry only after a flush that started after it was queued has finished", () => {
    const s = setup({ lazy: true });
    const a = s.map(0x100000, 1);
    s.unmap(a, 1);
    s.fq.flushIotlb(); // starts after a was queued: a becomes reclaimable
    const b = s.map(0x200000, 1);
    s.unmap(b, 1); // reclaims a on the way in, b stays
    expect(s.fq.counters.c.reclaimed).toBe(1);
    expect(s.fq.ringLength(0)).toBe(1);
    expect(s.iovad.counters.c.freeRcache).toBe(1);
  });

  it("defers a page-table page freed by an unmap with the IOVA and leaks nothing once drained", () => {
    const s = setup({ lazy: true });
    // 512 pages at a physical address off the 2 MiB grid map as 4K leaves of one leaf table; the
    // unmap of the size-aligned 2 MiB IOVA range is block-sized, so it tears that table down.
    const pfn = s.map(2 ** 38 + G, 512);
    expect(fastMod(pfn * G, 2 ** 21)).toBe(0);
    const inUse = s.mem.pagesInUse;
    const tables = s.domain.pgtable!.tablePages;
    s.unmap(pfn, 512);
    expect(s.domain.pgtable!.tablePages).toBe(tables - 1);
    expect(s.mem.pagesInUse).toBe(inUse); // the freed table stays allocated while queued
    s.clock.advance(FIRE_NS);
    expect(s.mem.pagesInUse).toBe(inUse - 1);
    s.iovad.putIovaDomain();
    expect(s.iovad.liveRanges).toBe(0);
  });

  it("uses one ring of 32768 with a 1 s timer in single-queue mode", () => {
    const s = setup({ lazy: true, single: true, cpus: 4 });
    expect(s.fq.size).toBe(32768);
    const p0 = s.map(0x1000000, 1, 0);
    const p3 = s.map(0x2000000, 1, 3);
    expect(s.read(p3).ok).toBe(true);
    s.unmap(p0, 1, 0);
    s.unmap(p3, 1, 3);
    expect(s.fq.ringLength(2)).toBe(2);
    s.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS);
    expect(s.fq.pending).toBe(2);
    expect(s.read(p3).ok).toBe(true);
    s.clock.advance(IOVA_SINGLE_FQ_TIMEOUT_NS - IOVA_DEFAULT_FQ_TIMEOUT_NS);
    expect(s.fq.pending).toBe(2);
    s.clock.advanceTo(SINGLE_FIRE_NS);
    expect(s.fq.pending).toBe(0);
    expect(s.read(p3).ok).toBe(false);
    expect(s.fq.exposure().p99Ns).toBe(SINGLE_FIRE_NS);
  });

  it("arms the timer once per batch and reports the exposure distribution", () => {
    const s = setup({ lazy: true });
    for (let i = 0; i < 100; i++) {
      const pfn = s.map(2 ** 45 + i * G, 1);
      s.unmap(pfn, 1);
      s.clock.advance(50_000);
    }
    expect(s.fq.counters.c.timerArms).toBe(1);
    s.clock.advanceTo(FIRE_NS);
    const e = s.fq.exposure();
    expect(e.count).toBe(100);
    // Armed by the first range; the ones queued after it wait less (16 ms down to 11.05 ms).
    expect(e.maxNs).toBe(FIRE_NS);
    expect(e.p50Ns).toBeGreaterThan(13_000_000);
    expect(e.p50Ns).toBeLessThan(14_000_000);
    expect(e.p99Ns).toBeLessThanOrEqual(e.maxNs);
    expect(e.p99Ns).toBeGreaterThan(15_800_000);
  });

  it("drains everything on demand", () => {
    const s = setup({ lazy: true });
    const pfn = s.map(0x40000000, 2);
    s.unmap(pfn, 2);
    s.fq.drain();
    expect(s.fq.pending).toBe(0);
    expect(s.fq.timerOn).toBe(false);
    expect(s.clock.pending).toBe(0);
    expect(s.read(pfn).ok).toBe(false);
  });
});
