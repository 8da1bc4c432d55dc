/**
 * @dmasim/nvme/testing — the machine the package's tests and benchmarks build (`Rig`), with
 * helpers for requests, raw commands and the no-leak check. Free of any test framework.
 */
export {
  type Baseline,
  FOUR_GIB,
  GiB,
  type IommuMode,
  KiB,
  MiB,
  OK,
  READ,
  Rig,
  type RigOptions,
  WRITE,
  limits,
  mapContextOf,
  pattern,
  rawRw,
} from "./rig.ts";
