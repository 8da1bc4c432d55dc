/**
 * The two-step data path's builder (`nvmeMapData` / `nvmeUnmapData`), driven directly through a
 * mapping context over the host's pools: PRP lists (offsets, chaining, the descriptor limit),
 * SGLs, 64 KiB host pages, IOVA coalescing, `sgl_threshold`, the dma_vec records kept inline
 * until a second segment (docs/review-points.md#inline-pair-in-iod), and one path for every
 * single segment (docs/review-points.md#no-single-page-special-case). Every layout is also
 * walked by the device-side walker, which must read exactly the request's bytes.
 */
import { BLK_STS, type BioVec, type Request, getU32, getU64 } from "@dmasim/bvec";
import { dmaUseIova } from "@dmasim/dma-core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IOD,
  NVME_CTRL_PAGE_SIZE,
  NVME_SMALL_POOL_SIZE,
  type NvmeIod,
  SQE,
  iodHas,
  nvmeMapData,
  nvmeUnmapData,
} from "../src/index.ts";
import {
  FOUR_GIB,
  KiB,
  MiB,
  OK,
  READ,
  Rig,
  type RigOptions,
  WRITE,
  limits,
} from "../src/testing/index.ts";

const PAGE = NVME_CTRL_PAGE_SIZE;

/** Maps `bvecs` with the two-step builder, checks what the device sees, returns the iod still mapped. */
function mapAndWalk(
  r: Rig,
  bvecs: readonly BioVec[],
  lim = limits(),
  op: typeof READ | typeof WRITE = WRITE,
): { iod: NvmeIod; req: Request } {
  let seed = 0;
  for (const b of bvecs) r.fill(b.page * b.pageSize + b.offset, b.len, ++seed);
  const req = r.request(op, bvecs, lim);
  const iod = r.iod();
  expect(nvmeMapData(r.mapContext(), iod, req)).toBe(OK);
  const view = r.deviceView(iod.cmd, req.dataLen);
  expect(view.status).toBe(0);
  expect(Buffer.compare(view.bytes, r.gather(bvecs))).toBe(0);
  return { iod, req };
}

function unmap(r: Rig, iod: NvmeIod, req: Request): void {
  nvmeUnmapData(r.mapContext(), iod, req);
  expect(r.host.small.inUse).toBe(0);
  expect(r.host.large.inUse).toBe(0);
  expect(r.host.vecPool.counters.c.inUse).toBe(0);
}

function isPrp(iod: NvmeIod): boolean {
  return iod.cmd[SQE.FLAGS] === 0;
}

/** The PRP list slots of descriptor `i` (no IOMMU: DMA address = physical address). */
function slots(r: Rig, iod: NvmeIod, i: number, n: number): number[] {
  const blk = iod.descriptors[i];
  if (blk === undefined) throw new Error(`no descriptor ${i}`);
  const out: number[] = [];
  for (let k = 0; k < n; k++) out.push(r.memory.readU64(blk.cpuAddr + k * 8));
  return out;
}

/** `n` bvecs of `order`-sized contiguous chunks (above 4 GiB), none adjacent to the next. */
function chunks(r: Rig, n: number, order: number): BioVec[] {
  const size = 2 ** order * r.memory.pageSize;
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    out.push([r.contiguous(order), size]);
    r.contiguous(order); // a spacer, so that no two chunks merge into one segment
  }
  const bv = r.bvecs(out);
  expect(r.request(WRITE, bv, limits()).nrPhysSegments).toBe(n);
  return bv;
}

/** `pages` 4 KiB pages as 4-page chunks plus single pages: at most 256 segments up to 1024 pages. */
function pageRun(r: Rig, pages: number): BioVec[] {
  const four = Math.floor(pages / 4);
  return [
    ...chunks(r, four, 2),
    ...r.bvecs(r.scattered(pages - four * 4, 99).map((p) => [p, PAGE] as const)),
  ];
}

/** The data page addresses of a list of page-aligned bvecs, 4 KiB each. */
function pagesOf(bvecs: readonly BioVec[]): number[] {
  const out: number[] = [];
  for (const b of bvecs)
    for (let o = 0; o < b.len; o += PAGE) out.push(b.page * b.pageSize + b.offset + o);
  return out;
}

function prpRig(o: RigOptions = {}): Rig {
  return new Rig({ mode: "none", sgl: "none", ctrl: { mdts: 0 }, ...o });
}

describe("two-step: PRP lists", () => {
  it("fills one list page without chaining when exactly 512 entries follow PRP1", () => {
    const r = prpRig();
    const bv = pageRun(r, 513);
    const { iod, req } = mapAndWalk(r, bv);
    const pages = pagesOf(bv);
    expect(isPrp(iod)).toBe(true);
    expect(iod.nrDescriptors).toBe(1);
    expect(iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)).toBe(false);
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(pages[0]);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(iod.descriptors[0]?.dmaAddr);
    // Slot 511 is data, not a link.
    expect(slots(r, iod, 0, 512)).toEqual(pages.slice(1));
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  for (const [entries, onSecond] of [
    [513, 2],
    [514, 3],
  ] as const) {
    it(`chains a second page with the moved entry at slot 0 when ${entries} entries follow PRP1`, () => {
      const r = prpRig();
      const bv = pageRun(r, entries + 1);
      const { iod, req } = mapAndWalk(r, bv);
      const pages = pagesOf(bv);
      expect(iod.nrDescriptors).toBe(2);
      const first = slots(r, iod, 0, 512);
      expect(first.slice(0, 511)).toEqual(pages.slice(1, 512));
      // The link replaces slot 511; the entry that was there is slot 0 of the next page.
      expect(first[511]).toBe(iod.descriptors[1]?.dmaAddr);
      expect(slots(r, iod, 1, onSecond)).toEqual(pages.slice(512));
      expect(r.host.large.inUse).toBe(2);
      unmap(r, iod, req);
      expect(r.checkNoLeaks()).toEqual([]);
    });
  }

  it("describes 8 MiB with PRP1 and 2047 entries over exactly 5 list pages", () => {
    const r = prpRig();
    const bv = chunks(r, 256, 3); // 256 segments of 32 KiB
    const { iod, req } = mapAndWalk(r, bv);
    const pages = pagesOf(bv);
    expect(req.dataLen).toBe(8 * MiB);
    expect(iod.nrDescriptors).toBe(5);
    const data: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = slots(r, iod, i, i < 4 ? 512 : 3);
      if (i < 4) {
        expect(s[511]).toBe(iod.descriptors[i + 1]?.dmaAddr);
        data.push(...s.slice(0, 511));
      } else data.push(...s);
    }
    expect(data).toEqual(pages.slice(1));
    expect(r.ctrl.counters.c.descriptorReads).toBe(0);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("fails with IOERR and frees everything when a list would need a sixth page", () => {
    const r = prpRig();
    const bv = chunks(r, 160, 4); // 10 MiB: 2559 entries > 4 * 511 + 512
    const req = r.request(WRITE, bv, limits());
    const iod = r.iod();
    expect(nvmeMapData(r.mapContext(), iod, req)).toBe(10); // BLK_STS_IOERR
    expect(iod.nrDescriptors).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("leaves PRP2 zero when an offset first segment ends exactly on a page boundary", () => {
    const r = prpRig();
    const p = r.contiguous(1);
    const { iod, req } = mapAndWalk(
      r,
      r.bvecs([[p + 0x200, PAGE - 0x200]]),
      limits({ dmaAlignment: 0 }),
    );
    expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(true);
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(p + 0x200);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(0);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("puts the next page in PRP2 as data when the offset segment runs one byte further", () => {
    const r = prpRig();
    const p = r.contiguous(1);
    const { iod, req } = mapAndWalk(
      r,
      r.bvecs([[p + 0x200, PAGE - 0x200 + 1]]),
      limits({ dmaAlignment: 0 }),
    );
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(p + 0x200);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(p + PAGE);
    expect(iod.nrDescriptors).toBe(0);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("puts a second segment in PRP2 as data when the first ends on a page boundary", () => {
    const r = prpRig();
    const [a, b] = r.highPages(2) as [number, number];
    const { iod, req } = mapAndWalk(
      r,
      r.bvecs([
        [a + 0x200, PAGE - 0x200],
        [b, PAGE],
      ]),
    );
    expect(a).toBeGreaterThanOrEqual(FOUR_GIB);
    expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(false);
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(a + 0x200);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(b);
    expect(iod.nrDescriptors).toBe(0);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("needs a list for 8 KiB at offset 0x200 although the data spans only two pages' worth", () => {
    const r = prpRig();
    const p = r.contiguous(2);
    const { iod, req } = mapAndWalk(r, r.bvecs([[p + 0x200, 2 * PAGE]]));
    expect(iod.nrDescriptors).toBe(1);
    expect(iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)).toBe(true);
    expect(slots(r, iod, 0, 2)).toEqual([p + PAGE, p + 2 * PAGE]);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("uses a small block for up to 32 list entries and a page for 33", () => {
    for (const [pages, small] of [
      [33, true],
      [34, false],
    ] as const) {
      const r = prpRig();
      const bv = r.bvecs(r.scattered(pages, 3).map((p) => [p, PAGE] as const));
      const { iod, req } = mapAndWalk(r, bv);
      expect(iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)).toBe(small);
      const prp2 = getU64(iod.cmd, SQE.PRP2);
      expect(prp2 % NVME_SMALL_POOL_SIZE).toBe(0);
      if (!small) expect(prp2 % PAGE).toBe(0);
      unmap(r, iod, req);
      expect(r.checkNoLeaks()).toEqual([]);
    }
  });
});

describe("two-step: SGL", () => {
  for (const [n, small] of [
    [16, true],
    [17, false],
  ] as const) {
    it(`puts ${n} Data Blocks in a ${small ? "small" : "large"} descriptor behind a Last Segment`, () => {
      const r = new Rig({ mode: "none", sgl: "byte" });
      const bv = chunks(r, n, 3); // 32 KiB segments: average at the threshold
      const { iod, req } = mapAndWalk(r, bv);
      expect(iod.cmd[SQE.FLAGS]).toBe(0x40);
      expect(iod.cmd[SQE.SGL_TYPE]).toBe(0x30);
      expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(n * 16);
      expect(iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)).toBe(small);
      expect(r.host.small.inUse).toBe(small ? 1 : 0);
      expect(r.host.large.inUse).toBe(small ? 0 : 1);
      const blk = iod.descriptors[0];
      expect(getU64(iod.cmd, SQE.SGL_ADDR)).toBe(blk?.dmaAddr);
      for (let i = 0; i < n; i++) {
        const b = bv[i] as BioVec;
        const d = r.memory.readBytes((blk?.cpuAddr ?? 0) + i * 16, 16);
        expect(getU64(d, 0)).toBe(b.page * b.pageSize + b.offset);
        expect(getU32(d, 8)).toBe(32 * KiB);
        expect(d[15]).toBe(0);
      }
      unmap(r, iod, req);
      expect(r.checkNoLeaks()).toEqual([]);
    });
  }

  it("forces SGL for gaps inside a 4 KiB page, even with the threshold disabled", () => {
    for (const threshold of [32768, 0]) {
      const r = new Rig({ mode: "none", sgl: "byte", host: { sglThreshold: threshold } });
      const [a, b, c] = r.highPages(3) as [number, number, number];
      const bv = r.bvecs([
        [a + 0x100, 0x200],
        [b + 0x400, 0x600],
        [c, 0x1000],
      ]);
      const req = r.request(WRITE, bv);
      expect(req.nrPhysSegments).toBe(3);
      const { iod } = mapAndWalk(r, bv);
      expect(iod.cmd[SQE.FLAGS]).toBe(0x40);
      expect(iod.cmd[SQE.SGL_TYPE]).toBe(0x30);
      expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(48);
      unmap(r, iod, req);
      expect(r.checkNoLeaks()).toEqual([]);
    }
  });

  it("maps gapped segments one by one under an IOMMU (no coalescing across a gap)", () => {
    const r = new Rig({ mode: "strict", sgl: "byte" });
    const [a, b] = r.highPages(2) as [number, number];
    const bv = r.bvecs([
      [a + 0x100, 0x200],
      [b + 0x400, 0x600],
    ]);
    const { iod, req } = mapAndWalk(r, bv);
    expect(dmaUseIova(iod.dmaState)).toBe(false);
    expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(32);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("splits such a request instead on a PRP-only controller (virt boundary)", () => {
    const r = new Rig({ mode: "none", sgl: "none" });
    expect(r.host.limits.virtBoundaryMask).toBe(4095);
    const [a, b] = r.highPages(2) as [number, number];
    const bv = r.bvecs([
      [a + 0x100, 0x200],
      [b + 0x400, 0x600],
    ]);
    expect(() => r.request(WRITE, bv)).toThrow(/virt boundary|exceeds the queue limits/);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("two-step: 64 KiB host pages", () => {
  it("describes one 64 KiB page with PRP1 and 15 list entries in 4 KiB steps", () => {
    const r = prpRig({ pageSize: 65536 });
    const [p] = r.scattered(1, 4) as [number];
    const { iod, req } = mapAndWalk(r, r.bvecs([[p, 65536]]));
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(p);
    expect(iodHas(iod.flags, IOD.SMALL_DESCRIPTOR)).toBe(true);
    expect(slots(r, iod, 0, 15)).toEqual(Array.from({ length: 15 }, (_, i) => p + (i + 1) * PAGE));
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("masks a bvec offset beyond 4 KiB to the controller page (simple PRP path)", () => {
    const r = prpRig({ pageSize: 65536 });
    const [p] = r.scattered(1, 5) as [number];
    const bv = r.bvecs([[p + 0x3000, 0x2000]]);
    expect(bv[0]?.offset).toBe(0x3000);
    const { iod, req } = mapAndWalk(r, bv);
    expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(true);
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(p + 0x3000);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(p + 0x4000);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("uses one Data Block for a 64 KiB page on an SGL controller", () => {
    const r = new Rig({ mode: "none", sgl: "byte", pageSize: 65536 });
    const [p] = r.scattered(1, 6) as [number];
    const { iod, req } = mapAndWalk(r, r.bvecs([[p, 65536]]));
    expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(true);
    expect(iod.cmd[SQE.SGL_TYPE]).toBe(0);
    expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(65536);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("two-step: IOVA coalescing", () => {
  it("turns 32 scattered pages into one SGL Data Block of 128 KiB", () => {
    const r = new Rig({ mode: "strict", sgl: "byte" });
    const bv = r.bvecs(r.scattered(32, 7).map((p) => [p, PAGE] as const));
    const { iod, req } = mapAndWalk(r, bv, r.host.limits);
    expect(req.nrPhysSegments).toBe(32);
    expect(dmaUseIova(iod.dmaState)).toBe(true);
    expect(iod.cmd[SQE.SGL_TYPE]).toBe(0);
    expect(getU32(iod.cmd, SQE.SGL_LEN)).toBe(128 * KiB);
    expect(iod.nrDescriptors).toBe(0);
    expect(iod.dmaVecs).toBeNull();
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("builds PRPs from one contiguous IOVA range on a PRP-only controller", () => {
    const r = new Rig({ mode: "lazy", sgl: "none" });
    const bv = r.bvecs(r.scattered(32, 8).map((p) => [p, PAGE] as const));
    const { iod, req } = mapAndWalk(r, bv, r.host.limits);
    const prp1 = getU64(iod.cmd, SQE.PRP1);
    const blk = iod.descriptors[0];
    const list: number[] = [];
    for (let k = 0; k < 31; k++) list.push(r.memory.readU64((blk?.cpuAddr ?? 0) + k * 8));
    expect(list).toEqual(Array.from({ length: 31 }, (_, k) => prp1 + (k + 1) * PAGE));
    expect(iod.dmaVecs).toBeNull();
    expect(iod.nrDmaVecs).toBe(0);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("two-step: sgl_threshold", () => {
  function run(
    threshold: number,
    bvecsOf: (r: Rig) => BioVec[],
  ): { sgl: boolean; single: boolean } {
    const r = new Rig({ mode: "none", sgl: "byte", host: { sglThreshold: threshold } });
    const { iod, req } = mapAndWalk(r, bvecsOf(r));
    const out = { sgl: !isPrp(iod), single: iodHas(iod.flags, IOD.SINGLE_SEGMENT) };
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
    return out;
  }
  const small = (r: Rig) => r.bvecs(r.scattered(8, 9).map((p) => [p, PAGE] as const));
  const big = (r: Rig) => chunks(r, 4, 4);
  const single16k = (r: Rig) => r.bvecs([[r.contiguous(2), 16 * KiB]]);

  it("uses PRPs below the average segment size and SGLs at or above it", () => {
    expect(run(32768, small).sgl).toBe(false);
    expect(run(4096, small).sgl).toBe(true);
    expect(run(32768, big).sgl).toBe(true);
    expect(run(65537, big).sgl).toBe(false);
  });

  it("uses PRPs when the threshold is 0, except for a single segment PRPs cannot describe", () => {
    expect(run(0, big).sgl).toBe(false);
    expect(run(0, single16k)).toEqual({ sgl: true, single: true });
  });
});

describe("two-step: dma_vec records, one inline and an array only when needed", () => {
  function rec(r: Rig, bv: BioVec[]): { arrays: number; nr: number } {
    const { iod, req } = mapAndWalk(r, bv, r.host.limits);
    const out = { arrays: r.host.vecPool.counters.c.inUse, nr: iod.nrDmaVecs };
    expect(iod.dmaVecs !== null).toBe(out.arrays === 1);
    unmap(r, iod, req);
    return out;
  }

  it("keeps one segment inline and allocates the array only for a second one", () => {
    const r = prpRig(); // no IOMMU, dma-debug on: dma_need_unmap is true
    expect(rec(r, r.bvecs([[r.contiguous(0), PAGE]]))).toEqual({ arrays: 0, nr: 1 });
    expect(rec(r, r.bvecs(r.scattered(2, 10).map((p) => [p, PAGE] as const)))).toEqual({
      arrays: 1,
      nr: 2,
    });
    expect(rec(r, r.bvecs(r.scattered(40, 11).map((p) => [p, PAGE] as const)))).toEqual({
      arrays: 1,
      nr: 40,
    });
    expect(r.host.vecPool.counters.c.allocs).toBe(2);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("fails a request with more recorded segments than the array holds, leaking nothing", () => {
    const r = prpRig(); // dma_need_unmap is true, every segment is recorded
    const bv = r.bvecs(r.scattered(300, 19).map((p) => [p, PAGE] as const));
    const req = r.request(WRITE, bv, limits({ virtBoundaryMask: 4095, maxSegments: 4096 }));
    const iod = r.iod();
    expect(nvmeMapData(r.mapContext(), iod, req)).toBe(BLK_STS.IOERR);
    expect(r.host.vecPool.counters.c.inUse).toBe(0);
    expect(r.host.small.inUse + r.host.large.inUse).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("records nothing when the device needs no unmap", () => {
    const r = prpRig({ debug: false });
    expect(rec(r, r.bvecs(r.scattered(40, 12).map((p) => [p, PAGE] as const)))).toEqual({
      arrays: 0,
      nr: 0,
    });
    expect(r.host.vecPool.counters.c.allocs).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("records nothing on the IOVA path or the SGL path", () => {
    const strict = new Rig({ mode: "strict", sgl: "none" });
    expect(
      rec(strict, strict.bvecs(strict.scattered(20, 13).map((p) => [p, PAGE] as const))),
    ).toEqual({ arrays: 0, nr: 0 });
    expect(strict.checkNoLeaks()).toEqual([]);
    const sgl = new Rig({ mode: "none", sgl: "byte", host: { sglThreshold: 4096 } });
    expect(rec(sgl, sgl.bvecs(sgl.scattered(20, 14).map((p) => [p, PAGE] as const)))).toEqual({
      arrays: 0,
      nr: 0,
    });
    expect(sgl.host.vecPool.counters.c.allocs).toBe(0);
    expect(sgl.checkNoLeaks()).toEqual([]);
  });

  it("records per-segment mappings under a 64 KiB IOMMU granule (64 KiB pages), where 4 KiB segments cannot coalesce", () => {
    const r = new Rig({ mode: "strict", sgl: "none", granule: 65536, pageSize: 65536 });
    const bv = r.bvecs(r.scattered(8, 17).map((p) => [p, PAGE] as const));
    const { iod, req } = mapAndWalk(r, bv, r.host.limits);
    expect(dmaUseIova(iod.dmaState)).toBe(false);
    expect(iod.nrDmaVecs).toBe(8);
    expect(r.host.vecPool.counters.c.inUse).toBe(1);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("counts a vec array per multi-segment PRP I/O only, end to end", () => {
    const r = prpRig();
    const one = r.bvecs([[r.contiguous(1), 2 * PAGE]]);
    const many = r.bvecs(r.scattered(8, 15).map((p) => [p, PAGE] as const));
    expect(r.io("write", 0, one)).toBe(OK);
    expect(r.host.counters.c.vecArrays).toBe(0);
    expect(r.io("write", 64, many)).toBe(OK);
    expect(r.host.counters.c.vecArrays).toBe(1);
    expect(r.host.counters.c.peakInflightBytes).toBe(4096 + NVME_SMALL_POOL_SIZE);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("two-step: one path for every single segment, however small", () => {
  it("takes the same single-segment path for 512 B, one page and a contiguous 8 KiB", () => {
    for (const mode of ["none", "strict"] as const) {
      const r = new Rig({ mode, sgl: "none" });
      const p = r.contiguous(2);
      for (const [off, len] of [
        [0x200, 512],
        [0, PAGE],
        [0x400, 2 * PAGE - 0x400],
      ] as const) {
        const { iod, req } = mapAndWalk(r, r.bvecs([[p + off, len]]), r.host.limits);
        expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(true);
        expect(iod.totalLen).toBe(len);
        expect(iod.nrDescriptors).toBe(0);
        expect(iod.nrDmaVecs).toBe(1);
        expect(dmaUseIova(iod.dmaState)).toBe(false);
        unmap(r, iod, req);
      }
      expect(r.checkNoLeaks()).toEqual([]);
    }
  });

  it("does not special-case a request of one page made of two segments", () => {
    const r = new Rig({ mode: "none", sgl: "byte" });
    const [a, b] = r.highPages(2) as [number, number];
    const { iod, req } = mapAndWalk(
      r,
      r.bvecs([
        [a + 0x800, 0x800],
        [b, 0x800],
      ]),
    );
    // Not PRP-unfriendly (no gap inside a 4 KiB page), so PRPs through the iterator.
    expect(iodHas(iod.flags, IOD.SINGLE_SEGMENT)).toBe(false);
    expect(isPrp(iod)).toBe(true);
    expect(getU64(iod.cmd, SQE.PRP1)).toBe(a + 0x800);
    expect(getU64(iod.cmd, SQE.PRP2)).toBe(b);
    unmap(r, iod, req);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("unmaps a single segment that follows an IOVA-coalesced request on the same iod", () => {
    const r = new Rig({ mode: "strict", sgl: "none" });
    const iod = r.iod();
    const ctx = r.mapContext();
    const multi = r.request(READ, r.bvecs(r.scattered(4, 16).map((p) => [p, PAGE] as const)));
    expect(nvmeMapData(ctx, iod, multi)).toBe(OK);
    expect(dmaUseIova(iod.dmaState)).toBe(true);
    nvmeUnmapData(ctx, iod, multi);
    iod.resetForSubmit();
    const single = r.request(READ, r.bvecs([[r.contiguous(0), PAGE]]));
    expect(nvmeMapData(ctx, iod, single)).toBe(OK);
    expect(dmaUseIova(iod.dmaState)).toBe(false);
    nvmeUnmapData(ctx, iod, single);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("two-step: builder and walker agree (fast-check)", () => {
  it("gives the device exactly the request's bytes and reads every list page the host built", () => {
    fc.assert(
      fc.property(
        fc.record({
          segs: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 40 }),
          firstOff: fc.integer({ min: 0, max: 1023 }),
          lastCut: fc.integer({ min: 0, max: 1023 }),
          mode: fc.constantFrom("none", "strict"),
          sgl: fc.constantFrom("none", "byte"),
          threshold: fc.constantFrom(0, 4096, 32768),
        }),
        (p) => {
          const r = new Rig({
            mode: p.mode,
            sgl: p.sgl,
            debug: false,
            host: { sglThreshold: p.threshold },
          });
          const n = p.segs.length;
          const parts: [number, number][] = p.segs.map((order, i) => {
            const base = r.contiguous(order);
            r.contiguous(order);
            const size = 2 ** order * PAGE;
            const off = i === 0 ? (p.firstOff * 4) % size : 0;
            const cut = i === n - 1 ? Math.min((p.lastCut * 4) % size, size - off - 4) : 0;
            return [base + off, size - off - cut];
          });
          const bv = r.bvecs(parts);
          const { iod, req } = mapAndWalk(r, bv, limits({ virtBoundaryMask: 4095 }));
          const view = r.deviceView(iod.cmd, req.dataLen);
          expect(view.ranges.descriptorReads).toBe(iod.nrDescriptors);
          unmap(r, iod, req);
          expect(r.checkNoLeaks()).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});
