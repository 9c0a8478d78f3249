// What every protocol adapter shares: a ReconnectingSocket, JSON frames in and out, and the
// connection state re-emitted, so each adapter only says what its frames mean.

import { Emitter } from "./emitter.js";
import {
  ReconnectingSocket,
  type CloseInfo,
  type ConnectionState,
  type SocketOptions,
} from "./socket.js";

/** The options of a protocol client: the socket's, less what the protocol decides itself. */
export type ClientOptions = Omit<SocketOptions, "url" | "heartbeat"> & {
  /** Overrides the protocol's own heartbeat timings; `false` turns heartbeats off. */
  heartbeat?: { interval?: number; timeout?: number } | false;
};

export interface ProtocolEvents extends Record<string, unknown> {
  state: ConnectionState;
  open: { attempt: number };
  close: CloseInfo & { willReconnect: boolean };
  /** A frame that is not JSON, or a socket error. */
  error: { error: unknown };
}

/** Turns a base address (`http(s)://` or `ws(s)://`, or nothing for the page's own origin)
 * and a path into the WebSocket URL. */
export function webSocketUrl(base: string | undefined, path: string): string {
  const origin = base ?? (globalThis as { location?: { origin: string } }).location?.origin;
  if (!origin) throw new Error("no base URL: pass one (outside a browser there is no page origin)");
  const url = new URL(path, origin.endsWith("/") ? origin : origin + "/");
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
}

/** The HTTP counterpart of `webSocketUrl`, for the protocols' HTTP APIs. */
export function httpUrl(base: string | undefined, path: string): string {
  const url = new URL(webSocketUrl(base, path));
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.toString();
}

export abstract class ProtocolClient<Events extends ProtocolEvents> extends Emitter<Events> {
  readonly socket: ReconnectingSocket;

  constructor(
    url: SocketOptions["url"],
    options: ClientOptions,
    ping: { message: object; isPong: (frame: Record<string, unknown>) => boolean } | undefined,
  ) {
    super();
    const message = ping && JSON.stringify(ping.message);
    const heartbeat =
      options.heartbeat === false || !ping || !message
        ? false
        : {
            ...options.heartbeat,
            message,
            isPong: (data: string) => {
              const frame = parse(data);
              return frame !== undefined && ping.isPong(frame);
            },
          };
    this.socket = new ReconnectingSocket({ ...options, url, heartbeat, startClosed: true });
    // The subclass is fully built before the first frame can arrive: constructors run to the
    // end before any socket callback, and the socket starts only after the listeners are on.
    this.socket.on("state", (state) => this.emit("state", state as Events["state"]));
    this.socket.on("open", (event) => {
      this.onOpen();
      this.emit("open", event as Events["open"]);
    });
    this.socket.on("close", (event) => {
      this.onClose();
      this.emit("close", event as Events["close"]);
    });
    this.socket.on("error", (event) => this.emit("error", event as Events["error"]));
    this.socket.on("message", ({ data }) => {
      const frame = parse(data);
      if (frame === undefined) this.emit("error", { error: new Error(`not a JSON object: ${data}`) } as Events["error"]);
      else this.onFrame(frame);
    });
  }

  /** Starts connecting; called by the subclass once its own listeners are in place. */
  protected start(startClosed: boolean | undefined): void {
    if (!startClosed) this.socket.reconnect();
  }

  get state(): ConnectionState {
    return this.socket.state;
  }

  /** Sends a JSON frame now, or when the connection is back (offline queue). */
  protected sendFrame(frame: object): void {
    this.socket.send(JSON.stringify(frame));
  }

  close(): void {
    this.socket.close();
  }

  protected abstract onFrame(frame: Record<string, unknown>): void;
  protected onOpen(): void {}
  protected onClose(): void {}
}

function parse(data: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(data);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
