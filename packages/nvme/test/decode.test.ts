/**
 * The field decoders of the trace page (spec/decode.ts, spec/decode-dptr.ts): commands the host
 * really builds (reads of 4 KiB, 8 KiB, 12 KiB, 2 MiB and a chained PRP list, SGL writes) and
 * the queue-creation commands of bring-up, decoded field by field against what the host set;
 * completions (a failed one with DNR); SGL segments with every descriptor type; PRP lists that
 * chain or start inside a page; addresses above 2^32, 2^48 and 2^53.
 */
import { type BioVec, bioFromBvecs, getU16, getU64, setU32, setU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  CQE_SIZE,
  NVME_CMD,
  NVME_SC,
  NVME_SGL_SUBTYPE,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  NvmeError,
  type NvmeField,
  type NvmeQueue,
  SQE,
  SQE_SIZE,
  decodeCqe,
  decodePrpList,
  decodeSglSegment,
  decodeSqe,
  nvmeCid,
  setCqe,
  setRwLbas,
  setSglDesc,
} from "../src/index.ts";
import { FOUR_GIB, KiB, MiB, OK, Rig, type RigOptions, rawRw } from "../src/testing/index.ts";

const PAGE = 4096;
const LBA = 512;

/** The fields by name (the first of each name). */
function byName(fields: readonly NvmeField[]): Record<string, NvmeField> {
  const out: Record<string, NvmeField> = {};
  for (const f of fields) out[f.name] ??= f;
  return out;
}

/** The value of field `name`, failing the test when it is missing. */
function val(fields: Record<string, NvmeField>, name: string): number {
  const f = fields[name];
  if (f === undefined) throw new Error(`no field ${name}`);
  return f.value;
}

interface Submitted {
  readonly r: Rig;
  readonly q: NvmeQueue;
  /** The 64 bytes the host copied into the submission queue. */
  readonly sqe: Uint8Array;
  /** The command identifier the host gave it (Linux `nvme_cid`). */
  readonly cid: number;
  /** Waits for the completion and checks the bio succeeded and nothing leaked. */
  finish(): void;
}

/**
 * Submits one bio through the host (`submitBio`: the request is split, mapped and copied into
 * the SQ as Linux does) and returns the entry in the SQ before the controller runs, while the
 * descriptors it points at are still allocated.
 */
function submit(r: Rig, op: "read" | "write", sector: number, bvecs: readonly BioVec[]): Submitted {
  let status = -1;
  const bio = bioFromBvecs(op, sector, bvecs);
  bio.endIo = (b) => (status = b.status);
  const reqs = r.host.submitBio(bio);
  expect(reqs.length).toBe(1);
  const q = r.host.queues[1] as NvmeQueue;
  const slot = (q.sqTail + q.depth - 1) % q.depth;
  const sqe = r.memory.readBytes(q.sq.cpuAddr + slot * SQE_SIZE, SQE_SIZE);
  const iod = q.iods.find((i) => i.req === reqs[0]);
  if (iod === undefined) throw new Error("no iod holds the request");
  return {
    r,
    q,
    sqe,
    cid: nvmeCid(iod.genctr, iod.tag),
    finish() {
      r.host.drain();
      expect(status).toBe(OK);
      expect(r.checkNoLeaks()).toEqual([]);
    },
  };
}

/** The bytes of PRP list page memory from `addr` to the end of its page (no IOMMU: DMA = phys). */
function listPage(r: Rig, addr: number): Uint8Array {
  return r.memory.readBytes(addr, PAGE - (addr % PAGE));
}

/** Checks the fields every read or write carries against what the host set. */
function expectRw(
  s: Submitted,
  f: Record<string, NvmeField>,
  op: number,
  slba: number,
  blocks: number,
): void {
  expect(val(f, "OPC")).toBe(op);
  expect(val(f, "CID")).toBe(s.cid);
  expect(val(f, "NSID")).toBe(1);
  expect(val(f, "SLBA")).toBe(slba);
  expect(val(f, "NLB")).toBe(blocks - 1);
  expect(f.NLB?.text).toBe(`0's based: ${blocks} block${blocks === 1 ? "" : "s"}`);
  expect(val(f, "FUSE")).toBe(0);
  expect(val(f, "FUA")).toBe(0);
  expect(val(f, "LR")).toBe(0);
  expect(val(f, "PRINFO")).toBe(0);
  expect(val(f, "DSM")).toBe(0);
  expect(val(f, "MPTR")).toBe(0);
}

function prpRig(o: RigOptions = {}): Rig {
  return new Rig({ mode: "none", sgl: "none", ...o });
}

describe("decodeSqe: reads the host builds with PRPs", () => {
  it("decodes a 4 KiB read: CDW0, NSID, PRP1 above 4 GiB, no PRP2, SLBA and NLB", () => {
    const r = prpRig();
    const [p] = r.highPages(1) as [number];
    expect(p).toBeGreaterThan(FOUR_GIB);
    const s = submit(r, "read", 24, r.bvecs([[p, PAGE]]));
    const fields = decodeSqe(s.sqe);
    const f = byName(fields);
    expectRw(s, f, NVME_CMD.READ, 24, PAGE / LBA);
    expect(val(f, "PSDT")).toBe(0);
    expect(f.PSDT?.text).toBe("00b PRP");
    expect(val(f, "PRP1")).toBe(p);
    expect(f.PRP1?.text).toBe(`0x${p.toString(16)}`);
    expect(val(f, "PRP2")).toBe(0);
    expect(f.PRP2?.text).toBe("0 (not used)");
    // The layout of the fields, in the specification's notation.
    expect(f.OPC).toMatchObject({
      offset: 0,
      size: 1,
      bits: "07:00",
      dword: "CDW0",
      label: "Opcode",
      text: "02h Read (controller to host)",
    });
    expect(f.FUSE).toMatchObject({ offset: 1, size: 1, bits: "09:08", dword: "CDW0" });
    expect(f.PSDT).toMatchObject({ offset: 1, size: 1, bits: "15:14", dword: "CDW0" });
    expect(f.CID).toMatchObject({ offset: 2, size: 2, bits: "31:16", dword: "CDW0" });
    expect(f.NSID).toMatchObject({ offset: 4, size: 4, bits: "31:00", dword: "CDW1" });
    expect(f.MPTR).toMatchObject({ offset: 16, size: 8, bits: "63:00", dword: "CDW4-5" });
    expect(f.PRP1).toMatchObject({ offset: 24, size: 8, bits: "63:00", dword: "CDW6-7" });
    expect(f.PRP2).toMatchObject({ offset: 32, size: 8, bits: "63:00", dword: "CDW8-9" });
    expect(f.SLBA).toMatchObject({ offset: 40, size: 8, bits: "63:00", dword: "CDW10-11" });
    expect(f.NLB).toMatchObject({ offset: 48, size: 2, bits: "15:00", dword: "CDW12" });
    expect(f.PRINFO).toMatchObject({ offset: 51, size: 1, bits: "29:26", dword: "CDW12" });
    expect(f.FUA).toMatchObject({ offset: 51, size: 1, bits: "30", dword: "CDW12" });
    expect(f.LR).toMatchObject({ offset: 51, size: 1, bits: "31", dword: "CDW12" });
    expect(f.DSM).toMatchObject({ offset: 52, size: 1, bits: "07:00", dword: "CDW13" });
    expect(f.EILBRT).toMatchObject({ offset: 56, size: 4, dword: "CDW14" });
    expect(f.ELBATM).toMatchObject({ offset: 62, size: 2, bits: "31:16", dword: "CDW15" });
    // A read has no directive fields; every field lies inside the 64 bytes.
    expect(f.DTYPE).toBeUndefined();
    for (const x of fields) expect(x.offset + x.size).toBeLessThanOrEqual(SQE_SIZE);
    s.finish();
  });

  it("decodes an 8 KiB read whose PRP2 is the second data page (no list)", () => {
    const r = prpRig();
    const [a, b] = r.highPages(2) as [number, number];
    const s = submit(
      r,
      "read",
      0,
      r.bvecs([
        [a, PAGE],
        [b, PAGE],
      ]),
    );
    const f = byName(decodeSqe(s.sqe));
    expectRw(s, f, NVME_CMD.READ, 0, 16);
    expect(val(f, "PRP1")).toBe(a);
    expect(val(f, "PRP2")).toBe(b);
    expect(f.PRP2?.text).toContain("second page or PRP list pointer");
    expect(decodePrpList([], val(f, "PRP1"), 2 * PAGE, PAGE)).toEqual([]);
    s.finish();
  });

  it("decodes a 12 KiB read whose PRP2 points at a list of two data pages", () => {
    const r = prpRig();
    const pages = r.highPages(3) as [number, number, number];
    const s = submit(r, "read", 800, r.bvecs(pages.map((p) => [p, PAGE] as const)));
    const f = byName(decodeSqe(s.sqe));
    expectRw(s, f, NVME_CMD.READ, 800, 24);
    expect(val(f, "PRP1")).toBe(pages[0]);
    const prp2 = val(f, "PRP2");
    expect(prp2).toBe(getU64(s.sqe, SQE.PRP2));
    const list = decodePrpList([listPage(r, prp2)], pages[0], 3 * PAGE, PAGE);
    expect(list).toEqual([
      { page: 0, index: 0, offset: 0, addr: pages[1], role: "data", len: PAGE },
      { page: 0, index: 1, offset: 8, addr: pages[2], role: "data", len: PAGE },
    ]);
    s.finish();
  });

  it("decodes a 2 MiB read: one full list page whose last slot is data, not a pointer", () => {
    const r = prpRig();
    const base = r.contiguous(9);
    const s = submit(r, "read", 0, r.bvecs([[base, 2 * MiB]]));
    const f = byName(decodeSqe(s.sqe));
    expectRw(s, f, NVME_CMD.READ, 0, (2 * MiB) / LBA);
    expect(val(f, "PRP1")).toBe(base);
    const list = decodePrpList([listPage(r, val(f, "PRP2"))], base, 2 * MiB, PAGE);
    expect(list.length).toBe(511);
    expect(list.every((e) => e.role === "data" && e.len === PAGE)).toBe(true);
    expect(list.map((e) => e.addr)).toEqual(list.map((_, i) => base + (i + 1) * PAGE));
    expect(list[510]).toMatchObject({ page: 0, index: 510, offset: 510 * 8 });
    s.finish();
  });

  it("decodes a 2 MiB + 8 KiB read whose list chains to a second page (MDTS 10)", () => {
    const r = prpRig({ ctrl: { mdts: 10 } });
    const base = r.contiguous(10);
    const len = 2 * MiB + 2 * PAGE;
    const s = submit(r, "read", 4096, r.bvecs([[base, len]]));
    const f = byName(decodeSqe(s.sqe));
    expectRw(s, f, NVME_CMD.READ, 4096, len / LBA);
    expect(val(f, "PRP1")).toBe(base);
    // With the first page only, the decode ends at the pointer to the page not given.
    const first = listPage(r, val(f, "PRP2"));
    const partial = decodePrpList([first], base, len, PAGE);
    expect(partial.length).toBe(512);
    const ptr = partial[511];
    expect(ptr).toMatchObject({ page: 0, index: 511, offset: 4088, role: "list-pointer", len: 0 });
    // Read the page it points at and decode the whole list.
    const list = decodePrpList([first, listPage(r, ptr?.addr ?? -1)], base, len, PAGE);
    expect(list.length).toBe(514);
    expect(list.slice(0, 512)).toEqual(partial);
    expect(list.slice(512)).toEqual([
      { page: 1, index: 0, offset: 0, addr: base + 512 * PAGE, role: "data", len: PAGE },
      { page: 1, index: 1, offset: 8, addr: base + 513 * PAGE, role: "data", len: PAGE },
    ]);
    const data = list.filter((e) => e.role === "data");
    expect(data.map((e) => e.addr)).toEqual(data.map((_, i) => base + (i + 1) * PAGE));
    expect(data.reduce((n, e) => n + e.len, 0)).toBe(len - PAGE);
    s.finish();
  });
});

describe("decodeSqe: SGL writes on an SGL-capable controller", () => {
  it("decodes a write of four 32 KiB segments: SGL1 a Last Segment over four Data Blocks", () => {
    const r = new Rig({ mode: "none", sgl: "byte" });
    const chunks: number[] = [];
    for (let i = 0; i < 4; i++) {
      chunks.push(r.contiguous(3));
      r.contiguous(3); // a spacer: no two chunks merge
    }
    const s = submit(r, "write", 64, r.bvecs(chunks.map((c) => [c, 32 * KiB] as const)));
    const fields = decodeSqe(s.sqe);
    const f = byName(fields);
    expectRw(s, f, NVME_CMD.WRITE, 64, (128 * KiB) / LBA);
    expect(f.OPC?.text).toBe("01h Write (host to controller)");
    expect(val(f, "PSDT")).toBe(1);
    expect(f.PSDT?.text).toBe("01b SGL, MPTR a contiguous buffer");
    expect(f.PRP1).toBeUndefined();
    expect(val(f, "SGL1.TYPE")).toBe(NVME_SGL_TYPE.LAST_SEGMENT);
    expect(f["SGL1.TYPE"]).toMatchObject({
      text: "3h Last Segment",
      offset: 39,
      size: 1,
      bits: "31:28",
      dword: "CDW9",
    });
    expect(f["SGL1.SUBTYPE"]).toMatchObject({ value: 0, text: "0h Address", bits: "27:24" });
    expect(f["SGL1.LEN"]).toMatchObject({
      value: 64,
      text: "64 bytes: 4 descriptors in the last segment",
      offset: 32,
      size: 4,
      dword: "CDW8",
    });
    expect(f["SGL1.ADDR"]).toMatchObject({ offset: 24, size: 8, dword: "CDW6-7" });
    // A write carries the directive fields.
    expect(f.DTYPE).toMatchObject({ value: 0, text: "0h no directive", bits: "23:20" });
    expect(f.DSPEC).toMatchObject({ value: 0, offset: 54, size: 2 });
    expect(f.ILBRT).toBeDefined();
    const seg = r.memory.readBytes(val(f, "SGL1.ADDR"), 64);
    const descs = decodeSglSegment(seg);
    expect(descs.map((d) => [d.typeName, d.subtypeName, d.addr, d.len])).toEqual(
      chunks.map((c) => ["Data Block", "Address", c, 32 * KiB]),
    );
    expect(descs.map((d) => d.offset)).toEqual([0, 16, 32, 48]);
    expect(byName(descs[2]?.fields ?? []).ADDR).toMatchObject({
      value: chunks[2],
      offset: 32,
      dword: "DW0-1",
    });
    s.finish();
  });

  it("decodes a 64 KiB single-segment write: SGL1 one Data Block", () => {
    const r = new Rig({ mode: "none", sgl: "byte" });
    const c = r.contiguous(4);
    const s = submit(r, "write", 0, r.bvecs([[c, 64 * KiB]]));
    const f = byName(decodeSqe(s.sqe));
    expectRw(s, f, NVME_CMD.WRITE, 0, 128);
    expect(val(f, "SGL1.TYPE")).toBe(NVME_SGL_TYPE.DATA);
    expect(f["SGL1.TYPE"]?.text).toBe("0h Data Block");
    expect(val(f, "SGL1.ADDR")).toBe(c);
    expect(f["SGL1.LEN"]).toMatchObject({ value: 64 * KiB, text: "65536 bytes" });
    s.finish();
  });
});

describe("decodeSqe: admin commands", () => {
  it("decodes the queue-creation and Identify commands of bring-up from the admin queue", () => {
    const r = prpRig();
    const admin = r.host.queues[0] as NvmeQueue;
    const io = r.host.queues[1] as NvmeQueue;
    const cmds: Record<string, NvmeField>[] = [];
    for (let slot = 0; slot < admin.sqTail; slot++)
      cmds.push(
        byName(
          decodeSqe(r.memory.readBytes(admin.sq.cpuAddr + slot * SQE_SIZE, SQE_SIZE), "admin"),
        ),
      );
    const names = cmds.map((f) => f.OPC?.text);
    expect(names).toContain("06h Identify (controller to host)");
    const idCtrl = cmds.find((f) => f.OPC?.value === 0x06 && f.CNS?.value === 1);
    expect(idCtrl?.CNS?.text).toBe("01h Identify Controller");
    const cq = cmds.find((f) => f.OPC?.value === 0x05);
    expect(cq?.OPC?.text).toBe("05h Create I/O Completion Queue (host to controller)");
    expect(cq?.QID?.value).toBe(1);
    expect(cq?.QSIZE?.text).toBe(`0's based: ${io.depth} entries`);
    expect(cq?.PC?.value).toBe(1);
    expect(cq?.IEN?.text).toBe("0b polled");
    expect(cq?.PRP1?.value).toBe(io.cq.dmaAddr);
    const sq = cmds.find((f) => f.OPC?.value === 0x01);
    expect(sq?.OPC?.text).toBe("01h Create I/O Submission Queue (host to controller)");
    expect(sq?.CQID?.value).toBe(1);
    expect(sq?.QSIZE?.value).toBe(io.depth - 1);
    expect(sq?.PRP1?.value).toBe(io.sq.dmaAddr);
    // Create I/O CQ is created before its SQ (Linux `nvme_create_queue`).
    expect(cmds.indexOf(cq ?? {})).toBeLessThan(cmds.indexOf(sq ?? {}));
    // The same opcode on an I/O queue is a Write.
    const raw = r.memory.readBytes(admin.sq.cpuAddr + cmds.indexOf(sq ?? {}) * SQE_SIZE, SQE_SIZE);
    expect(byName(decodeSqe(raw)).OPC?.text).toBe("01h Write (host to controller)");
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("names unknown and vendor specific opcodes, reserved PSDT and raw command dwords", () => {
    const cmd = new Uint8Array(SQE_SIZE);
    cmd[SQE.OPCODE] = 0x9d;
    cmd[SQE.FLAGS] = 0xc1; // PSDT 11b, FUSE 01b
    setU32(cmd, SQE.CDW10, 0xdeadbeef);
    const f = byName(decodeSqe(cmd));
    expect(f.OPC?.text).toBe("9Dh vendor specific (host to controller)");
    expect(f.FUSE?.text).toBe("01b fused, first command");
    expect(f.PSDT?.text).toBe("11b reserved");
    expect(f.DPTR?.label).toBe("Data Pointer (PSDT reserved)");
    expect(f.CDW10).toMatchObject({ value: 0xdeadbeef, text: "DEADBEEFh (command specific)" });
    cmd[SQE.OPCODE] = 0x3f;
    expect(byName(decodeSqe(cmd, "admin")).OPC?.text).toBe(
      "3Fh unknown admin opcode (bidirectional)",
    );
    expect(() => decodeSqe(new Uint8Array(63))).toThrow(NvmeError);
  });
});

describe("decodeCqe", () => {
  it("decodes the failed completion of a read past the namespace: LBA Out of Range with DNR", () => {
    const r = prpRig();
    const [p] = r.highPages(1) as [number];
    const q = r.host.queues[1] as NvmeQueue;
    const cmd = rawRw(NVME_CMD.READ, 0, 8, 5);
    setRwLbas(cmd, 2 ** 21, 8); // the namespace has 2^21 blocks
    setU64(cmd, SQE.PRP1, p);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.LBA_RANGE + NVME_STATUS_DNR);
    const slot = (q.cqHead + q.depth - 1) % q.depth;
    const cqe = r.memory.readBytes(q.cq.cpuAddr + slot * CQE_SIZE, CQE_SIZE);
    const fields = decodeCqe(cqe);
    const f = byName(fields);
    expect(f.CID).toMatchObject({ value: 5, offset: 12, size: 2, bits: "15:00", dword: "DW3" });
    expect(f.SQID).toMatchObject({ value: 1, offset: 10, size: 2, bits: "31:16", dword: "DW2" });
    expect(f.SQHD?.value).toBe(getU16(cqe, 8));
    expect(f.P).toMatchObject({ value: 1, offset: 14, size: 1, bits: "16" });
    expect(f.SC).toMatchObject({
      value: 0x80,
      text: "80h LBA Out of Range",
      offset: 14,
      size: 2,
      bits: "24:17",
    });
    expect(f.SCT).toMatchObject({
      value: 0,
      text: "0h Generic Command Status",
      offset: 15,
      size: 1,
    });
    expect(f.CRD?.value).toBe(0);
    expect(f.M?.value).toBe(0);
    expect(f.DNR).toMatchObject({ value: 1, text: "1b do not retry", offset: 15, bits: "31" });
    expect(fields.map((x) => x.name)).toEqual([
      "DW0",
      "DW1",
      "SQHD",
      "SQID",
      "CID",
      "P",
      "SC",
      "SCT",
      "CRD",
      "M",
      "DNR",
    ]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("decodes a successful completion and a media error with CRD and More", () => {
    const e = new Uint8Array(CQE_SIZE);
    setCqe(e, { result: 0x12345678, sqhd: 7, sqid: 2, cid: 0x1003, status: 0, phase: 0 });
    const ok = byName(decodeCqe(e));
    expect(ok.SC?.text).toBe("00h Successful Completion");
    expect(ok.DW0).toMatchObject({ value: 0x12345678, text: "12345678h" });
    expect([ok.SQHD?.value, ok.SQID?.value, ok.CID?.value, ok.P?.value]).toEqual([7, 2, 0x1003, 0]);
    expect(ok.DNR?.text).toBe("0b may be retried");
    // Linux's shifted status: SC in bits 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14.
    const status = NVME_SC.READ_ERROR + 1 * 0x800 + 0x2000 + NVME_STATUS_DNR;
    setCqe(e, { result: 0, sqhd: 0, sqid: 1, cid: 9, status, phase: 1 });
    const bad = byName(decodeCqe(e));
    expect(bad.SC?.text).toBe("81h Unrecovered Read Error");
    expect(bad.SCT?.text).toBe("2h Media and Data Integrity Errors");
    expect(bad.CRD?.text).toBe("01b Command Retry Delay Time 1");
    expect(bad.M?.value).toBe(1);
    expect(bad.DNR?.value).toBe(1);
    expect(() => decodeCqe(new Uint8Array(8))).toThrow(NvmeError);
  });
});

describe("decodeSglSegment", () => {
  /** Writes a Keyed Data Block: 24-bit length in bytes 10:8, key in bytes 14:11. */
  function keyed(b: Uint8Array, off: number, addr: number, len: number, key: number): void {
    setSglDesc(b, off, addr, 0, NVME_SGL_TYPE.KEYED_DATA);
    setU32(b, off + 8, len);
    b[off + 11] = key % 256;
    setU32(b, off + 12, Math.floor(key / 256)); // bytes 12..14 (byte 15, the type, restored)
    b[off + 15] = NVME_SGL_TYPE.KEYED_DATA * 16;
  }

  it("decodes every descriptor type, sub types, and addresses above 2^48", () => {
    const hi = 2 ** 48 + 0x1000;
    const top = 2 ** 53 - PAGE;
    const b = new Uint8Array(16 * 10);
    setSglDesc(b, 0, hi, 3 * KiB, NVME_SGL_TYPE.DATA);
    setSglDesc(b, 16, 0, 2 * KiB, NVME_SGL_TYPE.BIT_BUCKET);
    setSglDesc(b, 32, top, 48, NVME_SGL_TYPE.SEGMENT);
    setSglDesc(b, 48, hi + PAGE, 16, NVME_SGL_TYPE.LAST_SEGMENT);
    keyed(b, 64, hi + 2 * PAGE, 0x123456, 0xdeadbeef);
    setSglDesc(b, 80, 0, 512, NVME_SGL_TYPE.TRANSPORT_DATA);
    setSglDesc(b, 96, 0x1000, 512, 0x6);
    setSglDesc(b, 112, 0x2000, 7, 0xf);
    setSglDesc(b, 128, 0x40, 4096, NVME_SGL_TYPE.DATA, NVME_SGL_SUBTYPE.OFFSET);
    setSglDesc(b, 144, 0x80, 4096, NVME_SGL_TYPE.DATA, 0xa);
    const d = decodeSglSegment(b);
    expect(d.map((x) => [x.index, x.offset, x.type, x.typeName, x.subtype, x.subtypeName])).toEqual(
      [
        [0, 0, 0, "Data Block", 0, "Address"],
        [1, 16, 1, "Bit Bucket", 0, "Address"],
        [2, 32, 2, "Segment", 0, "Address"],
        [3, 48, 3, "Last Segment", 0, "Address"],
        [4, 64, 4, "Keyed Data Block", 0, "Address"],
        [5, 80, 5, "Transport Data Block", 0, "Address"],
        [6, 96, 6, "Reserved", 0, "Address"],
        [7, 112, 15, "Vendor Specific", 0, "Address"],
        [8, 128, 0, "Data Block", 1, "Offset"],
        [9, 144, 0, "Data Block", 10, "Transport Specific"],
      ],
    );
    expect(d.map((x) => [x.addr, x.len])).toEqual([
      [hi, 3 * KiB],
      [0, 2 * KiB],
      [top, 48],
      [hi + PAGE, 16],
      [hi + 2 * PAGE, 0x123456],
      [0, 512],
      [0x1000, 512],
      [0x2000, 7],
      [0x40, 4096],
      [0x80, 4096],
    ]);
    const names = d.map((x) => x.fields.map((y) => y.name).join(" "));
    expect(names).toEqual([
      "ADDR LEN TYPE SUBTYPE",
      "LEN TYPE SUBTYPE",
      "ADDR LEN TYPE SUBTYPE",
      "ADDR LEN TYPE SUBTYPE",
      "ADDR LEN KEY TYPE SUBTYPE",
      "LEN TYPE SUBTYPE",
      "DTS DTS DTS TYPE SUBTYPE",
      "DTS DTS DTS TYPE SUBTYPE",
      "ADDR LEN TYPE SUBTYPE",
      "ADDR LEN TYPE SUBTYPE",
    ]);
    const data = byName(d[0]?.fields ?? []);
    expect(data.ADDR).toMatchObject({ value: hi, text: "0x1000000001000", offset: 0, size: 8 });
    expect(data.LEN).toMatchObject({
      value: 3072,
      text: "3072 bytes",
      offset: 8,
      size: 4,
      dword: "DW2",
    });
    expect(data.TYPE).toMatchObject({ offset: 15, size: 1, bits: "31:28", dword: "DW3" });
    expect(byName(d[1]?.fields ?? []).LEN?.text).toBe(
      "2048 bytes to discard (controller to host transfers)",
    );
    const seg = byName(d[2]?.fields ?? []);
    expect(seg.ADDR).toMatchObject({
      value: top,
      label: "Address of the next segment",
      offset: 32,
    });
    expect(seg.LEN?.text).toBe("48 bytes: 3 descriptors in the next segment");
    expect(byName(d[3]?.fields ?? []).LEN?.text).toBe("16 bytes: 1 descriptor in the last segment");
    const key = byName(d[4]?.fields ?? []);
    expect(key.LEN).toMatchObject({ value: 0x123456, offset: 72, size: 3, bits: "23:00" });
    expect(key.KEY).toMatchObject({
      value: 0xdeadbeef,
      text: "DEADBEEFh",
      offset: 75,
      size: 4,
      bits: "55:24",
      dword: "DW2-3",
    });
    expect(byName(d[8]?.fields ?? []).ADDR?.label).toBe("Address (an offset: Offset sub type)");
  });

  it("reports a 64-bit address at or above 2^53 as -1 with its exact value in the text", () => {
    const b = new Uint8Array(32);
    setSglDesc(b, 0, 0, 512, NVME_SGL_TYPE.DATA);
    setU32(b, 4, 0x00200000); // 2^53
    setSglDesc(b, 16, 0, 512, NVME_SGL_TYPE.DATA);
    setU32(b, 16, 0xfffffff0);
    setU32(b, 20, 0xffffffff);
    const d = decodeSglSegment(b);
    expect(d.map((x) => x.addr)).toEqual([-1, -1]);
    expect(byName(d[0]?.fields ?? []).ADDR?.text).toBe(
      "0x20000000000000 (at or above 2^53: beyond the model's addresses)",
    );
    expect(byName(d[1]?.fields ?? []).ADDR?.text).toContain("0xfffffffffffffff0");
  });

  it("takes whole descriptors only", () => {
    expect(decodeSglSegment(new Uint8Array(0))).toEqual([]);
    expect(() => decodeSglSegment(new Uint8Array(20))).toThrow(NvmeError);
  });
});

describe("decodePrpList", () => {
  /** A list page of `n` slots holding `entries`. */
  function page(n: number, entries: readonly number[]): Uint8Array {
    const b = new Uint8Array(n * 8);
    entries.forEach((e, i) => setU64(b, i * 8, e));
    return b;
  }

  it("chains over two 4 KiB pages above 2^48: 511 data entries, a pointer, then the rest", () => {
    const prp1 = 2 ** 48 + 0x200; // PRP1 with an offset: 3.5 KiB in its page
    const data = (i: number) => 2 ** 48 + (i + 1) * PAGE;
    const second = 2 ** 48 + 0x4000_0000;
    const p0 = page(512, [...Array.from({ length: 511 }, (_, i) => data(i)), second]);
    const p1 = page(512, [data(511), data(512), data(513)]);
    const length = PAGE - 0x200 + 513 * PAGE + 100;
    const list = decodePrpList([p0, p1], prp1, length, PAGE);
    expect(list.length).toBe(515);
    expect(list.filter((e) => e.role === "list-pointer")).toEqual([
      { page: 0, index: 511, offset: 4088, addr: second, role: "list-pointer", len: 0 },
    ]);
    const onFirst = list.filter((e) => e.page === 0 && e.role === "data");
    expect(onFirst.length).toBe(511);
    expect(onFirst.every((e, i) => e.index === i && e.addr === data(i) && e.len === PAGE)).toBe(
      true,
    );
    expect(list.slice(512)).toEqual([
      { page: 1, index: 0, offset: 0, addr: data(511), role: "data", len: PAGE },
      { page: 1, index: 1, offset: 8, addr: data(512), role: "data", len: PAGE },
      { page: 1, index: 2, offset: 16, addr: data(513), role: "data", len: 100 },
    ]);
    expect(list.reduce((n, e) => n + e.len, 0)).toBe(length - (PAGE - 0x200));
    // Pages past the end of the list are not read.
    expect(decodePrpList([p0, p1, page(1, [0])], prp1, length, PAGE)).toEqual(list);
  });

  it("takes a first page that starts inside its page (SPDK's list at offset 0x48: 503 slots)", () => {
    const entries = Array.from({ length: 503 }, (_, i) => FOUR_GIB + (i + 1) * PAGE);
    const first = page((PAGE - 0x48) / 8, entries);
    // 503 entries after PRP1: the last slot is data.
    const fits = decodePrpList([first], FOUR_GIB, 504 * PAGE, PAGE);
    expect(fits.length).toBe(503);
    expect(fits[502]).toMatchObject({ index: 502, role: "data", len: PAGE });
    // One page more: the last slot is a pointer, to a page not given.
    const more = decodePrpList([first], FOUR_GIB, 505 * PAGE, PAGE);
    expect(more[502]).toMatchObject({ index: 502, role: "list-pointer", len: 0 });
  });

  it("needs no list when the transfer ends in PRP1's page or the next", () => {
    expect(decodePrpList([], 0x1000, PAGE, PAGE)).toEqual([]);
    expect(decodePrpList([], 0x1800, PAGE, PAGE)).toEqual([]); // PRP2 is the second page
    expect(decodePrpList([], 0x1000, 2 * PAGE, PAGE)).toEqual([]);
    // 8 KiB from offset 0x200 crosses two page boundaries: PRP2 is a list.
    expect(decodePrpList([page(2, [0x2000, 0x3000])], 0x1200, 2 * PAGE, PAGE)).toEqual([
      { page: 0, index: 0, offset: 0, addr: 0x2000, role: "data", len: PAGE },
      { page: 0, index: 1, offset: 8, addr: 0x3000, role: "data", len: 0x200 },
    ]);
  });

  it("uses the memory page size it is given (16 KiB)", () => {
    const big = 16 * KiB;
    const list = decodePrpList([page(3, [big, 2 * big, 3 * big])], 0, 3 * big + 1, big);
    expect(list.map((e) => [e.role, e.len])).toEqual([
      ["data", big],
      ["data", big],
      ["data", 1],
    ]);
  });

  it("rejects a page size that is not a memory page, a page too long, a bad PRP1 or length", () => {
    expect(() => decodePrpList([], 0, PAGE * 3, 3000)).toThrow(NvmeError);
    expect(() => decodePrpList([], 0, PAGE * 3, 2048)).toThrow(NvmeError);
    expect(() => decodePrpList([new Uint8Array(PAGE + 8)], 0, PAGE * 3, PAGE)).toThrow(NvmeError);
    expect(() => decodePrpList([new Uint8Array(4)], 0, PAGE * 3, PAGE)).toThrow(NvmeError);
    expect(() => decodePrpList([], -1, PAGE, PAGE)).toThrow(NvmeError);
    expect(() => decodePrpList([], 0, 0, PAGE)).toThrow(NvmeError);
  });
});
