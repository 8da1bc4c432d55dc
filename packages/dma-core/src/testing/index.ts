/**
 * @dmasim/dma-core/testing — fixtures shared by the tests and benchmarks of dma-core and the
 * packages above it: a simulated machine per DMA backend, request builders and leak accounting.
 */
export {
  BACKENDS,
  type Backend,
  type Baseline,
  G4,
  GiB,
  KiB,
  LIMITS,
  MiB,
  type Machine,
  type MachineOptions,
  NO_LEAKS,
  baseline,
  codeOf,
  concat,
  fillRandom,
  leaks,
  machine,
  request,
} from "./machine.ts";
