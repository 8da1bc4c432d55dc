import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";

/** Where a command writes: injected so that commands are tested without spawning a process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
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

/** Builds the commander program; output goes through `io`. */
export function buildProgram(io: CliIo): Command {
  const program = new Command();
  program
    .name("dmasim")
    .description(
      "An executable model of the Linux DMA mapping stack: bio_vecs, the DMA API (streaming and\n" +
        "two-step IOVA), an IOMMU with real page tables, and an NVMe host and controller.",
    )
    .version(readVersion(), "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        io.stdout(s);
      },
      writeErr: (s) => {
        io.stderr(s);
      },
    })
    .action(() => {
      program.outputHelp();
    });
  return program;
}

/** Runs the CLI with `argv` (without the node and script entries); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") {
        return EXIT.OK;
      }
      return EXIT.USAGE;
    }
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    io.stderr(`dmasim: internal error (this is a bug):\n${stack}\n`);
    return EXIT.INTERNAL;
  }
}
