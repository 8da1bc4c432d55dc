/** `dmasim validate`: replays the validation set and reports simulated against published. */
import {
  loadValidationSet,
  runValidation,
  selectValidationRows,
  validationMarkdown,
  validationText,
} from "../engine/validate.ts";
import { progressLine } from "./progress.ts";
import { type CommandIo, UsageError } from "./common.ts";

/** Options of `validate`. */
export interface ValidateCommandOptions {
  json?: boolean;
  markdown?: boolean;
  /** Comma-separated row ids or groups ("C1a,P2a", "C1"). */
  rows?: string;
}

/** Runs the command; returns the exit code (0: every error is reported as it comes out). */
export function validate(opts: ValidateCommandOptions, io: CommandIo): number {
  const set = loadValidationSet();
  const ids =
    opts.rows === undefined
      ? undefined
      : opts.rows
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  if (ids !== undefined && ids.length === 0)
    throw new UsageError("--rows: expected comma-separated row ids, e.g. C1a,P2a");
  const { rows, unknown } = selectValidationRows(set, ids);
  if (unknown.length > 0) {
    const named = unknown.map((u) => `"${u}"`).join(", ");
    throw new UsageError(
      `--rows: no validation row ${named}; the rows are ${set.rows.map((r) => r.id).join(", ")}`,
    );
  }
  const progress = opts.json ? null : progressLine(io, "validate", "rows");
  const outcomes = runValidation(rows, (row, i, n) => progress?.update(i, n, row.id));
  progress?.end();
  if (opts.json) io.stdout(`${JSON.stringify({ rows: outcomes }, null, 2)}\n`);
  else if (opts.markdown) io.stdout(validationMarkdown(outcomes));
  else io.stdout(validationText(outcomes, io.color));
  return 0;
}
