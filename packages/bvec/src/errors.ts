/**
 * Errors shared by every dmasim package.
 *
 * Misuse of an API throws a typed error whose `code` is a stable literal (errno-style where
 * Linux has an errno for the case). Simulated hardware outcomes are never errors: they are
 * data (fault records, completion statuses).
 */

/** Base class of every error dmasim throws on purpose; `code` is a literal union per package. */
export class SimError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Codes thrown by @dmasim/bvec. */
export type BvecErrorCode =
  | "EINVAL" // a bad argument (not an integer, misaligned, inconsistent)
  | "ERANGE" // a value beyond the modelled width (negative, >= 2^53, beyond the address width)
  | "EFAULT" // a memory access outside RAM or device memory, or into a hole
  | "ENOMEM" // the page allocator is exhausted
  | "EBUSY"; // a page is not in the state the call needs (double free, already allocated)

/** Errors thrown by @dmasim/bvec. */
export class BvecError extends SimError<BvecErrorCode> {}

/**
 * An invariant of the model broke: this is a bug in dmasim, not in the caller's input. The CLI
 * reports it with its stack and exit code 70.
 */
export class InternalError extends SimError<"EBUG"> {
  constructor(message: string, options?: ErrorOptions) {
    super("EBUG", message, options);
  }
}
