/**
 * Machines for tests and benchmarks (`@dmasim/dma-core/testing`): memory, clock, IOMMU domain,
 * device and dma-debug in each of the backends the DMA API dispatches to, requests built from
 * physical ranges, and the leak accounting every teardown test uses. Nothing here asserts: the
 * functions return what they measured (`leaks`, `codeOf`) and the tests compare.
 */
import {
  type Bio,
  PhysMemory,
  type RegionSpec,
  type Request,
  Rng,
  SimClock,
  bioFromBvecs,
  blkRqFromBios,
  bvecFromPhys,
  queueLimits,
} from "@dmasim/bvec";
import { IOMMU_DOMAIN, IommuDomain } from "@dmasim/iommu";
import {
  Device,
  DeviceDma,
  type DeviceOptions,
  DmaDebug,
  type DmaDebugOptions,
  DmaError,
  type IommuDmaOptions,
  Swiotlb,
  iommuSetupDmaOps,
} from "../index.ts";

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 ** 3;
export const G4 = 2 ** 32;

/** The backends of the DMA API a device can sit on. */
export type Backend =
  "none" | "passthrough" | "strict" | "lazy" | "untrusted" | "granule64k" | "blocked";

export const BACKENDS: readonly Backend[] = [
  "none",
  "passthrough",
  "strict",
  "lazy",
  "untrusted",
  "granule64k",
];

export interface MachineOptions {
  readonly ramBytes?: number;
  /** Extra regions (P2P BARs, RAM near 2^48...). */
  readonly regions?: readonly RegionSpec[];
  /** Full region map instead of the standard layout. */
  readonly layout?: readonly RegionSpec[];
  /** SWIOTLB pool bytes (0: none); default 4 MiB for "untrusted", else none. */
  readonly swiotlbBytes?: number;
  /** dma-debug on (default) or off. */
  readonly debug?: boolean;
  readonly debugOptions?: DmaDebugOptions;
  /** IOMMU aperture end (inclusive). */
  readonly apertureEnd?: number;
  /** Device options (name, memory, iommu, swiotlb, clock and debug are filled in). */
  readonly dev?: Partial<DeviceOptions>;
  /** Options of the domain's DMA cookie (`iommuSetupDmaOps`). */
  readonly iommuDma?: Partial<IommuDmaOptions>;
}

export interface Machine {
  readonly backend: Backend;
  readonly clock: SimClock;
  readonly memory: PhysMemory;
  readonly debug: DmaDebug | null;
  readonly domain: IommuDomain | null;
  readonly swiotlb: Swiotlb | null;
  readonly dev: Device;
  readonly dma: DeviceDma;
}

/** Builds a machine with 16 GiB of RAM (most of it above 4 GiB) and one device on `backend`. */
export function machine(backend: Backend, o: MachineOptions = {}): Machine {
  const clock = new SimClock();
  // A DMA domain's granule must not exceed the CPU page (init_iova_domain): the 64 KiB-granule
  // backend runs on a 64 KiB-page kernel, as arm64 with CONFIG_ARM64_64K_PAGES.
  const pageSize = backend === "granule64k" ? 65536 : 4096;
  const memory = new PhysMemory(
    o.layout ? { regions: o.layout, pageSize } : { ramBytes: o.ramBytes ?? 16 * GiB, pageSize },
  );
  for (const r of o.regions ?? []) memory.addRegion(r);
  const debug = o.debug === false ? null : new DmaDebug(o.debugOptions ?? {});
  let domain: IommuDomain | null = null;
  const geometry = o.apertureEnd !== undefined ? { apertureEnd: o.apertureEnd } : {};
  switch (backend) {
    case "none":
      break;
    case "passthrough":
      domain = new IommuDomain({ type: IOMMU_DOMAIN.IDENTITY, mem: memory, clock });
      break;
    case "blocked":
      domain = new IommuDomain({ type: IOMMU_DOMAIN.BLOCKED, mem: memory, clock });
      break;
    case "strict":
    case "untrusted":
      domain = new IommuDomain({ type: IOMMU_DOMAIN.DMA, mem: memory, clock, geometry });
      break;
    case "lazy":
      domain = new IommuDomain({ type: IOMMU_DOMAIN.DMA_FQ, mem: memory, clock, geometry });
      break;
    case "granule64k":
      domain = new IommuDomain({
        type: IOMMU_DOMAIN.DMA,
        mem: memory,
        clock,
        geometry,
        pgtable: { granule: 65536 },
      });
      break;
  }
  const swBytes = o.swiotlbBytes ?? (backend === "untrusted" ? 4 * MiB : 0);
  const swiotlb = swBytes > 0 ? new Swiotlb(memory, { size: swBytes }) : null;
  const dev = new Device({
    name: "nvme0",
    minAlignMask: 4095,
    ...o.dev,
    memory,
    iommu: domain,
    clock,
    debug,
    swiotlb,
    untrusted: backend === "untrusted" || (o.dev?.untrusted ?? false),
  });
  iommuSetupDmaOps(dev, o.iommuDma);
  return { backend, clock, memory, debug, domain, swiotlb, dev, dma: new DeviceDma(dev) };
}

/** Generous queue limits for hand-built requests (4-byte DMA alignment). */
export const LIMITS = queueLimits({
  maxSegments: 128,
  maxHwSectors: 4096,
  dmaAlignment: 3,
  logicalBlockSize: 512,
});

/** A request made of one bio with one bvec per range (contiguous ranges merge, as bio_add_page does). */
export function request(
  op: "read" | "write",
  ranges: readonly { readonly phys: number; readonly len: number }[],
  limits = LIMITS,
): Request {
  const bio: Bio = bioFromBvecs(
    op,
    0,
    ranges.map((r) => bvecFromPhys(r.phys, r.len)),
  );
  return blkRqFromBios(limits, [bio]);
}

/** Fills `len` bytes at `phys` with seeded random bytes and returns them. */
export function fillRandom(
  memory: PhysMemory,
  phys: number,
  len: number,
  seed: number,
): Uint8Array {
  const rng = new Rng(seed);
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = rng.nextU32() % 256;
  memory.write(phys, b);
  return b;
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What a machine holds before a test maps anything, to compare with after teardown. */
export interface Baseline {
  readonly pagesInUse: number;
  readonly tablePages: number;
  readonly leaves: number;
  readonly iovaRanges: number;
}

/**
 * Records the baseline: pages in use (page-table root, SWIOTLB pool, test buffers) and IOVA
 * ranges in the allocator (the reserved ones: page 0 is never handed out, the MSI window and
 * the host-bridge windows). Take it after allocating the test buffers.
 */
export function baseline(m: Machine): Baseline {
  return {
    pagesInUse: m.memory.pagesInUse,
    tablePages: tablePages(m),
    leaves: leaves(m),
    iovaRanges: m.dev.cookie?.iovad.liveRanges ?? 0,
  };
}

/** Memory pages of the tables linked into the domain's page table (the root included). */
function tablePages(m: Machine): number {
  return m.domain?.pgtable?.tableMemoryPages ?? 0;
}

/** Leaves mapped in the domain's page table, all sizes together. */
function leaves(m: Machine): number {
  return m.domain?.pgtable?.leafCounts().reduce((n, l) => n + l.count, 0) ?? 0;
}

/**
 * Everything a mapping holds, measured against a baseline after teardown. In lazy mode the
 * flush queue is given time to run its timer first (10 ms). IOVA: every range in the
 * allocator's tree is either reserved (counted in the baseline) or cached in an rcache
 * magazine (`cachedRanges`: cached ranges stay in the tree until a drain, by design); nothing
 * else may remain. Pages: after the flush queue has released the deferred page-table pages,
 * the pages in use other than linked page-table pages are back to the baseline. Tables that
 * emptied stay linked, as in Linux (the domain owns them until it is freed), so they are not a
 * leak; a leaf left mapped is (`leaves`), and so is a table page retired but never returned.
 */
export function leaks(m: Machine, b: Baseline) {
  if (m.dev.cookie?.fq) m.clock.advance(20_000_000);
  const iovad = m.dev.cookie?.iovad;
  return {
    liveIova: iovad ? iovad.liveRanges - iovad.counters.c.cachedRanges - b.iovaRanges : 0,
    fqPending: m.dev.cookie?.fq?.pending ?? 0,
    pages: m.memory.pagesInUse - tablePages(m) - (b.pagesInUse - b.tablePages),
    leaves: leaves(m) - b.leaves,
    bounceSlots: m.swiotlb?.counters.c.slotsInUse ?? 0,
    outstanding: m.debug?.outstanding() ?? 0,
    reports: m.debug?.reports.length ?? 0,
  };
}

/** The value `leaks` returns when nothing leaked. */
export const NO_LEAKS = {
  liveIova: 0,
  fqPending: 0,
  pages: 0,
  leaves: 0,
  bounceSlots: 0,
  outstanding: 0,
  reports: 0,
} as const;

/** The errno a call throws as a `DmaError`, or "no error". */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e.code;
    throw e;
  }
  return "no error";
}
