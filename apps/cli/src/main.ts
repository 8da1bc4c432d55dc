#!/usr/bin/env node
import { runCli } from "./cli.ts";

// A reader that goes away (`dmasim trace | head`) ends the output, quietly: a broken pipe is
// not an error of the run, and nothing is left to say to anyone.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
}

const code = await runCli(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  color: process.stdout.isTTY && process.env.NO_COLOR === undefined,
  progress: process.stderr.isTTY,
});
process.exitCode = code;
