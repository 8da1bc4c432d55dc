/**
 * The error class of @dmasim/iommu. Misuse (bad arguments, broken preconditions) throws an
 * `IommuError` whose `code` is the errno Linux would return; hardware outcomes such as
 * translation faults are data (fault records), never errors.
 */
import { SimError } from "@dmasim/bvec";

/** Codes thrown by @dmasim/iommu. */
export type IommuErrorCode =
  | "EINVAL" // a bad argument: misaligned, zero-sized, wrong domain type, unknown range
  | "EEXIST" // io-pgtable-arm: mapping over an entry that is already mapped
  | "EADDRINUSE" // generic_pt: mapping over an entry that is already mapped
  | "ENXIO" // generic_pt: no page size can map the range (pt_compute_best_pgsize found none)
  | "EOPNOTSUPP" // generic_pt: the format cannot express the prot (RISC-V with no R, W or X)
  | "ENOMEM" // a page-table page could not be allocated
  | "ENODEV" // the domain has no page table (no page sizes)
  | "ERANGE"; // a value beyond the modelled width (IOVA beyond the input size, PA beyond the output size)

/** Errors thrown by @dmasim/iommu. */
export class IommuError extends SimError<IommuErrorCode> {}
