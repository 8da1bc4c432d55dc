/**
 * The engine's one error for bad input. Anything else the engine throws is a bug (the CLI shows
 * it with its stack, exit 70); a simulated hardware fault is never an error but data.
 */
import { SimError } from "@dmasim/bvec";

/**
 * Bad input — a job, a cost table, a trace buffer, a map-bench option — that no run could
 * honour: one line per problem, each naming the field, its value and what is allowed. The CLI
 * prints them and exits 2.
 */
export class JobError extends SimError<"EINVAL"> {
  readonly problems: string[];
  constructor(problems: string[]) {
    super("EINVAL", problems.join("\n"));
    this.problems = problems;
  }
}
