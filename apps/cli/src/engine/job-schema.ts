/**
 * The job schema (zod): every field of a job file with its range and default, so that `{}` is a
 * valid job. The checks that combine fields are in job-check.ts; parsing is `parseJob` (job.ts).
 */
import { DEFAULT_KERNEL, KERNEL_VERSIONS, parseAddress } from "@dmasim/bvec";
import { IO_PGTABLE_FORMATS } from "@dmasim/iommu";
import { z } from "zod";

/** One of a few numbers, with the allowed values in the message. */
function oneOf<const T extends readonly number[]>(values: T) {
  return z.literal(values, { error: `expected one of ${values.join(", ")}` });
}

const sizeLike = z.union([
  z.number().int().positive(),
  z.string().refine((s) => {
    try {
      return parseAddress(s) > 0;
    } catch {
      return false;
    }
  }, 'expected a size such as 4096, "4k", "128K" or "0x1000"'),
]);

/** A block size: fixed, a range, or a weighted list (fio's bs, bsrange, bssplit). */
const bsSchema = z.union(
  [
    sizeLike,
    z.object({ min: sizeLike, max: sizeLike }).strict(),
    z.array(z.object({ bs: sizeLike, weight: z.number().positive() }).strict()).min(1),
  ],
  {
    error:
      'expected a size ("4k"), a range ({"min": "4k", "max": "64k"}) or a weighted list ([{"bs": "4k", "weight": 3}, {"bs": "128k", "weight": 1}])',
  },
);

/**
 * The job schema. Each section's defaults are written once, on its fields; a missing section
 * is parsed from `{}` (`prefault`), so it gets the same defaults.
 */
export const jobSchema = z
  .object({
    name: z.string().default("default"),
    /** The Linux release modelled (docs/kernel-versions.md lists what differs between them). */
    kernel: z.enum(KERNEL_VERSIONS).default(DEFAULT_KERNEL),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .default(1),
    machine: z
      .object({
        memoryGiB: z.number().positive().max(4096).default(16),
        pageSize: oneOf([4096, 16384, 65536]).default(4096),
        cpus: z.number().int().min(1).max(64).default(1),
        /** The CPU and IOMMU kind whose cost entries price the run (see profiles.ts). */
        profile: z.enum(["intel-vtd", "amd-vi", "arm-smmuv3"]).default("intel-vtd"),
        /** NVMe controllers, each its own PCI function, queues and DMA domain, all behind one IOMMU. */
        controllers: z.number().int().min(1).max(16).default(1),
        /**
         * CONFIG_HZ: the timer tick. Timers armed in jiffies (the flush queue's 10 ms) fire on
         * ticks, rounded as the timer wheel rounds them. 250 is the kernel's Kconfig default.
         */
        hz: oneOf([100, 250, 300, 1000]).default(250),
      })
      .strict()
      .prefault({}),
    iommu: z
      .object({
        mode: z.enum(["none", "passthrough", "strict", "lazy"]).default("lazy"),
        granule: oneOf([4096, 16384, 65536]).default(4096),
        /**
         * The page-table format (docs/page-table-formats.md). Absent or "auto": the one the
         * profile's driver uses in the kernel (profiles.ts `pageTableFormat`). A named format
         * runs the Linux code of that format whatever the kernel.
         */
        format: z.enum(["auto", ...IO_PGTABLE_FORMATS]).optional(),
        addressBits: z.number().int().min(32).max(52).default(48),
        iotlbEntries: z
          .number()
          .int()
          .min(1)
          .max(2 ** 20)
          .default(256),
        iotlbWays: z.number().int().min(1).max(64).default(4),
        singleQueue: z.boolean().default(false),
        syncMapNeeded: z.boolean().default(false),
        freeEmptyTables: z.boolean().default(false),
        /**
         * The IOMMU reports caching mode (VT-d CAP.CM), as an emulated IOMMU in a guest does
         * (QEMU's intel-iommu): Linux then disallows batching and invalidates strictly.
         */
        cachingMode: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    device: z
      .object({
        trusted: z.boolean().default(true),
        dmaMaskBits: z.number().int().min(24).max(64).default(64),
        coherent: z.boolean().default(true),
        swiotlbMiB: z.number().int().min(0).max(1024).default(64),
      })
      .strict()
      .prefault({}),
    controller: z
      .object({
        sgl: z.enum(["none", "byte", "dword"]).default("byte"),
        mdts: z.number().int().min(0).max(15).default(9),
        queueDepth: z.number().int().min(2).max(4096).default(1024),
        namespaceGiB: z.number().positive().max(65536).default(4),
        lbaSize: oneOf([512, 4096]).default(512),
        /** Media latency: the median (lognormal), the centre (uniform) or the value (fixed). */
        latencyUs: z.number().min(0).max(1e6).default(80),
        /** How media latency varies from command to command. */
        latencyDist: z.enum(["fixed", "uniform", "lognormal"]).default("lognormal"),
        /** lognormal: the 99th percentile, µs (default 2 × latencyUs). */
        latencyP99Us: z.number().min(0).max(1e7).optional(),
        /** uniform: ± this percentage of latencyUs. */
        latencyJitterPct: z.number().min(0).max(100).default(10),
        bandwidthMBps: z.number().positive().max(1e6).default(3500),
        /** Commands the controller completes per second at most (its command pipeline); none by default. */
        maxIops: z.number().positive().max(1e9).optional(),
        /** I/O queue pairs per controller (default one per CPU); fewer makes CPUs share queues. */
        ioQueues: z.number().int().min(1).max(64).optional(),
        /**
         * The controller offers Doorbell Buffer Config (shadow doorbells and event indexes, as
         * QEMU's emulated NVMe does); the host then uses them.
         */
        shadowDoorbells: z.boolean().default(false),
        /**
         * Fault injection (the controller's `NvmeFaultPlan`), counted from the first I/O
         * command: fail commands with a status (the N-th, every N-th or a seeded fraction),
         * corrupt the N-th descriptor read, fail the N-th data read, delay every completion.
         */
        faults: z
          .object({
            failCommand: z
              .object({
                status: z.number().int().min(1).max(0xffff),
                nth: z.number().int().min(1).optional(),
                every: z.number().int().min(1).optional(),
                fraction: z.number().min(0).max(1).optional(),
                seed: z.number().int().min(0).optional(),
              })
              .strict()
              .refine(
                (f) => f.nth !== undefined || f.every !== undefined || f.fraction !== undefined,
                {
                  message: "failCommand needs nth, every or fraction",
                },
              )
              .optional(),
            corruptDescriptor: z
              .object({ nth: z.number().int().min(1) })
              .strict()
              .optional(),
            failDmaRead: z
              .object({ nth: z.number().int().min(1) })
              .strict()
              .optional(),
            delayNs: z.number().min(0).max(1e9).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    host: z
      .object({
        mapping: z.enum(["two-step", "per-segment", "scatterlist"]).default("two-step"),
        sglThresholdKiB: z
          .number()
          .int()
          .min(0)
          .max(2 ** 20)
          .default(32),
        /**
         * How completions are found: "interrupt" (an MSI-X interrupt per completion queue, handled
         * by the CPU the vector is affine to: Linux's default, nvme.poll_queues=0) or "poll"
         * (the submitting CPU polls its queue, as io_uring with IORING_SETUP_IOPOLL does).
         */
        completion: z.enum(["interrupt", "poll"]).default("interrupt"),
      })
      .strict()
      .prefault({}),
    workload: z
      .object({
        rw: z.enum(["randread", "randwrite", "randrw", "read", "write"]).default("randrw"),
        rwmixread: z.number().int().min(0).max(100).default(70),
        bs: bsSchema.default("4k"),
        iodepth: z.number().int().min(1).max(4096).default(32),
        ios: z.number().int().min(1).max(1e8).optional(),
        seconds: z.number().positive().max(3600).optional(),
        buffers: z.enum(["contiguous", "scattered", "offset", "hugepage"]).default("scattered"),
        bufferOffset: z.number().int().min(0).max(65536).multipleOf(4).default(512),
        verify: z.boolean().default(true),
        /**
         * fio's ramp_time: the first I/Os (a number) or the first stretch of simulated time (a
         * string with a unit: "500us", "10ms", "1s") run but are left out of every statistic.
         */
        ramp: z
          .union([
            z.number().int().min(0).max(1e8),
            z
              .string()
              .regex(
                /^\d+(\.\d+)?(ns|us|ms|s)$/,
                'expected a time such as "500us", "10ms" or "1s"',
              ),
          ])
          .default(0),
        /** fio's iodepth_batch_submit: I/Os queued before one doorbell (1 = a doorbell each). */
        batchSubmit: z.number().int().min(1).max(4096).default(1),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** A validated job with every default filled in. */
export type Job = z.infer<typeof jobSchema>;
/** A job as written in a file (any field may be missing). */
export type JobInput = z.input<typeof jobSchema>;

/** Turns a size field into bytes. */
export function sizeOf(v: number | string): number {
  return typeof v === "number" ? v : parseAddress(v);
}
