/**
 * Commands and completions (NVMe Base 2.2, "Submission Queue Entry" and "Completion Queue
 * Entry"; Linux `struct nvme_command` / `struct nvme_completion`, QEMU `NvmeCmd` / `NvmeCqe`):
 * opcodes, the byte layout of the 64-byte SQE and the 16-byte CQE with named accessors, the
 * queue-creation dwords, and the status codes.
 */
import { TWO_POW_32, getU16, getU32, getU64Hi, setU16, setU32 } from "@dmasim/bvec";

/** Admin command opcodes. */
export const NVME_ADMIN = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  /** Doorbell Buffer Config (NVMe Base 2.2 §5.9; Linux `nvme_admin_dbbuf`). */
  DBBUF: 0x7c,
} as const;

/** NVM I/O command opcodes. */
export const NVME_CMD = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
} as const;

// ---------------------------------------------------------------------------------------------
// Submission queue entry

/** Size of a submission queue entry (CC.IOSQES = 6). */
export const SQE_SIZE = 64;

/** Byte offsets of the command fields. */
export const SQE = {
  OPCODE: 0,
  FLAGS: 1,
  CID: 2,
  NSID: 4,
  CDW2: 8,
  CDW3: 12,
  MPTR: 16,
  PRP1: 24,
  PRP2: 32,
  SGL_ADDR: 24,
  SGL_LEN: 32,
  SGL_TYPE: 39,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;

/** PRP or SGL for Data Transfer (the flags byte, bits 7:6; QEMU `NVME_CMD_FLAGS_PSDT`). */
export const NVME_PSDT = {
  PRP: 0,
  /** SGL, MPTR the address of a contiguous metadata buffer. */
  SGL_MPTR_CONTIGUOUS: 1,
  /** SGL, MPTR the address of a metadata SGL segment. */
  SGL_MPTR_SGL: 2,
  /** 11b is reserved. */
  RESERVED: 3,
} as const;

/** The command's PSDT field. */
export function sqePsdt(cmd: Uint8Array): number {
  return Math.floor((cmd[SQE.FLAGS] as number) / 64);
}

/** The command's FUSE field (the flags byte, bits 1:0; QEMU `NVME_CMD_FLAGS_FUSE`): 0 normal. */
export function sqeFuse(cmd: Uint8Array): number {
  return (cmd[SQE.FLAGS] as number) % 4;
}

/** NVMe's broadcast namespace ID, FFFFFFFFh (QEMU `NVME_NSID_BROADCAST`). */
export const NVME_NSID_BROADCAST = 0xffffffff;
/** The namespace IDs QEMU accepts as valid, 1..256 (QEMU `NVME_MAX_NAMESPACES`). */
export const NVME_MAX_NAMESPACES = 256;

/** 2^53 / 2^32: a 64-bit field whose high dword reaches this is at or above 2^53. */
export const ADDR_HI_LIMIT = 2 ** 53 / TWO_POW_32;

/**
 * Reads a 64-bit address field (a PRP entry, an SGL address), or -1 when it is at or above 2^53,
 * the model's address width (such an address reaches no memory).
 */
export function getAddr64(b: Uint8Array, off: number): number {
  const hi = getU64Hi(b, off);
  return hi >= ADDR_HI_LIMIT ? -1 : hi * TWO_POW_32 + getU32(b, off);
}

/** The starting LBA of a read or write (CDW11:CDW10). */
export function rwSlba(cmd: Uint8Array): number {
  return getU32(cmd, SQE.CDW10) + getU32(cmd, SQE.CDW11) * TWO_POW_32;
}

/** The number of logical blocks of a read or write (CDW12 bits 15:0 are NLB, 0-based). */
export function rwNlb(cmd: Uint8Array): number {
  return (getU32(cmd, SQE.CDW12) % 65536) + 1;
}

/** Sets the LBA range of a read or write: `slba` and `nlb` blocks (1-based count). */
export function setRwLbas(cmd: Uint8Array, slba: number, nlb: number): void {
  setU32(cmd, SQE.CDW10, slba % TWO_POW_32);
  setU32(cmd, SQE.CDW11, Math.floor(slba / TWO_POW_32));
  setU32(cmd, SQE.CDW12, nlb - 1);
}

/** Create I/O Completion / Submission Queue CDW11 bit 0: PC, physically contiguous. */
export const NVME_QUEUE_PHYS_CONTIG = 1;

/** CDW10 of Create / Delete I/O Queue: QID in bits 15:0, QSIZE (0-based) in bits 31:16. */
export function queueCdw10(qid: number, qsize: number): number {
  return qid + (qsize - 1) * 65536;
}

/** The queue identifier of a queue command's CDW10. */
export function cdw10Qid(cdw10: number): number {
  return cdw10 % 65536;
}

/** The queue size (entries, 1-based) of a Create I/O Queue CDW10. */
export function cdw10Qsize(cdw10: number): number {
  return Math.floor(cdw10 / 65536) + 1;
}

/** CDW11 of Create I/O Submission Queue: the completion queue in bits 31:16, PC in bit 0. */
export function createSqCdw11(cqid: number): number {
  return NVME_QUEUE_PHYS_CONTIG + cqid * 65536;
}

/** The completion queue of a Create I/O Submission Queue CDW11. */
export function cdw11Cqid(cdw11: number): number {
  return Math.floor(cdw11 / 65536);
}

/** Whether a Create I/O Queue CDW11 asks for a physically contiguous queue. */
export function cdw11Contiguous(cdw11: number): boolean {
  return cdw11 % 2 === 1;
}

/** The CNS of an Identify command (CDW10 bits 7:0). */
export function identifyCns(cmd: Uint8Array): number {
  return getU32(cmd, SQE.CDW10) % 256;
}

// ---------------------------------------------------------------------------------------------
// Completion queue entry

/** Size of a completion queue entry (CC.IOCQES = 4). */
export const CQE_SIZE = 16;

/** Byte offsets of the completion fields. */
export const CQE = {
  /** DW0: the command-specific result. */
  RESULT: 0,
  /** DW1: reserved. */
  RSVD: 4,
  SQHD: 8,
  SQID: 10,
  CID: 12,
  /** The status field: the phase tag in bit 0, the status in bits 15:1. */
  STATUS: 14,
} as const;

/** Fills a completion entry. `status` is the status without the phase tag (Linux's shifted form). */
export function setCqe(
  e: Uint8Array,
  f: {
    readonly result: number;
    readonly sqhd: number;
    readonly sqid: number;
    readonly cid: number;
    readonly status: number;
    readonly phase: number;
  },
): void {
  setU32(e, CQE.RESULT, f.result);
  setU32(e, CQE.RSVD, 0);
  setU16(e, CQE.SQHD, f.sqhd);
  setU16(e, CQE.SQID, f.sqid);
  setU16(e, CQE.CID, f.cid);
  setU16(e, CQE.STATUS, f.status * 2 + f.phase);
}

/** The phase tag of a completion entry. */
export function cqePhase(e: Uint8Array): number {
  return getU16(e, CQE.STATUS) % 2;
}

/** The status of a completion entry without its phase tag (Linux `le16_to_cpu(cqe->status) >> 1`). */
export function cqeStatus(e: Uint8Array): number {
  return Math.floor(getU16(e, CQE.STATUS) / 2);
}

/** The command identifier a completion entry answers. */
export function cqeCid(e: Uint8Array): number {
  return getU16(e, CQE.CID);
}

/** The submission queue a completion entry answers. */
export function cqeSqid(e: Uint8Array): number {
  return getU16(e, CQE.SQID);
}

/** The submission queue head the controller reports. */
export function cqeSqhd(e: Uint8Array): number {
  return getU16(e, CQE.SQHD);
}

// ---------------------------------------------------------------------------------------------
// Status

/**
 * Status codes in the form Linux uses (the status field without the phase tag): the code in
 * bits 7:0 and the status code type in bits 10:8, so command-specific codes (SCT 1) are offset
 * by 0x100 and media errors (SCT 2) by 0x200.
 */
export const NVME_SC = {
  SUCCESS: 0x00,
  INVALID_OPCODE: 0x01,
  INVALID_FIELD: 0x02,
  CMDID_CONFLICT: 0x03,
  DATA_XFER_ERROR: 0x04,
  POWER_LOSS: 0x05,
  INTERNAL: 0x06,
  ABORT_REQ: 0x07,
  INVALID_NS: 0x0b,
  SGL_INVALID_LAST: 0x0d,
  SGL_INVALID_COUNT: 0x0e,
  SGL_INVALID_DATA: 0x0f,
  SGL_INVALID_METADATA: 0x10,
  SGL_INVALID_TYPE: 0x11,
  CMB_INVALID_USE: 0x12,
  PRP_INVALID_OFFSET: 0x13,
  SGL_INVALID_GRANULARITY: 0x1e,
  LBA_RANGE: 0x80,
  CAP_EXCEEDED: 0x81,
  NS_NOT_READY: 0x82,
  /** Command-specific (SCT 1) codes used by queue creation. */
  CQ_INVALID: 0x100,
  QID_INVALID: 0x101,
  QUEUE_SIZE: 0x102,
  /** Invalid Queue Deletion (a CQ that still has SQs). */
  INVALID_QUEUE_DEL: 0x10c,
  /** Media errors (SCT 2). */
  WRITE_FAULT: 0x280,
  READ_ERROR: 0x281,
} as const;

/** The Do Not Retry bit of the status (bit 14 without the phase tag). */
export const NVME_STATUS_DNR = 0x4000;

/** Names of the status codes, for messages and reports. */
export const NVME_SC_NAMES: Readonly<Record<number, string>> = {
  0x00: "Successful Completion",
  0x01: "Invalid Command Opcode",
  0x02: "Invalid Field in Command",
  0x03: "Command ID Conflict",
  0x04: "Data Transfer Error",
  0x05: "Commands Aborted due to Power Loss Notification",
  0x06: "Internal Error",
  0x07: "Command Abort Requested",
  0x0b: "Invalid Namespace or Format",
  0x0d: "Invalid SGL Segment Descriptor",
  0x0e: "Invalid Number of SGL Descriptors",
  0x0f: "Data SGL Length Invalid",
  0x10: "Metadata SGL Length Invalid",
  0x11: "SGL Descriptor Type Invalid",
  0x12: "Invalid Use of Controller Memory Buffer",
  0x13: "PRP Offset Invalid",
  0x1e: "SGL Data Block Granularity Invalid",
  0x80: "LBA Out of Range",
  0x81: "Capacity Exceeded",
  0x82: "Namespace Not Ready",
  0x100: "Invalid Completion Queue",
  0x101: "Invalid Queue Identifier",
  0x102: "Invalid Queue Size",
  0x10c: "Invalid Queue Deletion",
  0x280: "Write Fault",
  0x281: "Unrecovered Read Error",
};

/** Describes a status (code plus DNR) for humans. */
export function nvmeStatusName(status: number): string {
  const dnr = status >= NVME_STATUS_DNR;
  const sc = dnr ? status - NVME_STATUS_DNR : status;
  return `${NVME_SC_NAMES[sc] ?? `status 0x${sc.toString(16)}`}${dnr ? " (DNR)" : ""}`;
}
