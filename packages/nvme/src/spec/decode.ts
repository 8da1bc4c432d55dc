/**
 * Decoders of the queue entries for people (the trace page draws them as tables): the 64-byte
 * submission queue entry (NVMe Base 2.2 §4.1: Command Dword 0, NSID, MPTR, the data pointer as
 * PRP1/PRP2 or SGL1 by PSDT) with the dwords of the Read and Write commands of the NVM Command
 * Set 1.1 and of the admin commands the host sends, and the 16-byte completion queue entry (NVMe Base 2.2 §4.2),
 * status named as `nvmeStatusName` names it. Each field comes with its byte range, its bits
 * in the specification's notation and what its value means; see decode-field.ts.
 *
 * An opcode means one command on an admin queue and another on an I/O queue (01h is Create I/O
 * Submission Queue or Write): `decodeSqe` takes the queue kind, I/O by default.
 */
import { getU32 } from "@dmasim/bvec";
import { NvmeError } from "../errors.ts";
import {
  CQE_SIZE,
  NVME_ADMIN,
  NVME_CMD,
  SQE,
  SQE_SIZE,
  nvmeStatusName,
  sqePsdt,
} from "./commands.ts";
import { type DescriptorNames, sglDescriptorFields } from "./decode-dptr.ts";
import {
  type DwordAt,
  type FieldText,
  type NvmeField,
  addrText,
  binB,
  bitField,
  dwBits,
  dwordField,
  flagText,
  hexH,
  plural,
  qwordField,
} from "./decode-field.ts";

/** Admin command opcodes (NVMe Base 2.2 §5, the Opcodes for Admin Commands figure). */
const ADMIN_OPCODES: Readonly<Record<number, string>> = {
  [NVME_ADMIN.DELETE_SQ]: "Delete I/O Submission Queue",
  [NVME_ADMIN.CREATE_SQ]: "Create I/O Submission Queue",
  0x02: "Get Log Page",
  [NVME_ADMIN.DELETE_CQ]: "Delete I/O Completion Queue",
  [NVME_ADMIN.CREATE_CQ]: "Create I/O Completion Queue",
  [NVME_ADMIN.IDENTIFY]: "Identify",
  0x08: "Abort",
  0x09: "Set Features",
  0x0a: "Get Features",
  0x0c: "Asynchronous Event Request",
  0x0d: "Namespace Management",
  0x10: "Firmware Commit",
  0x11: "Firmware Image Download",
  0x14: "Device Self-test",
  0x15: "Namespace Attachment",
  0x18: "Keep Alive",
  0x19: "Directive Send",
  0x1a: "Directive Receive",
  0x1c: "Virtualization Management",
  0x1d: "NVMe-MI Send",
  0x1e: "NVMe-MI Receive",
  [NVME_ADMIN.DBBUF]: "Doorbell Buffer Config",
  0x80: "Format NVM",
  0x81: "Security Send",
  0x82: "Security Receive",
  0x84: "Sanitize",
};

/** NVM command set I/O opcodes (NVM Command Set 1.1, the Opcodes for NVM Commands figure). */
const IO_OPCODES: Readonly<Record<number, string>> = {
  [NVME_CMD.FLUSH]: "Flush",
  [NVME_CMD.WRITE]: "Write",
  [NVME_CMD.READ]: "Read",
  0x04: "Write Uncorrectable",
  0x05: "Compare",
  0x08: "Write Zeroes",
  0x09: "Dataset Management",
  0x0c: "Verify",
  0x0d: "Reservation Register",
  0x0e: "Reservation Report",
  0x11: "Reservation Acquire",
  0x15: "Reservation Release",
  0x19: "Copy",
};

/** The data transfer direction of opcode bits 1:0 (NVMe Base 2.2 §4.1). */
const DIRECTION = ["no data", "host to controller", "controller to host", "bidirectional"];

/** Which queue a command was submitted to: its opcodes are named from that queue's set. */
export type NvmeQueueKind = "io" | "admin";

function opcodeText(kind: NvmeQueueKind): FieldText {
  return (v) => {
    const name = (kind === "admin" ? ADMIN_OPCODES : IO_OPCODES)[v];
    const vendor = kind === "admin" ? v >= 0xc0 : v >= 0x80;
    const what =
      name ?? (vendor ? "vendor specific" : `unknown ${kind === "admin" ? "admin" : "I/O"} opcode`);
    return `${hexH(v, 2)} ${what} (${DIRECTION[v % 4] ?? ""})`;
  };
}

const FUSE = ["normal operation", "fused, first command", "fused, second command", "reserved"];
const PSDT = ["PRP", "SGL, MPTR a contiguous buffer", "SGL, MPTR an SGL segment", "reserved"];

const named =
  (names: readonly string[], width: number): FieldText =>
  (v) =>
    `${binB(v, width)} ${names[v] ?? "reserved"}`;

/** The name of dword `i` of a command and its byte offset. */
const cdw = (i: number): DwordAt => ({ dword: `CDW${i}`, at: 4 * i });

/** SGL1's dwords are the command's CDW6 to CDW9. */
const SGL1_NAMES: DescriptorNames = {
  at: SQE.SGL_ADDR,
  prefix: "SGL1.",
  dword: (i, pair) => (pair === true ? `CDW${6 + i}-${7 + i}` : `CDW${6 + i}`),
};

/**
 * Decodes a 64-byte submission queue entry (NVMe Base 2.2 §4.1) submitted to a queue of
 * `kind`: CDW0 (OPC, FUSE, PSDT, CID), NSID, CDW2 and CDW3, MPTR, the data pointer (PRP1 and
 * PRP2 when PSDT is 00b, the SGL1 descriptor's fields otherwise), then CDW10 to CDW15 as the
 * opcode defines them (Read and Write; Create and Delete I/O queues, Identify), or as raw
 * dwords for other opcodes. Throws EINVAL unless `sqe` is 64 bytes.
 */
export function decodeSqe(sqe: Uint8Array, kind: NvmeQueueKind = "io"): NvmeField[] {
  if (sqe.length !== SQE_SIZE)
    throw new NvmeError("EINVAL", `a submission queue entry is 64 bytes, not ${sqe.length}`);
  const opc = sqe[SQE.OPCODE] as number;
  const f: NvmeField[] = [
    bitField(sqe, cdw(0), 7, 0, "OPC", "Opcode", opcodeText(kind)),
    bitField(sqe, cdw(0), 9, 8, "FUSE", "Fused Operation", named(FUSE, 2)),
    bitField(sqe, cdw(0), 15, 14, "PSDT", "PRP or SGL for Data Transfer", named(PSDT, 2)),
    bitField(sqe, cdw(0), 31, 16, "CID", "Command Identifier", (v) => hexH(v, 4)),
    dwordField(sqe, cdw(1), "NSID", "Namespace Identifier", nsidText),
    dwordField(sqe, cdw(2), "CDW2", "Command Dword 2", cmdSpecific),
    dwordField(sqe, cdw(3), "CDW3", "Command Dword 3", cmdSpecific),
    qwordField(sqe, SQE.MPTR, "CDW4-5", "MPTR", "Metadata Pointer", (v, h) =>
      v === 0 ? "0 (none)" : h,
    ),
  ];
  const psdt = sqePsdt(sqe);
  if (psdt === 0) f.push(...prpFields(sqe, kind === "admin" && opc === NVME_ADMIN.DBBUF));
  else if (psdt === 3) {
    const label = "Data Pointer (PSDT reserved)";
    f.push(qwordField(sqe, SQE.PRP1, "CDW6-7", "DPTR", label, addrText));
    f.push(qwordField(sqe, SQE.PRP2, "CDW8-9", "DPTR", label, addrText));
  } else f.push(...sglDescriptorFields(sqe, SGL1_NAMES).fields);
  const rw = kind === "io" && (opc === NVME_CMD.READ || opc === NVME_CMD.WRITE);
  const more = rw
    ? rwFields(sqe, opc === NVME_CMD.WRITE)
    : kind === "admin"
      ? adminFields(sqe, opc)
      : null;
  if (more !== null) f.push(...more);
  else
    for (let i = 10; i <= 15; i++)
      f.push(dwordField(sqe, cdw(i), `CDW${i}`, `Command Dword ${i}`, cmdSpecific));
  return f;
}

const cmdSpecific: FieldText = (v) => `${hexH(v, 8)} (command specific)`;

function nsidText(v: number): string {
  if (v === 0xffffffff) return "FFFFFFFFh: all namespaces";
  return v === 0 ? "0 (not used)" : `namespace ${v}`;
}

/** PRP1 and PRP2; a Doorbell Buffer Config names what its two pages hold (NVMe Base 2.2 §5.9). */
function prpFields(sqe: Uint8Array, dbbuf: boolean): NvmeField[] {
  return [
    qwordField(
      sqe,
      SQE.PRP1,
      "CDW6-7",
      "PRP1",
      dbbuf ? "PRP Entry 1: Shadow Doorbell buffer" : "PRP Entry 1",
      addrText,
    ),
    qwordField(
      sqe,
      SQE.PRP2,
      "CDW8-9",
      "PRP2",
      dbbuf ? "PRP Entry 2: EventIdx buffer" : "PRP Entry 2",
      (v, h) => (v === 0 ? "0 (not used)" : dbbuf ? h : `${h} (second page or PRP list pointer)`),
    ),
  ];
}

/** PRINFO (NVM Command Set 1.1, Protection Information field): PRACT and the three checks. */
function prinfoText(v: number): string {
  const checks = [
    Math.floor(v / 4) % 2 === 1 ? "guard" : "",
    Math.floor(v / 2) % 2 === 1 ? "application tag" : "",
    v % 2 === 1 ? "reference tag" : "",
  ].filter((s) => s !== "");
  const pract = v >= 8 ? "PRACT set" : "PRACT clear";
  return `${hexH(v)} ${pract}, ${checks.length === 0 ? "no checks" : `check ${checks.join(", ")}`}`;
}

const DSM_FREQ = [
  "no frequency information",
  "typical reads and writes",
  "infrequent writes and reads",
  "infrequent writes, frequent reads",
  "frequent writes, infrequent reads",
  "frequent writes and reads",
  "one-time read",
  "speculative read",
  "to be overwritten soon",
];
const DSM_LAT = ["no latency information", "idle", "normal", "low"];

/** Dataset Management (CDW13 bits 07:00): access frequency, latency, sequential, incompressible. */
function dsmText(v: number): string {
  if (v === 0) return "00h no hints";
  const parts = [DSM_FREQ[v % 16] ?? "reserved frequency", DSM_LAT[Math.floor(v / 16) % 4] ?? ""];
  if (Math.floor(v / 64) % 2 === 1) parts.push("sequential request");
  if (v >= 128) parts.push("incompressible");
  return `${hexH(v, 2)} ${parts.join(", ")}`;
}

const DTYPE: Readonly<Record<number, string>> = {
  0: "no directive",
  1: "Streams",
  2: "Data Placement",
};

/**
 * CDW10 to CDW15 of a Read or a Write (NVM Command Set 1.1, the Read and Write command
 * figures): SLBA, NLB and the CDW12 flags, Dataset Management (and a Write's directive),
 * then the protection information tags.
 */
function rwFields(sqe: Uint8Array, write: boolean): NvmeField[] {
  const f = [
    qwordField(sqe, SQE.CDW10, "CDW10-11", "SLBA", "Starting LBA", (v) => `LBA ${v}`),
    bitField(
      sqe,
      cdw(12),
      15,
      0,
      "NLB",
      "Number of Logical Blocks",
      (v) => `0's based: ${plural(v + 1, "block")}`,
    ),
  ];
  if (write)
    f.push(
      bitField(
        sqe,
        cdw(12),
        23,
        20,
        "DTYPE",
        "Directive Type",
        (v) => `${hexH(v)} ${DTYPE[v] ?? "reserved"}`,
      ),
    );
  f.push(
    bitField(sqe, cdw(12), 24, 24, "STC", "Storage Tag Check", flagText("check the storage tag")),
    bitField(sqe, cdw(12), 29, 26, "PRINFO", "Protection Information Field", prinfoText),
    bitField(sqe, cdw(12), 30, 30, "FUA", "Force Unit Access", flagText("force unit access")),
    bitField(sqe, cdw(12), 31, 31, "LR", "Limited Retry", flagText("limited retry")),
    bitField(sqe, cdw(13), 7, 0, "DSM", "Dataset Management", dsmText),
  );
  if (write)
    f.push(bitField(sqe, cdw(13), 31, 16, "DSPEC", "Directive Specific", (v) => hexH(v, 4)));
  const e = write ? "" : "Expected ";
  const n = write ? "" : "E";
  f.push(
    dwordField(sqe, cdw(14), `${n}ILBRT`, `${e}Initial Logical Block Reference Tag`, (v) =>
      hexH(v, 8),
    ),
    bitField(sqe, cdw(15), 15, 0, `${n}LBAT`, `${e}Logical Block Application Tag`, (v) =>
      hexH(v, 4),
    ),
    bitField(sqe, cdw(15), 31, 16, `${n}LBATM`, `${e}Logical Block Application Tag Mask`, (v) =>
      hexH(v, 4),
    ),
  );
  return f;
}

const CNS: Readonly<Record<number, string>> = {
  0x00: "Identify Namespace",
  0x01: "Identify Controller",
  0x02: "Active Namespace ID list",
  0x03: "Namespace Identification Descriptor list",
  0x05: "I/O Command Set specific Identify Namespace",
  0x06: "I/O Command Set specific Identify Controller",
  0x07: "I/O Command Set specific Active Namespace ID list",
};

const qid = (sqe: Uint8Array) =>
  bitField(sqe, cdw(10), 15, 0, "QID", "Queue Identifier", (v) => `queue ${v}`);
const qsize = (sqe: Uint8Array) =>
  bitField(
    sqe,
    cdw(10),
    31,
    16,
    "QSIZE",
    "Queue Size",
    (v) => `0's based: ${plural(v + 1, "entry", "entries")}`,
  );
const pc = (sqe: Uint8Array) =>
  bitField(sqe, cdw(11), 0, 0, "PC", "Physically Contiguous", flagText("contiguous", "PRP list"));

/**
 * CDW10 and CDW11 of the admin commands the host sends (NVMe Base 2.2 §5: Create and Delete
 * I/O Completion and Submission Queue, Identify); null for the others.
 */
function adminFields(sqe: Uint8Array, opc: number): NvmeField[] | null {
  switch (opc) {
    case NVME_ADMIN.CREATE_CQ:
      return [
        qid(sqe),
        qsize(sqe),
        pc(sqe),
        bitField(
          sqe,
          cdw(11),
          1,
          1,
          "IEN",
          "Interrupts Enabled",
          flagText("interrupts enabled", "polled"),
        ),
        bitField(sqe, cdw(11), 31, 16, "IV", "Interrupt Vector", (v) => `vector ${v}`),
      ];
    case NVME_ADMIN.CREATE_SQ:
      return [
        qid(sqe),
        qsize(sqe),
        pc(sqe),
        bitField(
          sqe,
          cdw(11),
          2,
          1,
          "QPRIO",
          "Queue Priority",
          named(["urgent", "high", "medium", "low"], 2),
        ),
        bitField(sqe, cdw(11), 31, 16, "CQID", "Completion Queue Identifier", (v) => `queue ${v}`),
      ];
    case NVME_ADMIN.DELETE_SQ:
    case NVME_ADMIN.DELETE_CQ:
      return [qid(sqe)];
    case NVME_ADMIN.IDENTIFY:
      return [
        bitField(
          sqe,
          cdw(10),
          7,
          0,
          "CNS",
          "Controller or Namespace Structure",
          (v) => `${hexH(v, 2)} ${CNS[v] ?? "see the CNS values"}`,
        ),
        bitField(sqe, cdw(10), 31, 16, "CNTID", "Controller Identifier", (v) => String(v)),
        bitField(sqe, cdw(11), 31, 24, "CSI", "Command Set Identifier", (v) =>
          v === 0 ? "00h NVM" : hexH(v, 2),
        ),
      ];
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Completion queue entry

const SCT = [
  "Generic Command Status",
  "Command Specific Status",
  "Media and Data Integrity Errors",
  "Path Related Status",
  "reserved",
  "reserved",
  "reserved",
  "Vendor Specific",
];
const CRD = [
  "no delay",
  "Command Retry Delay Time 1",
  "Command Retry Delay Time 2",
  "Command Retry Delay Time 3",
];

const dw = (i: number): DwordAt => ({ dword: `DW${i}`, at: 4 * i });

/**
 * Decodes a 16-byte completion queue entry (NVMe Base 2.2 §4.2): DW0 and DW1 (command
 * specific), SQHD, SQID, CID, the phase tag and the status field (SC, named with its SCT as
 * `nvmeStatusName` names it; SCT; CRD; M; DNR). Throws EINVAL unless `cqe` is 16 bytes.
 */
export function decodeCqe(cqe: Uint8Array): NvmeField[] {
  if (cqe.length !== CQE_SIZE)
    throw new NvmeError("EINVAL", `a completion queue entry is 16 bytes, not ${cqe.length}`);
  const status = dw(3);
  const sct = dwBits(getU32(cqe, status.at), 27, 25);
  return [
    dwordField(cqe, dw(0), "DW0", "Command Specific", (v) => hexH(v, 8)),
    dwordField(cqe, dw(1), "DW1", "Command Specific", (v) => hexH(v, 8)),
    bitField(cqe, dw(2), 15, 0, "SQHD", "SQ Head Pointer", (v) => `slot ${v}`),
    bitField(cqe, dw(2), 31, 16, "SQID", "SQ Identifier", (v) => `queue ${v}`),
    bitField(cqe, status, 15, 0, "CID", "Command Identifier", (v) => hexH(v, 4)),
    bitField(cqe, status, 16, 16, "P", "Phase Tag", (v) => binB(v, 1)),
    bitField(
      cqe,
      status,
      24,
      17,
      "SC",
      "Status Code",
      (v) => `${hexH(v, 2)} ${nvmeStatusName(sct * 256 + v)}`,
    ),
    bitField(cqe, status, 27, 25, "SCT", "Status Code Type", (v) => `${hexH(v)} ${SCT[v] ?? ""}`),
    bitField(cqe, status, 29, 28, "CRD", "Command Retry Delay", named(CRD, 2)),
    bitField(
      cqe,
      status,
      30,
      30,
      "M",
      "More",
      flagText("more status information in the Error Information log page"),
    ),
    bitField(
      cqe,
      status,
      31,
      31,
      "DNR",
      "Do Not Retry",
      flagText("do not retry", "may be retried"),
    ),
  ];
}
