/**
 * Review fixes in the host driver: the block status of an NVMe status (`nvme_error_status`),
 * retries (`nvme_decide_disposition`, `nvme_retry_req`, blk-mq requeueing), the admin queue
 * limits (`nvme_set_ctrl_limits(ctrl, &lim, true)`), the queue-pair memory order
 * (`nvme_alloc_queue`, `nvme_create_io_queues`), and the scatterlist driver's SGL choice by mapped
 * entries (`nvme_pci_use_sgls(dev, req, iod->sgt.nents)`).
 */
import {
  BLK_STS,
  type BioVec,
  type BlkStatus,
  REQ_OP,
  bioFromBvecs,
  blkRqFromBios,
  getU32,
  getU64,
} from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  NVME_REG,
  NVME_SC,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  SQE,
  nvmeErrorStatus,
  nvmeMapDataScatterlist,
  nvmeUnmapDataScatterlist,
} from "../src/index.ts";
import { OK, Rig, pattern } from "../src/testing/index.ts";

const PAGE = 4096;
const KiB = 1024;

/** `n` scattered pages as bvecs, filled with seeded data. */
function pages(r: Rig, n: number, seed: number): { bv: BioVec[]; data: Uint8Array } {
  const bv = r.bvecs(r.scattered(n, seed).map((p) => [p, PAGE] as const));
  const data = pattern(n * PAGE, seed);
  r.scatter(bv, data);
  return { bv, data };
}

/** Returns a hook that fails the calls whose (1-based) number is in `which`. */
function failCalls(which: readonly number[]): () => boolean {
  let n = 0;
  return () => which.includes(++n);
}

describe("nvmeErrorStatus (nvme_error_status)", () => {
  it("looks only at the status code type and code (status & 0x7ff)", () => {
    const MORE = 0x2000;
    const crd = (n: number) => n * 0x800;
    expect(nvmeErrorStatus(MORE + NVME_SC.LBA_RANGE)).toBe(BLK_STS.TARGET);
    expect(nvmeErrorStatus(crd(1) + NVME_SC.CAP_EXCEEDED)).toBe(BLK_STS.NOSPC);
    expect(nvmeErrorStatus(crd(3) + MORE + NVME_STATUS_DNR + NVME_SC.READ_ERROR)).toBe(
      BLK_STS.MEDIUM,
    );
    expect(nvmeErrorStatus(crd(2) + NVME_SC.INVALID_FIELD)).toBe(BLK_STS.NOTSUPP);
    expect(nvmeErrorStatus(MORE + NVME_SC.SUCCESS)).toBe(BLK_STS.OK);
    expect(nvmeErrorStatus(crd(1) + NVME_SC.DATA_XFER_ERROR)).toBe(BLK_STS.IOERR);
  });

  it("maps Namespace Not Ready (82h) to BLK_STS_TARGET", () => {
    expect(nvmeErrorStatus(NVME_SC.NS_NOT_READY)).toBe(BLK_STS.TARGET);
    expect(nvmeErrorStatus(NVME_SC.NS_NOT_READY + NVME_STATUS_DNR)).toBe(BLK_STS.TARGET);
  });
});

describe("retries (nvme_decide_disposition, nvme_retry_req)", () => {
  it("requeues a retry whose mapping runs out (RESOURCE) instead of completing the bio with it", () => {
    const r = new Rig({ mode: "none", mapping: "scatterlist", sgl: "none" });
    r.ctrl.setFaults({ failCommand: { nth: 1, status: NVME_SC.DATA_XFER_ERROR } });
    // Call 1: the first dispatch; call 2: the retry's dispatch fails; call 3: its rerun.
    r.host.sgPool.faultHook = failCalls([2]);
    const { bv, data } = pages(r, 6, 11);
    const t0 = r.clock.now;
    expect(r.io("write", 0, bv)).toBe(OK);
    expect(r.host.counters.c.retries).toBe(1);
    expect(r.host.counters.c.requeues).toBe(1);
    expect(r.host.sgPool.counters.c.failures).toBe(1);
    expect(r.ctrl.counters.c.ioCommands).toBe(2);
    // With nothing in flight the queue is rerun after BLK_MQ_RESOURCE_DELAY (3 ms).
    expect(r.clock.now - t0).toBeGreaterThanOrEqual(3_000_000);
    r.host.sgPool.faultHook = undefined;
    const back = r.bvecs(r.scattered(6, 12).map((p) => [p, PAGE] as const));
    expect(r.io("read", 0, back)).toBe(OK);
    expect(Buffer.compare(r.gather(back), data)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("counts retries per request: a new request on a tag starts at 0", () => {
    const r = new Rig({ mode: "none", sgl: "none" });
    // What an earlier request that gave up on tag 0 could have left behind.
    const q = r.host.queues[1];
    if (q === undefined) throw new Error("no I/O queue");
    q.iod(0).retries = r.host.maxRetries;
    r.ctrl.setFaults({ failCommand: { nth: 1, status: NVME_SC.DATA_XFER_ERROR } });
    const { bv } = pages(r, 2, 13);
    expect(r.io("write", 0, bv)).toBe(OK);
    expect(r.host.counters.c.retries).toBe(1);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("retries on the namespace the request was sent to", () => {
    const r = new Rig({
      mode: "none",
      sgl: "none",
      ctrl: { namespaces: [{ blocks: 2048 }, { blocks: 2048 }] },
    });
    r.ctrl.setFaults({ failCommand: { nth: 1, status: NVME_SC.DATA_XFER_ERROR } });
    const { bv, data } = pages(r, 2, 14);
    const run = (op: "read" | "write", vecs: BioVec[]): BlkStatus => {
      let st: BlkStatus | -1 = -1;
      const req = blkRqFromBios(r.host.limits, [bioFromBvecs(op, 0, vecs)]);
      expect(r.host.queueRq(req, (s) => (st = s), { nsid: 2 })).toBe(OK);
      r.host.drain();
      return st as BlkStatus;
    };
    expect(run(REQ_OP.WRITE, bv)).toBe(OK);
    expect(r.host.counters.c.retries).toBe(1);
    const back = r.bvecs(r.scattered(2, 15).map((p) => [p, PAGE] as const));
    expect(run(REQ_OP.READ, back)).toBe(OK);
    expect(Buffer.compare(r.gather(back), data)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("waits the Command Retry Delay CRDT[CRD - 1] x 100 ms before a retry", () => {
    const r = new Rig({ mode: "none", sgl: "none", ctrl: { crdt: [2, 0, 0] } });
    expect(r.host.crdt).toEqual([2, 0, 0]); // from Identify CRDT1..3
    r.ctrl.setFaults({ failCommand: { nth: 1, status: 0x800 + NVME_SC.INTERNAL } }); // CRD 1
    const { bv } = pages(r, 1, 16);
    let st: BlkStatus | -1 = -1;
    const t0 = r.clock.now;
    const req = blkRqFromBios(r.host.limits, [bioFromBvecs(REQ_OP.WRITE, 0, bv)]);
    expect(r.host.queueRq(req, (s) => (st = s))).toBe(OK);
    r.host.pollCq();
    expect(r.host.counters.c.retries).toBe(1);
    expect(r.ctrl.counters.c.ioCommands).toBe(1);
    r.clock.advance(199_000_000);
    r.host.pollCq();
    expect(r.ctrl.counters.c.ioCommands).toBe(1);
    r.host.drain();
    expect(st).toBe(OK);
    expect(r.ctrl.counters.c.ioCommands).toBe(2);
    expect(r.clock.now - t0).toBeGreaterThanOrEqual(200_000_000);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("reads CRDT1..3 from Identify (0 in the model's controller: no delay)", () => {
    const r = new Rig({ mode: "none", sgl: "none" });
    expect(r.host.crdt).toEqual([0, 0, 0]);
    r.ctrl.setFaults({ failCommand: { nth: 1, status: 0x1800 + NVME_SC.INTERNAL } }); // CRD 3
    const { bv } = pages(r, 1, 17);
    const t0 = r.clock.now;
    expect(r.io("write", 0, bv)).toBe(OK);
    expect(r.host.counters.c.retries).toBe(1);
    expect(r.clock.now - t0).toBeLessThan(100_000_000);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("admin queue limits (nvme_set_ctrl_limits(ctrl, &lim, true))", () => {
  for (const mapping of ["two-step", "scatterlist"] as const) {
    it(`gives the admin queue the I/O sizes with the 4 KiB virt boundary (${mapping})`, () => {
      const r = new Rig({ mode: "strict", sgl: "byte", mapping, ctrl: { mdts: 0 } });
      const io = r.host.limits;
      const admin = r.host.adminLimits;
      expect(admin.maxHwSectors).toBe(io.maxHwSectors);
      expect(admin.maxSegments).toBe(io.maxSegments);
      expect(admin.maxHwSectors).toBe(256); // 128 KiB: dma_opt_mapping_size under an IOMMU
      expect(admin.maxSegments).toBe(33);
      expect(admin.virtBoundaryMask).toBe(PAGE - 1);
      expect(admin.maxSegmentSize).toBe(0xffffffff);
      expect(admin.dmaAlignment).toBe(3);
      expect(r.checkNoLeaks()).toEqual([]);
    });
  }
});

describe("queue pairs (nvme_alloc_queue, nvme_create_io_queues)", () => {
  it("allocates each CQ before its SQ, every I/O queue before creating any, CQ created first", () => {
    const r = new Rig({ mode: "strict", sgl: "none", noEnable: true, host: { ioQueues: 2 } });
    const debug = r.debug;
    if (debug === null) throw new Error("dma-debug is off");
    const events: string[] = [];
    const alloc = debug.allocCoherent.bind(debug);
    debug.allocCoherent = (dev, addr, cpuAddr, size) => {
      events.push(`alloc ${size}`);
      alloc(dev, addr, cpuAddr, size);
    };
    const write = r.ctrl.writeReg32.bind(r.ctrl);
    r.ctrl.writeReg32 = (off, v) => {
      if (off === NVME_REG.DBS) events.push("admin sq doorbell");
      write(off, v);
    };
    r.host.enable();
    // Admin queue (depth 32): CQ 512 bytes, then SQ 2 KiB.
    expect(events.slice(0, 2)).toEqual(["alloc 512", "alloc 2048"]);
    // I/O queues (depth 1024): both pairs' memory, CQ 16 KiB before SQ 64 KiB, then the four
    // Create I/O CQ / Create I/O SQ commands.
    const from = events.indexOf("alloc 16384");
    expect(events.slice(from)).toEqual([
      "alloc 16384",
      "alloc 65536",
      "alloc 16384",
      "alloc 65536",
      "admin sq doorbell",
      "admin sq doorbell",
      "admin sq doorbell",
      "admin sq doorbell",
    ]);
    // Under the IOMMU's top-down IOVA allocator the first-allocated CQ sits above its SQ.
    for (const q of r.host.queues) expect(q.cq.dmaAddr).toBeGreaterThan(q.sq.dmaAddr);
    expect(r.ctrl.counters.c.adminCommands).toBeGreaterThanOrEqual(6);
    const { bv, data } = pages(r, 3, 18);
    expect(r.io("write", 0, bv)).toBe(OK);
    const back = r.bvecs(r.scattered(3, 19).map((p) => [p, PAGE] as const));
    expect(r.io("read", 0, back)).toBe(OK);
    expect(Buffer.compare(r.gather(back), data)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("scatterlist driver: SGL choice by mapped entries (nvme_pci_use_sgls(dev, req, sgt.nents))", () => {
  it("sends 4 x 16 KiB scattered chunks merged by a strict IOMMU as one inline SGL Data Block", () => {
    const r = new Rig({ mode: "strict", mapping: "scatterlist", sgl: "byte" });
    const parts: [number, number][] = [];
    for (let i = 0; i < 4; i++) {
      parts.push([r.contiguous(2), 16 * KiB]);
      r.contiguous(2); // keeps the chunks apart
    }
    const bv = r.bvecs(parts);
    const data = pattern(64 * KiB, 20);
    r.scatter(bv, data);
    const req = r.request(REQ_OP.WRITE, bv);
    expect(req.nrPhysSegments).toBe(4); // 16 KiB average: below the 32 KiB threshold
    const ctx = r.mapContext();
    const iod = r.iod();
    expect(nvmeMapDataScatterlist(ctx, iod, req)).toBe(OK);
    expect(iod.sgt?.nents).toBe(1);
    expect(iod.cmd[SQE.FLAGS]).not.toBe(0);
    expect(Math.floor((iod.cmd[SQE.SGL_TYPE] as number) / 16)).toBe(NVME_SGL_TYPE.DATA);
    expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(64 * KiB);
    expect(getU64(iod.cmd, SQE.SGL_ADDR)).toBe(iod.sgt?.sgl[0]?.dmaAddress);
    expect(iod.nrDescriptors).toBe(0);
    expect(r.host.small.inUse + r.host.large.inUse).toBe(0);
    const view = r.deviceView(iod.cmd, req.dataLen);
    expect(view.status).toBe(0);
    expect(Buffer.compare(view.bytes, data)).toBe(0);
    nvmeUnmapDataScatterlist(ctx, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("keeps PRPs for the same chunks without an IOMMU (four entries, 16 KiB average)", () => {
    const r = new Rig({ mode: "none", mapping: "scatterlist", sgl: "byte" });
    const parts: [number, number][] = [];
    for (let i = 0; i < 4; i++) {
      parts.push([r.contiguous(2), 16 * KiB]);
      r.contiguous(2);
    }
    const bv = r.bvecs(parts);
    const req = r.request(REQ_OP.WRITE, bv);
    const ctx = r.mapContext();
    const iod = r.iod();
    expect(nvmeMapDataScatterlist(ctx, iod, req)).toBe(OK);
    expect(iod.sgt?.nents).toBe(4);
    expect(iod.cmd[SQE.FLAGS]).toBe(0);
    nvmeUnmapDataScatterlist(ctx, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});
