// A WebSocket that stays connected: it reconnects with backoff, gives up on a handshake that
// hangs, notices a dead connection with heartbeats, queues what is sent while it is down, and
// asks for its URL (and so a fresh token) before every attempt.

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { BoundedQueue, type OverflowPolicy } from "./queue.js";

/** The URL to connect to, or a function asked for it before every (re)connect: the place to
 * put a token refresh. A provider that throws or rejects counts as a failed attempt. */
export type UrlProvider = string | (() => string | Promise<string>);

/** The part of the browser's `WebSocket` this client uses, so tests can hand it a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Application-level heartbeats: how each Switchboard protocol says ping. */
export interface HeartbeatOptions {
  /** The ping frame. */
  message: string;
  /** Tells the answer apart, so it is not handed to the application as a message. */
  isPong?: (data: string) => boolean;
  /** Silence after which a ping is sent, in ms. Default 25000 (under the usual 30-60 s proxy idle cut). */
  interval?: number;
  /** How long to wait for any frame after a ping before the connection is declared dead, in ms. Default 10000. */
  timeout?: number;
}

export interface SocketOptions {
  url: UrlProvider;
  protocols?: string | string[];
  /** The WebSocket implementation. Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  backoff?: BackoffOptions;
  /** Consecutive failed attempts after which it stops and stays closed. Default Infinity. */
  maxRetries?: number;
  /** An attempt (URL provider and handshake) that has not opened by then is abandoned, in ms. Default 10000. */
  connectionTimeout?: number;
  /** A connection that stayed open this long resets the backoff, in ms; shorter ones keep
   * growing it, so a server that accepts and then drops at once is not hammered. Default 5000. */
  minUptime?: number;
  /** Heartbeats; `false` (the default) sends none. */
  heartbeat?: HeartbeatOptions | false;
  /** Frames kept while disconnected. Default 1000. */
  maxQueuedMessages?: number;
  /** Which frame a full queue drops. Default "drop-oldest". */
  overflow?: OverflowPolicy;
  /** Whether a close the client did not ask for is followed by a reconnect. Default: always. */
  shouldReconnect?: (close: CloseInfo) => boolean;
  /** Source of randomness for the jitter; tests pin it. */
  random?: () => number;
  /** Do not connect until `reconnect()` is called. */
  startClosed?: boolean;
  /** Where the browser says the network is back (`online`): a socket waiting out its backoff
   * then tries at once. Default `window` where there is one; `null` to not listen. */
  network?: NetworkEvents | null;
}

/** The part of `window` that tells when the network comes back. */
export interface NetworkEvents {
  addEventListener(type: "online", listener: () => void): void;
  removeEventListener(type: "online", listener: () => void): void;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface SocketEvents extends Record<string, unknown> {
  open: { attempt: number };
  message: { data: string };
  close: CloseInfo & { willReconnect: boolean };
  error: { error: unknown };
  reconnecting: { attempt: number; delay: number };
  state: ConnectionState;
  /** A frame the full offline queue had to let go. */
  drop: { data: string };
}

/** Close codes the client reports for connections it gave up on itself (the browser allows
 * only 1000 and 3000-4999 in `close()`, and these never travel: the socket is abandoned). */
export const CLOSE_CONNECT_TIMEOUT = 4408;
export const CLOSE_HEARTBEAT_TIMEOUT = 4409;

const OPEN = 1;

type Timer = ReturnType<typeof setTimeout>;

export class ReconnectingSocket extends Emitter<SocketEvents> {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;

  private readonly options: SocketOptions;
  private readonly queue: BoundedQueue<string>;
  private ws: WebSocketLike | undefined;
  private current: ConnectionState = "closed";
  /** Failed attempts since the last connection that lasted `minUptime`. */
  private attempt = 0;
  /** Bumped by every attempt and by `close()`, so a late answer of an old attempt is ignored. */
  private generation = 0;
  private stopped = false;
  private openedAt = 0;
  private everOpened = false;
  private connectTimer: Timer | undefined;
  private reconnectTimer: Timer | undefined;
  private pingTimer: Timer | undefined;
  private pongTimer: Timer | undefined;

  private readonly network: NetworkEvents | null;
  private readonly impl: WebSocketConstructor;

  constructor(options: SocketOptions) {
    super();
    this.options = options;
    const impl = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketConstructor | undefined);
    if (!impl) throw new Error("no WebSocket implementation: pass options.WebSocket");
    this.impl = impl;
    this.queue = new BoundedQueue(options.maxQueuedMessages ?? 1000, options.overflow);
    this.network =
      options.network !== undefined
        ? options.network
        : typeof (globalThis as Partial<NetworkEvents>).addEventListener === "function"
          ? (globalThis as unknown as NetworkEvents)
          : null;
    if (options.startClosed) this.stopped = true;
    else this.start();
  }

  /** The network is back: an attempt now beats waiting out a backoff grown during the outage. */
  private readonly online = () => {
    if (!this.stopped && this.reconnectTimer !== undefined && this.current !== "open") this.reconnect();
  };

  private start(): void {
    this.network?.addEventListener("online", this.online);
    void this.connect();
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** As `WebSocket.readyState`: CONNECTING while (re)connecting, OPEN, or CLOSED once closed. */
  get readyState(): number {
    if (this.current === "open") return ReconnectingSocket.OPEN;
    if (this.current === "closed") return ReconnectingSocket.CLOSED;
    return ReconnectingSocket.CONNECTING;
  }

  /** Frames waiting for the next connection. */
  get queued(): number {
    return this.queue.size;
  }

  /** Sends now when open, otherwise queues for the next connection (in order). */
  send(data: string): void {
    if (this.current === "open" && this.ws?.readyState === OPEN) {
      this.ws.send(data);
      return;
    }
    const { dropped } = this.queue.push(data);
    if (dropped !== undefined) this.emit("drop", { data: dropped });
  }

  /** Closes for good (until `reconnect()`); queued frames stay queued. */
  close(code = 1000, reason = ""): void {
    this.stopped = true;
    this.network?.removeEventListener("online", this.online);
    this.generation++;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws) this.discard(ws, code, reason);
    if (this.current !== "closed") {
      this.emit("close", { code, reason, wasClean: true, willReconnect: false });
      this.setState("closed");
    }
  }

  /** Drops the current connection, if any, and connects again at once (backoff reset). Use it on
   * the browser's `online` event or a server's "reconnect" hint. */
  reconnect(): void {
    if (this.stopped) this.network?.addEventListener("online", this.online);
    this.stopped = false;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      this.discard(ws, 1000, "reconnect");
      if (this.current === "open") {
        this.emit("close", { code: 1000, reason: "reconnect", wasClean: true, willReconnect: true });
      }
    }
    this.attempt = 0;
    void this.connect();
  }

  private setState(next: ConnectionState): void {
    if (next === this.current) return;
    this.current = next;
    this.emit("state", next);
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    // The timeout covers the URL provider too: a token refresh that hangs must not stall the socket.
    this.connectTimer = setTimeout(
      () => this.lost(CLOSE_CONNECT_TIMEOUT, "connection timeout"),
      this.options.connectionTimeout ?? 10_000,
    );
    let url: string;
    try {
      url = typeof this.options.url === "string" ? this.options.url : await this.options.url();
    } catch (error) {
      if (generation !== this.generation) return;
      this.emit("error", { error });
      this.lost(1006, "the URL provider failed");
      return;
    }
    if (generation !== this.generation) return;
    let ws: WebSocketLike;
    try {
      ws = new this.impl(url, this.options.protocols);
    } catch (error) {
      this.emit("error", { error });
      this.lost(1006, "the WebSocket could not be created");
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (event) => this.received(ws, event.data);
    ws.onerror = (event) => this.emit("error", { error: event });
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.lost(event.code, event.reason, event.wasClean);
    };
  }

  private opened(ws: WebSocketLike): void {
    if (this.ws !== ws) return;
    clearTimeout(this.connectTimer);
    this.openedAt = Date.now();
    const attempt = this.attempt;
    this.everOpened = true;
    this.setState("open");
    // Listeners go first (a rooms client resubscribes here, so recovery precedes new frames),
    // then the frames queued while offline, oldest first.
    this.emit("open", { attempt });
    while (this.queue.size > 0 && this.ws === ws && ws.readyState === OPEN) {
      ws.send(this.queue.shift() as string);
    }
    this.armHeartbeat();
  }

  private received(ws: WebSocketLike, raw: unknown): void {
    if (this.ws !== ws) return;
    // Any frame proves the connection alive, not only a pong.
    this.armHeartbeat();
    const data = typeof raw === "string" ? raw : String(raw);
    const heartbeat = this.options.heartbeat;
    if (heartbeat && heartbeat.isPong?.(data)) return;
    this.emit("message", { data });
  }

  private armHeartbeat(): void {
    const heartbeat = this.options.heartbeat;
    if (!heartbeat) return;
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    this.pingTimer = setTimeout(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== OPEN) return;
      ws.send(heartbeat.message);
      this.pongTimer = setTimeout(
        () => this.abandon(ws, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout"),
        heartbeat.timeout ?? 10_000,
      );
    }, heartbeat.interval ?? 25_000);
  }

  /** Gives up on a connection that may never report its own end (a dead peer's TCP close can
   * take minutes), and moves on without waiting for its close event. */
  private abandon(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.lost(code, reason);
  }

  /** The one path after any end of a connection or of an attempt: report, then maybe retry. */
  private lost(code: number, reason: string, wasClean = false): void {
    if (this.ws) this.discard(this.ws);
    const wasOpen = this.current === "open";
    this.clearTimers();
    this.ws = undefined;
    if (wasOpen && Date.now() - this.openedAt >= (this.options.minUptime ?? 5000)) this.attempt = 0;
    const info: CloseInfo = { code, reason, wasClean };
    const willReconnect =
      !this.stopped &&
      this.attempt < (this.options.maxRetries ?? Infinity) &&
      (this.options.shouldReconnect?.(info) ?? true);
    this.emit("close", { ...info, willReconnect });
    if (!willReconnect) {
      this.stopped = true;
      this.network?.removeEventListener("online", this.online);
      this.setState("closed");
      return;
    }
    const delay = backoffDelay(this.attempt, this.options.backoff, this.options.random);
    this.attempt++;
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    this.emit("reconnecting", { attempt: this.attempt, delay });
    const generation = ++this.generation;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (generation === this.generation) void this.connect();
    }, delay);
  }

  /** Stops listening to `ws` and closes it; its own close event will never be heard. */
  private discard(ws: WebSocketLike, code?: number, reason?: string): void {
    this.detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      // It may already be closing.
    }
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  private clearTimers(): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.connectTimer = this.reconnectTimer = this.pingTimer = this.pongTimer = undefined;
  }
}
