/**
 * IOMMU protection flags (include/linux/iommu.h `IOMMU_READ` ...), domain type bits and the
 * device access kinds used by translation.
 */

/** Mapping permission and attribute flags, with Linux's bit values (`IOMMU_READ` ...). */
export const IOMMU_PROT = {
  /** The device may read the memory (DMA_TO_DEVICE). */
  READ: 1,
  /** The device may write the memory (DMA_FROM_DEVICE). */
  WRITE: 2,
  /** Cache-coherent memory attributes. */
  CACHE: 4,
  /** Not executable. */
  NOEXEC: 8,
  /** Device (MMIO) memory type. */
  MMIO: 16,
  /** Privileged accesses only. */
  PRIV: 32,
} as const;

/** A combination of `IOMMU_PROT` flags (a 6-bit integer). */
export type IommuProt = number;

/** All the `IOMMU_PROT` bits together; anything else in a prot value is rejected. */
export const IOMMU_PROT_ALL = 63;

/**
 * The names of the flags set in `prot`, highest bit last ("READ|WRITE|CACHE"; "NONE" for 0),
 * for tests and traces (the model's own helper; Linux has none).
 */
export function protName(prot: IommuProt): string {
  const parts: string[] = [];
  const names: [number, string][] = [
    [IOMMU_PROT.PRIV, "PRIV"],
    [IOMMU_PROT.MMIO, "MMIO"],
    [IOMMU_PROT.NOEXEC, "NOEXEC"],
    [IOMMU_PROT.CACHE, "CACHE"],
    [IOMMU_PROT.WRITE, "WRITE"],
    [IOMMU_PROT.READ, "READ"],
  ];
  let rest = prot;
  for (const [bit, name] of names) {
    if (rest >= bit) {
      rest -= bit;
      parts.unshift(name);
    }
  }
  return parts.join("|") || "NONE";
}

/** Flag bits that compose the domain types (include/linux/iommu.h `__IOMMU_DOMAIN_*`). */
export const IOMMU_DOMAIN_FLAG = {
  PAGING: 1,
  DMA_API: 2,
  PT: 4,
  DMA_FQ: 8,
  SVA: 16,
  PLATFORM: 32,
  NESTED: 64,
} as const;

/** The domain types modelled, with Linux's values (`IOMMU_DOMAIN_BLOCKED` ...). */
export const IOMMU_DOMAIN = {
  /** All DMA is blocked. */
  BLOCKED: 0,
  /** Passthrough: IOVA == physical address. */
  IDENTITY: 4,
  /** A paging domain owned by VFIO/iommufd. */
  UNMANAGED: 1,
  /** The kernel DMA API with strict invalidation. */
  DMA: 3,
  /** The kernel DMA API with lazy invalidation through the flush queue. */
  DMA_FQ: 11,
} as const;

/** One of the `IOMMU_DOMAIN` values. */
export type IommuDomainType = (typeof IOMMU_DOMAIN)[keyof typeof IOMMU_DOMAIN];

/** Names of the domain types, as the kernel's sysfs `type` file prints them. */
export const IOMMU_DOMAIN_NAMES: Readonly<Record<IommuDomainType, string>> = {
  0: "blocked",
  4: "identity",
  1: "unmanaged",
  3: "DMA",
  11: "DMA-FQ",
};

/** True when the type has the given flag bit (types and flags are small integers). */
export function domainTypeHas(type: number, flag: number): boolean {
  // eslint-disable-next-line no-bitwise -- domain types are 7-bit flag sets, not addresses
  return (type & flag) !== 0;
}

/** How a device accesses memory through the IOMMU. */
export const DMA_ACCESS = {
  /** The device reads memory (needs IOMMU_READ). */
  READ: "read",
  /** The device writes memory (needs IOMMU_WRITE). */
  WRITE: "write",
} as const;

/** `"read"` or `"write"`. */
export type DmaAccess = (typeof DMA_ACCESS)[keyof typeof DMA_ACCESS];
