/**
 * Shadow doorbells (NVMe Base 2.2 §5.9 Doorbell Buffer Config; QEMU `nvme_dbbuf_config`,
 * `nvme_process_sq`, `nvme_post_cqes`; Linux `nvme_dbbuf_dma_alloc`, `nvme_dbbuf_set`,
 * `nvme_dbbuf_update_and_check_event`): OACS bit 8, the bring-up command, correct I/O through the
 * IOMMU, fewer MMIO doorbells while the controller keeps up, and the device's extra DMA (each a
 * translation) per command. Off by default, with nothing changed.
 */
import { BLK_STS, type BlkStatus, REQ_OP, blkRqFromBios, bioFromBvecs } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import { setU32, setU64 } from "@dmasim/bvec";
import { dmaAllocCoherent, dmaFreeCoherent } from "@dmasim/dma-core";
import {
  NVME_ADMIN,
  NVME_CTRL_OACS_DBBUF_SUPP,
  NVME_IDENTIFY_DATA_SIZE,
  NVME_ID_CNS,
  SQE,
  SQE_SIZE,
  nvmeDbbufNeedEvent,
  readIdCtrl,
} from "../src/index.ts";
import { OK, Rig, type RigOptions, pattern } from "../src/testing/index.ts";

const PAGE = 4096;

function rig(shadow: boolean | undefined, o: RigOptions = {}): Rig {
  return new Rig({
    mode: "strict",
    sgl: "byte",
    ...o,
    ctrl: shadow === undefined ? {} : { shadowDoorbells: shadow },
  });
}

/** Writes `n` single-page requests one after another, each drained; returns the data. */
function sequential(r: Rig, n: number, seed: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const [p] = r.scattered(1, seed + k) as [number];
    out.push(r.fill(p, PAGE, seed + k));
    expect(r.io("write", k * 8, r.bvecs([[p, PAGE]]))).toBe(OK);
  }
  return out;
}

/**
 * A closed loop at queue depth 1 driven by the completion interrupt (the submitting side reacts
 * to each completion with the next request, as fio does): `n` writes in all.
 */
function closedLoop(r: Rig, n: number, seed: number): BlkStatus[] {
  const done: BlkStatus[] = [];
  const bufs = r.scattered(n, seed);
  let next = 0;
  const submitNext = (): void => {
    if (next >= n) return;
    const k = next++;
    const p = bufs[k] as number;
    r.fill(p, PAGE, seed + k);
    const req = blkRqFromBios(r.host.limits, [
      bioFromBvecs(REQ_OP.WRITE, k * 8, r.bvecs([[p, PAGE]])),
    ]);
    expect(
      r.host.queueRq(req, (st) => {
        done.push(st);
        submitNext();
      }),
    ).toBe(OK);
  };
  r.ctrl.irq = (cqid) => {
    if (cqid !== 0) r.host.pollCq(cqid);
  };
  submitNext();
  r.host.drain();
  r.ctrl.irq = undefined;
  return done;
}

describe("shadow doorbells: bring-up", () => {
  it("advertises OACS bit 8 only when enabled", () => {
    for (const on of [true, false]) {
      const r = rig(on);
      // Identify Controller on the admin queue, with a CID the host has no command under.
      const buf = dmaAllocCoherent(r.dev, NVME_IDENTIFY_DATA_SIZE);
      const cmd = new Uint8Array(SQE_SIZE);
      cmd[SQE.OPCODE] = NVME_ADMIN.IDENTIFY;
      setU64(cmd, SQE.PRP1, buf.dmaAddr);
      setU32(cmd, SQE.CDW10, NVME_ID_CNS.CTRL);
      expect(r.rawCommand(cmd, 0)).toBe(0);
      const id = readIdCtrl(r.memory.readBytes(buf.cpuAddr, NVME_IDENTIFY_DATA_SIZE));
      dmaFreeCoherent(r.dev, NVME_IDENTIFY_DATA_SIZE, buf.cpuAddr, buf.dmaAddr);
      expect(Math.floor(id.oacs / NVME_CTRL_OACS_DBBUF_SUPP) % 2).toBe(on ? 1 : 0);
      expect(r.checkNoLeaks()).toEqual([]);
    }
  });

  it("sends Doorbell Buffer Config with two IOVA-mapped pages, after the I/O queues exist", () => {
    const r = rig(true, { host: { ioQueues: 2 } });
    expect(r.host.shadowDoorbells).toBe(true);
    expect(r.ctrl.dbbuf).toBe(true);
    // Identify x2, Create CQ/SQ x2 queues, Doorbell Buffer Config.
    expect(r.ctrl.counters.c.adminCommands).toBe(2 + 4 + 1);
    // The controller wrote every existing queue's tail and head into the shadow page (admin
    // SQ/CQ and two I/O pairs: six slots) through the IOMMU, and nothing faulted.
    expect(r.ctrl.counters.c.shadowWrites).toBeGreaterThanOrEqual(6);
    expect(r.ctrl.counters.c.dmaFaults).toBe(0);
    expect(r.ctrl.fatal).toBe(false);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("leaves everything as before when off (the default)", () => {
    const a = rig(undefined);
    const b = rig(false);
    for (const r of [a, b]) {
      expect(r.host.shadowDoorbells).toBe(false);
      expect(r.ctrl.dbbuf).toBe(false);
      sequential(r, 4, 10);
    }
    expect(a.ctrl.counters.c.adminCommands).toBe(2 + 2);
    expect(a.ctrl.counters.snapshot()).toEqual(b.ctrl.counters.snapshot());
    expect(a.host.counters.snapshot()).toEqual(b.host.counters.snapshot());
    expect(a.domain?.counters.c.translations).toBe(b.domain?.counters.c.translations);
    expect(a.ctrl.counters.c.shadowReads + a.ctrl.counters.c.eventIdxWrites).toBe(0);
    expect(a.host.counters.c.shadowWrites + a.host.counters.c.mmioDoorbellsSkipped).toBe(0);
    expect(a.checkNoLeaks()).toEqual([]);
    expect(b.checkNoLeaks()).toEqual([]);
  });
});

describe("shadow doorbells: I/O", () => {
  for (const mapping of ["two-step", "scatterlist"] as const) {
    it(`writes and reads back correctly through the IOMMU (${mapping})`, () => {
      const r = rig(true, { mapping });
      const data = sequential(r, 6, 20);
      for (const [k, d] of data.entries()) {
        const [p] = r.scattered(1, 50 + k) as [number];
        expect(r.io("read", k * 8, r.bvecs([[p, PAGE]]))).toBe(OK);
        expect(Buffer.compare(r.gather(r.bvecs([[p, PAGE]])), d)).toBe(0);
      }
      expect(r.host.counters.c.shadowWrites).toBeGreaterThan(0);
      expect(r.ctrl.counters.c.shadowReads).toBeGreaterThan(0);
      expect(r.ctrl.counters.c.eventIdxWrites).toBeGreaterThan(0);
      expect(r.checkNoLeaks()).toEqual([]);
    });
  }

  it("writes fewer MMIO SQ doorbells than submissions while the controller keeps up", () => {
    const n = 40;
    const on = rig(true);
    const off = rig(false);
    for (const r of [on, off]) {
      const before = { db: r.host.counters.c.sqDoorbells, sub: r.host.counters.c.submitted };
      expect(closedLoop(r, n, 30)).toEqual(Array(n).fill(BLK_STS.OK));
      const sub = r.host.counters.c.submitted - before.sub;
      const db = r.host.counters.c.sqDoorbells - before.db;
      expect(sub).toBe(n);
      if (r === on) {
        expect(db).toBeLessThan(sub);
        expect(db).toBe(1); // the controller picked up every later entry from the shadow page
        expect(r.host.counters.c.mmioDoorbellsSkipped).toBeGreaterThanOrEqual(n - 1);
      } else {
        expect(db).toBe(sub);
      }
    }
    // The bytes landed.
    for (let k = 0; k < n; k += 13) {
      const ns = new Uint8Array(PAGE);
      on.ctrl.namespaces[0]!.read(k * 8 * 512, ns, 0, PAGE);
      expect(Buffer.compare(ns, pattern(PAGE, 30 + k))).toBe(0);
    }
    expect(on.checkNoLeaks()).toEqual([]);
    expect(off.checkNoLeaks()).toEqual([]);
  });

  it("costs the device five more translations per I/O (QEMU: about five in a guest trace)", () => {
    const n = 8;
    const per: number[] = [];
    for (const shadow of [false, true]) {
      const r = rig(shadow);
      const t0 = r.domain?.counters.c.translations ?? 0;
      sequential(r, n, 40);
      per.push(((r.domain?.counters.c.translations ?? 0) - t0) / n);
      expect(r.checkNoLeaks()).toEqual([]);
    }
    const [off, on] = per as [number, number];
    // Per command: shadow tail read at the doorbell, event index write and tail re-read after
    // the command (QEMU `nvme_process_sq`), CQ event index write and head read before posting
    // (`nvme_post_cqes`).
    expect(on - off).toBe(5);
  });
});

describe("shadow doorbells: nvme_dbbuf_need_event", () => {
  it("rings only when the move passes the event index, modulo 2^16", () => {
    expect(nvmeDbbufNeedEvent(0, 1, 0)).toBe(true); // device saw 0: ring
    expect(nvmeDbbufNeedEvent(0, 2, 1)).toBe(false); // device has not reached 1 yet
    expect(nvmeDbbufNeedEvent(1, 3, 2)).toBe(false);
    expect(nvmeDbbufNeedEvent(2, 3, 2)).toBe(true);
    expect(nvmeDbbufNeedEvent(5, 7, 2)).toBe(true); // 2 -> 7 passes 5
    expect(nvmeDbbufNeedEvent(65535, 1, 65534)).toBe(true); // wraps
    expect(nvmeDbbufNeedEvent(65534, 1, 65535)).toBe(false);
  });
});
