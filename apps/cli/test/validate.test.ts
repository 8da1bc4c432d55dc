import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  VALIDATION_SET_URL,
  ValidationSetError,
  formatValidationError,
  loadValidationSet,
  parseValidationSet,
  runValidation,
  selectValidationRows,
} from "../src/engine/index.ts";
import { cli } from "./helpers.ts";

const raw = JSON.parse(readFileSync(VALIDATION_SET_URL, "utf8")) as {
  sources: Record<string, unknown>;
  bases: Record<string, unknown>;
  rows: Record<string, unknown>[];
};

/** A copy of the shipped set with `rows` replaced. */
function withRows(rows: Record<string, unknown>[]): unknown {
  return { ...raw, rows };
}

const row0 = raw.rows[0] as Record<string, unknown>;

describe("the validation set", () => {
  it("parses, with unique ids, a role and a source on every row", () => {
    const set = loadValidationSet();
    const ids = set.rows.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const r of set.rows) {
      expect(["calibration", "validation"]).toContain(r.role);
      expect(r.source.author.length).toBeGreaterThan(0);
      expect(r.source.title.length).toBeGreaterThan(0);
      expect(r.source.messageId ?? r.source.url).toBeDefined();
      expect(r.setup.length).toBeGreaterThan(0);
      expect(r.assumptions.length).toBeGreaterThan(0);
    }
    // The rows the docs describe are all there.
    for (const id of ["C1a", "C1b", "C1c", "C2a", "C2b", "C3", "P1a", "P1b", "P3a", "P3b"])
      expect(ids).toContain(id);
    for (const id of ["P2a", "P2b", "P2c", "P2d", "M1b", "M2b", "M3b"]) expect(ids).toContain(id);
  });

  it("refuses duplicate ids, unknown sources and bases, and metrics the replay has not", () => {
    const bad = (rows: Record<string, unknown>[]) => {
      try {
        parseValidationSet(withRows(rows));
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationSetError);
        return (e as ValidationSetError).problems.join("\n");
      }
      throw new Error("the set was accepted");
    };
    expect(bad([row0, row0])).toContain(`row ${String(row0.id)}: duplicate id`);
    expect(bad([{ ...row0, source: "nobody-1999" }])).toContain('unknown source "nobody-1999"');
    expect(bad([{ ...row0, replay: { base: "nope", run: {} } }])).toContain(
      'unknown base job "nope"',
    );
    expect(bad([{ ...row0, metric: "avgMapNs" }])).toContain('metric "avgMapNs"');
    expect(bad([{ ...row0, metric: "resources[no-such-lock].holdNsPerIo" }])).toContain(
      'unknown resource "no-such-lock"',
    );
    expect(
      bad([{ ...row0, metric: "iops", replay: { mapBench: { profile: "arm-smmuv3" } } }]),
    ).toContain("not a map-bench metric");
    // A run replay must say which profile prices it: no silent default.
    expect(bad([{ ...row0, replay: { run: { iommu: { mode: "strict" } } } }])).toContain(
      "machine.profile",
    );
    // A bad job field is named.
    expect(
      bad([{ ...row0, replay: { base: "gupta-optane", run: { workload: { iodepth: 0 } } } }]),
    ).toContain("job: workload.iodepth");
    expect(bad([{ ...row0, role: "fitted" }])).toContain("rows.0.role");
  });

  it("selects rows by id and by group, and names the ids it does not know", () => {
    const set = loadValidationSet();
    expect(selectValidationRows(set, ["C1"]).rows.map((r) => r.id)).toEqual(["C1a", "C1b", "C1c"]);
    expect(selectValidationRows(set, ["P2a", "C3"]).rows.map((r) => r.id)).toEqual(["C3", "P2a"]);
    expect(selectValidationRows(set, ["C3", "Z9"]).unknown).toEqual(["Z9"]);
  });

  it("reports for each row the signed error (simulated - published) / published", () => {
    const { rows } = selectValidationRows(loadValidationSet(), ["C2a", "C3", "P2a"]);
    const out = runValidation(rows);
    expect(out.map((o) => o.id)).toEqual(["C2a", "C3", "P2a"]);
    for (const o of out) {
      expect(o.simulated).toBeGreaterThan(0);
      expect(o.error).toBeCloseTo((o.simulated - o.published) / o.published, 12);
    }
    // P2a is a rate from simulated time: map-bench at 8 threads on the SMMUv3 profile.
    expect(out[2]?.metric).toBe("loopsPerThreadPerSecond");
  });

  it("formats errors with their sign", () => {
    expect(formatValidationError(0.1234)).toBe("+12.3%");
    expect(formatValidationError(-0.04)).toBe("-4.0%");
    expect(formatValidationError(0)).toBe("0.0%");
  });
});

describe("dmasim validate", () => {
  it("prints JSON rows whose errors follow from what they report", async () => {
    const r = await cli("validate", "--rows", "C2b,P3b", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      rows: {
        id: string;
        role: string;
        metric: string;
        unit: string;
        published: number;
        simulated: number;
        error: number;
        source: string;
      }[];
    };
    expect(j.rows.map((x) => x.id)).toEqual(["C2b", "P3b"]);
    for (const x of j.rows) {
      expect(x.error).toBeCloseTo((x.simulated - x.published) / x.published, 12);
      expect(x.source).toContain("Message-ID <");
    }
    // C2b compares the tool's printed figure, P3b a traced mean in ns.
    expect(j.rows.map((x) => x.unit)).toEqual(["µs (as printed)", "ns"]);
    expect(j.rows[1]?.role).toBe("validation");
  });

  it("prints one aligned table and the sources", async () => {
    const r = await cli("validate", "--rows", "C3");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toMatch(
      /^id\s+role\s+profile\s+metric\s+unit\s+published\s+simulated\s+error$/,
    );
    expect(lines[1]).toMatch(/^C3\s+calibration\s+arm-smmuv3\s+resources\[/);
    expect(r.out).toContain("C3: Barry Song");
    expect(r.out).toContain("20200628111251.19108-1-song.bao.hua@hisilicon.com");
  });

  it("exits 2 with one line naming an unknown row and the valid ones", async () => {
    const r = await cli("validate", "--rows", "C1a,Q7");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.err).toContain('"Q7"');
    expect(r.err).toContain("C1a, C1b, C1c");
  });

  it("refuses --json with --markdown", async () => {
    const r = await cli("validate", "--rows", "C3", "--json", "--markdown");
    expect(r.code).toBe(2);
  });
});

describe("docs/validation.md", () => {
  it("holds the table `dmasim validate --markdown` prints for the whole set", async () => {
    const docs = readFileSync(new URL("../../../docs/validation.md", import.meta.url), "utf8");
    const m = /<!-- validate:table:start -->\n([\s\S]*?)<!-- validate:table:end -->/.exec(docs);
    expect(m, "docs/validation.md has the table markers").not.toBeNull();
    const r = await cli("validate", "--markdown");
    expect(r.code).toBe(0);
    expect(m?.[1], "docs/validation.md is out of date: run node scripts/validation-table.mjs").toBe(
      r.out,
    );
  }, 180_000);
});
