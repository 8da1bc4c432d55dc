import { describe, expect, it } from "vitest";
import { type Machine, parseJob, runJob } from "../src/engine/index.ts";

const job = (over: Record<string, unknown> = {}) =>
  parseJob({
    workload: { rw: "randrw", bs: { min: "4k", max: "32k" }, iodepth: 4, ios: 400 },
    ...over,
  });

describe("engine verification", () => {
  it("passes on an honest device", () => {
    const r = runJob(job({ controller: { namespaceGiB: 1 / 1024 } }));
    expect(r.verify).toMatchObject({ enabled: true, ok: true, mismatches: 0 });
    expect(r.verify.checkedBytes).toBeGreaterThan(0);
  });

  it("releases its namespace when it returns, and the next run's never sees the old bytes", () => {
    // A run that writes most of a 4 MiB namespace (4 slabs), then one whose writes of parts of
    // chunks take the slabs the first gave back and whose reads come back to the sectors around
    // them: stale bytes would fail its verification.
    let first: Machine | undefined;
    const writer = runJob(
      job({
        controller: { namespaceGiB: 4 / 1024 },
        workload: { rw: "randwrite", bs: "4k", iodepth: 8, ios: 3000 },
      }),
      { setup: (m) => (first = m) },
    );
    expect(writer.verify).toMatchObject({ ok: true, mismatches: 0 });
    expect(first!.ctrl.namespaces[0]!.backedBytes).toBe(0);
    const reader = runJob(
      job({
        seed: 7,
        controller: { namespaceGiB: 4 / 1024 },
        workload: {
          rw: "randrw",
          rwmixread: 50,
          bs: { min: "512", max: "4k" },
          iodepth: 8,
          ios: 3000,
        },
      }),
    );
    expect(reader.verify).toMatchObject({ enabled: true, ok: true, mismatches: 0 });
    expect(reader.verify.checkedBytes).toBeGreaterThan(1000 * 2048);
  });

  it("catches one inverted byte in the data a read returns, and counts exactly one sector", () => {
    let reads = 0;
    const r = runJob(job(), {
      setup: (m) => {
        const ns = m.ctrl.namespaces[0]!;
        const read = ns.read.bind(ns);
        ns.read = (at, dst, off, len) => {
          read(at, dst, off, len);
          // The 60th namespace read: invert a byte in its third sector.
          if (++reads === 60) dst[off + 2 * 512 + 17] = 255 - (dst[off + 2 * 512 + 17] ?? 0);
        };
      },
    });
    expect(reads).toBeGreaterThan(60);
    expect(r.errors).toBe(0);
    expect(r.verify).toMatchObject({ ok: false, mismatches: 1 });
  });

  it("counts a sector once when the buffer splits it across pages and both halves differ", () => {
    // A buffer 300 bytes into its first page: a 4 KiB read's sector 7 lies 212 bytes in the
    // first page and 300 in the next, which verification compares as two pieces.
    let reads = 0;
    let next = -1;
    const r = runJob(
      job({
        workload: {
          rw: "randrw",
          bs: "4k",
          iodepth: 4,
          ios: 400,
          buffers: "offset",
          bufferOffset: 300,
        },
      }),
      {
        setup: (m) => {
          const ns = m.ctrl.namespaces[0]!;
          const read = ns.read.bind(ns);
          ns.read = (at, dst, off, len) => {
            read(at, dst, off, len);
            // The device reads the two pages' pieces apart: the 40th read's first piece, and
            // the piece after it on the namespace.
            if (len === 3796 && ++reads === 40) {
              dst[off + 3600] = 255 - (dst[off + 3600] ?? 0);
              next = at + 3796;
            } else if (at === next && len === 300) {
              dst[off + 104] = 255 - (dst[off + 104] ?? 0);
              next = -2;
            }
          };
        },
      },
    );
    expect(next).toBe(-2);
    expect(reads).toBeGreaterThan(40);
    expect(r.errors).toBe(0);
    expect(r.verify).toMatchObject({ ok: false, mismatches: 1 });
  });

  it("catches a write that lands one sector off", () => {
    // A 1 MiB namespace, so that reads come back to sectors written earlier.
    const small = job({
      controller: { namespaceGiB: 1 / 1024 },
      workload: { rw: "randrw", bs: "8k", iodepth: 1, ios: 300 },
    });
    const r = runJob(small, {
      setup: (m) => {
        const ns = m.ctrl.namespaces[0]!;
        const write = ns.write.bind(ns);
        ns.write = (at, src, off, len) => write(at + 512, src, off, len);
      },
    });
    expect(r.errors).toBe(0);
    expect(r.verify.ok).toBe(false);
    expect(r.verify.mismatches).toBeGreaterThan(10);
  });

  it("reports failed commands from the controller's fault injection as I/O errors", () => {
    const r = runJob(job(), {
      setup: (m) => m.ctrl.setFaults({ failCommand: { status: 0x4004, every: 50 } }),
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(r.verify.ok).toBe(false);
  });
});

describe("a device that cannot reach all RAM", () => {
  it("splits I/O at the SWIOTLB segment, because the driver sets its mask before its limits", () => {
    // nvme_pci_alloc_dev sets the DMA mask, then max_hw_sectors from dma_opt_mapping_size: with
    // a 32-bit mask and no IOMMU that is the SWIOTLB segment less the 4 KiB alignment (252 KiB).
    const r = runJob(
      parseJob({
        iommu: { mode: "none" },
        device: { dmaMaskBits: 32 },
        workload: { rw: "randread", bs: "256k", iodepth: 1, ios: 20, buffers: "offset" },
      }),
    );
    expect(r.errors).toBe(0);
    expect(r.verify.mismatches).toBe(0);
    expect(r.perIo["nvmehost.submitted"]).toBe(2);
  });
});

describe("the largest request without an IOMMU (dma_direct_max_mapping_size)", () => {
  it("a 64-bit device with the job's SWIOTLB pool sends a 1 MiB read as one command", () => {
    for (const mode of ["none", "passthrough"] as const) {
      const r = runJob(
        parseJob({
          iommu: { mode },
          controller: { namespaceGiB: 1 / 16 },
          workload: { rw: "randread", bs: "1m", iodepth: 1, ios: 20, buffers: "hugepage" },
        }),
      );
      expect(r.job.device.swiotlbMiB, mode).toBeGreaterThan(0);
      expect(r.errors, mode).toBe(0);
      // Linux: no SWIOTLB limit for a device that reaches all RAM, so max_hw_sectors is MDTS
      // (2 MiB) and 1 MiB is one command; the pool's 252 KiB cap would make it 5.
      expect(r.perIo["nvmehost.submitted"], mode).toBe(1);
    }
  });
});

describe("shadow doorbells end to end (controller.shadowDoorbells)", () => {
  it("the host configures Doorbell Buffer Config and the device makes five more translations per I/O", () => {
    const run = (shadowDoorbells: boolean) =>
      runJob(
        parseJob({
          iommu: { mode: "strict" },
          controller: { shadowDoorbells, namespaceGiB: 1 / 64 },
          workload: { rw: "randread", bs: "4k", iodepth: 1, ios: 300, ramp: 0 },
        }),
      );
    const off = run(false);
    const on = run(true);
    for (const r of [off, on]) {
      expect(r.errors).toBe(0);
      expect(r.verify.ok).toBe(true);
    }
    expect(off.perIo["nvmehost.shadowWrites"]).toBeUndefined();
    expect(on.perIo["nvmehost.shadowWrites"]).toBe(2); // SQ tail and CQ head
    expect(on.perIo["nvmectrl.shadowReads"]).toBeGreaterThan(0);
    // QEMU's nvme_process_sq / nvme_post_cqes: shadow tail read, event index write and tail
    // re-read per command, CQ event index write and head read per completion.
    const t = (r: typeof on) => r.perIo["domain.translations"] ?? 0;
    expect(t(on) - t(off)).toBe(5);
  });
});

describe("failed I/Os say why", () => {
  it("counts them by block status and the NVMe status the device gave", () => {
    const r = runJob(parseJob({ workload: { ios: 2000 } }), {
      setup: (m) => m.ctrl.setFaults({ failCommand: { status: 0x4004, every: 100 } }),
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(r.errorCauses).toEqual({
      "BLK_STS_IOERR: NVMe Data Transfer Error (DNR)": r.errors,
    });
    expect(runJob(parseJob({ workload: { ios: 200 } })).errorCauses).toEqual({});
  });
});

describe("a run whose every request is refused at once", () => {
  // An untrusted device must bounce, and there is no SWIOTLB: each request fails with
  // BLK_STS_RESOURCE before any time passes, so the clock stands still.
  const refused = {
    iommu: { granule: 65536 },
    device: { trusted: false, swiotlbMiB: 0 },
    machine: { pageSize: 65536 },
  };

  it("ends a ramp by time that the clock cannot reach, and reports the failures", () => {
    const r = runJob(parseJob({ ...refused, workload: { ios: 30, iodepth: 1, ramp: "1us" } }));
    expect(r.ios).toBe(30);
    expect(r.errors).toBe(30);
    expect(Object.keys(r.errorCauses)).toEqual([
      expect.stringMatching(/^BLK_STS_RESOURCE/) as unknown as string,
    ]);
  });

  it("ends a run by time that the clock cannot reach", () => {
    const r = runJob(parseJob({ ...refused, workload: { seconds: 0.001 } }));
    expect(r.ios).toBeGreaterThan(0);
    expect(r.errors).toBe(r.ios);
  });
});

describe("gauges are reported as levels, not as per-I/O differences", () => {
  it("a lazy run gives the flush queue's and the allocator's levels in gauges, none in perIo", () => {
    const r = runJob(
      parseJob({
        iommu: { mode: "lazy" },
        workload: { rw: "randread", bs: "16k", iodepth: 8, ios: 300 },
      }),
    );
    for (const g of ["fq.pending", "iova.liveRanges", "iova.depotSize", "memory.pagesInUse"]) {
      expect(r.gauges[g], g).toBeDefined();
      expect(r.perIo[g], g).toBeUndefined();
    }
    // 300 I/Os at QD8 never fill a 256-entry flush queue: every freed IOVA is still pending.
    expect(r.gauges["fq.pending"]).toBeGreaterThan(0);
    expect(r.gauges["iova.liveRanges"]).toBeGreaterThanOrEqual(r.gauges["fq.pending"] ?? 0);
    expect(r.gauges["memory.pagesInUse"]).toBeGreaterThan(0);
    // 16 KiB over scattered pages needs a PRP list: its descriptor memory is in flight.
    expect(r.gauges["nvmehost.peakInflightBytes"]).toBeGreaterThan(0);
    // The event counters stay per I/O.
    expect(r.perIo["fq.queued"]).toBeCloseTo(1, 5);
  });
});
