// Rewrites the generated section of a Markdown document: the text between a start marker line
// and an end marker. With `check`, writes nothing and exits 1 when the section is out of date.
// Used by scripts/validation-table.mjs and scripts/kernel-table.mjs.
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

/**
 * Puts `body` between `start` (a marker line, newline included) and `end` in the file `docs`.
 * `tool` names the calling script in what it prints; `note` is added to the success lines.
 */
export function rewriteSection({ tool, docs, start, end, body, check, note = "" }) {
  const name = `docs/${basename(docs)}`;
  const text = readFileSync(docs, "utf8");
  const a = text.indexOf(start);
  const b = text.indexOf(end, a);
  if (a < 0 || b < 0) {
    console.error(`${tool}: ${docs} has no ${start.trim()} … ${end} section`);
    process.exit(2);
  }
  const next = text.slice(0, a + start.length) + body + text.slice(b);
  if (next === text) {
    console.log(`${tool}: ${name} is up to date${note}`);
  } else if (check) {
    console.error(`${tool}: ${name} is out of date; run scripts/${tool}.mjs`);
    process.exit(1);
  } else {
    writeFileSync(docs, next);
    console.log(`${tool}: ${name} rewritten${note}`);
  }
}
