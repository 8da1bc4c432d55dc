import { defineConfig } from "vitest/config";

/**
 * Shared vitest settings for every package. Tests resolve workspace packages to their
 * TypeScript sources through the `@dmasim/source` export condition, so no build is needed
 * before testing.
 */
export function sharedConfig(name: string) {
  return defineConfig({
    resolve: { conditions: ["@dmasim/source", "module", "node", "import", "default"] },
    ssr: { resolve: { conditions: ["@dmasim/source", "module", "node", "import", "default"] } },
    test: {
      name,
      include: ["test/**/*.test.ts"],
      environment: "node",
      testTimeout: 60_000,
      // The JSON report is what .ci/run sums into its closing "tests: N passed, M failed" line.
      reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
    },
  });
}
