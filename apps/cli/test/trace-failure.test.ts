/**
 * A traced I/O that fails: the completion step shows the failed status and the reason the
 * controller recorded for it (QEMU's `pci_nvme_err_*` trace event name).
 */
import { describe, expect, it } from "vitest";
import { parseJob } from "../src/engine/job.ts";
import { type TraceOptions, traceIo } from "../src/engine/trace.ts";

const job = parseJob({ iommu: { mode: "strict" }, workload: { bs: "16k" } });

function completion(faults?: TraceOptions["faults"]) {
  const steps = traceIo(job, faults === undefined ? {} : { faults });
  const step = steps.find((s) => s.step === "completion");
  if (step === undefined) throw new Error("no completion step");
  return step;
}

describe("trace: a failed command", () => {
  it("shows the reason of a PRP list the controller finds corrupted", () => {
    const step = completion({ corruptDescriptor: { nth: 1 } });
    expect(step.lines[0]).toMatch(/status 0x4013 /);
    expect(step.lines[1]).toBe(
      "  failed: PRP Offset Invalid (DNR); reason pci_nvme_err_invalid_prplist_ent",
    );
    expect((step.data as { reason?: string }).reason).toBe("pci_nvme_err_invalid_prplist_ent");
  });

  it("shows no failure line for a command that succeeds", () => {
    const step = completion();
    expect(step.lines[0]).toMatch(/status 0x0 /);
    expect(step.lines.some((l) => l.includes("failed:"))).toBe(false);
    expect((step.data as { reason?: string }).reason).toBeUndefined();
  });
});
