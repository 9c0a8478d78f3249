// The rooms client over a scripted socket: resubscribe with positions after a reconnect, the
// missed events delivered once and in order, the failures of recovery told to the app.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RoomsClient, type RoomEvent, type RoomsEvents } from "../src/index.js";
import { fakeWebSockets } from "./fake-websocket.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const event = (room: string, offset: number, n: number, epoch = "E1"): RoomEvent => ({
  type: "order:status_changed",
  data: { n },
  timestamp: "2026-12-04T19:30:00.000Z",
  room,
  offset,
  epoch,
});

async function setup(token: string | (() => Promise<string>) = "T") {
  const fakes = fakeWebSockets();
  const client = new RoomsClient(token, { url: "http://server:1", WebSocket: fakes.WebSocket, random: () => 0 });
  const seen: RoomsEvents[keyof RoomsEvents][] = [];
  const log = <K extends keyof RoomsEvents>(type: K) => {
    const list: RoomsEvents[K][] = [];
    client.on(type, (payload) => list.push(payload));
    return list;
  };
  const events = log("event");
  const reloads = log("reload");
  const recovered = log("recovered");
  await vi.advanceTimersByTimeAsync(0); // the URL is built asynchronously (token provider)
  return { client, fakes, events, reloads, recovered, seen };
}

/** Cuts the connection and lets the client come back (the backoff is 0 with random 0). */
async function cut(fakes: ReturnType<typeof fakeWebSockets>) {
  fakes.last().serverClose(1000, "", true);
  await vi.advanceTimersByTimeAsync(0);
  fakes.last().open();
}

describe("RoomsClient", () => {
  it("connects to /ws with the token", async () => {
    const { fakes } = await setup("a b");
    expect(fakes.last().url).toBe("ws://server:1/ws?token=a%20b");
  });

  it("asks the token provider again on every reconnect", async () => {
    let n = 0;
    const { fakes } = await setup(async () => `tok${++n}`);
    fakes.last().open();
    await cut(fakes);
    expect(fakes.sockets.map((s) => s.url)).toEqual(["ws://server:1/ws?token=tok1", "ws://server:1/ws?token=tok2"]);
  });

  it("resubscribes every room with its last offset and epoch, and delivers the missed events once, in order", async () => {
    const { client, fakes, events, recovered } = await setup();
    fakes.last().open();
    const reply = client.subscribeToOrder("7");
    expect(fakes.last().frames()).toEqual([{ action: "subscribe", data: { room: "order:7" } }]);
    fakes.last().receive({ action: "subscribe", success: true, room: "order:7" });
    await expect(reply).resolves.toMatchObject({ success: true });
    fakes.last().receive(event("order:7", 1, 1));
    fakes.last().receive(event("branch:b1", 10, 2)); // a room the server put it in
    fakes.last().receive(event("order:7", 2, 3));

    await cut(fakes);
    expect(fakes.last().frames()).toEqual([
      { action: "subscribe", data: { room: "order:7", offset: 2, epoch: "E1" } },
      { action: "subscribe", data: { room: "branch:b1", offset: 10, epoch: "E1" } },
    ]);
    fakes.last().receive({ action: "subscribe", success: true, room: "order:7", recovered: true, missed: 2 });
    fakes.last().receive(event("order:7", 3, 4));
    fakes.last().receive(event("order:7", 4, 5));
    fakes.last().receive({ action: "subscribe", success: true, room: "branch:b1", recovered: true, missed: 0 });
    // The same event again (a second recovery overlapping): dropped.
    fakes.last().receive(event("order:7", 4, 5));
    fakes.last().receive(event("order:7", 5, 6));
    expect(events.map((e) => (e.data as { n: number }).n)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(recovered).toEqual([
      { room: "order:7", missed: 2 },
      { room: "branch:b1", missed: 0 },
    ]);
  });

  it("subscribes offline rooms once connected, without queueing a duplicate", async () => {
    const { client, fakes } = await setup();
    const reply = client.subscribe("order:1");
    fakes.last().open();
    expect(fakes.last().frames()).toEqual([{ action: "subscribe", data: { room: "order:1" } }]);
    fakes.last().receive({ action: "subscribe", success: true, room: "order:1" });
    await expect(reply).resolves.toMatchObject({ room: "order:1", success: true });
  });

  it("tells the app to reload a room that could not be recovered, then goes on from the next event", async () => {
    const { fakes, events, reloads, client } = await setup();
    fakes.last().open();
    fakes.last().receive(event("branch:b1", 3, 1));
    await cut(fakes);
    // An event of the auto-joined room slips in before the answer: held, not delivered early.
    fakes.last().receive(event("branch:b1", 9, 2, "E2"));
    expect(events.length).toBe(1);
    fakes.last().receive({ action: "subscribe", success: true, room: "branch:b1", recovered: false, missed: 0 });
    expect(reloads).toEqual([{ room: "branch:b1", reason: "not-recovered" }]);
    expect(events.map((e) => (e.data as { n: number }).n)).toEqual([1, 2]);
    expect(client.position("branch:b1")).toEqual({ offset: 9, epoch: "E2" });
  });

  it("reports a gap it notices in live delivery", async () => {
    const { fakes, events, reloads } = await setup();
    fakes.last().open();
    fakes.last().receive(event("order:1", 1, 1));
    fakes.last().receive(event("order:1", 3, 2));
    expect(events.length).toBe(2);
    expect(reloads).toEqual([{ room: "order:1", reason: "gap" }]);
  });

  it("drops a denied room from what it resubscribes", async () => {
    const { client, fakes } = await setup();
    fakes.last().open();
    const reply = client.subscribe("branch:other");
    fakes.last().receive({ action: "subscribe", success: false, room: "branch:other", error: "denied" });
    await expect(reply).resolves.toMatchObject({ success: false });
    expect(client.rooms).toEqual([]);
  });

  it("unsubscribe forgets the room", async () => {
    const { client, fakes } = await setup();
    fakes.last().open();
    fakes.last().receive(event("order:5", 1, 1));
    const reply = client.unsubscribe("order:5");
    expect(fakes.last().frames()).toEqual([{ action: "unsubscribe", data: { room: "order:5" } }]);
    fakes.last().receive({ action: "unsubscribe", success: true, room: "order:5" });
    await expect(reply).resolves.toMatchObject({ success: true });
    await cut(fakes);
    expect(fakes.last().frames()).toEqual([]);
  });

  it("answers requests, fails those in flight on a close, and sends the offline ones after reconnecting", async () => {
    const { client, fakes } = await setup();
    fakes.last().open();
    const rooms = client.getRooms();
    fakes.last().receive({ action: "getRooms", rooms: ["branch:b1"], count: 1 });
    await expect(rooms).resolves.toEqual({ action: "getRooms", rooms: ["branch:b1"], count: 1 });

    const inFlight = client.getStatus();
    fakes.last().serverClose();
    await expect(inFlight).rejects.toThrow(/closed before the reply to getStatus/);

    const offline = client.getStatus();
    await vi.advanceTimersByTimeAsync(0);
    fakes.last().open();
    expect(fakes.last().frames()).toEqual([{ action: "getStatus" }]);
    fakes.last().receive({ action: "getStatus", connectionId: "c2", rooms: [] });
    await expect(offline).resolves.toMatchObject({ connectionId: "c2" });
  });

  it("rejects a request on an error reply, and one that gets no answer in time", async () => {
    const { client, fakes } = await setup();
    fakes.last().open();
    const bad = client.request("frobnicate");
    fakes.last().receive({ action: "error", error: "unknown action frobnicate" });
    await expect(bad).rejects.toThrow("unknown action frobnicate");
    const silent = client.getRooms();
    const assertion = expect(silent).rejects.toThrow(/no reply to getRooms within 10000 ms/);
    await vi.advanceTimersByTimeAsync(10_000);
    await assertion;
  });

  it("moves to a fresh connection on the server's lifetime hint", async () => {
    const { fakes, events } = await setup();
    fakes.last().open();
    fakes.last().receive({ type: "reconnect", data: { reason: "lifetime", in: 60000 }, timestamp: "x" });
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.sockets.length).toBe(2);
    expect(fakes.sockets[0]?.closedBy).toBeDefined();
    expect(events).toEqual([]);
  });

  it("answers pings itself: the pong is not an event", async () => {
    const { fakes, events, client } = await setup();
    const replies: unknown[] = [];
    client.on("reply", (r) => replies.push(r));
    fakes.last().open();
    await vi.advanceTimersByTimeAsync(25_000);
    expect(fakes.last().frames()).toEqual([{ action: "ping" }]);
    fakes.last().receive({ action: "pong", timestamp: "x" });
    expect(events).toEqual([]);
    expect(replies).toEqual([]);
  });
});
