/**
 * Why a command failed. QEMU names every guest error it detects with a trace event
 * (`NVME_GUEST_ERR(pci_nvme_err_...)` and `trace_pci_nvme_err_*` in hw/nvme/ctrl.c, listed in
 * hw/nvme/trace-events); the model records the same name for each failed command, so that a
 * trace can say which check a command failed. Where QEMU has no event for a check (it returns
 * the status silently) or the check is the model's own, the reason is named
 * `dmasim_nvme_err_*`.
 *
 * The log is bounded: a ring of the last `NVME_ERROR_LOG_ENTRIES` failed commands, newest
 * first, as the Error Information log page (Log Page Identifier 01h) holds a fixed number of
 * entries and counts every error in its Error Count. A long run keeps only the latest.
 */

/** The reasons a command fails, by the check that failed. */
export const NVME_ERR = {
  // Reading or writing host memory (QEMU `nvme_addr_read` / `nvme_addr_write` failures).
  ADDR_READ: "pci_nvme_err_addr_read",
  ADDR_WRITE: "pci_nvme_err_addr_write",
  /** An address at or above 2^53, the model's address width: no memory is there. */
  ADDR_OUT_OF_RANGE: "dmasim_nvme_err_addr_out_of_range",
  // PRPs (QEMU `nvme_map_prp`).
  INVALID_PRP2_ALIGN: "pci_nvme_err_invalid_prp2_align",
  INVALID_PRPLIST_ENT: "pci_nvme_err_invalid_prplist_ent",
  // SGLs (QEMU `nvme_map_sgl` / `nvme_map_sgl_data`).
  INVALID_SGLD: "pci_nvme_err_invalid_sgld",
  INVALID_NUM_SGLD: "pci_nvme_err_invalid_num_sgld",
  INVALID_SGL_EXCESS_LENGTH: "pci_nvme_err_invalid_sgl_excess_length",
  /** The SGL describes less than the transfer ("PRP/SGL is too small for transfer size"). */
  INVALID_DMA: "pci_nvme_err_invalid_dma",
  SGL_ADDR_WRAPS: "dmasim_nvme_err_sgl_addr_wraps",
  SGL_GRANULARITY: "dmasim_nvme_err_sgl_granularity",
  SGL_SEG_DESCR_TYPE: "dmasim_nvme_err_sgl_seg_descr_type",
  SGL_SEG_LEN: "dmasim_nvme_err_sgl_seg_len",
  SGL_SEG_ALIGN: "dmasim_nvme_err_sgl_seg_align",
  SGL_SEG_IN_LAST_SEGMENT: "dmasim_nvme_err_sgl_seg_in_last_segment",
  SGL_SEG_NO_PROGRESS: "dmasim_nvme_err_sgl_seg_no_progress",
  SGL_UNSUPPORTED: "dmasim_nvme_err_sgl_unsupported",
  INVALID_PSDT: "dmasim_nvme_err_invalid_psdt",
  TOO_MANY_MAPPINGS: "pci_nvme_ub_too_many_mappings",
  // Admin commands (QEMU `nvme_admin_cmd` and the command functions).
  ADMIN_PSDT: "dmasim_nvme_err_admin_psdt",
  INVALID_ADMIN_OPC: "pci_nvme_err_invalid_admin_opc",
  INVALID_IDENTIFY_CNS: "pci_nvme_err_invalid_identify_cns",
  INVALID_CREATE_CQ_CQID: "pci_nvme_err_invalid_create_cq_cqid",
  INVALID_CREATE_CQ_SIZE: "pci_nvme_err_invalid_create_cq_size",
  INVALID_CREATE_CQ_ADDR: "pci_nvme_err_invalid_create_cq_addr",
  INVALID_CREATE_CQ_QFLAGS: "pci_nvme_err_invalid_create_cq_qflags",
  INVALID_CREATE_SQ_SQID: "pci_nvme_err_invalid_create_sq_sqid",
  INVALID_CREATE_SQ_CQID: "pci_nvme_err_invalid_create_sq_cqid",
  INVALID_CREATE_SQ_SIZE: "pci_nvme_err_invalid_create_sq_size",
  INVALID_CREATE_SQ_ADDR: "pci_nvme_err_invalid_create_sq_addr",
  INVALID_CREATE_SQ_QFLAGS: "pci_nvme_err_invalid_create_sq_qflags",
  INVALID_DEL_SQ: "pci_nvme_err_invalid_del_sq",
  INVALID_DEL_CQ_CQID: "pci_nvme_err_invalid_del_cq_cqid",
  INVALID_DEL_CQ_NOTEMPTY: "pci_nvme_err_invalid_del_cq_notempty",
  DBBUF_ALIGN: "dmasim_nvme_err_dbbuf_align",
  // I/O commands (QEMU `nvme_io_cmd`, `nvme_rw`).
  INVALID_OPC: "pci_nvme_err_invalid_opc",
  INVALID_NSID: "dmasim_nvme_err_invalid_nsid",
  /** A valid namespace ID with no active namespace (QEMU: Invalid Field, no trace event). */
  INACTIVE_NS: "dmasim_nvme_err_inactive_ns",
  /** Fused operations are not supported (QEMU: Invalid Field, no trace event). */
  FUSE: "dmasim_nvme_err_fuse",
  MDTS: "pci_nvme_err_mdts",
  INVALID_LBA_RANGE: "pci_nvme_err_invalid_lba_range",
  // Fault injection (`NvmeFaultPlan`).
  INJECTED: "dmasim_nvme_err_injected",
  INJECTED_DMA_READ: "dmasim_nvme_err_injected_dma_read",
} as const;

/** A reason a command failed. */
export type NvmeErrReason = (typeof NVME_ERR)[keyof typeof NVME_ERR];

/** Entries the error log keeps. */
export const NVME_ERROR_LOG_ENTRIES = 64;

/** One failed command. */
export interface NvmeErrorEntry {
  /** The error's number since the controller was created (1 for the first). */
  readonly errorCount: number;
  readonly sqid: number;
  readonly cid: number;
  readonly opcode: number;
  /** The status posted (shifted form, DNR = 0x4000). */
  readonly status: number;
  readonly reason: NvmeErrReason;
}

/** The ring of the last failed commands. */
export class NvmeErrorLog {
  private readonly ring: NvmeErrorEntry[] = [];
  private next = 0;
  /** Errors recorded since the controller was created. */
  errorCount = 0;

  /** Records a failed command. */
  record(sqid: number, cid: number, opcode: number, status: number, reason: NvmeErrReason): void {
    this.errorCount++;
    const e: NvmeErrorEntry = { errorCount: this.errorCount, sqid, cid, opcode, status, reason };
    if (this.ring.length < NVME_ERROR_LOG_ENTRIES) this.ring.push(e);
    else this.ring[this.next] = e;
    this.next = (this.next + 1) % NVME_ERROR_LOG_ENTRIES;
  }

  /** The entries kept, newest first. */
  entries(): NvmeErrorEntry[] {
    const out: NvmeErrorEntry[] = [];
    const n = this.ring.length;
    for (let i = 1; i <= n; i++)
      out.push(
        this.ring[
          (this.next - i + NVME_ERROR_LOG_ENTRIES) % NVME_ERROR_LOG_ENTRIES
        ] as NvmeErrorEntry,
      );
    return out;
  }

  /** The newest entry of command `cid` on submission queue `sqid`, if still kept. */
  find(sqid: number, cid: number): NvmeErrorEntry | undefined {
    return this.entries().find((e) => e.sqid === sqid && e.cid === cid);
  }
}
