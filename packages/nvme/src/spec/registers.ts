/**
 * The controller registers in BAR0 (NVMe Base 2.2, "Controller Registers"; QEMU keeps them in
 * include/block/nvme.h as `NvmeBar` with the `NVME_CAP_*`, `NVME_CC_*`, `NVME_CSTS_*` and
 * `NVME_AQA_*` accessors): the offsets, one accessor per field, and builders for the values a
 * side writes. Both the host and the controller go through these, so a field is defined once.
 *
 * CAP is 64 bits and is read as two dwords; its fields are read from the dword that holds them
 * (the low dword: MQES, CQR, TO; the high dword: CSS, MPSMIN, MPSMAX). The accessors use
 * arithmetic rather than bitwise operators, as everywhere in the project.
 */

/** Register offsets in BAR0. */
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
  /** The first doorbell (CAP.DSTRD = 0: doorbells 4 bytes apart). */
  DBS: 0x1000,
} as const;

/** Bits `shift .. shift + width - 1` of a 32-bit register value. */
function field(v: number, shift: number, width: number): number {
  return Math.floor(v / 2 ** shift) % 2 ** width;
}

// ---------------------------------------------------------------------------------------------
// CAP (Controller Capabilities)

/** CAP.MQES (low dword bits 15:0): Maximum Queue Entries Supported, 0-based. */
export function capMqes(capLo: number): number {
  return field(capLo, 0, 16);
}

/** CAP.CQR (low dword bit 16): Contiguous Queues Required. */
export function capCqr(capLo: number): boolean {
  return field(capLo, 16, 1) === 1;
}

/** CAP.TO (low dword bits 31:24): worst-case ready timeout in 500 ms units. */
export function capTo(capLo: number): number {
  return field(capLo, 24, 8);
}

/** CAP.CSS (high dword bits 12:5, CAP bits 44:37): Command Sets Supported. */
export function capCss(capHi: number): number {
  return field(capHi, 5, 8);
}

/** CAP.MPSMIN (high dword bits 19:16, CAP bits 51:48): the smallest page is 2^(12 + MPSMIN). */
export function capMpsmin(capHi: number): number {
  return field(capHi, 16, 4);
}

/** CAP.MPSMAX (high dword bits 23:20, CAP bits 55:52): the largest page is 2^(12 + MPSMAX). */
export function capMpsmax(capHi: number): number {
  return field(capHi, 20, 4);
}

/** CAP.CSS bit 0 (CAP bit 37): the NVM command set. */
export const NVME_CAP_CSS_NVM = 1;

/** The low dword of CAP from its fields (MQES 0-based, TO in 500 ms units). */
export function capLoValue(f: {
  readonly mqes: number;
  readonly cqr: boolean;
  readonly to: number;
}): number {
  return f.mqes + (f.cqr ? 2 ** 16 : 0) + f.to * 2 ** 24;
}

/** The high dword of CAP from its fields (DSTRD 0). */
export function capHiValue(f: {
  readonly css: number;
  readonly mpsmin: number;
  readonly mpsmax: number;
}): number {
  return f.css * 2 ** 5 + f.mpsmin * 2 ** 16 + f.mpsmax * 2 ** 20;
}

// ---------------------------------------------------------------------------------------------
// VS (Version)

/** The VS register value of specification version `major.minor.tertiary`. */
export function vsValue(major: number, minor: number, tertiary = 0): number {
  return major * 2 ** 16 + minor * 2 ** 8 + tertiary;
}

// ---------------------------------------------------------------------------------------------
// CC (Controller Configuration)

/** CC.EN (bit 0): Enable. */
export function ccEn(cc: number): boolean {
  return field(cc, 0, 1) === 1;
}

/** CC.CSS (bits 6:4): I/O Command Set Selected (0: NVM). */
export function ccCss(cc: number): number {
  return field(cc, 4, 3);
}

/** CC.MPS (bits 10:7): the memory page size is 2^(12 + MPS). */
export function ccMps(cc: number): number {
  return field(cc, 7, 4);
}

/** CC.AMS (bits 13:11): Arbitration Mechanism Selected (0: round robin). */
export function ccAms(cc: number): number {
  return field(cc, 11, 3);
}

/** CC.IOSQES (bits 19:16): the I/O submission queue entry size is 2^IOSQES. */
export function ccIosqes(cc: number): number {
  return field(cc, 16, 4);
}

/** CC.IOCQES (bits 23:20): the I/O completion queue entry size is 2^IOCQES. */
export function ccIocqes(cc: number): number {
  return field(cc, 20, 4);
}

/** A CC value from its fields (SHN 0). */
export function ccValue(f: {
  readonly en: boolean;
  readonly css: number;
  readonly mps: number;
  readonly ams: number;
  readonly iosqes: number;
  readonly iocqes: number;
}): number {
  return (
    (f.en ? 1 : 0) +
    f.css * 2 ** 4 +
    f.mps * 2 ** 7 +
    f.ams * 2 ** 11 +
    f.iosqes * 2 ** 16 +
    f.iocqes * 2 ** 20
  );
}

// ---------------------------------------------------------------------------------------------
// CSTS (Controller Status)

/** CSTS.RDY (bit 0). */
export const NVME_CSTS_RDY = 1;
/** CSTS.CFS (bit 1): Controller Fatal Status. */
export const NVME_CSTS_CFS = 2;

/** CSTS.RDY: the controller is ready to process commands. */
export function cstsRdy(csts: number): boolean {
  return field(csts, 0, 1) === 1;
}

/** CSTS.CFS: the controller hit a fatal error. */
export function cstsCfs(csts: number): boolean {
  return field(csts, 1, 1) === 1;
}

// ---------------------------------------------------------------------------------------------
// AQA (Admin Queue Attributes)

/** AQA.ASQS (bits 11:0): admin submission queue size, 0-based. */
export function aqaAsqs(aqa: number): number {
  return field(aqa, 0, 12);
}

/** AQA.ACQS (bits 27:16): admin completion queue size, 0-based. */
export function aqaAcqs(aqa: number): number {
  return field(aqa, 16, 12);
}

/** An AQA value from the two 0-based queue sizes. */
export function aqaValue(asqs: number, acqs: number): number {
  return asqs + acqs * 2 ** 16;
}

// ---------------------------------------------------------------------------------------------
// Doorbells (CAP.DSTRD = 0)

/** The offset of queue `qid`'s Submission Queue Tail doorbell (SQyTDBL). */
export function sqTailDoorbell(qid: number): number {
  return NVME_REG.DBS + 2 * qid * 4;
}

/** The offset of queue `qid`'s Completion Queue Head doorbell (CQyHDBL). */
export function cqHeadDoorbell(qid: number): number {
  return NVME_REG.DBS + (2 * qid + 1) * 4;
}
