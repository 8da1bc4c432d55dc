/**
 * The controller's command checks in QEMU's order (hw/nvme/ctrl.c `nvme_io_cmd`,
 * `nvme_admin_cmd`, `nvme_flush`, `nvme_del_cq`): namespace IDs, inactive namespaces, fused
 * operations, Flush's NSID and the deletion of a completion queue that is still in use.
 */
import { setU32, setU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  NVME_ADMIN,
  NVME_CMD,
  NVME_NSID_BROADCAST,
  NVME_PSDT,
  NVME_SC,
  NVME_STATUS_DNR,
  SQE,
  SQE_SIZE,
} from "../src/index.ts";
import { rawRw } from "../src/testing/index.ts";
import { walkMachine } from "./walker-helpers.ts";

const DNR = NVME_STATUS_DNR;
const TAG = 200; // an idle tag: the host ignores these completions

/** A one-block read of namespace `nsid` into a mapped page (the rig's device reaches any RAM). */
function read(r: ReturnType<typeof walkMachine>["r"], nsid: number, flags = 0): Uint8Array {
  const [a] = r.highPages(1) as [number];
  const cmd = rawRw(NVME_CMD.READ, 0, 1, TAG);
  setU32(cmd, SQE.NSID, nsid);
  setU64(cmd, SQE.PRP1, a);
  cmd[SQE.FLAGS] = flags;
  return cmd;
}

function admin(op: number, cdw10: number, cid = 20): Uint8Array {
  const cmd = new Uint8Array(SQE_SIZE);
  cmd[SQE.OPCODE] = op;
  cmd[SQE.CID] = cid;
  setU32(cmd, SQE.CDW10, cdw10);
  return cmd;
}

describe("nvme_io_cmd: namespace IDs and fused operations", () => {
  it("0, the broadcast ID and IDs above 256 are Invalid Namespace; an inactive one Invalid Field", () => {
    const { r } = walkMachine();
    expect(r.rawCommand(read(r, 1))).toBe(0);
    for (const nsid of [0, NVME_NSID_BROADCAST, 257, 2 ** 31])
      expect(r.rawCommand(read(r, nsid)), `nsid ${nsid}`).toBe(NVME_SC.INVALID_NS + DNR);
    // A valid ID with no namespace attached (the rig has one).
    expect(r.rawCommand(read(r, 2))).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(r.rawCommand(read(r, 256))).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("checks the namespace before the opcode", () => {
    const { r } = walkMachine();
    const bad = read(r, 0);
    bad[SQE.OPCODE] = 0x7f;
    expect(r.rawCommand(bad)).toBe(NVME_SC.INVALID_NS + DNR);
    const op = read(r, 1);
    op[SQE.OPCODE] = 0x7f;
    expect(r.rawCommand(op)).toBe(NVME_SC.INVALID_OPCODE + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("refuses a fused command with Invalid Field, without DNR", () => {
    const { r } = walkMachine();
    for (const fuse of [1, 2, 3])
      expect(r.rawCommand(read(r, 1, fuse))).toBe(NVME_SC.INVALID_FIELD);
    expect(r.ctrl.errorLog()[0]?.reason).toBe("dmasim_nvme_err_fuse");
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("flushes the broadcast ID or an active namespace; another ID is Invalid Field", () => {
    const { r } = walkMachine();
    const flush = (nsid: number) => {
      const cmd = new Uint8Array(SQE_SIZE);
      cmd[SQE.OPCODE] = NVME_CMD.FLUSH;
      cmd[SQE.CID] = TAG;
      setU32(cmd, SQE.NSID, nsid);
      return r.rawCommand(cmd);
    };
    expect(flush(1)).toBe(0);
    expect(flush(NVME_NSID_BROADCAST)).toBe(0);
    expect(flush(0)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(flush(2)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("nvme_admin_cmd", () => {
  it("checks the opcode before PSDT, and refuses fused admin commands without DNR", () => {
    const { r } = walkMachine();
    const unknown = admin(0x7f, 0);
    unknown[SQE.FLAGS] = 0x40;
    expect(r.rawCommand(unknown, 0)).toBe(NVME_SC.INVALID_OPCODE + DNR);
    const sgl = admin(NVME_ADMIN.DELETE_SQ, 99, 21);
    sgl[SQE.FLAGS] = 0x40;
    expect(r.rawCommand(sgl, 0)).toBe(NVME_SC.INVALID_FIELD + DNR);
    const fused = admin(NVME_ADMIN.DELETE_SQ, 99, 22);
    fused[SQE.FLAGS] = 0x01;
    expect(r.rawCommand(fused, 0)).toBe(NVME_SC.INVALID_FIELD);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("nvme_del_cq: an unknown CQ is Invalid Completion Queue, one still in use Invalid Queue Deletion", () => {
    const { r } = walkMachine();
    expect(r.rawCommand(admin(NVME_ADMIN.DELETE_CQ, 99), 0)).toBe(NVME_SC.CQ_INVALID + DNR);
    expect(r.rawCommand(admin(NVME_ADMIN.DELETE_CQ, 1, 21), 0)).toBe(NVME_SC.INVALID_QUEUE_DEL);
    // The queue pair still works.
    expect(r.rawCommand(read(r, 1))).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("nvme_map_dptr: descriptor counts", () => {
  it("a command refused before any walk (PSDT 11b, SGLs unsupported) counts no descriptor reads", () => {
    const { r } = walkMachine();
    const c = r.ctrl.counters.c;
    // A three-page read: PRP1, and PRP2 pointing at a PRP list of two entries.
    const [p0, p1, p2, list] = r.highPages(4) as [number, number, number, number];
    const lb = new Uint8Array(16);
    setU64(lb, 0, p1);
    setU64(lb, 8, p2);
    r.memory.write(list, lb);
    const cmd = rawRw(NVME_CMD.READ, 0, 3 * (4096 / 512), TAG);
    setU32(cmd, SQE.NSID, 1);
    setU64(cmd, SQE.PRP1, p0);
    setU64(cmd, SQE.PRP2, list);
    expect(r.rawCommand(cmd)).toBe(0);
    const reads = c.descriptorReads;
    const bytes = c.descriptorBytes;
    expect(reads).toBe(1);
    expect(bytes).toBe(16);
    // PSDT 11b: refused before the data pointer is walked.
    const bad = read(r, 1, NVME_PSDT.RESERVED * 64);
    expect(r.rawCommand(bad)).toBe(NVME_SC.INVALID_FIELD + DNR);
    // SGL on a controller without SGL support (the rig's default): refused the same way.
    const sgl = read(r, 1, NVME_PSDT.SGL_MPTR_CONTIGUOUS * 64);
    expect(r.rawCommand(sgl)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(c.descriptorReads).toBe(reads);
    expect(c.descriptorBytes).toBe(bytes);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});
