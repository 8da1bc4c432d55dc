/** Argument checks that throw `IommuError` with the offending value in hex. */
import { hex } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";

/** Checks that `value` is a safe integer >= `min` (default 0) and returns it. */
export function checkNum(value: number, what: string, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new IommuError("EINVAL", `${what} ${String(value)} is not a safe integer`);
  }
  if (value < min) throw new IommuError("ERANGE", `${what} ${hex(value)} is below ${hex(min)}`);
  return value;
}
