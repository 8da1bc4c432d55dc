/**
 * Page-size selection for map and unmap: Linux `iommu_pgsize` (drivers/iommu/iommu.c).
 */
import { InternalError, hex, lowestSetBit } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";

/** The page size and how many consecutive pages of it to use next. */
export interface PgsizeChoice {
  pgsize: number;
  count: number;
}

/** The sizes (powers of two) present in a page-size bitmap, ascending. */
export function pgsizeList(bitmap: number): number[] {
  if (!Number.isSafeInteger(bitmap) || bitmap <= 0) {
    throw new IommuError(
      "EINVAL",
      `page-size bitmap ${hex(bitmap)} is not a positive safe integer`,
    );
  }
  const out: number[] = [];
  let rest = bitmap;
  while (rest > 0) {
    const bit = lowestSetBit(rest);
    out.push(bit);
    rest -= bit;
  }
  return out;
}

/**
 * The core of `iommu_pgsize` over a precomputed ascending list of page sizes; writes the
 * choice into `out` (no allocation). Callers have checked alignment to the smallest size.
 */
export function pgsizeInto(
  sizes: readonly number[],
  iova: number,
  paddr: number,
  size: number,
  out: PgsizeChoice,
): void {
  // The natural-alignment limit is the lowest set bit of (iova | paddr), i.e. the smaller
  // of the two lowest set bits; an all-zero pair imposes no limit.
  const li = iova === 0 ? Infinity : lowestSetBit(iova);
  const lp = paddr === 0 ? Infinity : lowestSetBit(paddr);
  const alignLimit = li < lp ? li : lp;
  let idx = -1;
  for (let i = sizes.length - 1; i >= 0; i--) {
    const s = sizes[i] as number;
    if (s <= size && s <= alignLimit) {
      idx = i;
      break;
    }
  }
  if (idx < 0) {
    // Linux BUG()s here: the caller broke the min-page-size alignment precondition.
    throw new InternalError(
      `iommu_pgsize: no page size fits iova ${hex(iova)} paddr ${hex(paddr)} size ${hex(size)}`,
    );
  }
  const pgsize = sizes[idx] as number;
  let run = size;
  const next = sizes[idx + 1];
  // Shorten the run so that the next call can switch to the next larger page size, but only
  // when iova and paddr are congruent modulo that size and a whole larger page would fit.
  if (next !== undefined && (iova - paddr) % next === 0) {
    // iova % next, as the unsigned value it is (a sign-extended upper-half IOVA is negative).
    const r = iova % next;
    const off = next - (r < 0 ? r + next : r);
    if (off + next <= size) run = off;
  }
  out.pgsize = pgsize;
  out.count = Math.floor(run / pgsize);
}

/**
 * Linux `iommu_pgsize`: the largest supported page size usable at `iova`/`paddr` for `size`
 * bytes, and how many of them to map before a larger size becomes possible.
 */
export function iommuPgsize(
  bitmap: number,
  iova: number,
  paddr: number,
  size: number,
): PgsizeChoice {
  const sizes = pgsizeList(bitmap);
  const min = sizes[0] as number;
  for (const [what, v] of [
    ["iova", iova],
    ["paddr", paddr],
    ["size", size],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new IommuError("EINVAL", `${what} ${hex(v)} is not a non-negative safe integer`);
  }
  if (iova % min !== 0 || paddr % min !== 0 || size % min !== 0 || size === 0) {
    throw new IommuError(
      "EINVAL",
      `unaligned: iova ${hex(iova)} pa ${hex(paddr)} size ${hex(size)} min_pagesz ${hex(min)}`,
    );
  }
  const out: PgsizeChoice = { pgsize: 0, count: 0 };
  pgsizeInto(sizes, iova, paddr, size, out);
  return out;
}
