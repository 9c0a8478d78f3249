// End to end in a cluster: two switchboard nodes on a real nats-server behind a load balancer
// (a TCP proxy that sends new connections to a live node). The node a page is on is killed with
// SIGKILL; the page's client reconnects, with its own backoff, through the same URL to the other
// node, and finds the counter there with every acknowledged operation.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchBrowser, screenshotAll } from "./support/browser.js";
import { startNats, type Nats } from "./support/nats.js";
import { startProxy } from "./support/proxy.js";
import { serveStatic } from "./support/static.js";
import { SwitchboardServer } from "./support/server.js";

let site: Awaited<ReturnType<typeof serveStatic>>;
let bundleDir: string;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let nats: Nats;

beforeAll(async () => {
  bundleDir = mkdtempSync(`${tmpdir()}/switchboard-e2e-cluster-`);
  site = await serveStatic(bundleDir);
  browser = await launchBrowser();
  context = browser.context;
  context.setDefaultTimeout(15_000);
  nats = await startNats();
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
  await nats?.stop();
  rmSync(bundleDir, { recursive: true, force: true });
});

it("a killed node's page reconnects to another node within 10 s and loses no acknowledged operation", async () => {
  const prefix = `e2e${process.pid}`;
  const node = (id: string) =>
    new SwitchboardServer(site.origin, {
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_NODE_ID: id,
      SWITCHBOARD_CLUSTER_PREFIX: prefix,
      SWITCHBOARD_LEASE_TTL_MS: "2000",
    });
  const nodes = [node("a"), node("b")];
  await Promise.all(nodes.map((n) => n.start()));
  // The load balancer: new connections go to the first node that is up.
  const up = new Set(nodes);
  const balancer = await startProxy(() => new URL([...up][0]!.url));
  let tab: Page | undefined;
  try {
    tab = await context.newPage();
    const query = new URLSearchParams({ server: balancer.url, name: "ha" });
    await tab.goto(`${site.origin}/pages/counter.html?${query}`);
    await tab.waitForFunction(() => document.getElementById("status")?.dataset.state === "open");

    const setValues = (values: number[]) =>
      tab!.evaluate(async (vs) => {
        const app = (window as unknown as { app: { counter: { setValue(v: number): Promise<{ value: number }> } } }).app;
        const results = [];
        for (const v of vs) results.push((await app.counter.setValue(v)).value);
        return results;
      }, values);
    expect(await setValues([1, 2, 3])).toEqual([1, 2, 3]);
    const [a, b] = nodes as [SwitchboardServer, SwitchboardServer];
    expect((await b.api<{ owner: string }>("GET", "/api/objects/counter/ha")).owner).toBe("a");

    await a.kill();
    up.delete(a);
    const killed = Date.now();
    // The page notices, backs off, reconnects through the balancer to B.
    await tab.waitForFunction(() => document.getElementById("status")?.dataset.state !== "open");
    await tab.waitForFunction(() => document.getElementById("status")?.dataset.state === "open", undefined, {
      timeout: 10_000,
    });
    expect(await setValues([4])).toEqual([4]);
    expect(Date.now() - killed).toBeLessThan(10_000);
    await tab.waitForFunction(() => document.getElementById("value")?.textContent === "4");

    const history = await b.api<Array<{ op: string; value: number }>>("POST", "/rpc/counter.getHistory", {
      name: "ha",
      limit: 10,
    });
    expect(history.map((h) => `${h.op}:${h.value}`)).toEqual([4, 3, 2, 1].map((v) => `setValue:${v}`));
    expect((await b.api<{ owner: string }>("GET", "/api/objects/counter/ha")).owner).toBe("b");
  } catch (error) {
    if (tab) console.error(`screenshots: ${(await screenshotAll([tab], "cluster failover")).join(", ")}`);
    for (const n of nodes) console.error(`server output:\n${n.output}`);
    throw error;
  } finally {
    await tab?.close();
    await balancer.close();
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
