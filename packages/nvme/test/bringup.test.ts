/**
 * Host bring-up and teardown: the register sequence, refusal of controllers whose minimum page
 * exceeds 4 KiB, Identify data, queue limits as Linux sets them (`nvme_set_ctrl_limits`), I/O
 * queue creation, and shutdown.
 */
import { BLK_STS, REQ_OP, Request, bioFromBvecs, blkRqFromBios } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { NVME_REG, NvmeError } from "../src/index.ts";
import { GiB, OK, Rig, type RigOptions, pattern } from "../src/testing/index.ts";

function limitsOf(o: RigOptions) {
  const r = new Rig(o);
  const l = r.host.limits;
  expect(r.checkNoLeaks()).toEqual([]);
  return {
    maxHwSectors: l.maxHwSectors,
    maxSegments: l.maxSegments,
    virt: l.virtBoundaryMask,
    dmaAlignment: l.dmaAlignment,
    maxSegmentSize: l.maxSegmentSize,
  };
}

describe("bring-up", () => {
  it("refuses a controller whose minimum page size exceeds 4 KiB, leaving nothing allocated", () => {
    const r = new Rig({ ctrl: { mpsmin: 1 }, noEnable: true });
    let err: unknown;
    try {
      r.host.enable();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NvmeError);
    expect((err as NvmeError).code).toBe("ENODEV");
    expect((err as NvmeError).message).toMatch(/8192 too large/);
    expect(r.ctrl.ready).toBe(false);
    expect(r.memory.pagesInUse).toBe(r.baseline.pages);
  });

  it("refuses a read or write request with no data, keeping its tag", () => {
    const r = new Rig({ mode: "strict" });
    for (const op of [REQ_OP.READ, REQ_OP.WRITE]) {
      const req = new Request(op, r.host.limits, 8);
      expect(() => r.host.queueRq(req, () => undefined)).toThrow(
        expect.objectContaining({
          code: "EINVAL",
          message: `a ${op} request at sector 8 has no data`,
        }),
      );
    }
    expect(r.host.counters.c.submitted).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("enables the controller with CC.MPS = 0, 64-byte SQEs and 16-byte CQEs", () => {
    const r = new Rig({ mode: "strict" });
    const cc = r.ctrl.readReg32(NVME_REG.CC);
    expect(cc % 2).toBe(1);
    expect(Math.floor(cc / 128) % 16).toBe(0);
    expect(Math.floor(cc / 2 ** 16) % 16).toBe(6);
    expect(Math.floor(cc / 2 ** 20) % 16).toBe(4);
    expect(r.ctrl.ready).toBe(true);
    expect(r.ctrl.readReg32(NVME_REG.AQA)).toBe(31 + 31 * 65536);
    expect(() => r.host.enable()).toThrow(/already enabled/);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("sets the limits from 8 MiB, the optimal mapping size and MDTS", () => {
    const base = { dmaAlignment: 3, maxSegmentSize: 0xffffffff };
    // No IOMMU, no MDTS: 8 MiB and 256 segments.
    expect(limitsOf({ mode: "none", ctrl: { mdts: 0 } })).toEqual({
      ...base,
      maxHwSectors: 16384,
      maxSegments: 256,
      virt: 4095,
    });
    // MDTS 9 at 4 KiB pages: 2 MiB.
    expect(limitsOf({ mode: "passthrough" }).maxHwSectors).toBe(4096);
    // MDTS 5: 128 KiB and 128K / 4K + 1 segments.
    expect(limitsOf({ mode: "none", ctrl: { mdts: 5 } })).toMatchObject({
      maxHwSectors: 256,
      maxSegments: 33,
    });
    // Under a DMA IOMMU domain: dma_opt_mapping_size = 32 granules.
    expect(limitsOf({ mode: "strict", ctrl: { mdts: 0 } })).toMatchObject({
      maxHwSectors: 256,
      maxSegments: 33,
    });
    expect(limitsOf({ mode: "lazy", pageSize: 65536, ctrl: { mdts: 0 } })).toMatchObject({
      maxHwSectors: 4096,
      maxSegments: 256,
    });
  });

  it("drops the virt boundary only for SGL-capable controllers with the two-step mapping", () => {
    expect(limitsOf({ sgl: "none" }).virt).toBe(4095);
    expect(limitsOf({ sgl: "byte" }).virt).toBe(0);
    expect(limitsOf({ sgl: "dword" }).virt).toBe(0);
    expect(limitsOf({ sgl: "byte", mapping: "scatterlist" }).virt).toBe(4095);
    expect(limitsOf({ mapping: "scatterlist", ctrl: { mdts: 0 } }).maxSegments).toBe(128);
    const r = new Rig({ sgl: "byte" });
    expect(r.host.adminLimits.virtBoundaryMask).toBe(4095);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("reads Identify Controller and Identify Namespace back as the controller was configured", () => {
    const r = new Rig({
      sgl: "byte",
      ctrl: {
        mdts: 6,
        sglOversize: true,
        sglBitBucket: true,
        maxQueueEntries: 64,
        namespaces: [{ lbaSize: 4096, blocks: 1000 }, { lbaSize: 512, blocks: 2048 }, {}],
      },
    });
    expect(r.host.info).toEqual({
      mdts: 6,
      sgls: 1 + 2 ** 16 + 2 ** 18,
      namespaces: 3,
      mpsmin: 0,
      mqes: 63,
    });
    expect(r.host.namespaces).toEqual([
      { nsid: 1, lbaSize: 4096, blocks: 1000 },
      { nsid: 2, lbaSize: 512, blocks: 2048 },
      { nsid: 3, lbaSize: 512, blocks: GiB / 512 },
    ]);
    expect(r.host.limits.logicalBlockSize).toBe(4096);
    expect(r.host.queues[1]?.depth).toBe(64);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("creates every requested I/O queue pair and moves data on each, and on each namespace", () => {
    const r = new Rig({
      mode: "lazy",
      host: { ioQueues: 3, queueDepth: 16 },
      ctrl: { namespaces: [{}, { lbaSize: 4096, blocks: 512 }] },
    });
    expect(r.host.queues.length).toBe(4);
    for (const qid of [1, 2, 3]) {
      for (const nsid of [1, 2]) {
        const [p, q] = r.scattered(2, qid * 10 + nsid) as [number, number];
        const data = r.fill(p, 4096, qid + nsid);
        const lim = r.host.limits;
        let st = -1;
        const w = blkRqFromBios(lim, [bioFromBvecs(REQ_OP.WRITE, 8, r.bvecs([[p, 4096]]))]);
        expect(r.host.queueRq(w, (s) => (st = s), { qid, nsid })).toBe(OK);
        r.host.drain(qid);
        expect(st).toBe(OK);
        const rd = blkRqFromBios(lim, [bioFromBvecs(REQ_OP.READ, 8, r.bvecs([[q, 4096]]))]);
        expect(r.host.queueRq(rd, (s) => (st = s), { qid, nsid })).toBe(OK);
        r.host.drain(qid);
        expect(r.memory.readBytes(q, 4096)).toEqual(data);
      }
    }
    expect(r.ctrl.counters.c.ioCommands).toBe(12);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("refuses a request that is not a whole number of logical blocks", () => {
    const r = new Rig({ ctrl: { namespaces: [{ lbaSize: 4096 }] } });
    const [p] = r.scattered(1, 1) as [number];
    const req = blkRqFromBios(r.host.limits, [bioFromBvecs(REQ_OP.READ, 1, r.bvecs([[p, 4096]]))]);
    expect(() => r.host.queueRq(req, () => undefined)).toThrow(/not aligned/);
    // The tag was given back: the queue is idle and I/O goes on.
    expect(r.host.queues[1]?.inflight).toBe(0);
    expect(r.io("write", 8, r.bvecs([[p, 4096]]))).toBe(OK);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("reports LBA Out of Range past the namespace end as a target error", () => {
    const r = new Rig({ ctrl: { namespaces: [{ blocks: 64 }] } });
    const [p] = r.scattered(1, 2) as [number];
    expect(r.io("write", 60, r.bvecs([[p, 4096]]))).toBe(BLK_STS.TARGET);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("flushes", () => {
    const r = new Rig();
    const req = new Request(REQ_OP.FLUSH, r.host.limits);
    let st = -1;
    expect(r.host.queueRq(req, (s) => (st = s))).toBe(OK);
    r.host.drain();
    expect(st).toBe(OK);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("shuts down: deletes the queues, disables the controller, frees every ring and pool", () => {
    const r = new Rig({ mode: "lazy", ctrl: { completionDelayNs: 1000 } });
    const [p] = r.scattered(1, 3) as [number];
    r.memory.write(p, pattern(4096, 1));
    const req = blkRqFromBios(r.host.limits, [bioFromBvecs(REQ_OP.WRITE, 0, r.bvecs([[p, 4096]]))]);
    expect(r.host.queueRq(req, () => undefined)).toBe(OK);
    expect(() => r.host.shutdown()).toThrow(/in flight/);
    r.host.drain();
    const admin = r.ctrl.counters.c.adminCommands;
    expect(r.checkNoLeaks()).toEqual([]);
    expect(r.ctrl.counters.c.adminCommands).toBe(admin + 2);
    expect(r.ctrl.ready).toBe(false);
    expect(r.ctrl.readReg32(NVME_REG.CC) % 2).toBe(0);
    expect(() => r.host.queueRq(req, () => undefined)).toThrow(/not enabled/);
    expect(() => r.host.shutdown()).not.toThrow();
  });
});
