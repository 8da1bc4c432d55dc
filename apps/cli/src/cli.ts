import { IO_PGTABLE_FORMATS } from "@dmasim/iommu";
import { readFileSync } from "node:fs";
import { KERNEL_VERSIONS } from "@dmasim/bvec";
import { Command, CommanderError, Option } from "commander";
import { DEVICE_PRESETS, DEVICE_PRESET_NAMES } from "./engine/devices.ts";
import type { CommandIo } from "./commands/common.ts";

/** Where a command writes: injected so that commands are tested without spawning a process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Colour on stdout (default false). */
  readonly color?: boolean;
  /** Progress lines on stderr (default false). */
  readonly progress?: boolean;
}

/** The exit codes of the dmasim CLI. */
export const EXIT = {
  OK: 0,
  RUN_FAILED: 1,
  USAGE: 2,
  INTERNAL: 70,
} as const;

function readVersion(): string {
  const url = new URL("../package.json", import.meta.url);
  const pkg = JSON.parse(readFileSync(url, "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "0.0.0";
}

const IOMMU = ["none", "passthrough", "strict", "lazy"] as const;
const MAPPING = ["two-step", "per-segment", "scatterlist"] as const;
const KERNELS = KERNEL_VERSIONS;

/** Adds the options that override job fields. */
async function jobOptions(cmd: Command, single: boolean, kernelList = false): Promise<Command> {
  const c = await import("./commands/common.ts");
  if (single) {
    cmd
      .addOption(
        kernelList
          ? new Option(
              "--kernel <versions>",
              `Linux release modelled (${KERNELS.join(", ")}; default ${KERNELS[KERNELS.length - 1]}), or two comma-separated to show what changes`,
            ).argParser(c.listOption(KERNELS))
          : new Option(
              "--kernel <version>",
              `Linux release modelled: ${KERNELS.join(", ")} (default ${KERNELS[KERNELS.length - 1]})`,
            ).argParser(c.choiceOption(KERNELS)),
      )
      .addOption(
        new Option("--iommu <mode>", "IOMMU mode: none, passthrough, strict, lazy").argParser(
          c.choiceOption(IOMMU),
        ),
      )
      .addOption(
        new Option(
          "--mapping <style>",
          "host mapping: two-step, per-segment or scatterlist",
        ).argParser(c.choiceOption(MAPPING)),
      );
  }
  return cmd
    .addOption(
      new Option("--rw <pattern>", "randread, randwrite, randrw, read, write").argParser(
        c.choiceOption(["randread", "randwrite", "randrw", "read", "write"] as const),
      ),
    )
    .option("--bs <size>", "block size, e.g. 4k, 128K, 0x2000")
    .addOption(
      new Option("--rwmixread <pct>", "reads in percent of a mixed workload (randrw)").argParser(
        c.intOption(0, 100),
      ),
    )
    .addOption(
      new Option("--iodepth <n>", "I/Os in flight per CPU").argParser(c.intOption(1, 4096)),
    )
    .addOption(
      new Option("--ios <n>", "number of I/Os").argParser(c.intOption(1, 1e8)).conflicts("seconds"),
    )
    .addOption(
      new Option("--seconds <s>", "simulated seconds to run").argParser(c.numberOption(1e-6, 3600)),
    )
    .addOption(
      new Option("--cpus <n>", "simulated CPUs (one I/O queue each unless --io-queues)").argParser(
        c.intOption(1, 64),
      ),
    )
    .addOption(new Option("--seed <n>", "random seed").argParser(c.intOption(0, 2 ** 32 - 1)))
    .addOption(
      new Option("--buffers <layout>", "contiguous, scattered, offset, hugepage").argParser(
        c.choiceOption(["contiguous", "scattered", "offset", "hugepage"] as const),
      ),
    )
    .addOption(
      new Option("--sgl <support>", "controller SGL support: none, byte, dword").argParser(
        c.choiceOption(["none", "byte", "dword"] as const),
      ),
    )
    .addOption(
      new Option("--mdts <n>", "controller MDTS (0: no limit)").argParser(c.intOption(0, 15)),
    )
    .addOption(
      new Option(
        "--device <preset>",
        `a device preset: ${DEVICE_PRESET_NAMES.map((n) => `${n} (${DEVICE_PRESETS[n].latencyUs} µs, ${DEVICE_PRESETS[n].bandwidthMBps / 1000} GB/s)`).join(", ")}; see README`,
      ).argParser(c.choiceOption(DEVICE_PRESET_NAMES)),
    )
    .addOption(
      new Option("--latency-us <us>", "device latency per command").argParser(
        c.numberOption(0, 1e6),
      ),
    )
    .addOption(
      new Option("--granule <bytes>", "IOMMU granule: 4096, 16384, 65536").argParser(
        c.intOption(4096, 65536),
      ),
    )
    .addOption(
      new Option(
        "--page-table <format>",
        `IOMMU page-table format: auto (the profile's, for the kernel), ${IO_PGTABLE_FORMATS.join(", ")}; see docs/page-table-formats.md`,
      ).argParser(c.choiceOption(["auto", ...IO_PGTABLE_FORMATS] as const)),
    )
    .addOption(
      new Option("--memory-gib <n>", "simulated RAM").argParser(c.numberOption(0.01, 4096)),
    )
    .addOption(
      new Option("--profile <kind>", "hardware profile: intel-vtd, amd-vi, arm-smmuv3").argParser(
        c.choiceOption(["intel-vtd", "amd-vi", "arm-smmuv3"] as const),
      ),
    )
    .addOption(
      new Option("--controllers <n>", "NVMe controllers behind the one IOMMU").argParser(
        c.intOption(1, 16),
      ),
    )
    .addOption(
      new Option(
        "--io-queues <n>",
        "I/O queues per controller (fewer than CPUs: shared)",
      ).argParser(c.intOption(1, 64)),
    )
    .addOption(
      new Option("--completion <how>", "interrupt (Linux's default) or poll").argParser(
        c.choiceOption(["interrupt", "poll"] as const),
      ),
    )
    .option(
      "--ramp <n|time>",
      'I/Os (a number) or simulated time ("10ms") left out of the statistics',
    )
    .addOption(
      new Option("--bandwidth-mbps <n>", "device bandwidth, MB/s").argParser(
        c.numberOption(1, 1e6),
      ),
    )
    .addOption(
      new Option("--max-iops <n>", "device command rate limit, per second").argParser(
        c.numberOption(1, 1e9),
      ),
    )
    .addOption(
      new Option("--iotlb-entries <n>", "IOTLB entries").argParser(c.intOption(1, 2 ** 20)),
    )
    .addOption(
      new Option(
        "--inject <fault>",
        "inject controller faults (repeatable): failCommand:status=0x4004,every=100, corruptDescriptor:nth=N, failDmaRead:nth=N, delay:ns=N",
      ).argParser(c.injectOption),
    )
    .option("--untrusted", "an untrusted (external) device: sub-granule buffers bounce")
    .option("--no-verify", "do not verify the data read back");
}

/** Builds the commander program; output goes through `io`; `setCode` receives the exit code. */
export async function buildProgram(io: CliIo, setCode: (code: number) => void): Promise<Command> {
  const cio: CommandIo = {
    stdout: (s) => io.stdout(s),
    stderr: (s) => io.stderr(s),
    color: io.color ?? false,
    progress: io.progress ?? false,
  };
  const c = await import("./commands/common.ts");
  const program = new Command();
  program
    .name("dmasim")
    .description(
      "An executable model of the Linux DMA mapping stack: bio_vecs, the DMA API (streaming and two-step IOVA), an IOMMU with real page tables, and an NVMe host and controller. Start with `dmasim run`.",
    )
    .version(readVersion(), "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
    });
  const reportOpts = (cmd: Command) =>
    cmd
      .option("--json", "print JSON instead of tables")
      .option("--csv", "print CSV (a header and one line per run) instead of tables")
      .addOption(
        new Option(
          "--percentiles <list>",
          "latency percentiles to print, e.g. 50,99,99.99 (default 50,90,99,99.9)",
        ).argParser(c.percentilesOption),
      )
      .option("--html <file>", "also write a self-contained HTML report with charts")
      .option(
        "--costs <file>",
        "a JSON cost table merged over the job's profile (machine.profile)",
      );

  const run = new Command("run")
    .description("run a job (the built-in default job without a file) and report what it cost")
    .argument("[job]", "a job file (JSON); see README for the schema")
    .option("--debug", "attach dma-debug and report driver bugs")
    .option(
      "--log <file>",
      "write a per-interval log (IOPS, bandwidth, latency over simulated time) as JSON Lines",
    )
    .addOption(
      new Option("--log-interval <time>", 'the log\'s interval (default "1ms")').argParser(
        c.timeOption,
      ),
    );
  await jobOptions(run, true);
  reportOpts(run).addHelpText(
    "after",
    "\nExamples:\n  dmasim run\n  dmasim run --iommu strict --bs 128k --iodepth 8\n  dmasim run job.json --json > result.json\n  dmasim run --html report.html\n",
  );
  run.action(async (file: string | undefined, opts: Record<string, unknown>) => {
    const m = await import("./commands/run.ts");
    setCode(m.run(file, opts, cio));
  });
  program.addCommand(run);

  const jobCmd = new Command("job")
    .description(
      "print the effective job (a file or the default, the options applied) with every default",
    )
    .argument("[job]", "a job file (JSON)")
    .option("--print", "print the job as JSON (the default action)");
  await jobOptions(jobCmd, true);
  jobCmd.addHelpText(
    "after",
    "\nExamples:\n  dmasim job --print\n  dmasim job --print job.json --iommu strict --device fast\n",
  );
  jobCmd.action(async (file: string | undefined, opts: Record<string, unknown>) => {
    const m = await import("./commands/job.ts");
    setCode(m.printJob(file, opts, cio));
  });
  program.addCommand(jobCmd);

  const compare = new Command("compare")
    .description("run the same workload across IOMMU modes and mapping styles")
    .argument("[job]", "a job file (JSON)")
    .addOption(
      new Option("--iommu <modes>", "comma-separated IOMMU modes (default all four)").argParser(
        c.listOption(IOMMU),
      ),
    )
    .addOption(
      new Option(
        "--mapping <styles>",
        "comma-separated mapping styles (default all three)",
      ).argParser(c.listOption(MAPPING)),
    )
    .addOption(
      new Option(
        "--kernel <versions>",
        "comma-separated Linux releases to compare (default the job's, 7.0)",
      ).argParser(c.listOption(KERNELS)),
    );
  await jobOptions(compare, false);
  reportOpts(compare).addHelpText(
    "after",
    "\nExamples:\n  dmasim compare\n  dmasim compare --iommu strict,lazy --bs 64k --html compare.html\n  dmasim compare --kernel 6.18,6.19 --iommu strict --mapping two-step --buffers offset\n",
  );
  compare.action(async (file: string | undefined, opts: Record<string, unknown>) => {
    const m = await import("./commands/compare.ts");
    setCode(m.compare(file, opts, cio));
  });
  program.addCommand(compare);

  const tr = await import("./commands/trace.ts");
  const trace = new Command("trace")
    .description(
      "trace one I/O step by step: bvecs, segments, IOVA and PTEs, command and descriptor bytes, the device walk, completion, teardown",
    )
    .option("--buf <addr:len>", "a buffer (repeatable), e.g. 0x1_2345_6000:8192", tr.bufOption)
    .option("--write", "trace a write (default a read)")
    .addOption(
      new Option("--offset <bytes>", "namespace byte offset").argParser(c.intOption(0, 2 ** 40)),
    )
    .option("--debug", "attach dma-debug, as run --debug (off by default, as in run)")
    .option("--json", "print JSON")
    .option(
      "--html <file>",
      "write a step-through HTML page of the I/O (the same content as --json)",
    );
  await jobOptions(trace, true, true);
  trace.addHelpText(
    "after",
    "\nExamples:\n  dmasim trace\n  dmasim trace --html io.html\n  dmasim trace --iommu strict --buf 0x1_2345_6000:8192 --buf 0x2_0000_1000:4096\n  dmasim trace --kernel 6.18,6.19 --buf 0x1_2345_6000:2048 --buf 0x2_0000_1200:2048\n",
  );
  trace.action((opts: Record<string, unknown>) => {
    setCode(tr.trace(opts, cio));
  });
  program.addCommand(trace);

  const mb = new Command("map-bench")
    .description(
      "the kernel's dma_map_benchmark: map/unmap latency from the cost model, in simulated time",
    )
    .addOption(
      new Option("-t, --threads <n>", "threads").argParser(c.intOption(1, 1024)).default(1),
    )
    .addOption(
      new Option("-s, --seconds <n>", "test seconds").argParser(c.intOption(1, 300)).default(20),
    )
    .addOption(
      new Option("-n, --node <n>", "NUMA node (-1: no preference)")
        .argParser(c.intOption(-1, 1024))
        .default(-1),
    )
    .addOption(
      new Option("-b, --bits <n>", "DMA mask bits").argParser(c.intOption(20, 64)).default(32),
    )
    .addOption(
      new Option("-d, --dir <n>", "0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE")
        .argParser(c.intOption(0, 2))
        .default(0),
    )
    .addOption(
      new Option("-x, --delay <ns>", "transmit delay (ns)")
        .argParser(c.intOption(0, 10_000_000))
        .default(0),
    )
    .addOption(
      new Option("-g, --granule <pages>", "pages per mapping")
        .argParser(c.intOption(1, 1024))
        .default(1),
    )
    .addOption(
      new Option("-m, --mode <n>", "0 single, 1 scatter-gather")
        .argParser(c.intOption(0, 1))
        .default(0),
    )
    .addOption(
      new Option("--iommu <mode>", "IOMMU mode of the device")
        .argParser(c.choiceOption(IOMMU))
        .default("strict"),
    )
    .addOption(
      new Option("--max-loops <n>", "stop after this many loops in total").argParser(
        c.intOption(1, 1e8),
      ),
    )
    .addOption(
      new Option("--profile <kind>", "hardware profile: intel-vtd, amd-vi, arm-smmuv3")
        .argParser(c.choiceOption(["intel-vtd", "amd-vi", "arm-smmuv3"] as const))
        .default("intel-vtd"),
    )
    .option("--costs <file>", "a JSON cost table")
    .option("--json", "print JSON (adds the simulator's own wall-clock time per operation)")
    .addHelpText(
      "after",
      "\nExamples:\n  dmasim map-bench\n  dmasim map-bench -t 4 -g 8 --iommu lazy\n",
    );
  mb.action(async (opts: Record<string, unknown>) => {
    const m = await import("./commands/map-bench.ts");
    setCode(m.mapBench(opts as never, cio));
  });
  program.addCommand(mb);

  const sw = new Command("sweep")
    .description("run a grid of job variations on a worker pool; one JSON line per job")
    .argument(
      "<grid>",
      'a grid file: {"base": {job}, "vary": {"iommu.mode": ["strict", "lazy"], "workload.bs": ["4k", "64k"]}}',
    )
    .option("--out <file>", "write the JSON lines to a file")
    .option("--csv", "print the summary as CSV")
    .addOption(
      new Option(
        "--workers <n>",
        "worker threads (default: the machine's cores; 0 runs inline)",
      ).argParser(c.intOption(0, 256)),
    )
    .option("--json", "print the JSON lines on stdout")
    .option("--html <file>", "write an HTML report: each metric against a swept parameter")
    .option(
      "--x <param>",
      "the swept parameter on the HTML charts' x axis (default: the first numeric one)",
    )
    .addOption(
      new Option(
        "--metric <names>",
        "comma-separated metrics to chart (default iops,cpuNsPerIo,latencyP99Us; also bandwidthMBps, latMeanUs, clatMeanUs, latencyP50Us, qdMean, boundUtilisation, hostMemoryPerIo, perIo.<counter>)",
      ).argParser((v: string) =>
        v
          .split(",")
          .map((x) => x.trim())
          .filter((x) => x !== ""),
      ),
    )
    .addHelpText(
      "after",
      "\nExamples:\n  dmasim sweep grid.json --out results.jsonl\n  dmasim sweep grid.json --html scaling.html --x machine.cpus --metric iops,cpuNsPerIo\n",
    );
  sw.action(async (file: string, opts: Record<string, unknown>) => {
    const m = await import("./commands/sweep.ts");
    setCode(await m.sweep(file, opts, cio));
  });
  program.addCommand(sw);

  const val = new Command("validate")
    .description(
      "replay the validation set (published measurements, docs/validation.md) and report simulated against published, with the error",
    )
    .option("--json", "print JSON")
    .addOption(
      new Option("--markdown", "print the table as docs/validation.md holds it").conflicts("json"),
    )
    .option("--rows <ids>", "comma-separated row ids, or groups (C1: C1a, C1b, C1c)")
    .addHelpText(
      "after",
      "\nExamples:\n  dmasim validate\n  dmasim validate --rows C1a,P2a\n  dmasim validate --markdown\n",
    );
  val.action(async (opts: Record<string, unknown>) => {
    const m = await import("./commands/validate.ts");
    setCode(m.validate(opts, cio));
  });
  program.addCommand(val);

  for (const cmd of program.commands) {
    cmd.exitOverride();
    cmd.configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) });
  }
  return program;
}

/** Runs the CLI with `argv` (without the node and script entries); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number = EXIT.OK;
  const program = await buildProgram(io, (c) => {
    code = c;
  });
  try {
    if (argv.length === 0) {
      program.outputHelp();
      return EXIT.OK;
    }
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.version" ||
        err.code === "commander.help"
      ) {
        return EXIT.OK;
      }
      return EXIT.USAGE;
    }
    const { UsageError } = await import("./commands/common.ts");
    const { JobError } = await import("./engine/errors.ts");
    if (err instanceof UsageError || err instanceof JobError) {
      io.stderr(
        err.message
          .split("\n")
          .map((l) => `dmasim: ${l}\n`)
          .join(""),
      );
      return EXIT.USAGE;
    }
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    io.stderr(`dmasim: internal error (this is a bug; please report it):\n${stack}\n`);
    return EXIT.INTERNAL;
  }
}
