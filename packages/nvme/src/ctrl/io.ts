/**
 * The I/O command set of the simulated controller (QEMU hw/nvme/ctrl.c `nvme_io_cmd`,
 * `nvme_read`, `nvme_write`, `nvme_flush`) and the data transfer every command with data goes
 * through: map the data pointer (`nvme_map_dptr`: PRPs or an SGL), then move the bytes by DMA
 * (`nvme_tx`).
 *
 * Status and DNR on a read or write, as QEMU `nvme_read` / `nvme_do_write` set them: every
 * failure to map the data pointer (a bad descriptor, PSDT 11b, and also a PRP list page or SGL
 * segment that cannot be read) carries DNR (`invalid: return status | NVME_DNR`). A fault while
 * the data itself moves is a Data Transfer Error (04h) without DNR. QEMU never reports 04h there:
 * its block-layer errors come back through `nvme_aio_err` / `nvme_rw_complete_cb` as Unrecovered
 * Read Error or Write Fault, without DNR, and a DMA translation failure is absorbed by QEMU's DMA
 * helpers (it bounces through the unassigned region and completes). The model keeps QEMU's
 * retryable disposition (no DNR) with the specification's status for a failed transfer (04h),
 * rather than report an IOMMU fault as a media error.
 */
import { getU32, pow2 } from "@dmasim/bvec";
import {
  NVME_CMD,
  NVME_MAX_NAMESPACES,
  NVME_NSID_BROADCAST,
  NVME_PSDT,
  NVME_SC,
  NVME_STATUS_DNR,
  SQE,
  getAddr64,
  rwNlb,
  rwSlba,
  sqeFuse,
  sqePsdt,
} from "../spec/commands.ts";
import { NVME_ERR } from "./error-log.ts";
import type { NvmeNamespace } from "./ns.ts";
import type { NvmeCtrlState } from "./state.ts";
import { nvmeMapPrp, nvmeMapSgl } from "./walker.ts";

const dnr = (sc: number) => sc + NVME_STATUS_DNR;

/**
 * QEMU `nvme_io_cmd`: runs the I/O command in `n.cmd`; returns its status. The checks come in
 * QEMU's order: Flush first (`nvme_flush`: the broadcast NSID, or an active namespace, else
 * Invalid Field), then the NSID (0, broadcast or above 256: Invalid Namespace), an inactive
 * namespace (Invalid Field), the opcode, and fused operations (Invalid Field without DNR).
 */
export function nvmeIoCmd(n: NvmeCtrlState): number {
  const c = n.counters.c;
  c.ioCommands++;
  const op = n.cmd[SQE.OPCODE] as number;
  const injected = n.faults.ioCommand();
  if (injected >= 0) {
    c.injectedFailures++;
    return n.fail(NVME_ERR.INJECTED, injected);
  }
  const nsid = getU32(n.cmd, SQE.NSID);
  if (op === NVME_CMD.FLUSH) {
    if (nsid !== NVME_NSID_BROADCAST && n.namespaces[nsid - 1] === undefined)
      return n.fail(NVME_ERR.INACTIVE_NS, dnr(NVME_SC.INVALID_FIELD));
    return 0;
  }
  if (nsid === 0 || nsid === NVME_NSID_BROADCAST || nsid > NVME_MAX_NAMESPACES)
    return n.fail(NVME_ERR.INVALID_NSID, dnr(NVME_SC.INVALID_NS));
  const ns = n.namespaces[nsid - 1];
  if (ns === undefined) return n.fail(NVME_ERR.INACTIVE_NS, dnr(NVME_SC.INVALID_FIELD));
  if (op !== NVME_CMD.READ && op !== NVME_CMD.WRITE)
    return n.fail(NVME_ERR.INVALID_OPC, dnr(NVME_SC.INVALID_OPCODE));
  if (sqeFuse(n.cmd) !== 0) return n.fail(NVME_ERR.FUSE, NVME_SC.INVALID_FIELD);
  const slba = rwSlba(n.cmd);
  const nlb = rwNlb(n.cmd);
  const len = nlb * ns.lbaSize;
  // MDTS is checked before any descriptor is read (QEMU `nvme_check_mdts`).
  if (n.mdts !== 0 && len > n.pageSize * pow2(n.mdts))
    return n.fail(NVME_ERR.MDTS, dnr(NVME_SC.INVALID_FIELD));
  if (slba + nlb > ns.blocks) return n.fail(NVME_ERR.INVALID_LBA_RANGE, dnr(NVME_SC.LBA_RANGE));
  if (op === NVME_CMD.READ) {
    // The namespace's bytes go straight into host memory, range by range (no staging copy;
    // the LBA range was checked above, so the namespace read cannot fail).
    return nvmeTransfer(n, n.data, len, true, ns, slba * ns.lbaSize);
  }
  if (n.data.length < len) n.data = new Uint8Array(len);
  return nvmeTransfer(n, n.data, len, false, ns, slba * ns.lbaSize);
}

/**
 * Maps the data pointer of `n.cmd` (QEMU `nvme_map_dptr`) and moves `len` bytes (QEMU
 * `nvme_tx`): to the host when `toHost`, else from it. The device's side of the bytes is `ns`
 * from byte `nsAt` on when given, else `buf[0..len)`. Data from the host reaches `ns` only if
 * the whole transfer succeeds: a single range goes straight there (if it fails, nothing moved);
 * several are staged in `buf` first, since a later range may fail after earlier ones moved.
 */
export function nvmeTransfer(
  n: NvmeCtrlState,
  buf: Uint8Array,
  len: number,
  toHost: boolean,
  ns?: NvmeNamespace,
  nsAt = 0,
): number {
  const c = n.counters.c;
  const psdt = sqePsdt(n.cmd);
  const r = n.ranges;
  let st: number;
  let walked = true;
  if (psdt === NVME_PSDT.PRP) {
    c.prpWalks++;
    const prp1 = getAddr64(n.cmd, SQE.PRP1);
    const prp2 = getAddr64(n.cmd, SQE.PRP2);
    st = nvmeMapPrp(n.dma, prp1, prp2, len, n.pageSize, r, n.faults.descriptorHook);
    if (st !== 0) n.reason = r.reason;
  } else if (psdt === NVME_PSDT.RESERVED) {
    // QEMU `nvme_map_dptr`; a read or write adds DNR below.
    walked = false;
    st = n.fail(NVME_ERR.INVALID_PSDT, NVME_SC.INVALID_FIELD);
  } else if (n.sgl === "none") {
    walked = false;
    st = n.fail(NVME_ERR.SGL_UNSUPPORTED, dnr(NVME_SC.INVALID_FIELD));
  } else {
    c.sglWalks++;
    st = nvmeMapSgl(n.dma, n.cmd, SQE.SGL_ADDR, len, n.sglCaps, toHost, r, n.faults.descriptorHook);
    if (st !== 0) n.reason = r.reason;
  }
  // Only a walk read descriptors: a command refused before one (PSDT 11b, or SGLs unsupported)
  // must not count the previous walk's again.
  if (walked) {
    c.descriptorReads += r.descriptorReads;
    c.descriptorBytes += r.descriptorBytes;
  }
  if (st !== 0) {
    if (st === NVME_SC.DATA_XFER_ERROR) c.dmaFaults++;
    // QEMU `nvme_read` / `nvme_do_write`: a mapping failure of a read or write carries DNR
    // (`invalid: return status | NVME_DNR`); an admin command's (`nvme_c2h`) is returned as is.
    return ns !== undefined && st < NVME_STATUS_DNR ? st + NVME_STATUS_DNR : st;
  }
  if (r.count > n.maxRanges) return n.fail(NVME_ERR.TOO_MANY_MAPPINGS, dnr(NVME_SC.INTERNAL));
  c.dataRanges += r.count;
  // Data from the host goes straight to the namespace when it is one range of the whole length.
  const direct = !toHost && ns !== undefined && r.count === 1 && r.len[0] === len;
  let at = 0;
  for (let i = 0; i < r.count; i++) {
    const a = r.addr[i] as number;
    const l = r.len[i] as number;
    if (a < 0) {
      at += l; // Bit Bucket: discarded
      continue;
    }
    if (toHost) {
      const w =
        ns === undefined ? n.dma.write(a, buf, at, l) : n.dma.writeFrom(a, ns, nsAt + at, l);
      if (!w.ok) {
        c.dmaFaults++;
        return n.fail(NVME_ERR.ADDR_WRITE, NVME_SC.DATA_XFER_ERROR);
      }
    } else {
      const fail = n.faults.dataRead();
      if (fail || !(direct ? n.dma.readTo(a, ns, nsAt + at, l) : n.dma.read(a, buf, at, l)).ok) {
        c.dmaFaults++;
        if (fail) c.injectedFailures++;
        return n.fail(
          fail ? NVME_ERR.INJECTED_DMA_READ : NVME_ERR.ADDR_READ,
          NVME_SC.DATA_XFER_ERROR,
        );
      }
    }
    at += l;
  }
  if (toHost) c.bytesWritten += len;
  else {
    c.bytesRead += len;
    if (ns !== undefined && !direct) ns.write(nsAt, buf, 0, len);
  }
  return 0;
}
