/**
 * NVMe constants: Linux nvme-pci's data-path limits (drivers/nvme/host/pci.c, host/nvme.h) and
 * the specification's opcodes, registers, descriptor types and status codes (NVMe Base 2.2).
 */

/** Linux `NVME_CTRL_PAGE_SIZE`: the host always programs a 4 KiB controller page (CC.MPS = 0). */
export const NVME_CTRL_PAGE_SIZE = 4096;
/** Linux `NVME_SMALL_POOL_SIZE`: 256-byte descriptor blocks (32 PRP entries or 16 SGL descriptors). */
export const NVME_SMALL_POOL_SIZE = 256;
/** Linux `NVME_MAX_BYTES`: 8 MiB per request. */
export const NVME_MAX_BYTES = 8 * 1024 * 1024;
/** Linux `NVME_MAX_NR_DESCRIPTORS`: at most 5 descriptor pages per command. */
export const NVME_MAX_NR_DESCRIPTORS = 5;
/** Linux `NVME_MAX_SEGS`: one page of SGL descriptors (4096 / 16). */
export const NVME_MAX_SEGS = 256;
/** Linux `PRPS_PER_PAGE`: 511 data entries per list page, the last slot links to the next. */
export const PRPS_PER_PAGE = NVME_CTRL_PAGE_SIZE / 8 - 1;
/** Linux `sgl_threshold` default: SGLs when the average segment is at least 32 KiB. */
export const NVME_SGL_THRESHOLD = 32768;
/** Linux `NVME_AQ_DEPTH`. */
export const NVME_AQ_DEPTH = 32;
/** Old (scatterlist) driver's `NVME_MAX_SEGS` (v6.8). */
export const NVME_OLD_MAX_SEGS = 128;
/** Linux `nvme_max_retries` default. */
export const NVME_MAX_RETRIES = 5;

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

/** Identify Controller OACS bit 8: Doorbell Buffer Config supported (Linux `NVME_CTRL_OACS_DBBUF_SUPP`). */
export const NVME_CTRL_OACS_DBBUF_SUPP = 0x100;
/** Byte offset of OACS in the Identify Controller data structure. */
export const NVME_ID_CTRL_OACS = 256;

/** NVM I/O command opcodes. */
export const NVME_CMD = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
} as const;

/** Identify CNS values. */
export const NVME_ID_CNS = { NS: 0x00, CTRL: 0x01 } as const;

/** Controller register offsets (BAR0). */
export const NVME_REG = {
  CAP: 0x00,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  AQA: 0x24,
  ASQ: 0x28,
  ACQ: 0x30,
  DBS: 0x1000,
} as const;

/** The flags byte of a command: PSDT in bits 7:6 (Linux `NVME_CMD_SGL_METABUF` / `_METASEG`). */
export const NVME_CMD_SGL_METABUF = 0x40;
export const NVME_CMD_SGL_METASEG = 0x80;

/** SGL descriptor types (upper nibble of byte 15). */
export const NVME_SGL_TYPE = {
  DATA: 0x0,
  BIT_BUCKET: 0x1,
  SEGMENT: 0x2,
  LAST_SEGMENT: 0x3,
  KEYED_DATA: 0x4,
  TRANSPORT_DATA: 0x5,
} as const;

/**
 * SGL descriptor sub types (lower nibble of byte 15; Linux `NVME_SGL_FMT_ADDRESS` /
 * `NVME_SGL_FMT_OFFSET`). Over PCIe only Address is defined; Offset is for NVMe over Fabrics.
 */
export const NVME_SGL_SUBTYPE = {
  ADDRESS: 0x0,
  OFFSET: 0x1,
} as const;

/** Identify Controller SGLS bits 1:0. */
export const NVME_SGLS = {
  NONE: 0,
  BYTE_ALIGNED: 1,
  DWORD_ALIGNED: 2,
} as const;
/** An SGL support level a controller advertises. */
export type SglSupport = "none" | "byte" | "dword";

/** Generic command status codes (SCT 0). */
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
  /** Command-specific (SCT 1) codes used by queue creation, offset by 0x100 as Linux does. */
  CQ_INVALID: 0x100,
  QID_INVALID: 0x101,
  QUEUE_SIZE: 0x102,
  /** Media errors (SCT 2), offset by 0x200. */
  WRITE_FAULT: 0x280,
  READ_ERROR: 0x281,
} as const;

/** The Do Not Retry bit in Linux's shifted status (status >> 1). */
export const NVME_STATUS_DNR = 0x4000;

/** Names of the status codes, for messages and reports. */
export const NVME_SC_NAMES: Readonly<Record<number, string>> = {
  0x00: "Success",
  0x01: "Invalid Command Opcode",
  0x02: "Invalid Field in Command",
  0x03: "Command ID Conflict",
  0x04: "Data Transfer Error",
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
  0x100: "Invalid Completion Queue",
  0x101: "Invalid Queue Identifier",
  0x102: "Invalid Queue Size",
  0x280: "Write Fault",
  0x281: "Unrecovered Read Error",
};

/** Describes a status (code plus DNR) for humans. */
export function nvmeStatusName(status: number): string {
  const dnr = status >= NVME_STATUS_DNR;
  const sc = dnr ? status - NVME_STATUS_DNR : status;
  return `${NVME_SC_NAMES[sc] ?? `status 0x${sc.toString(16)}`}${dnr ? " (DNR)" : ""}`;
}
