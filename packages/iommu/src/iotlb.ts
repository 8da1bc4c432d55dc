/**
 * A bounded, set-associative IOTLB: caches leaf translations (page-size aware) that device
 * translations fill, tagged with the domain's ID, emptied by range and whole-domain
 * invalidations.
 *
 * Defaults: 256 entries, 4 ways (64 sets), LRU replacement within a set. A leaf of any size
 * takes one entry; its set is (IOVA / page size) mod sets, and a lookup probes each page size
 * currently cached.
 *
 * Stale entries: an entry is not dropped by an unmap, only by an invalidation, exactly as
 * hardware behaves. The model marks entries whose leaf was cleared as stale (bookkeeping only;
 * it does not change what the entry translates to), so a translation served from one reaches
 * the old physical page and is counted as a stale hit. This makes the lazy-mode exposure
 * window measurable.
 */
import { CounterSet, fastMod, hex } from "@dmasim/bvec";
import { checkNum } from "./check.ts";
import { IommuError } from "./errors.ts";
import type { IommuProt } from "./prot.ts";

/** Options of an `Iotlb`. */
export interface IotlbOptions {
  /** Total entries (default 256). */
  readonly entries?: number;
  /** Ways per set (default 4); must divide `entries`. */
  readonly ways?: number;
}

/** Counter names of `Iotlb`. */
export type IotlbCounter =
  | "lookups"
  | "hits"
  | "misses"
  | "staleHits"
  | "fills"
  | "evictions"
  | "invalidateRangeCmds"
  | "invalidateAllCmds"
  | "entriesDropped"
  | "entriesMarkedStale";

/** One cached translation, as `entries()` reports it. */
export interface IotlbEntry {
  readonly asid: number;
  readonly iova: number;
  readonly pageSize: number;
  readonly phys: number;
  readonly prot: IommuProt;
  readonly stale: boolean;
}

/** The IOMMU's translation cache. */
export class Iotlb {
  /** Total entries. */
  readonly size: number;
  /** Ways per set. */
  readonly ways: number;
  /** Number of sets. */
  readonly sets: number;
  /** Event counters. */
  readonly counters = new CounterSet<IotlbCounter>("iotlb", [
    "lookups",
    "hits",
    "misses",
    "staleHits",
    "fills",
    "evictions",
    "invalidateRangeCmds",
    "invalidateAllCmds",
    "entriesDropped",
    "entriesMarkedStale",
  ]);

  private readonly eAsid: Int32Array;
  private readonly eBase: Float64Array;
  private readonly eSize: Float64Array;
  private readonly ePhys: Float64Array;
  private readonly eProt: Uint8Array;
  private readonly eStale: Uint8Array;
  private readonly eLru: Float64Array;
  private tick = 0;
  /** The next domain ID (tag) this IOMMU hands out; see `allocDomainId`. */
  private nextDomainId = 1;
  /** Distinct page sizes currently cached, and how many entries of each. */
  private readonly sizeList: number[] = [];
  private readonly sizeCnt: number[] = [];

  constructor(options: IotlbOptions = {}) {
    const size = options.entries ?? 256;
    const ways = options.ways ?? 4;
    checkNum(size, "IOTLB entries", 1);
    checkNum(ways, "IOTLB ways", 1);
    if (size % ways !== 0)
      throw new IommuError("EINVAL", `IOTLB ways ${ways} do not divide its ${size} entries`);
    this.size = size;
    this.ways = ways;
    this.sets = size / ways;
    this.eAsid = new Int32Array(size).fill(-1);
    this.eBase = new Float64Array(size);
    this.eSize = new Float64Array(size);
    this.ePhys = new Float64Array(size);
    this.eProt = new Uint8Array(size);
    this.eStale = new Uint8Array(size);
    this.eLru = new Float64Array(size);
  }

  /**
   * A new domain ID for a domain whose translations this IOTLB caches: IDs are allocated per
   * IOMMU, as Linux drivers do (VT-d's per-IOMMU domain-ID bitmap in `domain_attach_iommu`,
   * SMMUv3's ASID allocator), so they depend only on the domains of this IOMMU.
   */
  allocDomainId(): number {
    return this.nextDomainId++;
  }

  /** Entries in use. */
  get occupancy(): number {
    let n = 0;
    for (const k of this.sizeCnt) n += k;
    return n;
  }

  /**
   * Looks up `iova` for domain `asid`; returns the entry's slot or -1. Counts lookups, hits,
   * misses and stale hits.
   */
  lookup(asid: number, iova: number): number {
    const c = this.counters.c;
    c.lookups++;
    const slot = this.probe(asid, iova);
    if (slot < 0) {
      c.misses++;
      return -1;
    }
    c.hits++;
    if (this.eStale[slot] === 1) c.staleHits++;
    this.eLru[slot] = ++this.tick;
    return slot;
  }

  /** Caches a leaf translation (replacing the set's least recently used entry); returns its slot. */
  fill(
    asid: number,
    pageIova: number,
    pageSize: number,
    pagePhys: number,
    prot: IommuProt,
  ): number {
    const c = this.counters.c;
    c.fills++;
    const first = fastMod(Math.floor(pageIova / pageSize), this.sets) * this.ways;
    let victim = -1;
    for (let s = first; s < first + this.ways; s++) {
      if (this.eAsid[s] === asid && this.eBase[s] === pageIova && this.eSize[s] === pageSize) {
        this.dropSlot(s);
        victim = s;
        break;
      }
    }
    if (victim < 0) {
      let best = Infinity;
      for (let s = first; s < first + this.ways; s++) {
        if (this.eAsid[s] === -1) {
          victim = s;
          break;
        }
        const l = this.eLru[s] as number;
        if (l < best) {
          best = l;
          victim = s;
        }
      }
      if (this.eAsid[victim] !== -1) {
        c.evictions++;
        this.dropSlot(victim);
      }
    }
    this.eAsid[victim] = asid;
    this.eBase[victim] = pageIova;
    this.eSize[victim] = pageSize;
    this.ePhys[victim] = pagePhys;
    this.eProt[victim] = prot;
    this.eStale[victim] = 0;
    this.eLru[victim] = ++this.tick;
    this.addSize(pageSize);
    return victim;
  }

  /** Physical address of the start of the page cached in `slot`. */
  entryPhys(slot: number): number {
    return this.ePhys[slot] as number;
  }

  /** IOVA at which the page cached in `slot` starts. */
  entryIova(slot: number): number {
    return this.eBase[slot] as number;
  }

  /** Size of the page cached in `slot`. */
  entrySize(slot: number): number {
    return this.eSize[slot] as number;
  }

  /** Prot flags of the page cached in `slot`. */
  entryProt(slot: number): IommuProt {
    return this.eProt[slot] as number;
  }

  /** True when the page cached in `slot` was unmapped after it was filled. */
  entryStale(slot: number): boolean {
    return this.eStale[slot] === 1;
  }

  /** A range invalidation command: drops every entry of `asid` overlapping `[iova, iova+size)`. */
  invalidateRange(asid: number, iova: number, size: number): void {
    this.counters.c.invalidateRangeCmds++;
    this.forOverlapping(asid, iova, size, false);
  }

  /** A whole-domain invalidation command (Linux `flush_iotlb_all`): drops every entry of `asid`. */
  invalidateAll(asid: number): void {
    this.counters.c.invalidateAllCmds++;
    for (let s = 0; s < this.size; s++) if (this.eAsid[s] === asid) this.dropSlot(s);
  }

  /**
   * Model bookkeeping, not a hardware command: marks the entries of `asid` overlapping an
   * unmapped range as stale. They keep translating to the old pages until invalidated.
   */
  markStale(asid: number, iova: number, size: number): void {
    this.forOverlapping(asid, iova, size, true);
  }

  /** Every valid entry (for dumps and tests). */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (let s = 0; s < this.size; s++) {
      const asid = this.eAsid[s] as number;
      if (asid === -1) continue;
      out.push({
        asid,
        iova: this.eBase[s] as number,
        pageSize: this.eSize[s] as number,
        phys: this.ePhys[s] as number,
        prot: this.eProt[s] as number,
        stale: this.eStale[s] === 1,
      });
    }
    return out;
  }

  /** Entries held for domain `asid`. */
  countFor(asid: number): number {
    let n = 0;
    for (let s = 0; s < this.size; s++) if (this.eAsid[s] === asid) n++;
    return n;
  }

  private probe(asid: number, iova: number): number {
    const sizes = this.sizeList;
    const counts = this.sizeCnt;
    const ways = this.ways;
    for (let k = 0; k < sizes.length; k++) {
      if (counts[k] === 0) continue;
      const ps = sizes[k] as number;
      // One division: the page number gives both the page's base and its set.
      const page = Math.floor(iova / ps);
      const base = page * ps;
      const first = fastMod(page, this.sets) * ways;
      for (let s = first; s < first + ways; s++) {
        if (this.eBase[s] === base && this.eAsid[s] === asid && this.eSize[s] === ps) return s;
      }
    }
    return -1;
  }

  private forOverlapping(asid: number, iova: number, size: number, stale: boolean): void {
    if (!(size > 0)) {
      if (size === 0) return;
      throw new IommuError("EINVAL", `invalid IOTLB range size ${hex(size)}`);
    }
    const end = iova + size;
    // Probe page by page when that is cheaper than scanning every entry.
    let probes = 0;
    for (let k = 0; k < this.sizeList.length; k++) {
      if (this.sizeCnt[k] === 0) continue;
      const ps = this.sizeList[k] as number;
      probes += Math.ceil((end - (iova - fastMod(iova, ps))) / ps);
    }
    if (probes * this.ways > this.size) {
      for (let s = 0; s < this.size; s++) {
        if (this.eAsid[s] !== asid) continue;
        const b = this.eBase[s] as number;
        if (b < end && b + (this.eSize[s] as number) > iova) this.touch(s, stale);
      }
      return;
    }
    for (let k = 0; k < this.sizeList.length; k++) {
      if (this.sizeCnt[k] === 0) continue;
      const ps = this.sizeList[k] as number;
      for (let p = iova - fastMod(iova, ps); p < end; p += ps) {
        const first = fastMod(Math.floor(p / ps), this.sets) * this.ways;
        for (let s = first; s < first + this.ways; s++) {
          if (this.eBase[s] === p && this.eAsid[s] === asid && this.eSize[s] === ps)
            this.touch(s, stale);
        }
      }
    }
  }

  private touch(slot: number, stale: boolean): void {
    if (stale) {
      if (this.eStale[slot] === 0) {
        this.eStale[slot] = 1;
        this.counters.c.entriesMarkedStale++;
      }
    } else {
      this.counters.c.entriesDropped++;
      this.dropSlot(slot);
    }
  }

  private dropSlot(slot: number): void {
    if (this.eAsid[slot] === -1) return;
    const ps = this.eSize[slot] as number;
    const k = this.sizeList.indexOf(ps);
    if (k >= 0) this.sizeCnt[k] = (this.sizeCnt[k] as number) - 1;
    this.eAsid[slot] = -1;
    this.eBase[slot] = -1;
    this.eStale[slot] = 0;
  }

  private addSize(ps: number): void {
    const k = this.sizeList.indexOf(ps);
    if (k >= 0) this.sizeCnt[k] = (this.sizeCnt[k] as number) + 1;
    else {
      this.sizeList.push(ps);
      this.sizeCnt.push(1);
    }
  }
}
