/**
 * The admin command set of the simulated controller (QEMU hw/nvme/ctrl.c `nvme_admin_cmd` and
 * the functions it calls): Identify, Create / Delete I/O Submission and Completion Queue, and
 * Doorbell Buffer Config. Each function runs the command in `n.cmd` and returns its status; a
 * failure also records its reason (`n.fail`).
 */
import { getU32 } from "@dmasim/bvec";
import {
  NVME_ADMIN,
  NVME_PSDT,
  NVME_SC,
  NVME_STATUS_DNR,
  SQE,
  cdw10Qid,
  cdw10Qsize,
  cdw11Contiguous,
  cdw11Cqid,
  getAddr64,
  identifyCns,
  sqeFuse,
  sqePsdt,
} from "../spec/commands.ts";
import {
  NVME_CTRL_OACS_DBBUF_SUPP,
  NVME_CTRL_SGLS_BITBUCKET,
  NVME_CTRL_SGLS_EXCESS_LENGTH,
  NVME_IDENTIFY_DATA_SIZE,
  NVME_ID_CNS,
  sglsSupport,
  writeIdCtrl,
  writeIdNs,
} from "../spec/identify.ts";
import { NVME_ERR } from "./error-log.ts";
import { nvmeTransfer } from "./io.ts";
import type { NvmeCtrlState } from "./state.ts";

/** The PCI vendor ID the model reports (Red Hat's, as QEMU's NVMe device). */
const PCI_VENDOR_ID_REDHAT = 0x1b36;
/** Identify SQES / CQES: 64-byte submission and 16-byte completion entries, required and maximum. */
const ID_SQES = 0x66;
const ID_CQES = 0x44;

const dnr = (sc: number) => sc + NVME_STATUS_DNR;

/** The admin opcodes the controller implements (QEMU's `nvme_cse_acs` with CSUPP). */
function adminOpcodeSupported(n: NvmeCtrlState, op: number): boolean {
  switch (op) {
    case NVME_ADMIN.IDENTIFY:
    case NVME_ADMIN.CREATE_CQ:
    case NVME_ADMIN.CREATE_SQ:
    case NVME_ADMIN.DELETE_SQ:
    case NVME_ADMIN.DELETE_CQ:
      return true;
    case NVME_ADMIN.DBBUF:
      return n.shadowDoorbells;
    default:
      return false;
  }
}

/**
 * QEMU `nvme_admin_cmd`: runs the admin command in `n.cmd`; returns its status. In QEMU's
 * order: an unsupported opcode (Invalid Opcode), then PSDT (NVMe over PCIe: PRPs only; Invalid
 * Field), then fused operations (Invalid Field without DNR).
 */
export function nvmeAdminCmd(n: NvmeCtrlState): number {
  n.counters.c.adminCommands++;
  const op = n.cmd[SQE.OPCODE] as number;
  if (!adminOpcodeSupported(n, op))
    return n.fail(NVME_ERR.INVALID_ADMIN_OPC, dnr(NVME_SC.INVALID_OPCODE));
  if (sqePsdt(n.cmd) !== NVME_PSDT.PRP)
    return n.fail(NVME_ERR.ADMIN_PSDT, dnr(NVME_SC.INVALID_FIELD));
  if (sqeFuse(n.cmd) !== 0) return n.fail(NVME_ERR.FUSE, NVME_SC.INVALID_FIELD);
  switch (op) {
    case NVME_ADMIN.IDENTIFY:
      return nvmeIdentify(n);
    case NVME_ADMIN.CREATE_CQ:
      return nvmeCreateCq(n);
    case NVME_ADMIN.CREATE_SQ:
      return nvmeCreateSq(n);
    case NVME_ADMIN.DELETE_SQ:
      return nvmeDelSq(n);
    case NVME_ADMIN.DELETE_CQ:
      return nvmeDelCq(n);
    case NVME_ADMIN.DBBUF:
      return nvmeDbbufConfig(n);
    default:
      return n.fail(NVME_ERR.INVALID_ADMIN_OPC, dnr(NVME_SC.INVALID_OPCODE));
  }
}

/** QEMU `nvme_identify` (`nvme_identify_ctrl`, `nvme_identify_ns`): CNS 01h and 00h. */
function nvmeIdentify(n: NvmeCtrlState): number {
  const cns = identifyCns(n.cmd);
  const out = new Uint8Array(NVME_IDENTIFY_DATA_SIZE);
  if (cns === NVME_ID_CNS.CTRL) {
    let sgls = sglsSupport(n.sgl);
    if (sgls !== 0) {
      if (n.sglCaps.bitBucket) sgls += NVME_CTRL_SGLS_BITBUCKET;
      if (n.sglCaps.oversize) sgls += NVME_CTRL_SGLS_EXCESS_LENGTH;
    }
    writeIdCtrl(out, {
      vid: PCI_VENDOR_ID_REDHAT,
      sn: "DMASIM0001",
      mn: "dmasim NVMe controller",
      fr: "1.0",
      mdts: n.mdts,
      crdt: n.crdt,
      oacs: n.shadowDoorbells ? NVME_CTRL_OACS_DBBUF_SUPP : 0,
      sqes: ID_SQES,
      cqes: ID_CQES,
      nn: n.namespaces.length,
      sgls,
    });
  } else if (cns === NVME_ID_CNS.NS) {
    const ns = n.namespaces[getU32(n.cmd, SQE.NSID) - 1];
    if (ns === undefined) return n.fail(NVME_ERR.INVALID_NSID, dnr(NVME_SC.INVALID_NS));
    writeIdNs(out, {
      nsze: ns.blocks,
      ncap: ns.blocks,
      nuse: 0,
      nlbaf: 0, // 0-based: one format
      flbas: 0, // format 0
      lbads: Math.log2(ns.lbaSize),
    });
  } else {
    return n.fail(NVME_ERR.INVALID_IDENTIFY_CNS, dnr(NVME_SC.INVALID_FIELD));
  }
  return nvmeTransfer(n, out, NVME_IDENTIFY_DATA_SIZE, true);
}

/** QEMU `nvme_create_cq`: a physically contiguous, page-aligned completion queue. */
function nvmeCreateCq(n: NvmeCtrlState): number {
  const cdw10 = getU32(n.cmd, SQE.CDW10);
  const qid = cdw10Qid(cdw10);
  const size = cdw10Qsize(cdw10);
  const contiguous = cdw11Contiguous(getU32(n.cmd, SQE.CDW11));
  const base = getAddr64(n.cmd, SQE.PRP1);
  if (qid === 0 || qid > n.maxIoQueues || n.cqs.has(qid))
    return n.fail(NVME_ERR.INVALID_CREATE_CQ_CQID, dnr(NVME_SC.QID_INVALID));
  if (size < 2 || size > n.maxQueueEntries)
    return n.fail(NVME_ERR.INVALID_CREATE_CQ_SIZE, dnr(NVME_SC.QUEUE_SIZE));
  if (!contiguous) return n.fail(NVME_ERR.INVALID_CREATE_CQ_QFLAGS, dnr(NVME_SC.INVALID_FIELD));
  if (base < 0 || base % n.pageSize !== 0)
    return n.fail(NVME_ERR.INVALID_CREATE_CQ_ADDR, dnr(NVME_SC.PRP_INVALID_OFFSET));
  n.cqs.set(qid, { qid, base, size, tail: 0, head: 0, phase: 1, backlog: [] });
  return 0;
}

/** QEMU `nvme_create_sq`: a physically contiguous, page-aligned submission queue on an existing CQ. */
function nvmeCreateSq(n: NvmeCtrlState): number {
  const cdw10 = getU32(n.cmd, SQE.CDW10);
  const qid = cdw10Qid(cdw10);
  const size = cdw10Qsize(cdw10);
  const cdw11 = getU32(n.cmd, SQE.CDW11);
  const contiguous = cdw11Contiguous(cdw11);
  const cqid = cdw11Cqid(cdw11);
  const base = getAddr64(n.cmd, SQE.PRP1);
  if (qid === 0 || qid > n.maxIoQueues || n.sqs.has(qid))
    return n.fail(NVME_ERR.INVALID_CREATE_SQ_SQID, dnr(NVME_SC.QID_INVALID));
  if (cqid === 0 || !n.cqs.has(cqid))
    return n.fail(NVME_ERR.INVALID_CREATE_SQ_CQID, dnr(NVME_SC.CQ_INVALID));
  if (size < 2 || size > n.maxQueueEntries)
    return n.fail(NVME_ERR.INVALID_CREATE_SQ_SIZE, dnr(NVME_SC.QUEUE_SIZE));
  if (!contiguous) return n.fail(NVME_ERR.INVALID_CREATE_SQ_QFLAGS, dnr(NVME_SC.INVALID_FIELD));
  if (base < 0 || base % n.pageSize !== 0)
    return n.fail(NVME_ERR.INVALID_CREATE_SQ_ADDR, dnr(NVME_SC.PRP_INVALID_OFFSET));
  n.sqs.set(qid, { qid, base, size, cqid, head: 0, tail: 0 });
  return 0;
}

/**
 * QEMU `nvme_dbbuf_config`: PRP1 is the shadow doorbell page and PRP2 the event index page,
 * both page aligned (else Invalid Field with DNR). Every existing queue, the admin queue
 * included, gets its slots, and its current tail / head is written into the shadow page.
 */
function nvmeDbbufConfig(n: NvmeCtrlState): number {
  const dbs = getAddr64(n.cmd, SQE.PRP1);
  const eis = getAddr64(n.cmd, SQE.PRP2);
  if (dbs < 0 || eis < 0 || dbs % n.pageSize !== 0 || eis % n.pageSize !== 0)
    return n.fail(NVME_ERR.DBBUF_ALIGN, dnr(NVME_SC.INVALID_FIELD));
  n.dbbufDbs = dbs;
  n.dbbufEis = eis;
  n.dbbufEnabled = true;
  const c = n.counters.c;
  for (const sq of n.sqs.values()) {
    c.shadowWrites++;
    n.dmaWriteU32(dbs + 2 * sq.qid * 4, sq.tail);
  }
  for (const cq of n.cqs.values()) {
    c.shadowWrites++;
    n.dmaWriteU32(dbs + (2 * cq.qid + 1) * 4, cq.head);
  }
  return 0;
}

/** QEMU `nvme_del_sq`. */
function nvmeDelSq(n: NvmeCtrlState): number {
  const qid = cdw10Qid(getU32(n.cmd, SQE.CDW10));
  if (qid === 0 || !n.sqs.has(qid))
    return n.fail(NVME_ERR.INVALID_DEL_SQ, dnr(NVME_SC.QID_INVALID));
  n.sqs.delete(qid);
  return 0;
}

/**
 * QEMU `nvme_del_cq`: an unknown CQ is Invalid Completion Queue (with DNR); one that a
 * submission queue still posts to is Invalid Queue Deletion (without DNR).
 */
function nvmeDelCq(n: NvmeCtrlState): number {
  const qid = cdw10Qid(getU32(n.cmd, SQE.CDW10));
  if (qid === 0 || !n.cqs.has(qid))
    return n.fail(NVME_ERR.INVALID_DEL_CQ_CQID, dnr(NVME_SC.CQ_INVALID));
  for (const sq of n.sqs.values())
    if (sq.cqid === qid) return n.fail(NVME_ERR.INVALID_DEL_CQ_NOTEMPTY, NVME_SC.INVALID_QUEUE_DEL);
  n.cqs.delete(qid);
  return 0;
}
