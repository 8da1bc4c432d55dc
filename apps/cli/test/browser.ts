/**
 * Headless Chromium for the HTML report tests: Debian's chromium through playwright-core
 * (never a downloaded browser), a page per report that records console errors, and the
 * screenshots kept in test-results/screenshots for CI to keep as artifacts.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Browser, type Page, chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
/** Where the tests write their pages. */
export const OUT_DIR = join(here, "..", "test-results");
/** Where the screenshots go (CI copies them out as artifacts). */
export const SHOT_DIR = join(OUT_DIR, "screenshots");
// A clean clone has no test-results yet: the tests write their pages there before any browser.
mkdirSync(SHOT_DIR, { recursive: true });

/** Debian's chromium; the tests never download a browser. */
export const CHROMIUM = process.env.DMASIM_CHROMIUM ?? "/usr/bin/chromium";

/** A phone's width and a wide screen's, as the reports promise to be readable at. */
export const PHONE = { width: 390, height: 844 } as const;
export const WIDE = { width: 1400, height: 1000 } as const;

/** Runs `fn` with a browser, closing it after. */
export async function withBrowser<T>(fn: (b: Browser) => Promise<T>): Promise<T> {
  mkdirSync(SHOT_DIR, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

/** A page opened on `file` at `viewport`, with the console errors and failed requests it logged. */
export async function openReport(
  browser: Browser,
  file: string,
  viewport: { width: number; height: number } = WIDE,
): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await browser.newPage({ viewport });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  // A self-contained page asks for nothing but itself.
  page.on("request", (r) => {
    if (r.url() !== pathToFileURL(file).href) requests.push(r.url());
  });
  await page.goto(pathToFileURL(file).href);
  return { page, errors, requests };
}

/** How far the page is wider than its viewport (0 when nothing scrolls sideways). */
export async function overflowPx(page: Page): Promise<number> {
  // A string, evaluated in the page: the tests are compiled without the DOM's types.
  const px: unknown = await page.evaluate(
    "document.documentElement.scrollWidth - document.documentElement.clientWidth",
  );
  return Number(px);
}

/** Saves a full-page screenshot under SHOT_DIR. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOT_DIR, `${name}.png`), fullPage: true });
}
