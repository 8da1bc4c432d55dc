import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "..");
const readme = readFileSync(join(root, "..", "..", "README.md"), "utf8");

/** The README shows each example's source and, after it, what it prints. */
describe.each(["two-step-api", "workload"])("the README example %s", (name) => {
  const source = readFileSync(join(root, "src", `${name}.ts`), "utf8");

  it("is in the README as it is in examples/", () => {
    expect(readme).toContain("```ts\n" + source + "```\n");
  });

  it("prints what the README says it prints", () => {
    const r = spawnSync(process.execPath, [join(root, "dist", `${name}.js`)], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(readme).toContain(
      "```ts\n" + source + "```\n\nprints\n\n```text\n" + r.stdout + "```\n",
    );
  });
});
