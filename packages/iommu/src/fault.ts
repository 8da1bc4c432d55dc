/** Translation faults: what simulated hardware reports as data, never as an exception. */
import type { DmaAccess } from "./prot.ts";

/** Why a device access faulted. */
export const FAULT_REASON = {
  /** No leaf maps the IOVA. */
  NOT_PRESENT: "not-present",
  /** A leaf maps it without the access's permission. */
  PERMISSION: "permission",
  /** The device is attached to a blocked domain. */
  BLOCKED: "blocked",
  /** The IOVA is outside the domain's aperture. */
  OUTSIDE_APERTURE: "outside-aperture",
} as const;

/** One of the `FAULT_REASON` values. */
export type FaultReason = (typeof FAULT_REASON)[keyof typeof FAULT_REASON];

/** A translation fault record (what an IOMMU event queue entry reports). */
export interface IommuFault {
  /** The domain's ID. */
  readonly domainId: number;
  /** The first faulting IOVA. */
  readonly iova: number;
  readonly access: DmaAccess;
  readonly reason: FaultReason;
  /** Simulated time of the fault in ns (0 without a clock). */
  readonly timeNs: number;
}

/** A bounded log of faults, oldest dropped first. */
export class FaultLog {
  /** Capacity. */
  readonly capacity: number;
  /** Faults ever recorded (including those dropped from the log). */
  total = 0;
  private readonly ring: IommuFault[] = [];
  private head = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Appends a fault, dropping the oldest when full. */
  push(f: IommuFault): void {
    this.total++;
    if (this.capacity === 0) return;
    if (this.ring.length < this.capacity) this.ring.push(f);
    else {
      this.ring[this.head] = f;
      this.head = (this.head + 1) % this.capacity;
    }
  }

  /** The faults kept, oldest first. */
  entries(): IommuFault[] {
    return [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
  }

  /** Empties the log (the total stays). */
  clear(): void {
    this.ring.length = 0;
    this.head = 0;
  }
}
