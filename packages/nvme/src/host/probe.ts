/**
 * Bring-up and shutdown of the host driver (Linux drivers/nvme/host/pci.c `nvme_probe` /
 * `nvme_reset_work` / `nvme_dev_disable`, core.c `nvme_enable_ctrl` / `nvme_init_identify`):
 * the admin queue through the registers, synchronous admin commands, Identify, the queue
 * limits, the I/O queue pairs and the doorbell buffers.
 */
import { type QueueLimits, hex, setU32, setU64 } from "@dmasim/bvec";
import {
  DmaPool,
  blkDmaIter,
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaOptMappingSize,
} from "@dmasim/dma-core";
import { NvmeError } from "../errors.ts";
import {
  NVME_ADMIN,
  NVME_QUEUE_PHYS_CONTIG,
  SQE,
  createSqCdw11,
  nvmeStatusName,
  queueCdw10,
} from "../spec/commands.ts";
import {
  NVME_IDENTIFY_DATA_SIZE,
  NVME_ID_CNS,
  readIdCtrl,
  readIdNs,
  sglsSupported,
} from "../spec/identify.ts";
import {
  NVME_REG,
  aqaValue,
  capMpsmin,
  capMqes,
  ccValue,
  cstsCfs,
  cstsRdy,
} from "../spec/registers.ts";
import { nvmeDbbufDmaAlloc, nvmeDbbufDmaFree } from "./dbbuf.ts";
import type { NvmeDev } from "./dev.ts";
import {
  NVME_AQ_DEPTH,
  NVME_CTRL_PAGE_SHIFT,
  NVME_CTRL_PAGE_SIZE,
  NVME_IO_QUEUE_DEPTH,
  NVME_SMALL_POOL_SIZE,
  nvmeSetCtrlLimits,
} from "./limits.ts";
import { type NvmeQueue, nvmeAllocQueue, nvmeFreeQueue } from "./queue.ts";
import { nvmeSubmitCmd, nvmeWaitFor } from "./submit.ts";

/** The logical block size assumed before Identify Namespace has answered. */
const DEFAULT_LBA_SIZE = 512;
/** CC.IOSQES / CC.IOCQES the driver programs: 64-byte and 16-byte entries (log2). */
const NVME_NVM_IOSQES = 6;
const NVME_NVM_IOCQES = 4;
/** Linux `NVME_CC_CSS_NVM`, `NVME_CC_AMS_RR`. */
const NVME_CC_CSS_NVM = 0;
const NVME_CC_AMS_RR = 0;
/** Linux sets `max_segment_size` to UINT_MAX (`dma_set_max_seg_size(dev->dev, 0xffffffff)`). */
const NVME_MAX_SEG_SIZE = 0xffffffff;

/**
 * Brings the controller up as Linux does: disable, program the admin queue, enable with
 * CC.MPS = 0 (refusing a controller whose minimum page exceeds 4 KiB), Identify Controller and
 * Namespaces, set the queue limits, create the I/O queue pairs (CQ before SQ), and configure
 * doorbell buffers when the controller offers them.
 *
 * Simplified on purpose: `nvme_enable_ctrl` writes CC without EN, re-reads CAP, sets EN and
 * polls CSTS.RDY for up to CAP.TO; here one CC write sets EN and the controller is ready at
 * once. There is no Set Features (Number of Queues) negotiation: the host creates the pairs it
 * wants and the controller offers 64.
 */
export function nvmePciEnable(d: NvmeDev): void {
  if (d.enabled) throw new NvmeError("EBUSY", "the host is already enabled");
  const bar = d.bar;
  const capHi = bar.readReg32(NVME_REG.CAP + 4);
  const capLo = bar.readReg32(NVME_REG.CAP);
  const mpsmin = capMpsmin(capHi);
  const mqes = capMqes(capLo);
  if (mpsmin > 0) {
    throw new NvmeError(
      "ENODEV",
      `Minimum device page size ${2 ** (mpsmin + NVME_CTRL_PAGE_SHIFT)} too large for host (${NVME_CTRL_PAGE_SIZE})`,
    );
  }
  // The PCI driver's DMA settings (nvme_pci_alloc_dev): the mask first, so that the limits
  // below see it (dma_opt_mapping_size is the SWIOTLB segment when it cannot reach all RAM).
  d.dev.setMaskBits(d.dmaAddressBits);
  d.dev.minAlignMask = NVME_CTRL_PAGE_SIZE - 1;
  d.dev.maxSegmentSize = NVME_MAX_SEG_SIZE;
  d.small = new DmaPool("nvme descriptor small", d.dev, NVME_SMALL_POOL_SIZE, NVME_SMALL_POOL_SIZE);
  d.large = new DmaPool("nvme descriptor page", d.dev, NVME_CTRL_PAGE_SIZE, NVME_CTRL_PAGE_SIZE);
  // Linux `nvme_pci_configure_admin_queue`: disable, program AQA/ASQ/ACQ, enable.
  bar.writeReg32(NVME_REG.CC, 0);
  const admin = allocQueue(d, 0, NVME_AQ_DEPTH);
  bar.writeReg32(NVME_REG.AQA, aqaValue(NVME_AQ_DEPTH - 1, NVME_AQ_DEPTH - 1));
  bar.writeReg64(NVME_REG.ASQ, admin.sq.dmaAddr);
  bar.writeReg64(NVME_REG.ACQ, admin.cq.dmaAddr);
  // Linux `nvme_enable_ctrl`: EN, CSS NVM, MPS 0 (4 KiB), AMS round robin, IOSQES 6, IOCQES 4.
  bar.writeReg32(
    NVME_REG.CC,
    ccValue({
      en: true,
      css: NVME_CC_CSS_NVM,
      mps: NVME_CTRL_PAGE_SHIFT - 12,
      ams: NVME_CC_AMS_RR,
      iosqes: NVME_NVM_IOSQES,
      iocqes: NVME_NVM_IOCQES,
    }),
  );
  if (!cstsRdy(d.csts())) {
    nvmeFreeQueue(d.dev, admin);
    d.queues.length = 0;
    d.small.destroy();
    d.large.destroy();
    throw new NvmeError("ENODEV", `controller failed to become ready (CSTS ${hex(d.csts())})`);
  }
  // Identify Controller (`nvme_init_identify`), then each namespace (`nvme_scan_ns`).
  const id = readIdCtrl(nvmeIdentify(d, NVME_ID_CNS.CTRL, 0));
  d.info = { mdts: id.mdts, sgls: id.sgls, namespaces: id.nn, mpsmin, mqes };
  d.crdt = id.crdt;
  d.namespaces = [];
  for (let ns = 1; ns <= id.nn; ns++) {
    const n = readIdNs(nvmeIdentify(d, NVME_ID_CNS.NS, ns));
    d.namespaces.push({ nsid: ns, lbaSize: 2 ** n.lbads, blocks: n.nsze });
  }
  d.limits = setCtrlLimits(d, false);
  d.adminLimits = setCtrlLimits(d, true);
  d.dbbuf = nvmeDbbufDmaAlloc(d.dev, id.oacs);
  d.ctx = {
    dev: d.dev,
    mem: d.dev.memory,
    small: d.small,
    large: d.large,
    vecPool: d.vecPool,
    sgPool: d.sgPool,
    sglSupported: sglsSupported(id.sgls),
    sglThreshold: d.sglThreshold,
    iter: blkDmaIter(),
  };
  const depth = Math.min(d.wantDepth ?? NVME_IO_QUEUE_DEPTH, mqes + 1);
  // Linux `nvme_create_io_queues`: every queue's memory first (`nvme_alloc_queue`), then
  // `nvme_create_queue` for each, which creates the CQ before the SQ.
  for (let q = 1; q <= d.wantIoQueues; q++) allocQueue(d, q, depth);
  for (let q = 1; q <= d.wantIoQueues; q++) {
    const queue = d.queues[q] as NvmeQueue;
    // Linux `adapter_alloc_cq` / `adapter_alloc_sq`: physically contiguous, polled (no IEN).
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.CREATE_CQ;
      setU64(cmd, SQE.PRP1, queue.cq.dmaAddr);
      setU32(cmd, SQE.CDW10, queueCdw10(q, depth));
      setU32(cmd, SQE.CDW11, NVME_QUEUE_PHYS_CONTIG);
    });
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.CREATE_SQ;
      setU64(cmd, SQE.PRP1, queue.sq.dmaAddr);
      setU32(cmd, SQE.CDW10, queueCdw10(q, depth));
      setU32(cmd, SQE.CDW11, createSqCdw11(q));
    });
  }
  nvmeDbbufSet(d);
  d.enabled = true;
}

/** The queue limits (`nvme_set_ctrl_limits`) for the I/O queues or, when `admin`, the admin queue. */
function setCtrlLimits(d: NvmeDev, admin: boolean): QueueLimits {
  return nvmeSetCtrlLimits({
    info: d.info,
    sglSupported: sglsSupported(d.info.sgls),
    twoStep: d.mapping === "two-step",
    kernel: d.dev.kernel,
    dmaOptMappingSize: dmaOptMappingSize(d.dev),
    lbaSize: d.namespaces[0]?.lbaSize ?? DEFAULT_LBA_SIZE,
    admin,
  });
}

function allocQueue(d: NvmeDev, qid: number, depth: number): NvmeQueue {
  const q = nvmeAllocQueue(d.dev, qid, depth);
  d.queues[qid] = q;
  return q;
}

/**
 * Linux `__nvme_submit_sync_cmd` on the admin queue: runs one command to completion
 * (advancing the clock if completions are delayed); a failed command throws EIO.
 */
function nvmeSubmitSyncCmd(d: NvmeDev, build: (cmd: Uint8Array) => void): void {
  const q = d.queues[0] as NvmeQueue;
  const tag = q.freeTags.pop();
  if (tag === undefined) throw new NvmeError("EBUSY", "no free admin tag");
  const iod = q.iod(tag);
  iod.resetForSubmit();
  build(iod.cmd);
  let result: number | undefined;
  q.callbacks[tag] = (_s, nvmeStatus) => {
    result = nvmeStatus;
  };
  nvmeSubmitCmd(d, q, iod, true);
  nvmeWaitFor(d, q, () => result !== undefined);
  if (result !== 0) {
    throw new NvmeError(
      "EIO",
      `admin command ${hex(iod.cmd[SQE.OPCODE] as number)} failed: ${nvmeStatusName(result ?? 0)}`,
    );
  }
}

/** Linux `nvme_identify_ctrl` / `nvme_identify_ns`: the 4 KiB Identify data of `cns`. */
function nvmeIdentify(d: NvmeDev, cns: number, nsid: number): Uint8Array {
  const buf = dmaAllocCoherent(d.dev, NVME_IDENTIFY_DATA_SIZE);
  try {
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.IDENTIFY;
      setU32(cmd, SQE.NSID, nsid);
      setU64(cmd, SQE.PRP1, buf.dmaAddr);
      setU32(cmd, SQE.CDW10, cns);
    });
    return d.dev.memory.readBytes(buf.cpuAddr, NVME_IDENTIFY_DATA_SIZE);
  } finally {
    dmaFreeCoherent(d.dev, NVME_IDENTIFY_DATA_SIZE, buf.cpuAddr, buf.dmaAddr);
  }
}

/**
 * Linux `nvme_dbbuf_set`, sent once the I/O queues exist: Doorbell Buffer Config with PRP1 =
 * the shadow page, PRP2 = the event index page. On failure Linux warns ("unable to set
 * dbbuf"), frees the pages and carries on with MMIO doorbells only.
 */
function nvmeDbbufSet(d: NvmeDev): void {
  const b = d.dbbuf;
  if (b === null) return;
  try {
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.DBBUF;
      setU64(cmd, SQE.PRP1, b.dbs.dmaAddr);
      setU64(cmd, SQE.PRP2, b.eis.dmaAddr);
    });
  } catch (e) {
    if (!(e instanceof NvmeError) || cstsCfs(d.csts())) throw e;
    nvmeDbbufDmaFree(d.dev, b);
    d.dbbuf = null;
  }
}

/**
 * Shuts down (Linux `nvme_dev_disable` and `nvme_remove`): deletes the I/O queues (SQ before
 * CQ), disables the controller, and frees every queue ring and descriptor pool. Throws EBUSY
 * with requests in flight. Simplified on purpose: CC is cleared; Linux's shutdown
 * (`nvme_disable_ctrl(ctrl, true)`) sets CC.SHN and waits for CSTS.SHST.
 */
export function nvmeDevShutdown(d: NvmeDev): void {
  if (!d.enabled) return;
  for (const q of d.queues.slice(1)) {
    if (q.inflight > 0 || q.requeueList.length > 0)
      throw new NvmeError(
        "EBUSY",
        `queue ${q.qid} still has ${q.inflight} requests in flight and ${q.requeueList.length} requeued`,
      );
  }
  for (const q of d.queues.slice(1)) {
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.DELETE_SQ;
      setU32(cmd, SQE.CDW10, q.qid);
    });
    nvmeSubmitSyncCmd(d, (cmd) => {
      cmd[SQE.OPCODE] = NVME_ADMIN.DELETE_CQ;
      setU32(cmd, SQE.CDW10, q.qid);
    });
  }
  d.bar.writeReg32(NVME_REG.CC, 0);
  for (const q of d.queues) nvmeFreeQueue(d.dev, q);
  d.queues.length = 0;
  if (d.dbbuf !== null) nvmeDbbufDmaFree(d.dev, d.dbbuf);
  d.dbbuf = null;
  d.small.destroy();
  d.large.destroy();
  d.enabled = false;
}
