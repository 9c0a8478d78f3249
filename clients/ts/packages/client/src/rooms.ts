// The rooms protocol (PROTOCOLS.md §2) for dashboards: a JWT socket in rooms that, across any
// reconnect, resubscribes each room from the last event it delivered, so the application sees
// every event once and in order, and is told plainly when that could not be done.

import { ProtocolClient, webSocketUrl, type ClientOptions, type ProtocolEvents } from "./protocol.js";
import { RecoveryBook, type RoomPosition } from "./recovery.js";

/** A server → client event; `room`, `offset` and `epoch` are present in rooms with history. */
export interface RoomEvent<T = unknown> {
  type: string;
  data: T;
  timestamp: string;
  room?: string;
  offset?: number;
  epoch?: string;
}

export interface SubscribeReply {
  action: "subscribe";
  success: boolean;
  room: string;
  error?: string;
  recovered?: boolean;
  missed?: number;
}

export interface StatusReply {
  action: "getStatus";
  connectionId: string;
  userId: string;
  role: string;
  branchId: string;
  connectedAt: string;
  expiresAt: string;
  rooms: string[];
}

/** Why the application should reload a room's state from its backend. */
export type ReloadReason = "not-recovered" | "gap" | "new-epoch";

export interface RoomsEvents extends ProtocolEvents {
  event: RoomEvent;
  /** Events were missed and cannot be replayed: reload the room's state. */
  reload: { room: string; reason: ReloadReason };
  /** A resubscribe replayed `missed` events (delivered as `event`s right after this). */
  recovered: { room: string; missed: number };
  /** Every reply to an action, as sent. */
  reply: Record<string, unknown>;
}

export interface RoomsOptions extends ClientOptions {
  /** The server, e.g. `https://switchboard.example`; default the page's origin. */
  url?: string;
  /** How long a request (`getRooms`, `getStatus`, `ping`) waits for its reply, in ms. Default 10000. */
  requestTimeout?: number;
}

type Token = string | (() => string | Promise<string>);

interface Pending {
  action: string;
  resolve: (reply: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  /** Sent on the current connection (a close fails it) rather than waiting in the queue. */
  sent: boolean;
  timer: ReturnType<typeof setTimeout>;
}

export class RoomsClient extends ProtocolClient<RoomsEvents> {
  private readonly book = new RecoveryBook();
  /** Rooms whose subscribe is in flight on this connection, with the events that came first. */
  private resubscribing = new Map<string, RoomEvent[]>();
  private subscribeWaiters = new Map<string, Array<(reply: SubscribeReply) => void>>();
  private pending: Pending[] = [];
  private readonly requestTimeout: number;

  constructor(token: Token, options: RoomsOptions = {}) {
    // The token is asked for before every connect, so a provider can refresh it.
    const url = async () => {
      const value = typeof token === "string" ? token : await token();
      return webSocketUrl(options.url, `/ws?token=${encodeURIComponent(value)}`);
    };
    super(url, options, {
      message: { action: "ping" },
      isPong: (frame) => frame.action === "pong",
    });
    this.requestTimeout = options.requestTimeout ?? 10_000;
    this.start(options.startClosed);
  }

  /** Where the client stands in `room`'s history. */
  position(room: string): RoomPosition | undefined {
    return this.book.position(room);
  }

  /** Rooms resubscribed after a reconnect. */
  get rooms(): string[] {
    return this.book.tracked();
  }

  /** Joins `room` (now, or as soon as connected) and resolves with the server's answer. */
  subscribe(room: string): Promise<SubscribeReply> {
    this.book.track(room);
    const reply = new Promise<SubscribeReply>((resolve) => {
      const list = this.subscribeWaiters.get(room) ?? [];
      list.push(resolve);
      this.subscribeWaiters.set(room, list);
    });
    // Offline, the subscribe is not queued: every tracked room is resubscribed on open.
    if (this.state === "open") this.sendSubscribe(room);
    return reply;
  }

  /** The seed's `subscribeToOrder`, as a subscribe to `order:{id}` so it is recovered too. */
  subscribeToOrder(orderId: string): Promise<SubscribeReply> {
    return this.subscribe(`order:${orderId}`);
  }

  unsubscribe(room: string): Promise<Record<string, unknown>> {
    this.book.untrack(room);
    this.resubscribing.delete(room);
    return this.request("unsubscribe", { room });
  }

  getRooms(): Promise<{ action: "getRooms"; rooms: string[]; count: number }> {
    return this.request("getRooms") as never;
  }

  getStatus(): Promise<StatusReply> {
    return this.request("getStatus") as never;
  }

  /** Sends an action and resolves with the next reply carrying the same `action`. */
  request(action: string, data?: object): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const entry: Pending = {
        action,
        resolve,
        reject,
        sent: this.state === "open",
        timer: setTimeout(() => {
          this.pending = this.pending.filter((p) => p !== entry);
          reject(new Error(`no reply to ${action} within ${this.requestTimeout} ms`));
        }, this.requestTimeout),
      };
      this.pending.push(entry);
      this.sendFrame(data === undefined ? { action } : { action, data });
    });
  }

  /** Sends any action frame (also your own, for the backend's `$default` route). */
  send(action: string, data?: object): void {
    this.sendFrame(data === undefined ? { action } : { action, data });
  }

  protected override onOpen(): void {
    for (const room of this.book.tracked()) this.sendSubscribe(room);
    // Requests queued while offline go out right after this, in the socket's queue flush.
    for (const entry of this.pending) entry.sent = true;
  }

  protected override onClose(): void {
    // Events held for a resubscribe that never got its answer were not delivered, so the
    // positions still point before them: the next resubscribe asks for them again.
    this.resubscribing.clear();
    const lost = this.pending.filter((p) => p.sent);
    this.pending = this.pending.filter((p) => !p.sent);
    for (const entry of lost) {
      clearTimeout(entry.timer);
      entry.reject(new Error(`the connection closed before the reply to ${entry.action}`));
    }
  }

  protected onFrame(frame: Record<string, unknown>): void {
    if (typeof frame.action === "string") {
      if (frame.action === "subscribe" && typeof frame.room === "string") {
        this.subscribed(frame as unknown as SubscribeReply);
      } else {
        this.answer(frame);
      }
      this.emit("reply", frame);
      return;
    }
    if (typeof frame.type !== "string") return;
    if (frame.type === "reconnect" && frame.room === undefined && isLifetimeHint(frame.data)) {
      // The connection's lifetime ends soon: move to a fresh one now; recovery covers the gap.
      this.socket.reconnect();
      return;
    }
    const event = frame as unknown as RoomEvent;
    const held = event.room !== undefined ? this.resubscribing.get(event.room) : undefined;
    if (held) held.push(event);
    else this.deliver(event);
  }

  private sendSubscribe(room: string): void {
    this.resubscribing.set(room, []);
    const position = this.book.position(room);
    this.sendFrame({ action: "subscribe", data: position ? { room, ...position } : { room } });
  }

  private subscribed(reply: SubscribeReply): void {
    const held = this.resubscribing.get(reply.room) ?? [];
    this.resubscribing.delete(reply.room);
    const waiters = this.subscribeWaiters.get(reply.room) ?? [];
    this.subscribeWaiters.delete(reply.room);
    if (!reply.success) {
      this.book.untrack(reply.room);
    } else if (reply.recovered === false) {
      this.book.forgetPosition(reply.room);
      this.emit("reload", { room: reply.room, reason: "not-recovered" });
    } else if (reply.recovered === true) {
      this.emit("recovered", { room: reply.room, missed: reply.missed ?? 0 });
    }
    // Only a room that could not be recovered can have events ahead of its answer (the server
    // sends the missed ones after it, before any new one).
    for (const event of held) this.deliver(event);
    for (const resolve of waiters) resolve(reply);
  }

  private answer(frame: Record<string, unknown>): void {
    // An error reply names no action: it answers the oldest request in flight.
    const index =
      frame.action === "error"
        ? this.pending.findIndex((p) => p.sent)
        : this.pending.findIndex((p) => p.sent && p.action === frame.action);
    if (index < 0) return;
    const [entry] = this.pending.splice(index, 1);
    if (!entry) return;
    clearTimeout(entry.timer);
    if (frame.action === "error") entry.reject(new Error(String(frame.error)));
    else entry.resolve(frame);
  }

  private deliver(event: RoomEvent): void {
    const verdict = this.book.accept(event);
    if (verdict === "duplicate") return;
    if (verdict !== "deliver" && event.room !== undefined) {
      this.emit("reload", { room: event.room, reason: verdict === "gap" ? "gap" : "new-epoch" });
    }
    this.emit("event", event);
  }
}

function isLifetimeHint(data: unknown): boolean {
  return typeof data === "object" && data !== null && (data as { reason?: unknown }).reason === "lifetime";
}
