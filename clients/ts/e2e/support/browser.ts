// Headless Chromium (the Debian package) driven by playwright-core, with a fresh profile per
// run, and a screenshot of every open page when a test fails.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";

export const SCREENSHOTS = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../test-results");

export async function launchBrowser(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "switchboard-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot of each page, named after the test, into clients/ts/test-results/. */
export async function screenshotAll(pages: Page[], testName: string): Promise<string[]> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const base = testName.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  const saved: string[] = [];
  for (const [i, page] of pages.entries()) {
    if (page.isClosed()) continue;
    const path = join(SCREENSHOTS, `${base}-${i}.png`);
    await page.screenshot({ path, fullPage: true }).catch(() => undefined);
    saved.push(path);
  }
  return saved;
}
