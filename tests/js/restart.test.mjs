// A restart in the middle of a registration (PROTOCOLS.md §4): the registration belongs to the
// kiosk and is stored, so after the server comes back the page's socket.io-client reconnects
// by itself, gets `status` first, showing the registration still waiting, and the next tag
// completes it. Registrations made before the crash are still there.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Client, data, simulate, startServer } from "./harness.mjs";

for (const signal of ["SIGTERM", "SIGKILL"]) {
  test(`a registration survives a restart (${signal}); the reconnected page gets status first`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchboard-kiosk-restart-"));
    let server = await startServer({ dataDir: dir });
    // The seed's hook: reconnection on, the default transports.
    const page = new Client(server.url, { reconnection: true, reconnectionDelay: 100, reconnectionAttempts: 50 });
    await page.connected();
    await page.next("status");

    const [before, after] = ["04:40:00:00:00:00:01", "04:40:00:00:00:00:02"];
    page.send("register_tag_start", { entry_id: "old" });
    await page.next("awaiting_tag");
    await simulate(server.url, before);
    await page.nextOf("tag_registered");

    page.send("register_tag_start", { entry_id: "mid", timeout: 600 });
    await page.nextOf("awaiting_tag");
    await server.stop(signal);
    await page.until(() => (page.socket.connected ? undefined : true), "the page to see the server go");
    // A server shutting down closes the transport, so the client reconnects; a Socket.IO
    // disconnect ("io server disconnect") would have told it not to.
    assert.ok(["transport close", "transport error"].includes(page.lastDisconnect), page.lastDisconnect);

    server = await startServer({ dataDir: dir, port: server.port });
    await page.until(() => (page.connections === 2 ? true : undefined), "the page to reconnect");
    // The first event of the new connection (it may not have come yet).
    const first = page.events.findIndex((e) => e.connection === 2);
    page.cursor = first === -1 ? page.events.length : first;
    const status = data("status", await page.next("status"));
    assert.equal(status.registration.entry_id, "mid");
    assert.equal(status.registered_tags, 1);

    await simulate(server.url, after);
    assert.deepEqual(data("tag_registered", await page.nextOf("tag_registered")), { entry_id: "mid", tag_uid: after });
    await simulate(server.url, before);
    assert.deepEqual(data("nfc_tag_scanned", await page.nextOf("nfc_tag_scanned")), {
      tag_uid: before,
      registered: true,
      entry_id: "old",
    });
    page.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
}
