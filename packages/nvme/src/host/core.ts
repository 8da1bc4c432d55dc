/**
 * What the host takes from Linux's NVMe core (drivers/nvme/host/core.c): the mapping of an
 * NVMe status to a block status, and the parts of the status that decide a retry.
 */
import { BLK_STS, type BlkStatus, fastMod } from "@dmasim/bvec";
import { NVME_SC } from "../spec/commands.ts";

/** Linux `NVME_SCT_SC_MASK`: the status code type and status code of a (shifted) status. */
export const NVME_SCT_SC_MASK = 0x7ff;
/** Linux `NVME_STATUS_CRD`: the Command Retry Delay field (bits 12:11 of the shifted status). */
const NVME_STATUS_CRD_SHIFT = 11;
/** The CRD field is 2 bits. */
const NVME_STATUS_CRD_VALUES = 4;
/** Identify CRDT values are in units of 100 ms. */
export const NVME_CRDT_UNIT_NS = 100_000_000;

/**
 * Linux `nvme_error_status`: an NVMe status (shifted form) to a block status. Only the status
 * code type and code count (`status & NVME_SCT_SC_MASK`, 0x7ff): DNR (bit 14), More (bit 13)
 * and CRD (bits 12:11) do not change the block status.
 */
export function nvmeErrorStatus(status: number): BlkStatus {
  const sc = fastMod(status, NVME_SCT_SC_MASK + 1);
  switch (sc) {
    case NVME_SC.SUCCESS:
      return BLK_STS.OK;
    case NVME_SC.CAP_EXCEEDED:
      return BLK_STS.NOSPC;
    case NVME_SC.LBA_RANGE:
    case NVME_SC.NS_NOT_READY:
      return BLK_STS.TARGET;
    case NVME_SC.INVALID_OPCODE:
    case NVME_SC.INVALID_FIELD:
    case NVME_SC.INVALID_NS:
      return BLK_STS.NOTSUPP;
    case NVME_SC.WRITE_FAULT:
    case NVME_SC.READ_ERROR:
      return BLK_STS.MEDIUM;
    default:
      return BLK_STS.IOERR;
  }
}

/** The CRD field of a status: 0 (no delay) or which of Identify CRDT1..3 applies. */
export function nvmeStatusCrd(status: number): number {
  return Math.floor(status / 2 ** NVME_STATUS_CRD_SHIFT) % NVME_STATUS_CRD_VALUES;
}
