/** Errors of @dmasim/nvme: misuse of the host or controller API (hardware outcomes are statuses). */
import { SimError } from "@dmasim/bvec";

/** Codes thrown by @dmasim/nvme. */
export type NvmeErrorCode = "EINVAL" | "ENODEV" | "EBUSY" | "ENOMEM" | "EIO" | "ETIMEDOUT";

/** Errors thrown by @dmasim/nvme. */
export class NvmeError extends SimError<NvmeErrorCode> {}
