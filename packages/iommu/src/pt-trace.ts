/**
 * The CPU-side views of a page table for `trace` and the reports: a walk of one IOVA that
 * records every level it reads, and a dump of the entries of a range, each decoded by its
 * format field by field.
 */
import { PT_ENTRY } from "./pt-format.ts";
import { type PtCore, type PtTable, floorMod } from "./pt-core.ts";
import { type PteDumpEntry, type WalkResult, type WalkStep, formatPte } from "./pt-types.ts";

/** A full CPU-side walk of `iova` for tracing: every level read, and the leaf if any. */
export function ptTraceWalk(core: PtCore, iova: number, inRange: boolean): WalkResult {
  core.counters.c.walks++;
  const steps: WalkStep[] = [];
  let t = core.liveTop();
  const fmt = core.fmt;
  const notPresent = (
    level: number,
    hi: number,
    lo: number,
    tableAddr: number,
    pteAddr: number,
  ): WalkResult => ({
    present: false,
    level,
    pageSize: 0,
    iovaBase: 0,
    phys: 0,
    prot: 0,
    pteHi: hi,
    pteLo: lo,
    pte: formatPte(hi, lo),
    tableAddr,
    pteAddr,
    steps,
  });
  if (!inRange) return notPresent(fmt.levelNumber(core.topLevel), 0, 0, t.phys, t.phys);
  for (let level = core.topLevel; ; level--) {
    const idx = core.index(t, level, iova);
    const lo = core.lo(t, idx);
    const hi = core.hi(t, idx);
    core.counters.c.pteReads++;
    const pteAddr = t.phys + 8 * idx;
    const shown = fmt.levelNumber(level);
    steps.push({
      level: shown,
      tableAddr: t.phys,
      index: idx,
      pteAddr,
      pteHi: hi,
      pteLo: lo,
      pte: formatPte(hi, lo),
    });
    const type = fmt.entryType(lo, hi, level);
    if (type === PT_ENTRY.EMPTY) return notPresent(shown, hi, lo, t.phys, pteAddr);
    if (type === PT_ENTRY.OA) {
      const size = (core.geo.itemSize[level] as number) * 2 ** fmt.leafContigLg2(lo, hi, level);
      const base = iova - floorMod(iova, size);
      return {
        present: true,
        level: shown,
        pageSize: size,
        iovaBase: base,
        phys: fmt.leafOa(lo, hi, level) + (iova - base),
        prot: fmt.leafProt(lo, hi),
        pteHi: hi,
        pteLo: lo,
        pte: formatPte(hi, lo),
        tableAddr: t.phys,
        pteAddr,
        steps,
      };
    }
    t = core.tableAt(fmt.tableAddr(lo, hi));
  }
}

/**
 * Every non-zero entry whose range intersects `[start, end)`, in IOVA order (for `trace`).
 * `base` is the IOVA the top table's entry 0 translates (negative for a sign-extended
 * table, whose upper half the top table's second half holds).
 */
export function ptDump(
  core: PtCore,
  start: number,
  end: number,
  base: number,
  upperBase: number,
): PteDumpEntry[] {
  const out: PteDumpEntry[] = [];
  const fmt = core.fmt;
  const visit = (t: PtTable, tBase: number, isTop: boolean): void => {
    const level = t.level;
    const size = core.geo.itemSize[level] as number;
    const half = t.entries / 2;
    for (let i = 0; i < t.entries; i++) {
      const iova =
        isTop && i >= half && upperBase !== 0 ? upperBase + (i - half) * size : tBase + i * size;
      if (iova + size <= start || iova >= end) continue;
      const lo = core.lo(t, i);
      const hi = core.hi(t, i);
      if (lo === 0 && hi === 0) continue;
      const type = fmt.entryType(lo, hi, level);
      const isTable = type === PT_ENTRY.TABLE;
      const addr = isTable
        ? fmt.tableAddr(lo, hi)
        : type === PT_ENTRY.OA
          ? fmt.leafOa(lo, hi, level) + floorMod(iova, size * 2 ** fmt.leafContigLg2(lo, hi, level))
          : 0;
      out.push({
        level: fmt.levelNumber(level),
        index: i,
        iova,
        kind: isTable ? "table" : level === 0 ? "page" : "block",
        size,
        addr,
        prot: type === PT_ENTRY.OA ? fmt.leafProt(lo, hi) : 0,
        pte: formatPte(hi, lo),
        tableAddr: t.phys,
        fields: fmt.fields(lo, hi, level, type),
      });
      if (isTable) visit(core.tableAt(addr), iova, false);
    }
  };
  visit(core.liveTop(), base, true);
  return out;
}
