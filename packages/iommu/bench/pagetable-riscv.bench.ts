import { defineBenchmarks } from "../../../scripts/bench-harness.ts";
import { formatCases } from "./pagetable-cases.ts";

export default defineBenchmarks(formatCases("riscv"));
