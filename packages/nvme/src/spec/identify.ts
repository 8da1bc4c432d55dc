/**
 * The Identify data structures the model uses (NVMe Base 2.2, "Identify Controller Data
 * Structure" and "Identify Namespace Data Structure"; Linux `struct nvme_id_ctrl` /
 * `struct nvme_id_ns`, QEMU `NvmeIdCtrl` / `NvmeIdNs`): the byte offset of each field, and
 * one writer and one reader per structure, so that the controller writes and the host parses
 * the same table.
 */
import { getU16, getU32, getU64, setU16, setU32, setU64 } from "@dmasim/bvec";

/** Identify CNS values. */
export const NVME_ID_CNS = { NS: 0x00, CTRL: 0x01 } as const;

/** Bytes of an Identify data structure. */
export const NVME_IDENTIFY_DATA_SIZE = 4096;

/** Byte offsets in the Identify Controller data structure. */
export const ID_CTRL = {
  /** PCI Vendor ID (2 bytes). */
  VID: 0,
  /** Serial Number (20 ASCII bytes, space padded). */
  SN: 4,
  /** Model Number (40 ASCII bytes). */
  MN: 24,
  /** Firmware Revision (8 ASCII bytes). */
  FR: 64,
  /** Maximum Data Transfer Size, a power of two of CAP.MPSMIN pages (0: no limit). */
  MDTS: 77,
  /** Command Retry Delay Times 1..3 (2 bytes each, 100 ms units). */
  CRDT1: 134,
  CRDT2: 136,
  CRDT3: 138,
  /** Optional Admin Command Support (2 bytes). */
  OACS: 256,
  /** Submission Queue Entry Size: required (bits 3:0) and maximum (bits 7:4), as powers of two. */
  SQES: 512,
  /** Completion Queue Entry Size, as SQES. */
  CQES: 513,
  /** Number of Namespaces (4 bytes). */
  NN: 516,
  /** SGL Support (4 bytes). */
  SGLS: 536,
} as const;

/** Field widths of the ASCII fields. */
const SN_LEN = 20;
const MN_LEN = 40;
const FR_LEN = 8;

/** OACS bit 8: Doorbell Buffer Config supported (Linux `NVME_CTRL_OACS_DBBUF_SUPP`). */
export const NVME_CTRL_OACS_DBBUF_SUPP = 0x100;

/** SGLS bits 1:0: whether and with what alignment SGLs are supported. */
export const NVME_SGLS = {
  NONE: 0,
  BYTE_ALIGNED: 1,
  DWORD_ALIGNED: 2,
} as const;
/** SGLS bit 16: SGL Bit Bucket descriptors supported. */
export const NVME_CTRL_SGLS_BITBUCKET = 2 ** 16;
/** SGLS bit 18: an SGL longer than the transfer is accepted (QEMU `NVME_CTRL_SGLS_EXCESS_LENGTH`). */
export const NVME_CTRL_SGLS_EXCESS_LENGTH = 2 ** 18;

/** An SGL support level a controller advertises. */
export type SglSupport = "none" | "byte" | "dword";

/** The SGLS bits 1:0 of a support level. */
export function sglsSupport(s: SglSupport): number {
  return s === "byte"
    ? NVME_SGLS.BYTE_ALIGNED
    : s === "dword"
      ? NVME_SGLS.DWORD_ALIGNED
      : NVME_SGLS.NONE;
}

/** Whether SGLS says SGLs are supported (bits 1:0 are 01b or 10b; 11b is reserved). */
export function sglsSupported(sgls: number): boolean {
  const s = sgls % 4;
  return s === NVME_SGLS.BYTE_ALIGNED || s === NVME_SGLS.DWORD_ALIGNED;
}

/** Whether OACS says Doorbell Buffer Config is supported. */
export function oacsDbbufSupported(oacs: number): boolean {
  return Math.floor(oacs / NVME_CTRL_OACS_DBBUF_SUPP) % 2 === 1;
}

/** The Identify Controller fields the model writes and reads. */
export interface NvmeIdCtrl {
  readonly vid: number;
  readonly sn: string;
  readonly mn: string;
  readonly fr: string;
  readonly mdts: number;
  readonly crdt: readonly [number, number, number];
  readonly oacs: number;
  readonly sqes: number;
  readonly cqes: number;
  readonly nn: number;
  readonly sgls: number;
}

/** Writes the Identify Controller fields into a zeroed 4 KiB buffer. */
export function writeIdCtrl(b: Uint8Array, id: NvmeIdCtrl): void {
  setU16(b, ID_CTRL.VID, id.vid);
  writeAscii(b, ID_CTRL.SN, SN_LEN, id.sn);
  writeAscii(b, ID_CTRL.MN, MN_LEN, id.mn);
  writeAscii(b, ID_CTRL.FR, FR_LEN, id.fr);
  b[ID_CTRL.MDTS] = id.mdts;
  setU16(b, ID_CTRL.CRDT1, id.crdt[0]);
  setU16(b, ID_CTRL.CRDT2, id.crdt[1]);
  setU16(b, ID_CTRL.CRDT3, id.crdt[2]);
  setU16(b, ID_CTRL.OACS, id.oacs);
  b[ID_CTRL.SQES] = id.sqes;
  b[ID_CTRL.CQES] = id.cqes;
  setU32(b, ID_CTRL.NN, id.nn);
  setU32(b, ID_CTRL.SGLS, id.sgls);
}

/** Reads the Identify Controller fields. */
export function readIdCtrl(b: Uint8Array): NvmeIdCtrl {
  return {
    vid: getU16(b, ID_CTRL.VID),
    sn: readAscii(b, ID_CTRL.SN, SN_LEN),
    mn: readAscii(b, ID_CTRL.MN, MN_LEN),
    fr: readAscii(b, ID_CTRL.FR, FR_LEN),
    mdts: b[ID_CTRL.MDTS] as number,
    crdt: [getU16(b, ID_CTRL.CRDT1), getU16(b, ID_CTRL.CRDT2), getU16(b, ID_CTRL.CRDT3)],
    oacs: getU16(b, ID_CTRL.OACS),
    sqes: b[ID_CTRL.SQES] as number,
    cqes: b[ID_CTRL.CQES] as number,
    nn: getU32(b, ID_CTRL.NN),
    sgls: getU32(b, ID_CTRL.SGLS),
  };
}

/** Byte offsets in the Identify Namespace data structure. */
export const ID_NS = {
  /** Namespace Size in logical blocks (8 bytes). */
  NSZE: 0,
  /** Namespace Capacity (8 bytes). */
  NCAP: 8,
  /** Namespace Utilization (8 bytes). */
  NUSE: 16,
  /** Number of LBA Formats, 0-based. */
  NLBAF: 25,
  /** Formatted LBA Size: the format in use. */
  FLBAS: 26,
  /** LBA Format 0 (4 bytes: MS, LBADS, RP). */
  LBAF0: 128,
} as const;

/** The offset of LBADS (the LBA data size as a power of two) in an LBA Format entry. */
const LBAF_LBADS = 2;

/** The Identify Namespace fields the model writes and reads (one LBA format). */
export interface NvmeIdNs {
  readonly nsze: number;
  readonly ncap: number;
  readonly nuse: number;
  readonly nlbaf: number;
  readonly flbas: number;
  /** LBA Format 0's LBADS. */
  readonly lbads: number;
}

/** Writes the Identify Namespace fields into a zeroed 4 KiB buffer. */
export function writeIdNs(b: Uint8Array, id: NvmeIdNs): void {
  setU64(b, ID_NS.NSZE, id.nsze);
  setU64(b, ID_NS.NCAP, id.ncap);
  setU64(b, ID_NS.NUSE, id.nuse);
  b[ID_NS.NLBAF] = id.nlbaf;
  b[ID_NS.FLBAS] = id.flbas;
  b[ID_NS.LBAF0 + LBAF_LBADS] = id.lbads;
}

/** Reads the Identify Namespace fields. */
export function readIdNs(b: Uint8Array): NvmeIdNs {
  return {
    nsze: getU64(b, ID_NS.NSZE),
    ncap: getU64(b, ID_NS.NCAP),
    nuse: getU64(b, ID_NS.NUSE),
    nlbaf: b[ID_NS.NLBAF] as number,
    flbas: b[ID_NS.FLBAS] as number,
    lbads: b[ID_NS.LBAF0 + LBAF_LBADS] as number,
  };
}

/** Writes `s` into `len` bytes at `off`, padded with spaces (the Identify ASCII fields). */
function writeAscii(b: Uint8Array, off: number, len: number, s: string): void {
  for (let i = 0; i < len; i++) b[off + i] = i < s.length ? s.charCodeAt(i) : 0x20;
}

/** Reads an ASCII field without its trailing spaces. */
function readAscii(b: Uint8Array, off: number, len: number): string {
  return String.fromCharCode(...b.subarray(off, off + len)).trimEnd();
}
