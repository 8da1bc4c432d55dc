import { parseJob, runJob } from "/work/main/apps/cli/src/engine/index.ts";
const r = runJob(parseJob({device:{trusted:false,swiotlbMiB:0},iommu:{mode:"strict"},workload:{buffers:"offset",ios:6, iodepth: 4}}));
console.log(r.ios, r.errors);
