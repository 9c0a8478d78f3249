// End to end: the example pages in headless Chromium against the real switchboard binary.
// Every wait is on a signal (a page condition, a server answer, a process exit); the vitest
// timeouts are only failure bounds.
import { rmSync } from "node:fs";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { launchBrowser, screenshotAll } from "./support/browser.js";
import { bundlePages } from "./support/bundle.js";
import { startProxy } from "./support/proxy.js";
import { serveStatic } from "./support/static.js";
import { SwitchboardServer, signToken } from "./support/server.js";

interface PageEvent {
  type: string;
  data: { n?: number };
  room?: string;
  offset?: number;
  epoch?: string;
}

let site: Awaited<ReturnType<typeof serveStatic>>;
let bundleDir: string;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let server: SwitchboardServer;
let pages: Page[] = [];

beforeAll(async () => {
  bundleDir = await bundlePages(["react-counter.tsx"]);
  site = await serveStatic(bundleDir);
  browser = await launchBrowser();
  context = browser.context;
  // Under the test's own bound, so a wait that fails says which condition it was waiting for.
  context.setDefaultTimeout(15_000);
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
});

beforeEach(async () => {
  server = new SwitchboardServer(site.origin);
  await server.start();
  pages = [];
});
afterEach(async (test) => {
  if (test.task.result?.state === "fail") {
    const shots = await screenshotAll(pages, test.task.name);
    console.error(`screenshots: ${shots.join(", ")}\nserver output:\n${server.output}`);
  }
  await Promise.all(pages.map((page) => page.close()));
  await server.stop();
});

async function open(page: string, params: Record<string, string>, via = server.url): Promise<Page> {
  const tab = await context.newPage();
  pages.push(tab);
  tab.on("pageerror", (error) => console.error(`page error in ${page}: ${error.message}`));
  const query = new URLSearchParams({ server: via, ...params });
  await tab.goto(`${site.origin}/pages/${page}?${query}`);
  return tab;
}

const stateIs = (tab: Page, state: string) =>
  tab.waitForFunction((s) => document.getElementById("status")?.dataset.state === s, state);

/** The order events the page delivered, as their numbers. */
const delivered = (tab: Page) =>
  tab.evaluate(() =>
    (window as unknown as { app: { events: PageEvent[] } }).app.events
      .filter((e) => e.type === "order:status_changed")
      .map((e) => e.data.n),
  );

const waitForEvents = (tab: Page, count: number) =>
  tab.waitForFunction(
    (n) =>
      (window as unknown as { app: { events: PageEvent[] } }).app.events.filter((e) => e.type === "order:status_changed")
        .length >= n,
    count,
  );

async function publish(from: number, to: number, room = "order:1"): Promise<void> {
  for (let n = from; n <= to; n++) {
    await server.api("POST", "/api/broadcast", { type: "order:status_changed", data: { n }, rooms: [room] });
  }
}

/** Each room's offsets as delivered: strictly increasing by one (no gap, no repeat). */
async function expectContiguousOffsets(tab: Page): Promise<void> {
  const events = await tab.evaluate(() => (window as unknown as { app: { events: PageEvent[] } }).app.events);
  const byRoom = new Map<string, number[]>();
  for (const e of events) if (e.room) byRoom.set(e.room, [...(byRoom.get(e.room) ?? []), e.offset as number]);
  for (const [room, offsets] of byRoom) {
    const first = offsets[0] as number;
    expect(offsets, room).toEqual(offsets.map((_, i) => first + i));
  }
}

describe("in a browser, against the real server", () => {
  it("two tabs on one counter see the same values (the plain client and the React hook)", async () => {
    const a = await open("counter.html", { name: "shared" });
    const b = await open("react-counter.html", { name: "shared" });
    await Promise.all([stateIs(a, "open"), stateIs(b, "open")]);
    const valueIs = (tab: Page, v: string) =>
      tab.waitForFunction((x) => document.getElementById("value")?.textContent === x, v);

    await Promise.all([valueIs(a, "0"), valueIs(b, "0")]);
    for (let i = 0; i < 3; i++) await a.click("#inc");
    await Promise.all([valueIs(a, "3"), valueIs(b, "3")]);
    await b.click("#inc");
    await Promise.all([valueIs(a, "4"), valueIs(b, "4")]);
    await b.click("#dec");
    await Promise.all([valueIs(a, "3"), valueIs(b, "3")]);
    const read = await server.api<{ value: number }>("POST", "/rpc/counter.getValue", { name: "shared" });
    expect(read.value).toBe(3);
  });

  it("a network cut (server-side close, reconnect held back) loses no room event", async () => {
    const token = signToken({ sub: "ada", branchId: "b1", role: "manager" });
    const tab = await open("rooms.html", { token, rooms: "order:1" });
    await stateIs(tab, "open");
    // The subscribe must be answered before the first publish, or the event has nowhere to go.
    await tab.evaluate(() => (window as unknown as { app: { client: { getRooms(): Promise<unknown> } } }).app.client.getRooms());
    await publish(1, 5);
    await waitForEvents(tab, 5);

    // Hold reconnects back, then cut the connection from the server.
    await tab.evaluate(() => ((window as unknown as { app: { blocked: boolean } }).app.blocked = true));
    const { connections } = await server.api<{ connections: Array<{ connectionId: string }> }>(
      "GET",
      "/api/connections?userId=ada",
    );
    expect(connections.length).toBe(1);
    await server.api("DELETE", `/api/connections/${connections[0]?.connectionId}`);
    await tab.waitForFunction(() => {
      const app = (window as unknown as { app: { tokenCalls: number; release: unknown[] } }).app;
      return app.tokenCalls >= 2 && app.release.length > 0; // it is trying, and held
    });

    // Published while the page is away: nobody to deliver to, but kept in the room's history.
    const offline = await server.api<{ delivered: number }>("POST", "/api/broadcast", {
      type: "order:status_changed",
      data: { n: 6 },
      rooms: ["order:1"],
    });
    expect(offline.delivered).toBe(0);
    await publish(7, 10);

    await tab.evaluate(() => (window as unknown as { app: { unblock(): void } }).app.unblock());
    await waitForEvents(tab, 10);
    await publish(11, 12);
    await waitForEvents(tab, 12);
    expect(await delivered(tab)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const recovered = await tab.evaluate(() => (window as unknown as { app: { recovered: unknown[] } }).app.recovered);
    expect(recovered).toContainEqual({ room: "order:1", missed: 5 });
    expect(await tab.evaluate(() => (window as unknown as { app: { reloads: unknown[] } }).app.reloads)).toEqual([]);
    await expectContiguousOffsets(tab);
  });

  it("a server restart mid-stream loses no room event", async () => {
    const token = signToken({ sub: "bob", branchId: "b2", role: "operator" });
    const tab = await open("rooms.html", { token, rooms: "order:9" });
    await stateIs(tab, "open");
    await tab.evaluate(() => (window as unknown as { app: { client: { getRooms(): Promise<unknown> } } }).app.client.getRooms());

    // The page need not have caught up when the server dies: what was acknowledged is stored.
    await publish(1, 10, "order:9");
    await server.kill();
    await tab.waitForFunction(() => document.getElementById("status")?.dataset.state !== "open");
    await server.start();
    await publish(11, 20, "order:9");
    await waitForEvents(tab, 20);
    expect(await delivered(tab)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await expectContiguousOffsets(tab);
    expect(await tab.evaluate(() => (window as unknown as { app: { reloads: unknown[] } }).app.reloads)).toEqual([]);
  });

  it("operations sent while offline are queued and run in order after the reconnect", async () => {
    const tab = await open("counter.html", { name: "queued" });
    await stateIs(tab, "open");
    await server.kill();
    await tab.waitForFunction(() => document.getElementById("status")?.dataset.state !== "open");

    const queued = await tab.evaluate(() => {
      const app = (window as unknown as {
        app: { counter: { setValue(v: number): Promise<{ value: number }>; socket: { queued: number } }; results?: Promise<unknown> };
      }).app;
      app.results = Promise.all([1, 2, 3, 4, 5].map((v) => app.counter.setValue(v).then((r) => r.value)));
      return app.counter.socket.queued;
    });
    expect(queued).toBe(5);

    await server.start();
    const results = await tab.evaluate(() => (window as unknown as { app: { results: Promise<number[]> } }).app.results);
    expect(results).toEqual([1, 2, 3, 4, 5]);
    const history = await server.api<Array<{ op: string; value: number }>>("POST", "/rpc/counter.getHistory", {
      name: "queued",
      limit: 10,
    });
    expect(history.map((h) => `${h.op}:${h.value}`)).toEqual([5, 4, 3, 2, 1].map((v) => `setValue:${v}`));
    await tab.waitForFunction(() => document.getElementById("value")?.textContent === "5");
  });

  it("a silent network cut is noticed by the heartbeat, and the page catches up once it is over", async () => {
    const proxy = await startProxy(() => new URL(server.url));
    try {
      const tab = await open("counter.html", { name: "silent", heartbeat: "500", connectionTimeout: "1000" }, proxy.url);
      await stateIs(tab, "open");
      const valueIs = (v: string) => tab.waitForFunction((x) => document.getElementById("value")?.textContent === x, v);
      const closes = () => tab.evaluate(() => (window as unknown as { app: { closes: number[] } }).app.closes);
      await server.api("POST", "/rpc/counter.increment", { name: "silent" });
      await valueIs("1");

      proxy.cut();
      // Nothing closes: only the heartbeat can tell (4409), then an attempt into the void
      // is abandoned by the connection timeout (4408).
      await tab.waitForFunction(() => (window as unknown as { app: { closes: number[] } }).app.closes.includes(4408));
      expect((await closes()).slice(0, 2)).toEqual([4409, 4408]);
      await server.api("POST", "/rpc/counter.increment", { name: "silent" }); // missed by the page

      proxy.restore();
      await stateIs(tab, "open");
      await valueIs("2"); // read again on reconnect
      await server.api("POST", "/rpc/counter.increment", { name: "silent" });
      await valueIs("3"); // live again
    } finally {
      await proxy.close();
    }
  });

  it("a display shows every update, including those posted while it was cut off", async () => {
    const proxy = await startProxy(() => new URL(server.url));
    try {
      await server.api("POST", "/session/t7/init", { tenantId: "org" });
      const tab = await open("display.html", { session: "t7", heartbeat: "500" }, proxy.url);
      await stateIs(tab, "open");
      const transcriptIs = (lines: string[]) =>
        tab.waitForFunction(
          (want) => JSON.stringify([...document.querySelectorAll("#transcript li")].map((li) => li.textContent)) === want,
          JSON.stringify(lines),
        );
      await server.api("POST", "/session/t7/update", { type: "transcription", text: "Two soups, please" });
      await transcriptIs(["Two soups, please"]);

      proxy.cut();
      await tab.waitForFunction(() => document.getElementById("status")?.dataset.state !== "open");
      await server.api("POST", "/session/t7/update", { type: "transcription", text: "And bread" });
      await server.api("POST", "/session/t7/update", { type: "order_summary", items: [{ dish: "soup", qty: 2 }] });
      proxy.restore();

      await transcriptIs(["Two soups, please", "And bread"]);
      await tab.waitForFunction(() => document.getElementById("order")?.textContent === '[{"dish":"soup","qty":2}]');
    } finally {
      await proxy.close();
    }
  });
});
