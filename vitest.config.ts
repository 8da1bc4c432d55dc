import { defineConfig } from "vitest/config";

/** Repository-wide tests (layering and tooling); packages have their own configs. */
export default defineConfig({
  test: {
    name: "repo",
    include: ["test/**/*.test.ts"],
    environment: "node",
    reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
  },
});
