// End to end: the console the switchboard binary serves, in headless Chromium. Sign-in with the
// admin key, then each page renders and follows the server as its state changes. A screenshot
// of each page is kept in clients/ts/test-results/ (console-*.png).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SCREENSHOTS, launchBrowser, screenshotAll } from "./support/browser.js";
import { AUTH_SECRET, SwitchboardServer, signToken } from "./support/server.js";

let browser: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let server: SwitchboardServer;
let pages: Page[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  context = browser.context;
  context.setDefaultTimeout(15_000);
  mkdirSync(SCREENSHOTS, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
});
beforeEach(async () => {
  server = new SwitchboardServer("http://127.0.0.1");
  await server.start();
  pages = [];
});
afterEach(async (test) => {
  if (test.task.result?.state === "fail") {
    const shots = await screenshotAll(pages, test.task.name);
    console.error(`screenshots: ${shots.join(", ")}\nserver output:\n${server.output}`);
  }
  await Promise.all(pages.map((page) => page.close()));
  await context.clearCookies();
  await server.stop();
});

async function tab(path = "/"): Promise<Page> {
  const page = await context.newPage();
  pages.push(page);
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  await page.goto(server.url + path);
  return page;
}

async function signedIn(): Promise<Page> {
  const page = await tab();
  await page.getByLabel("Admin key").fill(AUTH_SECRET);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("body[data-page=console]").waitFor();
  return page;
}

/** Polls a page condition; the bound is generous for a loaded machine, the wait ends as soon as it holds. */
const poll = <T>(read: () => Promise<T> | T) => expect.poll(read, { timeout: 15_000 });

const keep = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `console-${name}.png`), fullPage: true });

describe("the console, in a browser, against the real server", () => {
  it("signs in with the admin key only, and out again", async () => {
    const page = await tab();
    await page.getByLabel("Admin key").fill("not the key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await poll(() => page.locator("#signin-error").textContent()).toContain("not the admin key");
    await keep(page, "signin");
    await page.getByLabel("Admin key").fill(AUTH_SECRET);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("body[data-page=console]").waitFor();
    const cookies = await context.cookies(server.url);
    const session = cookies.find((c) => c.name === "switchboard_console");
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe("Strict");
    expect(await page.evaluate(() => document.cookie)).toBe("");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("body[data-page=signin]").waitFor();
  });

  it("overview: the live figures follow the server", async () => {
    const page = await signedIn();
    const commits = page.locator('[data-metric="commits"] .value');
    await commits.waitFor();
    // Writes on the server show up as commits per second within a refresh or two.
    for (let i = 0; i < 20; i++) {
      await server.api("POST", "/rpc/counter.increment", { name: "overview" });
    }
    await poll(async () => Number(await commits.textContent())).toBeGreaterThan(0);
    await page.getByLabel("Name").fill("overview");
    await page.getByRole("button", { name: "Look up" }).click();
    await poll(() => page.locator("#object-result").textContent()).toContain("Stored keys");
    expect(await page.locator("#object-keys li").count()).toBeGreaterThan(0);
    await keep(page, "overview");
  });

  it("counter: two tabs on one counter see every change", async () => {
    const first = await signedIn();
    await first.goto(`${server.url}/#counter/demo`);
    const second = await tab("/#counter/demo");
    for (const page of [first, second]) {
      await poll(() => page.locator("#counter-state").textContent()).toBe("live");
    }
    await first.getByRole("button", { name: "+1" }).click();
    await server.api("POST", "/rpc/counter.increment", { name: "demo", amount: 5 });
    for (const page of [first, second]) {
      await poll(() => page.locator("#counter-value").textContent()).toBe("6");
    }
    await keep(second, "counter");
  });

  it("display: renders the updates as they are posted", async () => {
    const page = await signedIn();
    await page.goto(`${server.url}/#display/table-7`);
    await poll(() => page.locator("p.hint").first().textContent()).toBe("live");
    await server.api("POST", "/session/table-7/init", { tenantId: "org" });
    await server.api("POST", "/session/table-7/update", { type: "transcription", text: "Two soups, please" });
    await server.api("POST", "/session/table-7/update", { type: "dish_card", name: "Soup", price: "4.50" });
    await server.api("POST", "/session/table-7/update", { type: "order_summary", items: [{ dish: "soup", qty: 2 }] });
    await poll(() => page.locator("#display-transcriptions").textContent()).toContain("Two soups, please");
    await poll(() => page.locator("#display-updates").textContent()).toContain("Soup");
    await poll(() => page.locator("#display-order").textContent()).toContain("soup");
    // The page's own form sends with the session, not a key.
    await page.getByLabel("Update (JSON)").fill('{"type":"transcription","text":"And bread"}');
    await page.getByRole("button", { name: "Send" }).click();
    await poll(() => page.locator("#display-transcriptions").textContent()).toContain("And bread");
    await keep(page, "display");
  });

  it("rooms: lists the connections and publishes an event they receive", async () => {
    const page = await signedIn();
    const dashboard = await tab("/console/style.css");
    const token = signToken({ sub: "ada", branchId: "b1", role: "manager" });
    await dashboard.evaluate((url) => {
      const w = window as unknown as { seen: string[] };
      w.seen = [];
      const socket = new WebSocket(url);
      socket.onmessage = (event) => w.seen.push(String(event.data));
    }, `${server.url.replace("http", "ws")}/ws?token=${token}`);
    await page.goto(`${server.url}/#rooms`);
    await poll(() => page.locator("#rooms-connections").textContent()).toContain("ada");
    await page.getByLabel("Data (JSON)").fill('{"orderId":"67890","newStatus":"cutting"}');
    await page.getByRole("button", { name: "Publish" }).click();
    await poll(() => page.locator("#rooms-result").textContent()).toContain("delivered to 1");
    await poll(() => dashboard.evaluate(() => (window as unknown as { seen: string[] }).seen.join("\n")))
      .toContain("cutting");
    await keep(page, "rooms");
  });
});

describe("the console's device and kiosk pages", () => {
  it("devices: a reader comes online, its scans appear live, a pending tag is assigned", async () => {
    const page = await signedIn();
    await page.goto(`${server.url}/#devices`);
    await server.api("POST", "/api/devices/gate-1/config", { registrationMode: true });
    const reader = await tab("/console/style.css");
    await reader.evaluate((url) => {
      const w = window as unknown as { reader: WebSocket; seen: string[] };
      w.seen = [];
      w.reader = new WebSocket(url);
      w.reader.onmessage = (event) => w.seen.push(String(event.data));
    }, `${server.url.replace("http", "ws")}/ws/device?deviceId=gate-1`);
    await poll(() => reader.evaluate(() => (window as unknown as { seen: string[] }).seen.join("\n"))).toContain('"config"');
    await poll(() => page.locator("#devices-rows").textContent()).toContain("gate-1");
    await reader.evaluate(() =>
      (window as unknown as { reader: WebSocket }).reader.send(JSON.stringify({ action: "scan", tagId: "TAG42", location: "Main Gate" })),
    );
    await poll(() => page.locator("#devices-feed").textContent()).toContain("TAG42");
    await poll(() => page.locator("#devices-pending").textContent()).toContain("TAG42");
    await page.getByLabel("User id").fill("u-7");
    await page.getByLabel("Name", { exact: true }).fill("Ada");
    await page.getByRole("button", { name: "Assign" }).click();
    await poll(() => page.locator("#devices-result").textContent()).toContain("assigned");
    const tags = await server.api<unknown[]>("GET", "/api/tags");
    expect(JSON.stringify(tags)).toContain("u-7");
    await keep(page, "devices");
  });

  it("kiosk: a registration with its progress, and a simulated tag", async () => {
    const page = await signedIn();
    await page.goto(`${server.url}/#kiosk`);
    await poll(() => page.locator("#kiosk-status").textContent()).toContain("reader");
    await page.getByRole("button", { name: "Start" }).click();
    await poll(() => page.locator("#kiosk-log").textContent()).toContain("waiting for a tag for entry-1");
    await page.getByRole("button", { name: "Present" }).click();
    await poll(() => page.locator("#kiosk-log").textContent()).toContain("registered to entry-1");
    await poll(() => page.locator("#kiosk-progress").evaluate((p) => (p as HTMLProgressElement).value)).toBe(100);
    await keep(page, "kiosk");
  });
});
