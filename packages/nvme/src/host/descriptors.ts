/**
 * The descriptor blocks of a command (PRP list pages, SGL segments): Linux nvme-pci's two DMA
 * pools ("nvme descriptor small" of 256 bytes, "nvme descriptor page" of 4 KiB), the
 * allocation of a block, its bytes as a view of simulated memory, and `nvme_free_descriptors`.
 * Both mapping styles use them.
 */
import { type PhysMemory, fastMod, getU64 } from "@dmasim/bvec";
import { DmaError, type DmaPool, type DmaPoolBlock } from "@dmasim/dma-core";
import { SQE } from "../spec/commands.ts";
import { IOD, type NvmeIod, iodHas } from "./iod.ts";
import {
  NVME_CTRL_PAGE_SIZE,
  NVME_MAX_NR_DESCRIPTORS,
  NVME_PRP_ENTRY_SIZE,
  NVME_SMALL_POOL_SIZE,
  PRPS_PER_PAGE,
} from "./limits.ts";

/** The descriptor pools and the memory their blocks live in. */
export interface DescriptorPools {
  readonly mem: PhysMemory;
  readonly small: DmaPool;
  readonly large: DmaPool;
}

/** The bytes of a descriptor block, as a view of simulated memory. */
export function blockView(mem: PhysMemory, blk: DmaPoolBlock, size: number): Uint8Array {
  const ps = mem.pageSize;
  const off = fastMod(blk.cpuAddr, ps);
  return mem.pageBytes((blk.cpuAddr - off) / ps).subarray(off, off + size);
}

/** The whole of a descriptor block of `iod` (a small block when IOD_SMALL_DESCRIPTOR is set). */
export function descriptorView(ctx: DescriptorPools, iod: NvmeIod, blk: DmaPoolBlock): Uint8Array {
  const small = iodHas(iod.flags, IOD.SMALL_DESCRIPTOR);
  return blockView(ctx.mem, blk, small ? NVME_SMALL_POOL_SIZE : NVME_CTRL_PAGE_SIZE);
}

/** Linux `nvme_dma_pool`: the pool of `iod`'s first descriptor block. */
export function descriptorPool(ctx: DescriptorPools, iod: NvmeIod): DmaPool {
  return iodHas(iod.flags, IOD.SMALL_DESCRIPTOR) ? ctx.small : ctx.large;
}

/** Allocates a descriptor block (`dma_pool_alloc`), or null when the pool cannot grow. */
export function allocDescriptor(pool: DmaPool): DmaPoolBlock | null {
  try {
    return pool.alloc();
  } catch (e) {
    if (e instanceof DmaError) return null;
    throw e;
  }
}

/** The DMA address of the first descriptor, from the command (Linux `nvme_pci_first_desc_dma_addr`). */
export function firstDescDmaAddr(cmd: Uint8Array): number {
  return cmd[SQE.FLAGS] === 0 ? getU64(cmd, SQE.PRP2) : getU64(cmd, SQE.SGL_ADDR);
}

/**
 * Linux `nvme_free_descriptors`: one block, or a chain of large pages followed through the
 * link in each page's last slot.
 */
export function nvmeFreeDescriptors(ctx: DescriptorPools, iod: NvmeIod): void {
  let dma = firstDescDmaAddr(iod.cmd);
  if (iod.nrDescriptors === 1) {
    const blk = iod.descriptors[0] as DmaPoolBlock;
    descriptorPool(ctx, iod).freeBlock(blk.cpuAddr, dma);
  } else {
    for (let i = 0; i < iod.nrDescriptors; i++) {
      const blk = iod.descriptors[i] as DmaPoolBlock;
      const view = blockView(ctx.mem, blk, NVME_CTRL_PAGE_SIZE);
      const next =
        i + 1 < iod.nrDescriptors ? getU64(view, PRPS_PER_PAGE * NVME_PRP_ENTRY_SIZE) : 0;
      ctx.large.freeBlock(blk.cpuAddr, dma);
      dma = next;
    }
  }
  iod.nrDescriptors = 0;
  for (let i = 0; i < NVME_MAX_NR_DESCRIPTORS; i++) iod.descriptors[i] = undefined;
}
