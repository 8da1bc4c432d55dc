/**
 * The page-size loops of drivers/iommu/iommu.c: `__iommu_map` and `__iommu_unmap` split a
 * range with `iommu_pgsize` and hand it to the page table one page size at a time
 * (`map_pages(iova, paddr, pgsize, pgcount, ...)`, `unmap_pages(iova, pgsize, pgcount, ...)`),
 * as every modelled release (6.17 to 7.0) does for io-pgtable and generic_pt tables alike.
 */
import { fastMod, hex } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import type { FreedTablePage, IotlbGather } from "./iotlb-gather.ts";
import { pgsizeInto, type PgsizeChoice } from "./pgsize.ts";
import { IOMMU_PROT_ALL, type IommuProt } from "./prot.ts";
import type { CounterSet } from "@dmasim/bvec";
import type { MappedBytes, PtOps } from "./pt-core.ts";
import type { IoPgtableCounter } from "./pt-types.ts";

/** What the loops need from a page table (`IoPageTable`). */
export interface PageSizeTarget {
  readonly counters: CounterSet<IoPgtableCounter>;
  /** Supported page sizes, ascending (the domain's `pgsize_bitmap`). */
  readonly pageSizes: readonly number[];
  /** Whether IOVAs below 0 (a sign-extended upper half) are addresses of this table. */
  readonly signExtended: boolean;
  /** The format's `map_pages` / `unmap_pages`. */
  readonly ops: PtOps;
  unmap(iova: number, size: number, gather?: IotlbGather): number;
  putPages(list: readonly FreedTablePage[]): void;
}

// Scratch state of the loops (no allocation per call; the simulation is single-threaded and
// a loop never re-enters itself except through the unwind, which runs after it is done).
const choice: PgsizeChoice = { pgsize: 0, count: 0 };
const mapped: MappedBytes = { bytes: 0 };
const scratchFreed: FreedTablePage[] = [];

function checkIova(pt: PageSizeTarget, iova: number): void {
  if (Number.isSafeInteger(iova) && (iova >= 0 || pt.signExtended)) return;
  checkNum(iova, "iova");
}

/** `iommu_map_nosync`'s argument checks: EINVAL for a bad prot or misalignment. */
function checkMapArgs(
  pt: PageSizeTarget,
  iova: number,
  paddr: number,
  size: number,
  prot: IommuProt,
): void {
  checkIova(pt, iova);
  if (!(Number.isSafeInteger(paddr) && paddr >= 0)) checkNum(paddr, "paddr");
  if (!(Number.isSafeInteger(size) && size >= 0)) checkNum(size, "size");
  if (!Number.isInteger(prot) || prot < 0 || prot > IOMMU_PROT_ALL) {
    throw new IommuError("EINVAL", `prot ${hex(prot)} has bits outside IOMMU_READ..IOMMU_PRIV`);
  }
  const min = pt.pageSizes[0] as number;
  if (fastMod(iova, min) !== 0 || fastMod(paddr, min) !== 0 || fastMod(size, min) !== 0) {
    throw new IommuError(
      "EINVAL",
      `unaligned: iova ${hex(iova)} pa ${hex(paddr)} size ${hex(size)} min_pagesz ${hex(min)}`,
    );
  }
  pt.ops.checkMapRange(iova, paddr, size);
}

/**
 * The unwind of a failed map: Linux unrolls with iommu_unmap(orig_iova, mapped so far) and
 * keeps the tables the failing step created; dmasim's eager policy prunes them too.
 */
function mapFailed(pt: PageSizeTarget, iova: number, done: number): void {
  pt.counters.c.mapFailures++;
  if (done > 0) pt.unmap(iova, done);
  pt.ops.afterFailedMap(iova + done);
}

/**
 * Linux `__iommu_map` (the body of `iommu_map_nosync`): maps `size` bytes at `iova` to `paddr`
 * with the largest page sizes `iommu_pgsize` allows, one `map_pages` call per page size. Throws
 * EINVAL when misaligned or for a bad prot, ERANGE beyond the table's address sizes, and what
 * `map_pages` throws (EEXIST/EADDRINUSE over a mapping, ENOMEM without table memory); after a
 * failure it unmaps what it had mapped (`iommu_unmap(orig_iova, mapped)`).
 */
export function iommuMapRaw(
  pt: PageSizeTarget,
  iova: number,
  paddr: number,
  size: number,
  prot: IommuProt,
): void {
  pt.counters.c.mapCalls++;
  checkMapArgs(pt, iova, paddr, size, prot);
  const ops = pt.ops;
  const sizes = pt.pageSizes;
  const min = sizes[0] as number;
  const second = sizes[1] ?? Infinity;
  const m = mapped;
  let done = 0;
  m.bytes = 0;
  try {
    while (done < size) {
      const rest = size - done;
      m.bytes = 0;
      if (rest < second) {
        // Only the smallest size fits: iommu_pgsize would pick it for the whole rest.
        ops.mapPages(iova + done, paddr + done, min, rest / min, prot, m);
      } else {
        pgsizeInto(sizes, iova + done, paddr + done, rest, choice);
        ops.mapPages(iova + done, paddr + done, choice.pgsize, choice.count, prot, m);
      }
      done += m.bytes;
    }
  } catch (e) {
    // "Advance by mapped even on error": a generic_pt table may have mapped part of the call.
    const partial = m.bytes;
    m.bytes = 0;
    mapFailed(pt, iova, done + partial);
    throw e;
  }
}

/**
 * Linux `__iommu_unmap`: removes up to `size` bytes at `iova`, one `unmap_pages` call per page
 * size, and returns the bytes removed: it stops when a call removes nothing (a hole, or part of
 * a block io-pgtable-arm will not split), returns 0 when misaligned or outside the table, and
 * can return more than `size` when generic_pt removed a whole large page. Freed table pages go
 * to `gather.freelist`, or straight back to the allocator without a gather.
 */
export function iommuUnmapRaw(
  pt: PageSizeTarget,
  iova: number,
  size: number,
  gather: IotlbGather | undefined,
): number {
  pt.counters.c.unmapCalls++;
  checkIova(pt, iova);
  if (!(Number.isSafeInteger(size) && size >= 0)) checkNum(size, "size");
  const sizes = pt.pageSizes;
  const min = sizes[0] as number;
  const ops = pt.ops;
  if (fastMod(iova, min) !== 0 || fastMod(size, min) !== 0 || !ops.inRange(iova)) return 0;
  const second = sizes[1] ?? Infinity;
  let done = 0;
  const freed = gather === undefined ? scratchFreed : gather.freelist;
  while (done < size) {
    const rest = size - done;
    let got: number;
    if (rest < second) got = ops.unmapPages(iova + done, min, rest / min, gather, freed);
    else {
      pgsizeInto(sizes, iova + done, iova + done, rest, choice);
      got = ops.unmapPages(iova + done, choice.pgsize, choice.count, gather, freed);
    }
    if (got === 0) break;
    done += got;
  }
  if (gather === undefined && freed.length > 0) {
    pt.putPages(freed);
    freed.length = 0;
  }
  return done;
}
