// The counter, display and device dashboard clients over a scripted socket.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CounterClient,
  DeviceDashboardClient,
  DisplayClient,
  applyDisplayUpdate,
  counterRpc,
  webSocketUrl,
  type CounterUpdate,
  type DashboardFrame,
  type DisplayState,
} from "../src/index.js";
import { fakeWebSockets } from "./fake-websocket.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const metadata = { id: 1, name: "c", value: 2, createdAt: "t", updatedAt: "t", operationCount: 2 };

describe("webSocketUrl", () => {
  it("maps http(s) to ws(s) and keeps ws(s)", () => {
    expect(webSocketUrl("http://h:1", "/ws/counter/a")).toBe("ws://h:1/ws/counter/a");
    expect(webSocketUrl("https://h/", "/x")).toBe("wss://h/x");
    expect(webSocketUrl("ws://h", "/x?token=1")).toBe("ws://h/x?token=1");
  });
});

describe("CounterClient", () => {
  it("opens /ws/counter/{name} and reports every update", () => {
    const fakes = fakeWebSockets();
    const counter = new CounterClient("my counter", { url: "http://s", WebSocket: fakes.WebSocket });
    const updates: CounterUpdate[] = [];
    counter.on("update", (u) => updates.push(u));
    expect(fakes.last().url).toBe("ws://s/ws/counter/my%20counter");
    fakes.last().open();
    const update = { type: "increment", value: 2, previousValue: 1, metadata, timestamp: "t" };
    fakes.last().receive(update);
    fakes.last().receive({ type: "pong", timestamp: "t" });
    expect(updates).toEqual([update]);
  });

  it("runs operations over the socket, queued in order while offline", async () => {
    const fakes = fakeWebSockets();
    const counter = new CounterClient("c", { url: "http://s", WebSocket: fakes.WebSocket });
    const first = counter.setValue(10);
    const second = counter.increment(5);
    fakes.last().open();
    expect(fakes.last().frames()).toEqual([
      { type: "setValue", value: 10, id: "op1" },
      { type: "increment", amount: 5, id: "op2" },
    ]);
    fakes.last().receive({ type: "result", id: "op2", value: 15, previousValue: 10, metadata });
    fakes.last().receive({ type: "error", id: "op1", message: "nope" });
    await expect(second).resolves.toMatchObject({ value: 15 });
    await expect(first).rejects.toThrow("nope");
  });

  it("fails an operation that gets no result in time", async () => {
    const fakes = fakeWebSockets();
    const counter = new CounterClient("c", { url: "http://s", WebSocket: fakes.WebSocket, operationTimeout: 100 });
    const op = counter.reset();
    const assertion = expect(op).rejects.toThrow(/no result for reset/);
    await vi.advanceTimersByTimeAsync(100);
    await assertion;
  });

  it("pings with the counter protocol's own frame", () => {
    const fakes = fakeWebSockets();
    new CounterClient("c", { url: "http://s", WebSocket: fakes.WebSocket, heartbeat: { interval: 50 } });
    fakes.last().open();
    vi.advanceTimersByTime(50);
    expect(fakes.last().frames()).toEqual([{ type: "ping" }]);
  });
});

describe("counterRpc", () => {
  it("posts to /rpc/counter.<op> and turns an error body into an Error", async () => {
    const calls: Array<[string, RequestInit | undefined]> = [];
    const answers = [
      new Response(JSON.stringify({ value: 3, previousValue: 2, metadata }), { status: 200 }),
      new Response(JSON.stringify({ error: "would overflow" }), { status: 400 }),
    ];
    const rpc = counterRpc("http://s", async (input, init) => {
      calls.push([String(input), init]);
      return answers.shift() as Response;
    });
    await expect(rpc.increment("c", 1)).resolves.toMatchObject({ value: 3 });
    await expect(rpc.setValue("c", 1)).rejects.toThrow("would overflow");
    expect(calls.map(([url, init]) => [url, init?.body])).toEqual([
      ["http://s/rpc/counter.increment", '{"name":"c","amount":1}'],
      ["http://s/rpc/counter.setValue", '{"name":"c","value":1}'],
    ]);
  });
});

describe("DisplayClient", () => {
  const empty: DisplayState = {
    sessionId: "t7",
    tenantId: "org",
    currentOrder: null,
    transcriptions: [],
    displayUpdates: [],
    startedAt: 1,
  };

  it("applies updates by the server's rules", () => {
    let state = applyDisplayUpdate(empty, { type: "transcription", text: "hi" });
    state = applyDisplayUpdate(state, { type: "order_summary", items: [] });
    state = applyDisplayUpdate(state, { type: "dish_card" });
    expect(state.transcriptions).toEqual([{ type: "transcription", text: "hi" }]);
    expect(state.currentOrder).toEqual({ type: "order_summary", items: [] });
    expect(state.displayUpdates).toEqual([{ type: "dish_card" }]);
    const capped = [1, 2, 3].reduce((s, n) => applyDisplayUpdate(s, { type: "menu", n }, 2), empty);
    expect(capped.displayUpdates).toEqual([{ type: "menu", n: 2 }, { type: "menu", n: 3 }]);
  });

  it("keeps the state current, and takes the whole state again after a reconnect", () => {
    const fakes = fakeWebSockets();
    const display = new DisplayClient("t7", { url: "http://s", WebSocket: fakes.WebSocket, random: () => 0 });
    const states: DisplayState[] = [];
    display.on("state_change", (s) => states.push(s));
    expect(fakes.last().url).toBe("ws://s/session/t7/display");
    fakes.last().open();
    fakes.last().receive({ type: "initial_state", state: empty, timestamp: 1 });
    fakes.last().receive({ type: "update", update: { type: "transcription", text: "a" }, timestamp: 2 });
    expect(display.sessionState?.transcriptions).toEqual([{ type: "transcription", text: "a" }]);
    fakes.last().serverClose();
    vi.advanceTimersByTime(0);
    fakes.last().open();
    const fresh = { ...empty, transcriptions: [{ type: "transcription", text: "a" }, { type: "transcription", text: "b" }] };
    fakes.last().receive({ type: "initial_state", state: fresh, timestamp: 3 });
    expect(display.sessionState).toEqual(fresh);
    expect(states.length).toBe(3);
  });
});

describe("DeviceDashboardClient", () => {
  it("passes the key as ?token= and tracks device status", async () => {
    const fakes = fakeWebSockets();
    const dashboard = new DeviceDashboardClient("k&y", { url: "http://s", WebSocket: fakes.WebSocket });
    const frames: DashboardFrame[] = [];
    dashboard.on("frame", (f) => frames.push(f));
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.last().url).toBe("ws://s/ws/dashboard?token=k%26y");
    fakes.last().open();
    fakes.last().receive({ type: "device_status", deviceId: "d1", status: "online", lastSeen: 5 });
    fakes.last().receive({ type: "scan", scan: { id: "s1", deviceId: "d1", tagId: "T", location: "L", timestamp: 6, status: "known" }, user: null });
    fakes.last().receive({ type: "tag_pending_registration", deviceId: "d1", tagId: "T2" });
    fakes.last().receive({ type: "something_else" });
    expect(frames.map((f) => f.type)).toEqual(["device_status", "scan", "tag_pending_registration"]);
    expect(dashboard.devices.get("d1")).toEqual({ deviceId: "d1", status: "online", lastSeen: 5 });
  });
});
