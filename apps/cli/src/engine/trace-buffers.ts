/**
 * The buffers of a traced I/O: the job's own (its bs and buffer layout, allocated from the
 * machine's memory as the engine allocates them), or the explicit `--buf` ranges, each checked
 * to lie in RAM and claimed page by page so that nothing the machine allocates later lands on
 * them.
 */
import { hex } from "@dmasim/bvec";
import { JobError } from "./errors.ts";
import { type Job, sizeOf } from "./job.ts";
import type { Machine } from "./machine.ts";

/** A physical buffer: address and length. */
export interface TraceBuffer {
  readonly phys: number;
  readonly len: number;
}

/** The machine's RAM, for messages: "RAM 0x100000-0x80000000, 0x100000000-0x480000000". */
function ramText(m: Machine): string {
  return `RAM ${m.memory.regions.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(", ")}`;
}

/** The buffers to trace an I/O of `job` on `m` with: `given`, or the job's. */
export function traceBuffers(
  job: Job,
  m: Machine,
  given: readonly TraceBuffer[] | undefined,
): readonly TraceBuffer[] {
  const ps = m.memory.pageSize;
  let bufs = given;
  if (bufs === undefined) {
    const bs =
      typeof job.workload.bs === "object"
        ? Array.isArray(job.workload.bs)
          ? sizeOf(job.workload.bs[0]?.bs ?? 4096)
          : sizeOf(job.workload.bs.min)
        : sizeOf(job.workload.bs);
    const off = job.workload.buffers === "offset" ? job.workload.bufferOffset : 0;
    const pages =
      job.workload.buffers === "scattered"
        ? m.memory.allocScattered(Math.ceil((bs + off) / ps), job.seed)
        : (() => {
            const n = Math.ceil((bs + off) / ps);
            const base = m.memory.allocPages(Math.ceil(Math.log2(n)));
            return Array.from({ length: n }, (_, i) => base + i);
          })();
    const list: { phys: number; len: number }[] = [];
    let left = bs;
    let first = off;
    for (const p of pages) {
      if (left === 0) break;
      const n = Math.min(ps - first, left);
      list.push({ phys: p * ps + first, len: n });
      left -= n;
      first = 0;
    }
    bufs = list;
  } else {
    for (const b of bufs) {
      if (!m.memory.isRam(b.phys, b.len))
        throw new JobError([
          `--buf ${hex(b.phys)}:${b.len} is not inside RAM of the simulated machine (${ramText(m)})`,
        ]);
    }
    // The buffers' pages become the I/O's own, so that nothing the machine allocates later
    // (page tables, bounce slots) lands on them; a page the machine already uses is refused.
    const claimed = new Set<number>();
    for (const b of bufs) {
      for (let pfn = Math.floor(b.phys / ps); pfn * ps < b.phys + b.len; pfn++) {
        if (claimed.has(pfn)) continue;
        if (!m.memory.allocPageAt(pfn))
          throw new JobError([
            `--buf ${hex(b.phys)}:${b.len}: page ${hex(pfn * ps)} is already in use by the machine (the driver's queues and descriptors, page tables or the SWIOTLB pool); choose free RAM`,
          ]);
        claimed.add(pfn);
      }
    }
  }
  return bufs;
}
