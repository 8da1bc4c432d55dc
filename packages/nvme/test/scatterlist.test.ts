/**
 * The scatterlist data path (`nvmeMapDataScatterlist` / `nvmeUnmapDataScatterlist`): the same
 * layouts give the device the same bytes as the two-step path, with a scatterlist per
 * multi-segment request.
 */
import type { BioVec } from "@dmasim/bvec";
import { getU32, getU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  IOD,
  SQE,
  iodHas,
  nvmeMapData,
  nvmeMapDataScatterlist,
  nvmeUnmapData,
  nvmeUnmapDataScatterlist,
} from "../src/index.ts";
import { OK, Rig, type RigOptions, WRITE, limits } from "../src/testing/index.ts";

const PAGE = 4096;

function chunks(r: Rig, n: number, order: number): BioVec[] {
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    out.push([r.contiguous(order), 2 ** order * PAGE]);
    r.contiguous(order);
  }
  return r.bvecs(out);
}

/** Maps with both builders in turn; returns the device bytes and command of each. */
function both(o: RigOptions, make: (r: Rig) => BioVec[]) {
  const r = new Rig({ ctrl: { mdts: 0 }, ...o });
  const bv = make(r);
  let seed = 0;
  for (const b of bv) r.fill(b.page * b.pageSize + b.offset, b.len, ++seed);
  const req = r.request(WRITE, bv, limits());
  const ctx = r.mapContext();
  const want = r.gather(bv);
  const out: { cmd: Uint8Array; sg: boolean; flags: number; descs: number }[] = [];
  for (const style of ["two-step", "scatterlist"] as const) {
    const iod = r.iod();
    const st =
      style === "two-step" ? nvmeMapData(ctx, iod, req) : nvmeMapDataScatterlist(ctx, iod, req);
    expect(st).toBe(OK);
    const view = r.deviceView(iod.cmd, req.dataLen);
    expect(view.status).toBe(0);
    expect(Buffer.compare(view.bytes, want)).toBe(0);
    out.push({
      cmd: iod.cmd.slice(),
      sg: r.host.sgPool.counters.c.inUse === 1,
      flags: iod.flags,
      descs: iod.nrDescriptors,
    });
    if (style === "two-step") nvmeUnmapData(ctx, iod, req);
    else nvmeUnmapDataScatterlist(ctx, iod, req);
    expect(r.host.small.inUse + r.host.large.inUse).toBe(0);
    expect(r.host.sgPool.counters.c.inUse).toBe(0);
  }
  expect(r.checkNoLeaks()).toEqual([]);
  return out as [(typeof out)[0], (typeof out)[0]];
}

describe("scatterlist", () => {
  it("builds the same chained PRP list as the two-step path for 513 entries", () => {
    const [n, o] = both({ mode: "none", sgl: "none" }, (r) => [
      ...chunks(r, 64, 3),
      ...r.bvecs(r.scattered(2, 1).map((p) => [p, PAGE] as const)),
    ]);
    expect(o.sg).toBe(true);
    expect(n.sg).toBe(false);
    expect(o.descs).toBe(2);
    expect(n.descs).toBe(2);
    expect(getU64(o.cmd, SQE.PRP1)).toBe(getU64(n.cmd, SQE.PRP1));
  });

  it("maps one segment without a scatterlist", () => {
    const [, o] = both({ mode: "strict", sgl: "none" }, (r) => r.bvecs([[r.contiguous(1), 8192]]));
    expect(o.sg).toBe(false);
    expect(iodHas(o.flags, IOD.SINGLE_SEGMENT)).toBe(true);
  });

  it("uses a Last Segment of Data Blocks on an SGL controller when segments are large", () => {
    const [n, o] = both({ mode: "none", sgl: "byte" }, (r) => chunks(r, 5, 3));
    expect(o.cmd[SQE.SGL_TYPE]).toBe(0x30);
    expect(getU32(o.cmd, SQE.SGL_LEN)).toBe(80);
    expect(n.cmd[SQE.SGL_TYPE]).toBe(0x30);
  });

  it("gives the device the same bytes under an IOMMU that merges the scatterlist", () => {
    for (const mode of ["strict", "lazy", "passthrough"] as const) {
      both({ mode, sgl: "byte" }, (r) =>
        r.bvecs(r.scattered(24, 2).map((p) => [p, PAGE] as const)),
      );
    }
  });
});
