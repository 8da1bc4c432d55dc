/**
 * The device-side walk (`nvmeMapPrp` / `nvmeMapSgl`) and the controller's checks around it: one test
 * per status code (02h, 04h, 0Dh, 0Eh, 0Fh, 11h, 13h, 1Eh), built by writing bad descriptors into
 * simulated memory, walked directly through a `DeviceDma` or submitted as raw commands. DNR is
 * set as QEMU sets it: on every descriptor-format error, never on a Data Transfer Error.
 */
import { setU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  NVME_CMD,
  NVME_SC,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  SQE,
  type SglCaps,
  setSglDesc,
  nvmeMapPrp,
  nvmeMapSgl,
} from "../src/index.ts";
import { FOUR_GIB, Rig, rawRw } from "../src/testing/index.ts";
import { ranges, sgl1, walkMachine as machine, writeSgl } from "./walker-helpers.ts";

const PAGE = 4096;
const DNR = NVME_STATUS_DNR;
const BYTE: SglCaps = { support: "byte", oversize: false, bitBucket: false };
const T = NVME_SGL_TYPE;

/** Writes 64-bit entries at `phys`. */
function writeEntries(r: Rig, phys: number, entries: readonly number[]): void {
  const b = new Uint8Array(entries.length * 8);
  entries.forEach((e, i) => setU64(b, i * 8, e));
  r.memory.write(phys, b);
}

describe("walker: PRP", () => {
  it("follows a list that starts mid-page and links through that page's last slot", () => {
    const { r, dma, out } = machine();
    const [l1, l2, ...data] = r.highPages(510);
    const list1 = (l1 as number) + 0x48; // SPDK-like: 503 slots in the first page
    const entries = data.slice(1, 503);
    writeEntries(r, list1, [...entries, l2 as number]);
    writeEntries(r, l2 as number, data.slice(503, 508));
    const len = 508 * PAGE;
    expect(nvmeMapPrp(dma, data[0] as number, list1, len, PAGE, out)).toBe(0);
    expect(ranges(out).map(([a]) => a)).toEqual(data.slice(0, 508));
    expect(out.descriptorReads).toBe(2);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("takes the last slot of a full page as data when the rest fits in one page", () => {
    const { r, dma, out } = machine();
    const [l1, ...data] = r.highPages(514);
    writeEntries(r, l1 as number, data.slice(1, 513));
    expect(nvmeMapPrp(dma, data[0] as number, l1 as number, 513 * PAGE, PAGE, out)).toBe(0);
    expect(out.count).toBe(513);
    expect(out.addr[512]).toBe(data[512]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("ignores PRP2 when PRP1's page holds the whole transfer", () => {
    const { r, dma, out } = machine();
    expect(nvmeMapPrp(dma, FOUR_GIB + 0x100, 0xdead_beef, 0xf00, PAGE, out)).toBe(0);
    expect(ranges(out)).toEqual([[FOUR_GIB + 0x100, 0xf00]]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 13h with DNR for PRP2 used as data with an offset", () => {
    const { r, dma, out } = machine();
    expect(nvmeMapPrp(dma, FOUR_GIB, FOUR_GIB + 0x2008, 2 * PAGE, PAGE, out)).toBe(
      NVME_SC.PRP_INVALID_OFFSET + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 13h with DNR for a list entry with a non-zero offset", () => {
    const { r, dma, out } = machine();
    const [l, a, b, c] = r.highPages(4) as [number, number, number, number];
    writeEntries(r, l, [b, c + 4]);
    expect(nvmeMapPrp(dma, a, l, 3 * PAGE, PAGE, out)).toBe(NVME_SC.PRP_INVALID_OFFSET + DNR);
    writeEntries(r, l, [b, c]);
    expect(nvmeMapPrp(dma, a, l, 3 * PAGE, PAGE, out)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 13h with DNR for a chain pointer with a non-zero offset", () => {
    const { r, dma, out } = machine();
    const [l1, l2, ...data] = r.highPages(516);
    const e = data.slice(1, 512);
    writeEntries(r, l1 as number, [...e, (l2 as number) + 8]);
    expect(nvmeMapPrp(dma, data[0] as number, l1 as number, 514 * PAGE, PAGE, out)).toBe(
      NVME_SC.PRP_INVALID_OFFSET + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h without DNR when the list pointer reaches an unmapped IOVA", () => {
    const { r, dma, out } = machine("strict");
    const before = r.domain?.counters.c.faults ?? 0;
    // IOVAs near the top of the 32-bit space were never handed out.
    expect(nvmeMapPrp(dma, 0x1000_0000, 0x1010_0000, 3 * PAGE, PAGE, out)).toBe(
      NVME_SC.DATA_XFER_ERROR,
    );
    expect(r.domain?.counters.c.faults).toBeGreaterThan(before);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h without DNR when the list pointer reaches a hole in the address map", () => {
    const { r, dma, out } = machine();
    expect(nvmeMapPrp(dma, FOUR_GIB, 2 ** 46, 3 * PAGE, PAGE, out)).toBe(NVME_SC.DATA_XFER_ERROR);
    expect(dma.counters.c.busErrors).toBe(1);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("walker: SGL", () => {
  it("follows Segment then Last Segment, skipping zero-length and NULL descriptors", () => {
    const { r, dma, out } = machine();
    const [s0, s1, a, b, c] = r.highPages(5) as [number, number, number, number, number];
    writeSgl(r, s0, [
      [a, 0x600, T.DATA],
      [0, 0, T.DATA], // NULL descriptor
      [s1, 32, T.LAST_SEGMENT],
    ]);
    writeSgl(r, s1, [
      [b + 0x10, 0, T.DATA],
      [c, 0x200, T.DATA],
    ]);
    expect(nvmeMapSgl(dma, sgl1(s0, 48, T.SEGMENT), 0, 0x800, BYTE, false, out)).toBe(0);
    expect(ranges(out)).toEqual([
      [a, 0x600],
      [c, 0x200],
    ]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Dh with DNR for a segment descriptor of length 0, 8, or at an unaligned address", () => {
    const { r, dma, out } = machine();
    const [s, a] = r.highPages(2) as [number, number];
    writeSgl(r, s, [[a, 0x200, T.DATA]]);
    for (const [addr, len] of [
      [s, 0],
      [s, 8],
      [s + 4, 16],
    ] as const) {
      expect(nvmeMapSgl(dma, sgl1(addr, len, T.LAST_SEGMENT), 0, 0x200, BYTE, false, out)).toBe(
        NVME_SC.SGL_INVALID_LAST + DNR,
      );
    }
    expect(nvmeMapSgl(dma, sgl1(s, 16, T.LAST_SEGMENT), 0, 0x200, BYTE, false, out)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Dh with DNR when the last segment ends in a segment descriptor", () => {
    const { r, dma, out } = machine();
    const [s0, s1, a] = r.highPages(3) as [number, number, number];
    writeSgl(r, s0, [
      [a, 0x200, T.DATA],
      [s1, 16, T.SEGMENT],
    ]);
    writeSgl(r, s1, [[a + 0x200, 0x200, T.DATA]]);
    expect(nvmeMapSgl(dma, sgl1(s0, 32, T.LAST_SEGMENT), 0, 0x400, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_LAST + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Eh with DNR for a segment descriptor in a middle slot", () => {
    const { r, dma, out } = machine();
    const [s0, s1, a] = r.highPages(3) as [number, number, number];
    writeSgl(r, s0, [
      [s1, 16, T.LAST_SEGMENT],
      [a, 0x200, T.DATA],
    ]);
    expect(nvmeMapSgl(dma, sgl1(s0, 32, T.SEGMENT), 0, 0x200, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_COUNT + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Fh with DNR when the Data Blocks are 4 bytes short of the transfer", () => {
    const { r, dma, out } = machine();
    const [s, a, b] = r.highPages(3) as [number, number, number];
    writeSgl(r, s, [
      [a, 0x200, T.DATA],
      [b, 0x1fc, T.DATA],
    ]);
    expect(nvmeMapSgl(dma, sgl1(s, 32, T.LAST_SEGMENT), 0, 0x400, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_DATA + DNR,
    );
    expect(nvmeMapSgl(dma, sgl1(a, 0x3fc, T.DATA), 0, 0x400, BYTE, false, out)).toBe(
      NVME_SC.SGL_INVALID_DATA + DNR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 0Fh with DNR for extra descriptors after the transfer unless oversize is allowed", () => {
    const { r, dma, out } = machine();
    const [s, a, b] = r.highPages(3) as [number, number, number];
    writeSgl(r, s, [
      [a, 0x400, T.DATA],
      [b, 0x200, T.DATA],
    ]);
    const cmd = sgl1(s, 32, T.LAST_SEGMENT);
    expect(nvmeMapSgl(dma, cmd, 0, 0x400, BYTE, false, out)).toBe(NVME_SC.SGL_INVALID_DATA + DNR);
    expect(nvmeMapSgl(dma, cmd, 0, 0x400, { ...BYTE, oversize: true }, false, out)).toBe(0);
    expect(ranges(out)).toEqual([[a, 0x400]]);
    // A single over-long descriptor is accepted and truncated (QEMU).
    expect(nvmeMapSgl(dma, sgl1(a, 0x800, T.DATA), 0, 0x400, BYTE, false, out)).toBe(0);
    expect(ranges(out)).toEqual([[a, 0x400]]);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 11h with DNR for a reserved type and for unsupported Keyed or Bit Bucket types", () => {
    const { r, dma, out } = machine();
    const [s, a] = r.highPages(2) as [number, number];
    for (const t of [0x6, T.KEYED_DATA, T.BIT_BUCKET]) {
      writeSgl(r, s, [
        [a, 0x200, T.DATA],
        [a + 0x200, 0x200, t],
      ]);
      expect(nvmeMapSgl(dma, sgl1(s, 32, T.LAST_SEGMENT), 0, 0x400, BYTE, true, out)).toBe(
        NVME_SC.SGL_INVALID_TYPE + DNR,
      );
    }
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("discards Bit Bucket bytes on reads when the controller supports them", () => {
    const { r, dma, out } = machine();
    const [s, a] = r.highPages(2) as [number, number];
    writeSgl(r, s, [
      [a, 0x200, T.DATA],
      [0, 0x200, T.BIT_BUCKET],
      [a + 0x400, 0x200, T.DATA],
    ]);
    const caps = { ...BYTE, bitBucket: true };
    expect(nvmeMapSgl(dma, sgl1(s, 48, T.LAST_SEGMENT), 0, 0x600, caps, true, out)).toBe(0);
    expect(out.bitBucket).toBe(0x200);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 1Eh with DNR on a dword-only controller for a length or address not a multiple of 4", () => {
    const { r, dma, out } = machine();
    const [a] = r.highPages(1) as [number];
    const dword: SglCaps = { ...BYTE, support: "dword" };
    expect(nvmeMapSgl(dma, sgl1(a + 2, 0x200, T.DATA), 0, 0x200, dword, false, out)).toBe(
      NVME_SC.SGL_INVALID_GRANULARITY + DNR,
    );
    expect(nvmeMapSgl(dma, sgl1(a, 0x202, T.DATA), 0, 0x200, dword, false, out)).toBe(
      NVME_SC.SGL_INVALID_GRANULARITY + DNR,
    );
    expect(nvmeMapSgl(dma, sgl1(a + 2, 0x200, T.DATA), 0, 0x200, BYTE, false, out)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h without DNR when a segment cannot be read", () => {
    const { r, dma, out } = machine();
    expect(nvmeMapSgl(dma, sgl1(2 ** 46, 32, T.LAST_SEGMENT), 0, 0x400, BYTE, false, out)).toBe(
      NVME_SC.DATA_XFER_ERROR,
    );
    expect(r.checkNoLeaks()).toEqual([]);
  });
});

describe("walker: through the controller", () => {
  const TAG = 200; // an idle tag: the host ignores these completions

  it("returns 02h with DNR for a transfer above MDTS before reading any descriptor", () => {
    const r = new Rig({ mode: "none", sgl: "none", ctrl: { mdts: 1 }, debug: false });
    const c = r.ctrl.counters.c;
    const before = {
      reads: c.descriptorReads,
      walks: c.prpWalks,
      dma: r.ctrl.dma.counters.c.reads,
    };
    const cmd = rawRw(NVME_CMD.WRITE, 0, 24, TAG); // 12 KiB > 2 pages
    setU64(cmd, SQE.PRP1, FOUR_GIB);
    setU64(cmd, SQE.PRP2, 2 ** 46); // a list pointer that would fault if it were read
    expect(r.rawCommand(cmd)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(c.descriptorReads).toBe(before.reads);
    expect(c.prpWalks).toBe(before.walks);
    // Only the command itself was fetched by DMA.
    expect(r.ctrl.dma.counters.c.reads).toBe(before.dma + 1);
    // Exactly MDTS is accepted.
    const [a, b] = r.highPages(2) as [number, number];
    const ok = rawRw(NVME_CMD.WRITE, 0, 16, TAG);
    setU64(ok, SQE.PRP1, a);
    setU64(ok, SQE.PRP2, b);
    expect(r.rawCommand(ok)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 04h without DNR when data DMA faults in the IOMMU, and recovers", () => {
    const r = new Rig({ mode: "strict", sgl: "none", debug: false });
    const cmd = rawRw(NVME_CMD.READ, 0, 8, TAG);
    setU64(cmd, SQE.PRP1, 0x1000_0000);
    const faults = r.ctrl.counters.c.dmaFaults;
    expect(r.rawCommand(cmd)).toBe(NVME_SC.DATA_XFER_ERROR);
    expect(r.ctrl.counters.c.dmaFaults).toBe(faults + 1);
    expect(r.ctrl.fatal).toBe(false);
    const [p] = r.scattered(1, 3) as [number];
    expect(r.io("write", 0, r.bvecs([[p, 4096]]))).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 1Eh with DNR from a dword-only controller for a byte-granular Data Block", () => {
    const r = new Rig({ mode: "none", sgl: "dword", debug: false });
    const [a] = r.highPages(1) as [number];
    const cmd = rawRw(NVME_CMD.WRITE, 0, 1, TAG);
    cmd[SQE.FLAGS] = 0x40;
    setSglDesc(cmd, SQE.SGL_ADDR, a + 1, 0x200, T.DATA);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.SGL_INVALID_GRANULARITY + DNR);
    setSglDesc(cmd, SQE.SGL_ADDR, a + 4, 0x200, T.DATA);
    expect(r.rawCommand(cmd)).toBe(0);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("returns 02h with DNR for SGLs on a controller without SGL support, and for PSDT 11b", () => {
    const r = new Rig({ mode: "none", sgl: "none", debug: false });
    const [a] = r.highPages(1) as [number];
    const cmd = rawRw(NVME_CMD.READ, 0, 1, TAG);
    cmd[SQE.FLAGS] = 0x40;
    setSglDesc(cmd, SQE.SGL_ADDR, a, 0x200, T.DATA);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.INVALID_FIELD + DNR);
    cmd[SQE.FLAGS] = 0xc0;
    // QEMU `nvme_read`: a mapping failure (PSDT 11b included) carries DNR.
    expect(r.rawCommand(cmd)).toBe(NVME_SC.INVALID_FIELD + DNR);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});
