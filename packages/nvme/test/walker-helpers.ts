/** What the device-side walk tests share: a machine, descriptor writers and the walk's ranges. */
import { DeviceDma } from "@dmasim/dma-core";
import { DmaRanges, type SglSupport, setSglDesc } from "../src/index.ts";
import { Rig } from "../src/testing/index.ts";

/**
 * A rig with dma-debug off (these tests make the device touch memory no driver mapped, on
 * purpose), a `DeviceDma` of its device and an empty range list.
 */
export function walkMachine(mode: "none" | "strict" = "none", sgl?: SglSupport) {
  const r = new Rig({ mode, debug: false, ...(sgl !== undefined ? { sgl } : {}) });
  return { r, dma: new DeviceDma(r.dev), out: new DmaRanges() };
}

/** Writes SGL descriptors [addr, len, type, subtype?] at `phys`. */
export function writeSgl(
  r: Rig,
  phys: number,
  descs: readonly (readonly [number, number, number, number?])[],
): void {
  const b = new Uint8Array(descs.length * 16);
  descs.forEach(([a, l, t, st], i) => setSglDesc(b, i * 16, a, l, t, st ?? 0));
  r.memory.write(phys, b);
}

/** One SGL descriptor, as SGL1 of a command. */
export function sgl1(addr: number, len: number, type: number, subtype = 0): Uint8Array {
  const b = new Uint8Array(16);
  setSglDesc(b, 0, addr, len, type, subtype);
  return b;
}

/** The walk's ranges as [address, length] pairs. */
export function ranges(out: DmaRanges): [number, number][] {
  const res: [number, number][] = [];
  for (let i = 0; i < out.count; i++) res.push([out.addr[i] as number, out.len[i] as number]);
  return res;
}
