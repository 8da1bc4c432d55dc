/**
 * The reason a failed command records (QEMU's `pci_nvme_err_*` trace event names, see
 * src/ctrl/error-log.ts): from the walk itself (`DmaRanges.reason`) and in the controller's
 * error log, which keeps the last NVME_ERROR_LOG_ENTRIES failures, newest first.
 */
import { setU64 } from "@dmasim/bvec";
import { describe, expect, it } from "vitest";
import {
  NVME_CMD,
  NVME_CMD_SGL_METABUF,
  NVME_ERR,
  NVME_ERROR_LOG_ENTRIES,
  NVME_SC,
  NVME_SGL_TYPE,
  NVME_STATUS_DNR,
  SQE,
  nvmeMapPrp,
  setSglDesc,
} from "../src/index.ts";
import { FOUR_GIB, rawRw } from "../src/testing/index.ts";
import { walkMachine as machine, writeSgl } from "./walker-helpers.ts";

const PAGE = 4096;
const DNR = NVME_STATUS_DNR;

describe("error log: reasons of failed commands", () => {
  it("names a misaligned PRP2 in the walk and in the log of the raw command", () => {
    const { r, dma, out } = machine();
    expect(nvmeMapPrp(dma, FOUR_GIB, FOUR_GIB + 0x2008, 2 * PAGE, PAGE, out)).toBe(
      NVME_SC.PRP_INVALID_OFFSET + DNR,
    );
    expect(out.reason).toBe("pci_nvme_err_invalid_prp2_align");
    const [a, b] = r.highPages(2) as [number, number];
    const cmd = rawRw(NVME_CMD.READ, 0, 16, 7); // 8 KiB: PRP1 and PRP2 as data
    setU64(cmd, SQE.PRP1, a);
    setU64(cmd, SQE.PRP2, b + 8);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.PRP_INVALID_OFFSET + DNR);
    const e = r.ctrl.commandError(1, 7);
    expect(e).toMatchObject({
      sqid: 1,
      cid: 7,
      opcode: NVME_CMD.READ,
      status: NVME_SC.PRP_INVALID_OFFSET + DNR,
      reason: NVME_ERR.INVALID_PRP2_ALIGN,
    });
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("names a reserved SGL descriptor type in a segment", () => {
    const { r } = machine("none", "byte");
    const [seg, data] = r.highPages(2) as [number, number];
    writeSgl(r, seg, [
      [data, 512, NVME_SGL_TYPE.DATA],
      [data + 512, 512, 0x6],
    ]);
    const cmd = rawRw(NVME_CMD.READ, 0, 2, 9);
    cmd[SQE.FLAGS] = NVME_CMD_SGL_METABUF;
    setSglDesc(cmd, SQE.SGL_ADDR, seg, 32, NVME_SGL_TYPE.LAST_SEGMENT);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.SGL_INVALID_TYPE + DNR);
    expect(r.ctrl.commandError(1, 9)?.reason).toBe("pci_nvme_err_invalid_sgld");
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("names an injected failure, and a command that succeeds records nothing", () => {
    const { r } = machine();
    r.ctrl.setFaults({ failCommand: { nth: 1, status: NVME_SC.INTERNAL + DNR } });
    const [a] = r.highPages(1) as [number];
    const cmd = rawRw(NVME_CMD.READ, 0, 1, 3);
    setU64(cmd, SQE.PRP1, a);
    expect(r.rawCommand(cmd)).toBe(NVME_SC.INTERNAL + DNR);
    expect(r.ctrl.commandError(1, 3)?.reason).toBe(NVME_ERR.INJECTED);
    const ok = rawRw(NVME_CMD.READ, 0, 1, 4);
    setU64(ok, SQE.PRP1, a);
    expect(r.rawCommand(ok)).toBe(0);
    expect(r.ctrl.commandError(1, 4)).toBeUndefined();
    expect(r.ctrl.errorLog()).toHaveLength(1);
    expect(r.checkNoLeaks()).toEqual([]);
  });

  it("keeps only the newest NVME_ERROR_LOG_ENTRIES failures, counting all of them", () => {
    const { r } = machine();
    const total = NVME_ERROR_LOG_ENTRIES + 36;
    for (let i = 0; i < total; i++) {
      const cmd = rawRw(0x7f, 0, 1, i % 16); // not an NVM opcode
      expect(r.rawCommand(cmd)).toBe(NVME_SC.INVALID_OPCODE + DNR);
    }
    const log = r.ctrl.errorLog();
    expect(log).toHaveLength(NVME_ERROR_LOG_ENTRIES);
    expect(log[0]?.errorCount).toBe(total);
    expect(log.at(-1)?.errorCount).toBe(total - NVME_ERROR_LOG_ENTRIES + 1);
    expect(log.every((e) => e.reason === NVME_ERR.INVALID_OPC)).toBe(true);
    expect(r.checkNoLeaks()).toEqual([]);
  });
});
