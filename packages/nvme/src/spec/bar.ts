/**
 * The register window (BAR0 of the PCI function): the one thing the host calls on the
 * controller. Everything else crosses "PCIe" as DMA into host memory.
 */

/** MMIO access to an NVMe controller's registers (offsets in `NVME_REG`). */
export interface NvmeBar {
  /** Reads a 32-bit register (a 64-bit one as two dwords, low first). */
  readReg32(off: number): number;
  /** Writes a 32-bit register or a doorbell. */
  writeReg32(off: number, value: number): void;
  /** Writes a 64-bit register (ASQ, ACQ). */
  writeReg64(off: number, value: number): void;
}
