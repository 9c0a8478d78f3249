// ReconnectingSocket against a scripted WebSocket, on fake timers: every delay and timeout is
// stepped through exactly, nothing waits on the wall clock.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CLOSE_CONNECT_TIMEOUT,
  CLOSE_HEARTBEAT_TIMEOUT,
  ReconnectingSocket,
  type SocketEvents,
  type SocketOptions,
} from "../src/index.js";
import { fakeWebSockets } from "./fake-websocket.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function setup(options: Partial<SocketOptions> = {}) {
  const fakes = fakeWebSockets();
  const socket = new ReconnectingSocket({
    url: "ws://server/ws",
    WebSocket: fakes.WebSocket,
    random: () => 0.5,
    backoff: { minDelay: 1000, maxDelay: 8000 },
    ...options,
  });
  const log: Array<[keyof SocketEvents, unknown]> = [];
  for (const type of ["open", "message", "close", "reconnecting", "state", "drop"] as const) {
    socket.on(type, (payload) => log.push([type, payload]));
  }
  const of = <K extends keyof SocketEvents>(type: K) =>
    log.filter(([t]) => t === type).map(([, p]) => p as SocketEvents[K]);
  return { socket, fakes, log, of };
}

describe("ReconnectingSocket", () => {
  it("connects and passes messages both ways, like a WebSocket", () => {
    const { socket, fakes, of } = setup();
    expect(socket.readyState).toBe(ReconnectingSocket.CONNECTING);
    fakes.last().open();
    expect(socket.readyState).toBe(ReconnectingSocket.OPEN);
    socket.send("hello");
    fakes.last().receive("world");
    expect(fakes.last().sent).toEqual(["hello"]);
    expect(of("message")).toEqual([{ data: "world" }]);
    expect(of("state")).toEqual(["open"]);
  });

  it("queues while disconnected and drains in order before anything else", () => {
    const { socket, fakes } = setup();
    socket.send("a");
    socket.send("b");
    expect(socket.queued).toBe(2);
    fakes.last().open();
    expect(fakes.last().sent).toEqual(["a", "b"]);
    expect(socket.queued).toBe(0);
    fakes.last().serverClose();
    socket.send("c");
    vi.advanceTimersByTime(500); // the first delay: 0.5 of 1000
    fakes.last().open();
    expect(fakes.last().sent).toEqual(["c"]);
  });

  it("lets open listeners send before the queue drains (resubscribe before queued frames)", () => {
    const { socket, fakes } = setup();
    socket.on("open", () => socket.send("resubscribe"));
    socket.send("queued");
    fakes.last().open();
    expect(fakes.last().sent).toEqual(["resubscribe", "queued"]);
  });

  it("bounds the queue, dropping the oldest and saying so", () => {
    const { socket, fakes, of } = setup({ maxQueuedMessages: 3 });
    ["1", "2", "3", "4", "5"].forEach((m) => socket.send(m));
    expect(socket.queued).toBe(3);
    expect(of("drop")).toEqual([{ data: "1" }, { data: "2" }]);
    fakes.last().open();
    expect(fakes.last().sent).toEqual(["3", "4", "5"]);
  });

  it("reconnects after exactly the jittered backoff, growing per failed attempt", () => {
    const { fakes, of } = setup();
    fakes.last().open();
    fakes.last().serverClose(1012, "server restarting");
    expect(of("close")).toEqual([{ code: 1012, reason: "server restarting", wasClean: false, willReconnect: true }]);
    const expected = [500, 1000, 2000, 4000, 4000]; // 0.5 × min(8000, 1000·2^n)
    for (const [n, delay] of expected.entries()) {
      expect(of("reconnecting")[n]).toEqual({ attempt: n + 1, delay });
      const before = fakes.sockets.length;
      vi.advanceTimersByTime(delay - 1);
      expect(fakes.sockets.length).toBe(before);
      vi.advanceTimersByTime(1);
      expect(fakes.sockets.length).toBe(before + 1);
      fakes.last().serverClose(); // refused again
    }
  });

  it("resets the backoff only after a connection that lasted minUptime", () => {
    const { fakes, of } = setup({ minUptime: 5000 });
    fakes.last().open();
    fakes.last().serverClose();
    vi.advanceTimersByTime(500);
    fakes.last().open();
    vi.advanceTimersByTime(100); // dropped right away: the backoff keeps growing
    fakes.last().serverClose();
    expect(of("reconnecting").map((r) => r.delay)).toEqual([500, 1000]);
    vi.advanceTimersByTime(1000);
    fakes.last().open();
    vi.advanceTimersByTime(5000); // a healthy connection: back to the first delay
    fakes.last().serverClose();
    expect(of("reconnecting").map((r) => r.delay)).toEqual([500, 1000, 500]);
  });

  it("abandons a handshake that does not finish within connectionTimeout", () => {
    const { fakes, of } = setup({ connectionTimeout: 3000 });
    const hung = fakes.last();
    vi.advanceTimersByTime(2999);
    expect(of("close")).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(hung.closedBy).toBeDefined();
    expect(of("close")).toEqual([{ code: CLOSE_CONNECT_TIMEOUT, reason: "connection timeout", wasClean: false, willReconnect: true }]);
    // A late open of the abandoned socket changes nothing.
    hung.open();
    expect(of("open")).toEqual([]);
    vi.advanceTimersByTime(500);
    expect(fakes.sockets.length).toBe(2);
  });

  it("asks the URL provider before every attempt (token refresh)", async () => {
    let n = 0;
    const { fakes } = setup({ url: async () => `ws://server/ws?token=t${++n}` });
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.last().url).toBe("ws://server/ws?token=t1");
    fakes.last().open();
    fakes.last().serverClose();
    await vi.advanceTimersByTimeAsync(500);
    expect(fakes.last().url).toBe("ws://server/ws?token=t2");
  });

  it("treats a failing URL provider as a failed attempt and retries", async () => {
    let calls = 0;
    const { fakes, of } = setup({
      url: async () => {
        if (++calls === 1) throw new Error("token service down");
        return "ws://server/ws";
      },
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.sockets.length).toBe(0);
    expect(of("reconnecting")).toEqual([{ attempt: 1, delay: 500 }]);
    await vi.advanceTimersByTimeAsync(500);
    expect(fakes.sockets.length).toBe(1);
  });

  it("gives up on a URL provider that hangs, and ignores its late answer", async () => {
    let release: (url: string) => void = () => {};
    let calls = 0;
    const { fakes, of } = setup({
      connectionTimeout: 1000,
      url: () => (++calls === 1 ? new Promise<string>((r) => (release = r)) : "ws://server/ws"),
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(of("close")[0]?.code).toBe(CLOSE_CONNECT_TIMEOUT);
    await vi.advanceTimersByTimeAsync(500);
    expect(fakes.sockets.map((s) => s.url)).toEqual(["ws://server/ws"]);
    release("ws://stale");
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.sockets.length).toBe(1);
  });

  describe("heartbeat", () => {
    const heartbeat = { message: "ping", isPong: (d: string) => d === "pong", interval: 1000, timeout: 500 };

    it("pings after a silence, keeps the connection on any answer, and hides the pong", () => {
      const { fakes, of } = setup({ heartbeat });
      fakes.last().open();
      vi.advanceTimersByTime(999);
      expect(fakes.last().sent).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(fakes.last().sent).toEqual(["ping"]);
      fakes.last().receive("pong");
      vi.advanceTimersByTime(1000);
      expect(fakes.last().sent).toEqual(["ping", "ping"]);
      fakes.last().receive("an event"); // any frame proves the connection alive
      vi.advanceTimersByTime(999);
      expect(fakes.last().sent).toEqual(["ping", "ping"]);
      expect(of("message")).toEqual([{ data: "an event" }]);
      expect(of("close")).toEqual([]);
    });

    it("declares a silent connection dead and reconnects without waiting for its close", () => {
      const { fakes, of } = setup({ heartbeat });
      const dead = fakes.last();
      dead.open();
      vi.advanceTimersByTime(1000 + 499);
      expect(of("close")).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(dead.closedBy).toBeDefined();
      expect(of("close")).toEqual([{ code: CLOSE_HEARTBEAT_TIMEOUT, reason: "heartbeat timeout", wasClean: false, willReconnect: true }]);
      vi.advanceTimersByTime(500);
      expect(fakes.sockets.length).toBe(2);
      dead.serverClose(); // its real close, minutes later: ignored
      expect(of("close").length).toBe(1);
    });
  });

  it("close() stops for good, and reconnect() starts again at once", () => {
    const { socket, fakes, of } = setup();
    fakes.last().open();
    socket.close();
    expect(socket.readyState).toBe(ReconnectingSocket.CLOSED);
    expect(of("close")).toEqual([{ code: 1000, reason: "", wasClean: true, willReconnect: false }]);
    vi.advanceTimersByTime(60_000);
    expect(fakes.sockets.length).toBe(1);
    socket.send("later"); // queued for whenever it comes back
    socket.reconnect();
    expect(fakes.sockets.length).toBe(2);
    fakes.last().open();
    expect(fakes.last().sent).toEqual(["later"]);
  });

  it("stops after maxRetries consecutive failures", () => {
    const { fakes, of, socket } = setup({ maxRetries: 2 });
    fakes.last().serverClose();
    vi.advanceTimersByTime(500);
    fakes.last().serverClose();
    vi.advanceTimersByTime(1000);
    fakes.last().serverClose();
    expect(of("close").map((c) => c.willReconnect)).toEqual([true, true, false]);
    expect(socket.state).toBe("closed");
    vi.advanceTimersByTime(60_000);
    expect(fakes.sockets.length).toBe(3);
  });

  it("asks shouldReconnect about each unasked-for close", () => {
    const { fakes, socket } = setup({ shouldReconnect: (c) => c.code !== 4001 });
    fakes.last().open();
    fakes.last().serverClose(4001, "unauthorized", true);
    expect(socket.state).toBe("closed");
  });

  it("tries at once when the browser says the network is back", () => {
    const network = new EventTarget();
    const { fakes, socket } = setup({ network, backoff: { minDelay: 60_000, maxDelay: 60_000 } });
    fakes.last().open();
    fakes.last().serverClose();
    expect(fakes.sockets.length).toBe(1); // waiting out 30 s
    network.dispatchEvent(new Event("online"));
    expect(fakes.sockets.length).toBe(2);
    network.dispatchEvent(new Event("online")); // mid-attempt: no second attempt
    expect(fakes.sockets.length).toBe(2);
    socket.close();
    network.dispatchEvent(new Event("online")); // closed: stays closed
    expect(fakes.sockets.length).toBe(2);
  });

  it("refuses to start without a WebSocket implementation", () => {
    vi.stubGlobal("WebSocket", undefined); // Node 22 and browsers have one
    expect(() => new ReconnectingSocket({ url: "ws://x", WebSocket: undefined, network: null })).toThrow(
      /no WebSocket implementation/,
    );
  });
});
