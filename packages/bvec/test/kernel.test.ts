import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_KERNEL,
  KERNEL_GATES,
  KERNEL_VERSIONS,
  SimError,
  kernelGatesMarkdown,
  kernelHas,
  parseKernelVersion,
} from "../src/index.ts";

describe("kernel versions", () => {
  it("defaults to the newest release and lists them oldest first", () => {
    expect(KERNEL_VERSIONS).toEqual(["6.17", "6.18", "6.19", "7.0"]);
    expect(DEFAULT_KERNEL).toBe("7.0");
  });

  it("answers each gate from its list of releases", () => {
    expect(kernelHas("6.17", "bio-gap-tracking")).toBe(false);
    expect(kernelHas("6.18", "bio-gap-tracking")).toBe(false);
    expect(kernelHas("6.19", "bio-gap-tracking")).toBe(true);
    expect(kernelHas("7.0", "bio-gap-tracking")).toBe(true);
    expect(kernelHas("6.17", "dma-map-phys")).toBe(false);
    expect(kernelHas("6.18", "dma-map-phys")).toBe(true);
    expect(kernelHas("6.19", "dma-attr-require-coherent")).toBe(false);
    expect(kernelHas("7.0", "dma-attr-require-coherent")).toBe(true);
    // A stable fix reaches the series that were still maintained, not the ones that had ended.
    expect(kernelHas("6.18", "iova-link-unwind-fix")).toBe(true);
    expect(kernelHas("6.19", "iova-link-unwind-fix")).toBe(false);
  });

  it("gives every gate a source, a place and at least one release, and no release twice", () => {
    for (const [name, g] of Object.entries(KERNEL_GATES)) {
      expect(g.versions.length, name).toBeGreaterThan(0);
      expect(new Set(g.versions).size, name).toBe(g.versions.length);
      expect(g.source.length, name).toBeGreaterThan(10);
      expect(g.where.length, name).toBeGreaterThan(5);
      for (const v of g.versions) expect(KERNEL_VERSIONS, name).toContain(v);
    }
  });

  it("refuses a release it does not model in one line naming the allowed ones", () => {
    expect(parseKernelVersion("6.19")).toBe("6.19");
    expect(() => parseKernelVersion("6.1")).toThrow(SimError);
    expect(() => parseKernelVersion("6.1")).toThrow(/"6\.1".*allowed: 6\.17, 6\.18, 6\.19, 7\.0/);
  });

  it("is what docs/kernel-versions.md lists (node scripts/kernel-table.mjs rewrites it)", () => {
    const docs = readFileSync(new URL("../../../docs/kernel-versions.md", import.meta.url), "utf8");
    const m = /<!-- kernel:table:start -->\n([\s\S]*?)<!-- kernel:table:end -->/.exec(docs);
    expect(m, "docs/kernel-versions.md has the table markers").not.toBeNull();
    expect(
      m?.[1],
      "docs/kernel-versions.md is out of date: run node scripts/kernel-table.mjs",
    ).toBe(kernelGatesMarkdown());
  });
});
