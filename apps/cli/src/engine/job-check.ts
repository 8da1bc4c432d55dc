/**
 * The checks of a job that the schema cannot make field by field: combinations of fields that
 * no run of the engine could honour. Each problem is one line naming the field, its value and
 * what is allowed, so that the CLI can answer bad input before any work starts (exit 2).
 */
import { MAX_PAGE_ORDER, standardLayout } from "@dmasim/bvec";
import type { Job } from "./job-schema.ts";
import { pageTableFormat } from "./profiles.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Bytes of a size field (a number, or a string such as "4k"). */
type SizeOf = (v: number | string) => number;

/** The block sizes a job can issue: every fixed size, both ends of a range. */
export function blockSizes(job: Job, sizeOf: SizeOf): number[] {
  const spec = job.workload.bs;
  if (Array.isArray(spec)) return spec.map((x) => sizeOf(x.bs));
  if (typeof spec === "object") return [sizeOf(spec.min), sizeOf(spec.max)];
  return [sizeOf(spec)];
}

/** Bytes in a human unit for messages: "64 MiB", "1.5 GiB", "4096 bytes". */
export function bytesText(n: number): string {
  if (n >= GiB) return `${+(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${+(n / MiB).toFixed(2)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/**
 * The pages one I/O buffer takes in the job's buffer layout (what the engine's SlotBuffers
 * allocates per slot): `offset` buffers start `bufferOffset` into their first page, contiguous
 * and offset buffers come from one buddy block (a power of two of pages), hugepage buffers
 * from whole 2 MiB blocks.
 */
export function slotPages(job: Job, maxBs: number): number {
  const ps = job.machine.pageSize;
  const layout = job.workload.buffers;
  const offset = layout === "offset" ? job.workload.bufferOffset : 0;
  const pages = Math.ceil((maxBs + offset) / ps);
  if (layout === "hugepage") {
    const huge = (2 * MiB) / ps;
    return Math.ceil(pages / huge) * huge;
  }
  if (layout === "scattered") return pages;
  return 2 ** Math.ceil(Math.log2(pages));
}

/** Every problem of `job` that its fields alone show (empty when the job can run). */
export function jobProblems(job: Job, sizeOf: SizeOf): string[] {
  const out: string[] = [];
  const w = job.workload;
  const c = job.controller;
  const ps = job.machine.pageSize;
  const lba = c.lbaSize;
  const nsBytes = Math.floor((c.namespaceGiB * GiB) / lba) * lba;
  if (nsBytes < lba) {
    out.push(
      `controller.namespaceGiB: ${c.namespaceGiB} holds no ${lba}-byte block; give at least ${lba / GiB}`,
    );
  }
  const spec = w.bs;
  const sizes = blockSizes(job, sizeOf);
  if (typeof spec === "object" && !Array.isArray(spec)) {
    const [lo, hi] = sizes as [number, number];
    if (hi < lo) out.push(`workload.bs: max ${hi} is below min ${lo}; give min <= max`);
  }
  for (const b of new Set(sizes)) {
    if (b % lba !== 0)
      out.push(
        `workload.bs: ${b} is not a multiple of the ${lba}-byte LBA size (controller.lbaSize)`,
      );
    else if (nsBytes >= lba && b > nsBytes)
      out.push(
        `workload.bs: ${b} exceeds the ${bytesText(nsBytes)} namespace (controller.namespaceGiB ${c.namespaceGiB})`,
      );
  }
  const maxBs = Math.max(...sizes);
  if (w.bufferOffset >= ps)
    out.push(
      `workload.bufferOffset: ${w.bufferOffset} is not inside one ${ps}-byte page; give 0..${ps - 4} (a multiple of 4)`,
    );
  const contiguous = w.buffers === "contiguous" || w.buffers === "offset";
  const block = ps * 2 ** MAX_PAGE_ORDER;
  if (contiguous && maxBs + (w.buffers === "offset" ? w.bufferOffset : 0) > block)
    out.push(
      `workload.buffers: ${w.buffers} buffers of ${bytesText(maxBs)} exceed the largest contiguous block (${bytesText(block)}); use scattered or hugepage, or bs <= ${bytesText(block)}`,
    );
  const im = job.iommu;
  if (im.iotlbWays > im.iotlbEntries || im.iotlbEntries % im.iotlbWays !== 0)
    out.push(
      `iommu.iotlbWays: ${im.iotlbWays} does not divide iommu.iotlbEntries ${im.iotlbEntries}; give a divisor such as ${largestDivisorAtMost(im.iotlbEntries, im.iotlbWays)}`,
    );
  out.push(...pageTableProblems(job));
  if (c.latencyDist === "lognormal" && c.latencyP99Us !== undefined && c.latencyP99Us < c.latencyUs)
    out.push(
      `controller.latencyP99Us: ${c.latencyP99Us} is below the median controller.latencyUs ${c.latencyUs}; give at least ${c.latencyUs}`,
    );
  out.push(...memoryProblems(job, maxBs));
  return out;
}

/**
 * RAM: the I/O buffers of every slot (CPUs × iodepth) and the SWIOTLB pool must fit, the pool
 * in the low RAM below 4 GiB that `standardLayout` provides, with room left for the queues,
 * descriptor pools and page tables (a 1/32 margin, at least 16 MiB).
 */
function memoryProblems(job: Job, maxBs: number): string[] {
  const out: string[] = [];
  const ps = job.machine.pageSize;
  const ram = Math.round((job.machine.memoryGiB * GiB) / ps) * ps;
  if (ram < 64 * MiB) {
    out.push(`machine.memoryGiB: ${job.machine.memoryGiB} is below the 64 MiB the model needs`);
    return out;
  }
  const regions = standardLayout(ram, ps);
  const total = regions.reduce((s, r) => s + r.size, 0);
  const low = regions[0]?.size ?? 0;
  const margin = Math.max(16 * MiB, total / 32);
  const lowMargin = Math.max(16 * MiB, low / 32);
  const swiotlb = job.device.swiotlbMiB * MiB;
  if (swiotlb > 0 && swiotlb + lowMargin > low) {
    out.push(
      `device.swiotlbMiB: ${job.device.swiotlbMiB} does not fit in the ${bytesText(low)} of RAM below 4 GiB (machine.memoryGiB ${job.machine.memoryGiB}); give at most ${Math.max(0, Math.floor((low - lowMargin) / MiB))}`,
    );
    return out;
  }
  const slots = job.machine.cpus * job.workload.iodepth;
  const buffers = slots * slotPages(job, maxBs) * ps;
  if (buffers + swiotlb + margin > total)
    out.push(
      `machine.memoryGiB: ${job.machine.memoryGiB} cannot hold the I/O buffers: ${slots} slots (machine.cpus ${job.machine.cpus} × workload.iodepth ${job.workload.iodepth}) of ${bytesText(maxBs)} take ${bytesText(buffers)}${swiotlb > 0 ? ` besides the ${job.device.swiotlbMiB} MiB SWIOTLB pool` : ""}; give at least ${Math.ceil(((buffers + swiotlb) * 33) / 32 / GiB + 1)}, or fewer slots`,
    );
  return out;
}

/** What the page-table format of the job (`iommu.format`, or the profile's) cannot hold. */
function pageTableProblems(job: Job): string[] {
  const im = job.iommu;
  if (im.mode === "none" || im.mode === "passthrough") return [];
  const format = pageTableFormat(job);
  const out: string[] = [];
  if (format !== "arm-lpae" && im.granule !== 4096)
    out.push(
      `iommu.granule: ${im.granule} is not a granule of the ${format} page table (iommu.format), which has 4 KiB only; give 4096, or iommu.format arm-lpae`,
    );
  if (format === "riscv" && im.addressBits !== 39 && im.addressBits !== 48)
    out.push(
      `iommu.addressBits: ${im.addressBits} is no RISC-V mode for iommu.format riscv; give 39 (Sv39) or 48 (Sv48)`,
    );
  return out;
}

function largestDivisorAtMost(n: number, k: number): number {
  for (let d = Math.min(n, k); d > 1; d--) if (n % d === 0) return d;
  return 1;
}
