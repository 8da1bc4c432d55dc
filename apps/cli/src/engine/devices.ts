/**
 * Device presets: the controller fields of a kind of SSD, so that a question can be asked of a
 * device that does not hide what it asks about. Each sets `controller.latencyUs`,
 * `latencyP99Us` and `bandwidthMBps` (the latency lognormal, as the default).
 */

/** A device preset: the controller fields it sets and why those values. */
export interface DevicePreset {
  readonly latencyUs: number;
  readonly latencyP99Us: number;
  readonly bandwidthMBps: number;
  readonly why: string;
}

/** The presets, by name. `tlc` is the job schema's default device. */
export const DEVICE_PRESETS = {
  tlc: {
    latencyUs: 80,
    latencyP99Us: 160,
    bandwidthMBps: 3500,
    why: "the default: a PCIe Gen4 x4 TLC data-centre SSD, about 80 µs for a 4 KiB random read at low queue depth and 3.5 GB/s of reads; at QD32 on one CPU it, not the IOMMU, sets the IOPS (about 400 K), so the modes differ in CPU per I/O more than in IOPS",
  },
  fast: {
    latencyUs: 10,
    latencyP99Us: 20,
    bandwidthMBps: 14000,
    why: "a low-latency (SLC or storage-class memory) SSD on PCIe Gen5 x4: 10 µs and 14 GB/s, so that at QD32 a CPU's cost per I/O, not the device, bounds the IOPS of strict and lazy mode (3.2 M IOPS of queue depth × latency)",
  },
} as const satisfies Record<string, DevicePreset>;

/** A preset's name. */
export type DevicePresetName = keyof typeof DEVICE_PRESETS;

/** The preset names, for option parsers and messages. */
export const DEVICE_PRESET_NAMES = Object.keys(DEVICE_PRESETS) as DevicePresetName[];
