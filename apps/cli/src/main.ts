#!/usr/bin/env node
import { runCli } from "./cli.ts";

const code = await runCli(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  color: process.stdout.isTTY && process.env.NO_COLOR === undefined,
  progress: process.stderr.isTTY,
});
process.exitCode = code;
