// Serves the example pages and the built client to the browser from another origin than the
// server's, as a real app would be (so the server's CORS/origin policy is exercised too).

import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const staticRoots: Record<string, string> = {
  "/pages/": resolve(here, "../pages"),
  "/client/": resolve(here, "../../packages/client/dist"),
};
const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };

/** Serves the pages, the built client, and `bundleDir` (esbuild's output) at /bundle/. */
export async function serveStatic(bundleDir: string): Promise<{ origin: string; close: () => Promise<void> }> {
  const roots: Record<string, string> = { ...staticRoots, "/bundle/": bundleDir };
  const server: Server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    const prefix = Object.keys(roots).find((p) => path.startsWith(p));
    const root = prefix && roots[prefix];
    const file = root && normalize(resolve(root, "." + path.slice(prefix.length - 1)));
    if (!root || !file || !file.startsWith(root)) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
