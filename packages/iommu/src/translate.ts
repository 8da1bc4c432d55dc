/**
 * Device-side translation: what the IOMMU does for each DMA a device issues. Looks in the IOTLB
 * first, walks the page table (reading PTEs from memory) on a miss and caches the leaf, checks
 * permissions, and returns the physical runs covering the range or a fault record. Faults are
 * data: they are returned and logged in the domain's bounded fault log, never thrown.
 */
import { hex } from "@dmasim/bvec";
import { IommuError } from "./errors.ts";
import { FAULT_REASON, type FaultReason, type IommuFault } from "./fault.ts";
import type { LeafLookup } from "./pt-types.ts";
import type { IommuDomain } from "./iommu-domain.ts";
import { DMA_ACCESS, type DmaAccess, IOMMU_DOMAIN, IOMMU_PROT } from "./prot.ts";

/** A physically contiguous piece of a translated range. */
export interface PhysRun {
  readonly phys: number;
  readonly len: number;
}

/** The result of `translate`: the runs, or the fault. */
export type TranslateResult =
  | { readonly ok: true; readonly runs: PhysRun[]; readonly staleHits: number }
  | { readonly ok: false; readonly fault: IommuFault };

/**
 * A reusable result for `translateInto` (the allocation-light hot path): `count` runs in
 * `phys`/`len`, or a fault.
 */
export class TranslationBuffer {
  /** Runs written. */
  count = 0;
  /** Physical start of each run. */
  readonly phys: number[] = [];
  /** Length of each run. */
  readonly len: number[] = [];
  /** Pages of the range served from stale IOTLB entries (reaching memory after unmap). */
  staleHits = 0;
  /** IOTLB misses (page-table walks) this translation caused. */
  walks = 0;
  /** The fault, when the translation failed. */
  fault: IommuFault | undefined = undefined;
}

/**
 * The leaf `lookupLeaf` fills, shared by every translation of every domain. Safe because it is
 * filled and read within one synchronous step of `translateInto` and never held across a call
 * (the simulation is single-threaded), so no translation sees another one's values.
 */
const leaf: LeafLookup = { pagePhys: 0, pageIova: 0, pageSize: 0, prot: 0 };

function fault(
  domain: IommuDomain,
  out: TranslationBuffer,
  iova: number,
  access: DmaAccess,
  reason: FaultReason,
): false {
  const f: IommuFault = {
    domainId: domain.id,
    iova,
    access,
    reason,
    timeNs: domain.clock?.now ?? 0,
  };
  domain.recordFault(f);
  out.fault = f;
  out.count = 0;
  return false;
}

/**
 * Translates a device access of `len` bytes at `iova` into `out`; returns true on success
 * (runs in `out`) or false with `out.fault` set. `privileged` marks a privileged transaction.
 */
export function translateInto(
  domain: IommuDomain,
  iova: number,
  len: number,
  access: DmaAccess,
  out: TranslationBuffer,
  privileged = false,
): boolean {
  if (!(
    Number.isSafeInteger(iova) &&
    iova >= 0 &&
    Number.isSafeInteger(len) &&
    len >= 1 &&
    iova + len <= Number.MAX_SAFE_INTEGER
  )) {
    throw new IommuError(
      "EINVAL",
      `device access of ${String(len)} bytes at iova ${hex(iova)} is not a valid range`,
    );
  }
  if (access !== DMA_ACCESS.READ && access !== DMA_ACCESS.WRITE) {
    throw new IommuError("EINVAL", `access ${String(access)} is neither "read" nor "write"`);
  }
  const c = domain.counters.c;
  c.translations++;
  out.count = 0;
  out.staleHits = 0;
  out.walks = 0;
  out.fault = undefined;
  const type = domain.type;
  if (type === IOMMU_DOMAIN.BLOCKED) return fault(domain, out, iova, access, FAULT_REASON.BLOCKED);
  if (type === IOMMU_DOMAIN.IDENTITY) {
    out.phys[0] = iova;
    out.len[0] = len;
    out.count = 1;
    return true;
  }
  const g = domain.geometry;
  if (g.forceAperture && (iova < g.apertureStart || iova + len - 1 > g.apertureEnd)) {
    return fault(
      domain,
      out,
      iova < g.apertureStart ? iova : Math.max(iova, g.apertureEnd + 1),
      access,
      FAULT_REASON.OUTSIDE_APERTURE,
    );
  }
  const pt = domain.pgtable;
  if (pt === undefined) return fault(domain, out, iova, access, FAULT_REASON.BLOCKED);
  const tlb = domain.iotlb;
  const asid = domain.id;
  const need = access === DMA_ACCESS.READ ? IOMMU_PROT.READ : IOMMU_PROT.WRITE;
  const end = iova + len;
  let pos = iova;
  let n = 0;
  while (pos < end) {
    c.translatePages++;
    let pagePhys: number;
    let pageIova: number;
    let pageSize: number;
    let prot: number;
    const slot = tlb.lookup(asid, pos);
    if (slot >= 0) {
      pagePhys = tlb.entryPhys(slot);
      pageIova = tlb.entryIova(slot);
      pageSize = tlb.entrySize(slot);
      prot = tlb.entryProt(slot);
      if (tlb.entryStale(slot)) {
        out.staleHits++;
        c.staleTranslations++;
      }
    } else {
      out.walks++;
      if (!pt.lookupLeaf(pos, leaf))
        return fault(domain, out, pos, access, FAULT_REASON.NOT_PRESENT);
      pagePhys = leaf.pagePhys;
      pageIova = leaf.pageIova;
      pageSize = leaf.pageSize;
      prot = leaf.prot;
      tlb.fill(asid, pageIova, pageSize, pagePhys, prot);
    }
    /* eslint-disable no-bitwise -- prot is a 6-bit flag set */
    if ((prot & need) === 0 || (!privileged && (prot & IOMMU_PROT.PRIV) !== 0)) {
      return fault(domain, out, pos, access, FAULT_REASON.PERMISSION);
    }
    /* eslint-enable no-bitwise */
    const off = pos - pageIova;
    const chunk = Math.min(end - pos, pageSize - off);
    const phys = pagePhys + off;
    if (n > 0 && (out.phys[n - 1] as number) + (out.len[n - 1] as number) === phys) {
      out.len[n - 1] = (out.len[n - 1] as number) + chunk;
    } else {
      out.phys[n] = phys;
      out.len[n] = chunk;
      n++;
    }
    pos += chunk;
  }
  out.count = n;
  return true;
}

/** Device-side translation of `len` bytes at `iova`: the physical runs, or a fault record. */
export function translate(
  domain: IommuDomain,
  iova: number,
  len: number,
  access: DmaAccess,
  privileged = false,
): TranslateResult {
  const out = new TranslationBuffer();
  if (!translateInto(domain, iova, len, access, out, privileged)) {
    return { ok: false, fault: out.fault as IommuFault };
  }
  const runs: PhysRun[] = [];
  for (let i = 0; i < out.count; i++)
    runs.push({ phys: out.phys[i] as number, len: out.len[i] as number });
  return { ok: true, runs, staleHits: out.staleHits };
}
