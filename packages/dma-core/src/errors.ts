/**
 * Errors of @dmasim/dma-core. A failed DMA call throws a `DmaError` whose `code` is the errno
 * Linux would return (or that makes `dma_mapping_error` true for calls that return an address).
 */
import { SimError } from "@dmasim/bvec";

/** The errno values the DMA API can report. */
export type DmaErrorCode =
  | "EINVAL"
  | "ENOMEM"
  | "EIO"
  | "EPERM"
  | "EREMOTEIO"
  | "EOPNOTSUPP"
  | "EFAULT"
  | "EEXIST"
  | "ENODEV"
  | "EBUSY";

/** Errors thrown by @dmasim/dma-core. */
export class DmaError extends SimError<DmaErrorCode> {}
