/**
 * Review fixes of the device-side walk, checked against QEMU hw/nvme/ctrl.c and NVMe Base 2.2
 * §4.3: SGL chains that loop end with 0Dh (QEMU `nvme_map_sgl`'s forward-progress check),
 * read/write mapping failures carry DNR (QEMU `nvme_read` / `nvme_do_write`), PRP1's reserved
 * bits 1:0 are treated as 00b, the SGL sub type is checked (11h), SGL1 as a Bit Bucket is 0Dh,
 * and a descriptor wrapping past 2^64 is 0Fh.
 */
import { setU32, setU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  NVME_CMD,
  NVME_SC,
  NVME_SGL_SUBTYPE,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  SQE,
  type SglCaps,
  setSglDesc,
  nvmeMapPrp,
  nvmeMapSgl,
} from "../src/index.ts";
import { rawRw } from "../src/testing/index.ts";
import { ranges, sgl1, walkMachine, writeSgl } from "./walker-helpers.ts";

const machine = (mode: "none" | "strict" = "none") => walkMachine(mode, "byte");

const PAGE = 4096;
const DNR = NVME_STATUS_DNR;
const BYTE: SglCaps = { support: "byte", oversize: false, bitBucket: false };
const T = NVME_SGL_TYPE;
const TAG = 200; // an idle tag: the host ignores these completions

/** A descriptor whose 64-bit address is given as two 32-bit halves (it may exceed 2^53). */
function sgl1Wide(hi: number, lo: number, len: number, type: number): Uint8Array {
  const b = new Uint8Array(16);
  setU32(b, 0, lo);
  setU32(b, 4, hi);
  setU32(b, 8, len);
  b[15] = type * 16;
  return b;
}

/** A descriptor hook that stops a walk that would never end (so old code fails, not hangs). */
function bounded(max = 1000) {
  let reads = 0;
  return () => {
    if (++reads > max) throw new Error(`the walk read more than ${max} descriptor blocks`);
  };
}

describe("walker review: SGL chains that loop", () => {
  it("returns 0Dh with DNR for a Segment that points at itself", () => {
    const { r, dma, out } = machine();
    const [s] = r.highPages(1) as [number];
    writeSgl(r, s, [[s, 16, T.SEGMENT]]);
    expect(nvmeMapSgl(dma, sgl1(s, 16, T.SEGMENT), 0, 0x200, BYTE, false, out, bounded())).toBe(
      NVME_SC.SGL_INVALID_LAST + DNR,
    );
    // Zero-length Data Blocks are no progress either.
    writeSgl(r, s, [
      [s + 0x800, 0, T.DATA],
      [s, 32, T.SEGMENT],
    ]);
    expect(nvmeMapSgl(dma, sgl1(s, 32, T.SEGMENT), 0, 0x200, BYTE, false, out, bounded())).toBe(
      NVME_SC.SGL_INVALID_LAST + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Dh with DNR for a 2-cycle of Segments", () => {
    const { r, dma, out } = machine();
    const [a, b, d] = r.highPages(3) as [number, number, number];
    writeSgl(r, a, [
      [d, 0x200, T.DATA],
      [b, 16, T.SEGMENT],
    ]);
    writeSgl(r, b, [[a, 32, T.SEGMENT]]);
    expect(nvmeMapSgl(dma, sgl1(a, 32, T.SEGMENT), 0, 0x1000, BYTE, false, out, bounded())).toBe(
      NVME_SC.SGL_INVALID_LAST + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("ends a cycle that keeps consuming when the transfer is used up", () => {
    const { r, dma, out } = machine();
    const [s, d] = r.highPages(2) as [number, number];
    writeSgl(r, s, [
      [d, 0x200, T.DATA],
      [s, 32, T.SEGMENT],
    ]);
    expect(nvmeMapSgl(dma, sgl1(s, 32, T.SEGMENT), 0, 0x800, BYTE, false, out, bounded())).toBe(
      NVME_SC.SGL_INVALID_DATA + DNR,
    );
    const over = { ...BYTE, oversize: true };
    expect(nvmeMapSgl(dma, sgl1(s, 32, T.SEGMENT), 0, 0x800, over, false, out, bounded())).toBe(0);
    expect(ranges(out)).toEqual([
      [d, 0x200],
      [d, 0x200],
      [d, 0x200],
      [d, 0x200],
    ]);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("walker review: DNR on read/write mapping failures", () => {
  it("returns 04h with DNR when a PRP list page cannot be read", () => {
    const { r } = machine();
    const [a] = r.highPages(1) as [number];
    for (const op of [NVME_CMD.READ, NVME_CMD.WRITE]) {
      const cmd = rawRw(op, 0, 24, TAG); // 12 KiB: PRP2 is a list pointer
      setU64(cmd, SQE.PRP1, a);
      setU64(cmd, SQE.PRP2, 2 ** 46); // a hole in the address map
      expect(r.rawCommand(cmd)).toBe(NVME_SC.DATA_XFER_ERROR + DNR);
    }
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h with DNR when an SGL segment cannot be read through the IOMMU", () => {
    const { r } = machine("strict");
    const cmd = rawRw(NVME_CMD.WRITE, 0, 2, TAG);
    cmd[SQE.FLAGS] = 0x40;
    setSglDesc(cmd, SQE.SGL_ADDR, 0x1000_0000, 32, T.LAST_SEGMENT); // never mapped
    expect(r.rawCommand(cmd)).toBe(NVME_SC.DATA_XFER_ERROR + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 02h with DNR for PSDT 11b on a write", () => {
    const { r } = machine();
    const [a] = r.highPages(1) as [number];
    const cmd = rawRw(NVME_CMD.WRITE, 0, 1, TAG);
    cmd[SQE.FLAGS] = 0xc0;
    setU64(cmd, SQE.PRP1, a);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("keeps 04h without DNR for a fault while the data moves (a write from an unmapped IOVA)", () => {
    const { r } = machine("strict");
    const cmd = rawRw(NVME_CMD.WRITE, 0, 8, TAG);
    setU64(cmd, SQE.PRP1, 0x1000_0000);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.DATA_XFER_ERROR);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("walker review: PRP1 bits 1:0", () => {
  it("treats PRP1's reserved bits 1:0 as 00b", () => {
    const { r, dma, out } = machine();
    const [a, b] = r.highPages(2) as [number, number];
    expect(nvmeMapPrp(dma, a + 0x102, 0, 0x200, PAGE, out)).toBe(0);
    expect(ranges(out)).toEqual([[a + 0x100, 0x200]]);
    // The first page's share grows by the two ignored bits.
    expect(nvmeMapPrp(dma, a + 0xffe, b, PAGE, PAGE, out)).toBe(0);
    expect(ranges(out)).toEqual([
      [a + 0xffc, 4],
      [b, PAGE - 4],
    ]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("writes the bytes at the dword below PRP1 through the controller", () => {
    const { r } = machine();
    const [a] = r.highPages(1) as [number];
    const data = r.fill(a, PAGE, 7);
    const cmd = rawRw(NVME_CMD.WRITE, 0, 1, TAG);
    setU64(cmd, SQE.PRP1, a + 0x203);
    expect(r.rawCommand(cmd)).toBe(0);
    const ns = new Uint8Array(512);
    r.ctrl.namespaces[0]!.read(0, ns, 0, 512);
    expect(Buffer.compare(ns, data.subarray(0x200, 0x400))).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("walker review: SGL sub type, SGL1 Bit Bucket, 64-bit wrap", () => {
  it("returns 11h with DNR for an Offset sub type on a Data Block in SGL1", () => {
    const { r, dma, out } = machine();
    const [a] = r.highPages(1) as [number];
    const off = NVME_SGL_SUBTYPE.OFFSET;
    expect(nvmeMapSgl(dma, sgl1(a, 0x200, T.DATA, off), 0, 0x200, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_TYPE + DNR,
    );
    expect(nvmeMapSgl(dma, sgl1(a, 0x200, T.DATA), 0, 0x200, BYTE, false, out)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 11h with DNR for a non-Address sub type inside a segment and on a segment pointer", () => {
    const { r, dma, out } = machine();
    const [s0, s1, a] = r.highPages(3) as [number, number, number];
    writeSgl(r, s0, [[a, 0x200, T.DATA, NVME_SGL_SUBTYPE.OFFSET]]);
    expect(nvmeMapSgl(dma, sgl1(s0, 16, T.LAST_SEGMENT), 0, 0x200, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_TYPE + DNR,
    );
    writeSgl(r, s0, [
      [a, 0x200, T.DATA],
      [s1, 16, T.LAST_SEGMENT, 0xa], // a transport-specific sub type
    ]);
    writeSgl(r, s1, [[a + 0x200, 0x200, T.DATA]]);
    expect(nvmeMapSgl(dma, sgl1(s0, 32, T.SEGMENT), 0, 0x400, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_TYPE + DNR,
    );
    expect(
      nvmeMapSgl(dma, sgl1(s0, 32, T.SEGMENT, NVME_SGL_SUBTYPE.OFFSET), 0, 0x400, BYTE, false, out),
    ).toBe(NVME_SC.SGL_INVALID_TYPE + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Dh with DNR for a Bit Bucket in SGL1, even when Bit Buckets are supported", () => {
    const { r, dma, out } = machine();
    const caps = { ...BYTE, bitBucket: true };
    expect(nvmeMapSgl(dma, sgl1(0, 0x200, T.BIT_BUCKET), 0, 0x200, caps, true, out)).toBe(
      NVME_SC.SGL_INVALID_LAST + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Fh with DNR for a segment or Data Block wrapping past 2^64", () => {
    const { r, dma, out } = machine();
    const seg = sgl1Wide(0xffffffff, 0xfffffff0, 32, T.LAST_SEGMENT);
    expect(nvmeMapSgl(dma, seg, 0, 0x200, BYTE, false, out)).toBe(NVME_SC.SGL_INVALID_DATA + DNR);
    const data = sgl1Wide(0xffffffff, 0xffffff00, 0x200, T.DATA);
    expect(nvmeMapSgl(dma, data, 0, 0x200, BYTE, false, out)).toBe(NVME_SC.SGL_INVALID_DATA + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h for a segment the model cannot address (at 2^60) and adds DNR on a read", () => {
    const { r, dma, out } = machine();
    const seg = sgl1Wide(0x10000000, 0, 32, T.LAST_SEGMENT);
    expect(nvmeMapSgl(dma, seg, 0, 0x200, BYTE, false, out)).toBe(NVME_SC.DATA_XFER_ERROR);
    const cmd = rawRw(NVME_CMD.READ, 0, 1, TAG);
    cmd[SQE.FLAGS] = 0x40;
    cmd.set(seg, SQE.SGL_ADDR);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.DATA_XFER_ERROR + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});
