// The whole registration flow of PROTOCOLS.md §4, in order, over each transport the seed's
// page may use: websocket only, polling only, and polling upgraded to websocket; and with
// socket.io-client 3 as well as 4.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { io as io3 } from "socket.io-client-v3";
import { Client, data, simulate, startServer } from "./harness.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(() => server.close());

const ways = [
  { name: "websocket only", options: { transports: ["websocket"] }, transport: "websocket" },
  { name: "polling only", options: { transports: ["polling"] }, transport: "polling" },
  { name: "polling, then the upgrade", options: {}, transport: "websocket", upgrade: true },
  { name: "socket.io-client 3, polling then upgrade", options: {}, transport: "websocket", upgrade: true, io: io3 },
];

ways.forEach((way, i) => {
  test(`registration flow: ${way.name}`, async () => {
    const client = new Client(server.url, way.options, way.io);
    // The manager opens its engine at once; the upgrade is a later event of that engine.
    const upgraded = way.upgrade
      ? new Promise((resolve) => client.socket.io.engine.once("upgrade", resolve))
      : Promise.resolve();
    await client.connected();
    const status = data("status", await client.next("status"));
    assert.equal(status.registration, null);
    assert.deepEqual(Object.keys(status).slice(0, 3), ["reader", "registration", "led"]);
    await upgraded;
    assert.equal(client.socket.io.engine.transport.name, way.transport);

    const entry = 100 + i;
    const uid = `04:AA:00:0${i}:2C:65:80`;
    client.send("register_tag_start", { entry_id: entry, timeout: 30 });
    assert.deepEqual(data("awaiting_tag", await client.next("awaiting_tag")), { entry_id: entry, timeout: 30 });
    assert.equal(data("status", await client.next("status")).registration.entry_id, entry);

    assert.deepEqual(await simulate(server.url, uid.toLowerCase().replaceAll(":", "")), {
      status: 200,
      body: { accepted: true },
    });
    let last = 0;
    for (;;) {
      const event = client.events[client.cursor];
      if (event && event.type !== "tag_write_progress") break;
      const step = data("tag_write_progress", await client.next("tag_write_progress"));
      assert.equal(step.entry_id, entry);
      assert.ok(step.progress > last && step.progress <= 100, `progress ${step.progress} after ${last}`);
      last = step.progress;
    }
    assert.equal(last, 100, "progress ends at 100");
    assert.deepEqual(data("tag_registered", await client.next("tag_registered")), { entry_id: entry, tag_uid: uid });
    const done = data("status", await client.next("status"));
    assert.equal(done.registration, null);

    // The tag now scans as registered to its entry.
    client.skip();
    const other = `04:BB:00:0${i}:2C:65:80`;
    await simulate(server.url, other);
    assert.deepEqual(data("nfc_tag_scanned", await client.nextOf("nfc_tag_scanned")), { tag_uid: other, registered: false });
    client.close();
  });
});
