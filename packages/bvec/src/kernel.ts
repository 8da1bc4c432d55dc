/**
 * Kernel versions. dmasim models the DMA and NVMe stack of one Linux release at a time: every
 * behaviour that differs between the supported releases is a *gate* below, named once, with the
 * releases that have it and the change that brought it. Code that behaves differently per
 * version asks `kernelHas(version, gate)` and nothing else, so `docs/kernel-versions.md` (made
 * from this table by `scripts/kernel-table.mjs`) lists every place where versions differ.
 *
 * A version means the release as its stable series stood in late 2026: a fix that was tagged
 * for stable and reached that series while it was maintained is in it (6.18 is a long-term
 * series; 6.17 and 6.19 ended before the mid-2026 fixes).
 */
import { BvecError } from "./errors.ts";

/** The releases dmasim models, oldest first. */
export const KERNEL_VERSIONS = ["6.17", "6.18", "6.19", "7.0"] as const;
/** A release dmasim models. */
export type KernelVersion = (typeof KERNEL_VERSIONS)[number];
/** The newest modelled release, the default everywhere. */
export const DEFAULT_KERNEL: KernelVersion = "7.0";

/** One behaviour that not every modelled release has. */
export interface KernelGate {
  /** The releases that have the behaviour. */
  readonly versions: readonly KernelVersion[];
  /** What changes, in a sentence. */
  readonly what: string;
  /** The commit, patch series or release that brought it. */
  readonly source: string;
  /** Where the model applies it (files and functions). */
  readonly where: string;
}

const from = (v: KernelVersion): KernelVersion[] =>
  KERNEL_VERSIONS.slice(KERNEL_VERSIONS.indexOf(v));

/** Every behaviour gated on the kernel version. */
export const KERNEL_GATES = {
  "dma-map-phys": {
    versions: from("6.18"),
    what:
      "dma_map_phys/dma_unmap_phys exist and nvme-pci maps a single segment with them; before, " +
      "the driver calls dma_map_page (dma_map_bvec) and dma_map_phys is refused",
    source:
      'dma-mapping-6.18 ("dma-mapping: introduce new DMA attribute to indicate MMIO memory" series)',
    where:
      "dma-core mapping.ts dmaMapPhys, dmaUnmapPhys (checkPhysApi), request-map.ts mapDirect, " +
      "dma-vec.ts dmaUnmapRange; nvme host/two-step.ts nvmePciSetupDataSimple",
  },
  "dma-attr-mmio": {
    versions: from("6.18"),
    what: "DMA_ATTR_MMIO is a mapping attribute (no cache maintenance, IOMMU_MMIO); before it is refused",
    source: "eadaa8b255f3, c288d657dd51 (6.18)",
    where: "dma-core mapping.ts checkAttrs",
  },
  "dma-debug-phys": {
    versions: from("6.18"),
    what:
      'dma-debug records every dma_map_phys mapping, dma_map_resource included, as type "phy"; ' +
      'before, dma_map_page entries are "single" and dma_map_resource entries "resource"',
    source: 'e9e81d86fee6 "dma-debug: refactor to use physical addresses for page mapping" (6.18)',
    where: "dma-core debug.ts debugMapType (mapPhys, unmap)",
  },
  "bio-gap-tracking": {
    versions: from("6.19"),
    what:
      "per-bio gap tracking: SGL-capable NVMe I/O queues have no virt boundary, a request with " +
      "sub-page gaps is forced to SGL, and blk_can_dma_map_iova tests req_phys_gap_mask & " +
      "merge boundary; before, every NVMe queue has a 4 KiB virt boundary (bios split at gaps) " +
      "and the IOVA test is !((virt_boundary + 1) & merge boundary)",
    source:
      '2f6b2565d43c "block: accumulate memory segment gaps per bio" and "nvme: remove virtual ' +
      'boundary for sgl capable devices" (for-6.19/block)',
    where:
      "nvme host/limits.ts nvmeSetCtrlLimits, host/two-step.ts nvmePciUseSgls; dma-core request-map.ts blkCanDmaMapIova",
  },
  "block-dma-mmio": {
    versions: from("6.19"),
    what:
      "P2P memory behind the host bridge is mapped with DMA_ATTR_MMIO on the IOVA and the direct " +
      "path of the request mapper, and nvme-pci records IOD_DATA_MMIO for the unmap",
    source: '"block-dma: properly take MMIO path" (block-with-mmio v4, 6.19)',
    where: "dma-core request-map.ts p2pAttrs; nvme host/two-step.ts (IOD_DATA_MMIO)",
  },
  "dma-attr-require-coherent": {
    versions: from("7.0"),
    what:
      "DMA_ATTR_REQUIRE_COHERENT (bit 12) fails a mapping that would need SWIOTLB or cache " +
      "maintenance; before, the attribute does not exist and is refused",
    source: 'dma-mapping-7.0 fixes ("dma-mapping: add DMA_ATTR_REQUIRE_COHERENT")',
    where:
      "dma-core mapping.ts checkAttrs (refusal), mapPhys and iova-api.ts dmaIovaLink (semantics)",
  },
  "dma-attr-ignore-cachelines": {
    versions: from("7.0"),
    what:
      "DMA_ATTR_DEBUGGING_IGNORE_CACHELINES (bit 11) stops dma-debug reporting overlapping " +
      "cacheline mappings; before, the attribute does not exist and is refused",
    source: "dma-mapping-7.0 fixes (renamed from DMA_ATTR_CPU_CACHE_CLEAN)",
    where: "dma-core mapping.ts checkAttrs (refusal), debug.ts (semantics)",
  },
  "map-resource-ram-report": {
    versions: ["6.18", "7.0"],
    what:
      "a DMA_ATTR_MMIO mapping (dma_map_resource, dma_map_phys) of RAM (pfn_valid && !PageReserved) " +
      'is a dma-debug report ("dma_map_resource called for RAM address") and the mapping goes ahead; ' +
      "6.17 and 6.19 have no such report (see map-resource-ram-refused)",
    source:
      "af0c3f058662 (May 2026: the RAM check moves from dma_map_resource into debug_dma_map_phys; Fixes: f7326196a781; stable: 6.18.y, 7.0.y)",
    where: "dma-core debug.ts mapPhys",
  },
  "map-resource-ram-refused": {
    versions: ["6.19"],
    what:
      "with dma-debug on (CONFIG_DMA_API_DEBUG), dma_map_resource of a pfn_valid address is " +
      "refused (WARN_ON_ONCE, DMA_MAPPING_ERROR; EINVAL in dmasim); 6.17 has no check " +
      "(a9c38c5d267c had removed it) and 6.18.y/7.0.y have the dma-debug report instead",
    source:
      'f7326196a781 "dma-mapping: export new dma_*map_phys() interface" (6.18) re-added it; af0c3f058662 removed it (stable 6.18.y, 7.0.y)',
    where: "dma-core mapping.ts dmaMapResource",
  },
  "iommupt-amd": {
    versions: from("6.19"),
    what:
      "the AMD IOMMU driver maps through generic_pt's AMD v1 table (amd-v1: EADDRINUSE on " +
      "overmap, a whole large page removed by an unmap of its start, a top level grown at run " +
      "time, every power-of-two page size); before, its own io_pgtable code, which dmasim does " +
      "not model: an amd-vi job then runs the arm-lpae table",
    source: '789a5913b29c "iommu/amd: Use the generic iommu page table" (iommu-updates-v6.19)',
    where: "cli engine profiles.ts pageTableFormat; iommu generic-pt.ts, fmt-amd-v1.ts",
  },
  "iommupt-vtd": {
    versions: from("6.19"),
    what:
      "the VT-d driver maps through generic_pt: x86-64 first-stage tables " +
      "(intel_iommu_domain_alloc_paging_flags prefers the first stage), vtd-ss second-stage " +
      "tables where only the second stage exists (legacy mode, as QEMU's emulated VT-d in " +
      "caching mode); before, its own page-table code in drivers/iommu/intel/iommu.c, which " +
      "dmasim does not model: an intel-vtd job then runs the arm-lpae table",
    source: 'd373449d8e97 "iommu/vt-d: Use the generic iommu page table" (iommu-updates-v6.19)',
    where:
      "cli engine profiles.ts pageTableFormat; iommu generic-pt.ts, fmt-x86-64.ts, fmt-vtd-ss.ts",
  },
  "iova-link-unwind-fix": {
    versions: ["6.18", "7.0"],
    what:
      "a failed dma_iova_link bounce unwinds the window it linked (from `offset`) and skips an " +
      "empty middle; before, it unwinds from offset 0 and links the empty middle",
    source:
      '6ec91df8aff7 "iommu/dma: Do not try to iommu_map a 0 length region in swiotlb" (June 2026, stable: 6.18.y, 7.0.y)',
    where: "dma-core iova-api.ts iovaLinkSwiotlb",
  },
} as const satisfies Record<string, KernelGate>;

/** The name of a gated behaviour. */
export type KernelGateName = keyof typeof KERNEL_GATES;

/**
 * The table by release: `GATES_OF[v][gate]` is whether release `v` has `gate`. Made once, so
 * that `kernelHas` (asked on every mapping and unmapping) is two property loads, not a search
 * of the gate's release list.
 */
const GATES_OF: Readonly<Record<string, Readonly<Record<string, boolean>>>> = Object.fromEntries(
  KERNEL_VERSIONS.map((v) => [
    v,
    Object.fromEntries(
      Object.entries(KERNEL_GATES).map(([name, g]) => [
        name,
        (g.versions as readonly KernelVersion[]).includes(v),
      ]),
    ),
  ]),
);

/** Whether release `v` has the gated behaviour `gate`. */
export function kernelHas(v: KernelVersion, gate: KernelGateName): boolean {
  return GATES_OF[v]?.[gate] ?? false;
}

/** Whether `s` names a modelled release. */
export function isKernelVersion(s: string): s is KernelVersion {
  return (KERNEL_VERSIONS as readonly string[]).includes(s);
}

/** `s` as a modelled release; EINVAL naming the allowed ones otherwise. */
export function parseKernelVersion(s: string): KernelVersion {
  if (isKernelVersion(s)) return s;
  throw new BvecError(
    "EINVAL",
    `kernel ${JSON.stringify(s)} is not a modelled release (allowed: ${KERNEL_VERSIONS.join(", ")})`,
  );
}

/** The gate table of docs/kernel-versions.md, as Markdown (one row per gate). */
export function kernelGatesMarkdown(): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|");
  const head = `| behaviour | ${KERNEL_VERSIONS.join(" | ")} | what changes | source | where in dmasim |`;
  const rule = `|---|${KERNEL_VERSIONS.map(() => ":-:").join("|")}|---|---|---|`;
  const rows = Object.entries(KERNEL_GATES as Record<string, KernelGate>).map(
    ([name, g]) =>
      `| \`${name}\` | ${KERNEL_VERSIONS.map((v) => (g.versions.includes(v) ? "yes" : "–")).join(" | ")} | ${cell(g.what)} | ${cell(g.source)} | ${cell(g.where)} |`,
  );
  return `${[head, rule, ...rows].join("\n")}\n`;
}
