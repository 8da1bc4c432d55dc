import { parseJob, runJob } from "dmasim";

// A whole workload, with the controller's fault injection switched on before the first I/O
// (`setup` receives the machine: memory, domain, device, controller, host).
const job = parseJob({ iommu: { mode: "strict" }, workload: { bs: "64k", ios: 2000 } });
const r = runJob(job, {
  setup: (m) => m.ctrl.setFaults({ failCommand: { status: 0x4004, every: 100 } }),
});
console.log(`${r.ios} I/Os, ${r.errors} failed: ${JSON.stringify(r.errorCauses)}`);
console.log(`CPU ${r.cpuNsPerIo.toFixed(0)} ns per I/O, verify ${r.verify.ok ? "ok" : "failed"}`);
