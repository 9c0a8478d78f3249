// Bundles the React example pages with esbuild (React needs a bundler; the plain pages import
// the built client as ES modules directly).

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const pages = resolve(fileURLToPath(new URL(".", import.meta.url)), "../pages");

/** Builds every `pages/*.tsx` into a fresh folder and returns it. */
export async function bundlePages(entries: string[]): Promise<string> {
  const outdir = mkdtempSync(join(tmpdir(), "switchboard-e2e-bundle-"));
  await build({
    entryPoints: entries.map((entry) => join(pages, entry)),
    outdir,
    bundle: true,
    format: "esm",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"development"' },
    logLevel: "error",
  });
  return outdir;
}
