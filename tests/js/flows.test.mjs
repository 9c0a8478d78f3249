// The kiosk's other flows (PROTOCOLS.md §4): cancel, timeout, a tag already in use, the
// debounce, scans broadcast to every client, LED state, bad payloads, the simulate endpoint's
// answers, and the origin policy.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Client, SECRET, data, simulate, startServer } from "./harness.mjs";

// One server as configured by default, and one without a debounce, where a test may present
// the same tag twice in a row without waiting for its window to pass.
let server;
let eager;
before(async () => {
  [server, eager] = await Promise.all([
    startServer({ sets: ["cors_origins=http://kiosk.test"] }),
    startServer({ sets: ["kiosk_debounce_ms=0"] }),
  ]);
});
after(() => Promise.all([server.close(), eager.close()]));

/// A connected client of `on` that has taken its first `status`.
async function client(on = server, options = {}) {
  const c = new Client(on.url, options);
  await c.connected();
  data("status", await c.next("status"));
  return c;
}

// The tests of a file run one after another, so each one's kiosk state is the previous one's.

test("cancel ends the registration, answered to the socket that asked", async () => {
  const c = await client();
  c.send("register_tag_start", { entry_id: "cancel-me" });
  assert.deepEqual(data("awaiting_tag", await c.next("awaiting_tag")), { entry_id: "cancel-me", timeout: 30 });
  await c.next("status");
  c.send("register_tag_cancel", {});
  assert.deepEqual(data("registration_cancelled", await c.next("registration_cancelled")), { entry_id: "cancel-me" });
  assert.equal(data("status", await c.next("status")).registration, null);
  // Nothing to cancel now: an error in the protocol's shape.
  c.send("register_tag_cancel", {});
  assert.equal(data("error", await c.next("error")).code, "no_registration");
  c.close();
});

test("a registration times out after its timeout", async () => {
  const c = await client();
  c.send("register_tag_start", { entry_id: 7, timeout: 1 });
  assert.deepEqual(data("awaiting_tag", await c.next("awaiting_tag")), { entry_id: 7, timeout: 1 });
  await c.next("status");
  assert.deepEqual(data("registration_timeout", await c.next("registration_timeout")), { entry_id: 7 });
  assert.equal(data("status", await c.next("status")).registration, null);
  c.close();
});

test("a tag registered to another entry is tag_in_use, and the registration keeps waiting", async () => {
  const c = await client(eager);
  const [taken, free] = ["04:10:00:00:00:00:01", "04:10:00:00:00:00:02"];
  c.send("register_tag_start", { entry_id: 1 });
  await c.next("awaiting_tag");
  assert.equal((await simulate(eager.url, taken)).body.accepted, true);
  assert.deepEqual(data("tag_registered", await c.nextOf("tag_registered")), { entry_id: 1, tag_uid: taken });

  c.send("register_tag_start", { entry_id: 2 });
  await c.nextOf("awaiting_tag");
  await c.next("status");
  await simulate(eager.url, taken);
  const error = data("error", await c.next("error"));
  assert.equal(error.code, "tag_in_use");
  assert.match(error.message, /registered to entry 1/);
  // Still waiting: the next free tag registers.
  await simulate(eager.url, free);
  assert.deepEqual(data("tag_registered", await c.nextOf("tag_registered")), { entry_id: 2, tag_uid: free });
  // Nothing was overwritten: the first tag still belongs to entry 1.
  c.skip();
  await simulate(eager.url, taken);
  assert.deepEqual(data("nfc_tag_scanned", await c.nextOf("nfc_tag_scanned")), {
    tag_uid: taken,
    registered: true,
    entry_id: 1,
  });
  c.close();
});

test("the same uid within the debounce window is one scan; other uids are not held back", async () => {
  const c = await client();
  const [a, b] = ["04:20:00:00:00:00:0A", "04:20:00:00:00:00:0B"];
  assert.deepEqual(await simulate(server.url, a), { status: 200, body: { accepted: true } });
  assert.deepEqual(await simulate(server.url, a), { status: 200, body: { accepted: false, reason: "debounced" } });
  assert.deepEqual(await simulate(server.url, b), { status: 200, body: { accepted: true } });
  assert.deepEqual(await simulate(server.url, a), { status: 200, body: { accepted: false, reason: "debounced" } });
  assert.equal(data("nfc_tag_scanned", await c.next("nfc_tag_scanned")).tag_uid, a);
  assert.equal(data("nfc_tag_scanned", await c.next("nfc_tag_scanned")).tag_uid, b);
  // The debounced presentations sent nothing: the next event is the answer to this.
  c.send("get_status", {});
  await c.next("status");
  c.close();
});

test("a scan and an LED change reach every client, over either transport", async () => {
  const one = await client(server, { transports: ["websocket"] });
  const two = await client(server, { transports: ["polling"] });
  // Each session was adopted by the host before its first status: both are counted.
  const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${SECRET}` } })).text();
  const open = Number(metrics.match(/switchboard_adopted_connections_open\{protocol="socket.io"\} (\d+)/)?.[1]);
  assert.ok(open >= 2, `adopted Socket.IO sessions counted: ${open}`);
  const uid = "04:30:00:00:00:00:01";
  await simulate(server.url, uid);
  for (const c of [one, two]) {
    assert.deepEqual(data("nfc_tag_scanned", await c.next("nfc_tag_scanned")), { tag_uid: uid, registered: false });
  }
  one.send("led_set", { pattern: "solid", color: "#ff8800" });
  for (const c of [one, two]) {
    assert.deepEqual(data("led_state", await c.next("led_state")), { pattern: "solid", color: "#FF8800" });
  }
  // The (mock) strip was given the colour.
  const leds = await fetch(`${server.url}/api/nfc/led`, { headers: { authorization: `Bearer ${SECRET}` } });
  const shown = (await leds.json()).frames.at(-1);
  assert.equal(shown.pattern, "solid");
  assert.ok(shown.pixels.every((p) => p === "#FF8800"));
  one.send("led_set", { pattern: "off" });
  assert.deepEqual(data("led_state", await two.next("led_state")), { pattern: "off", color: "#000000" });
  one.close();
  two.close();
});

test("bad payloads get an error event and lose nothing; the socket stays", async () => {
  const c = await client();
  const bad = [
    ["register_tag_start", "nope"],
    ["register_tag_start", { data: {} }],
    ["register_tag_start", { data: { entry_id: true } }],
    ["register_tag_start", { data: { entry_id: 1, timeout: -5 } }],
    ["register_tag_start", { data: { entry_id: 1, timeout: 1.5 } }],
    ["register_tag_start", { data: [1, 2] }],
    ["led_set", { data: { pattern: "disco" } }],
    ["led_set", { data: { pattern: "solid", color: "orange" } }],
    ["get_status", 42],
  ];
  for (const [event, payload] of bad) {
    c.socket.emit(event, payload);
    const error = data("error", await c.next("error"));
    assert.equal(error.code, "invalid_payload", `${event} ${JSON.stringify(payload)}`);
    assert.ok(error.message.startsWith(event), error.message);
  }
  c.socket.emit("dance", {});
  assert.equal(data("error", await c.next("error")).code, "unknown_event");
  // A binary payload is refused the same way.
  c.socket.emit("led_set", new Uint8Array([1, 2, 3]));
  assert.equal(data("error", await c.next("error")).code, "invalid_payload");
  assert.ok(c.socket.connected);
  // Nothing changed: no registration started. (An event without data may come without an
  // argument at all.)
  c.socket.emit("get_status");
  const status = data("status", await c.next("status"));
  assert.equal(status.registration, null);
  c.close();
});

test("POST /api/nfc/simulate answers errors as {error} with their status", async () => {
  const cases = [
    [{ auth: null }, 401],
    [{ auth: "Bearer wrong" }, 401],
    [{ body: "{oops" }, 400],
    [{ body: JSON.stringify({ tag: "x" }) }, 400],
  ];
  for (const [options, status] of cases) {
    const answer = await simulate(server.url, "04:11:22:33", options);
    assert.equal(answer.status, status, JSON.stringify(options));
    assert.equal(typeof answer.body.error, "string");
  }
  const answer = await simulate(server.url, "not-a-uid");
  assert.equal(answer.status, 400);
  assert.match(answer.body.error, /4 to 10 bytes of hex/);
});

test("pages of other origins cannot open a session; listed ones can", async () => {
  for (const transports of [["polling"], ["websocket"]]) {
    const refused = new Client(server.url, { transports, reconnection: false, extraHeaders: { origin: "http://evil.test" } });
    await refused.until(() => refused.lastError, "the refusal");
    assert.equal(refused.connections, 0);
    refused.close();
    const listed = await client(server, { transports, extraHeaders: { origin: "http://kiosk.test" } });
    listed.close();
  }
});
