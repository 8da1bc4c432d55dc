/**
 * End to end, as properties: random write-then-read workloads (512 B to 2 MiB, fragmented and
 * contiguous page layouts, in-page offsets, addresses below and above 4 GiB) over every IOMMU
 * mode, both mapping styles and both SGL settings. The data read back equals the data written,
 * and afterwards nothing the data path allocates is left (see `Rig.checkNoLeaks`).
 */
import type { BioVec } from "@dmasim/bvec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MiB, OK, Rig, type RigOptions, pattern } from "../src/testing/index.ts";

const PAGE = 4096;

/** One bvec of a layout: length in 512-byte blocks, in-page offset in dwords, placement. */
const bvecArb = fc.record({
  blocks: fc.integer({ min: 1, max: 160 }),
  offDwords: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1023 })),
  scattered: fc.boolean(),
});

const ioArb = fc.record({
  write: fc.array(bvecArb, { minLength: 1, maxLength: 12 }),
  readOffsets: fc.array(fc.integer({ min: 0, max: 1023 }), { minLength: 12, maxLength: 12 }),
  slba: fc.integer({ min: 0, max: 64 }),
});

const workloadArb = fc.record({
  ios: fc.array(ioArb, { minLength: 1, maxLength: 3 }),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});

type BvecSpec = { blocks: number; offDwords: number; scattered: boolean };

/** Allocates the pages of a layout and returns its bvecs (total at most 2 MiB). */
function layout(r: Rig, specs: readonly BvecSpec[], seed: number): BioVec[] {
  const parts: [number, number][] = [];
  let total = 0;
  for (const [i, s] of specs.entries()) {
    const len = Math.min(s.blocks * 512, 2 * MiB - total);
    if (len === 0) break;
    const ps = r.memory.pageSize;
    const off = (s.offDwords * 4) % PAGE;
    const pages = Math.ceil((off + len) / ps);
    const base =
      s.scattered && pages === 1
        ? (r.scattered(1, seed * 31 + i) as [number])[0]
        : r.contiguous(Math.ceil(Math.log2(pages)));
    parts.push([base + off, len]);
    total += len;
  }
  return r.bvecs(parts);
}

type Workload = typeof workloadArb extends fc.Arbitrary<infer T> ? T : never;

/** Writes every I/O of the workload, reads each back into another layout, checks, checks leaks. */
function run(r: Rig, w: Workload): void {
  const written: { bvecs: BioVec[]; data: Uint8Array; slba: number }[] = [];
  for (const [k, io] of w.ios.entries()) {
    const wb = layout(r, io.write, w.seed + k);
    const data = pattern(
      wb.reduce((n, b) => n + b.len, 0),
      w.seed + k,
    );
    r.scatter(wb, data);
    const slba = io.slba * 8 + k * 8192;
    expect(r.io("write", slba, wb)).toBe(OK);
    written.push({ bvecs: wb, data, slba });
  }
  for (const [k, io] of w.ios.entries()) {
    const { data, slba } = written[k] as (typeof written)[0];
    // The same lengths at other offsets and pages.
    const rb = layout(
      r,
      io.write.map((s, i) => ({
        ...s,
        offDwords: io.readOffsets[i] ?? 0,
        scattered: !s.scattered,
      })),
      w.seed + 100 + k,
    );
    r.scatter(rb, pattern(data.length, 7));
    expect(r.io("read", slba, rb)).toBe(OK);
    expect(Buffer.compare(r.gather(rb), data)).toBe(0);
  }
  expect(r.ctrl.counters.c.errors).toBe(0);
  expect(r.checkNoLeaks()).toEqual([]);
}

describe("nvme end to end (fast-check)", () => {
  for (const mode of ["none", "passthrough", "strict", "lazy"] as const) {
    for (const mapping of ["two-step", "scatterlist"] as const) {
      for (const sgl of ["none", "byte"] as const) {
        it(`reads back what it wrote and leaks nothing (${mode}, ${mapping}, sgl ${sgl})`, () => {
          fc.assert(
            fc.property(workloadArb, (w) => run(new Rig({ mode, mapping, sgl }), w)),
            { numRuns: 15 },
          );
        });
      }
    }
  }
});

describe("nvme end to end on other machines (fast-check)", () => {
  const machines: [string, RigOptions][] = [
    ["64 KiB host pages, strict", { mode: "strict", pageSize: 65536 }],
    ["64 KiB host pages, no IOMMU, SGL", { mode: "none", pageSize: 65536, sgl: "byte" }],
    ["dword-only SGL, lazy", { mode: "lazy", sgl: "dword" }],
    ["forced SWIOTLB bouncing", { mode: "none", bounce: true, sgl: "byte" }],
    ["per-segment mapping (no IOVA API), strict", { mode: "strict", iovaApi: false }],
    ["per-segment mapping (no IOVA API), lazy, SGL", { mode: "lazy", iovaApi: false, sgl: "byte" }],
  ];
  for (const [name, o] of machines) {
    for (const mapping of ["two-step", "scatterlist"] as const) {
      it(`reads back what it wrote and leaks nothing (${name}, ${mapping})`, () => {
        fc.assert(
          fc.property(workloadArb, (w) => run(new Rig({ ...o, mapping }), w)),
          { numRuns: 6 },
        );
      });
    }
  }
});
