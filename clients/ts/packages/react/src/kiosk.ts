// @switchboard/react/kiosk: the NFC kiosk seed's socket.io `useWebSocket` hook, typed by
// PROTOCOLS.md §4. Same name, same return shape, so the kiosk's components port by changing an
// import; it needs `socket.io-client`, which is why it has an entry point of its own.

import { useCallback, useEffect, useRef, useState } from "react";
import { io as socketIo, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

/** What the server sends, by event name (the `data` of the envelope). */
export interface KioskServerEvents {
  awaiting_tag: { entry_id: string; timeout: number };
  tag_write_progress: { entry_id: string; progress: number };
  tag_registered: { entry_id: string; tag_uid: string };
  registration_cancelled: { entry_id: string };
  registration_timeout: { entry_id: string };
  nfc_tag_scanned: { tag_uid: string; registered: boolean; entry_id?: string };
  led_state: { pattern: string; color: string | null };
  status: { reader: unknown; registration: unknown; led: unknown };
  error: { message: string; code: string };
}

/** What the kiosk page sends, by event name. */
export interface KioskClientEvents {
  register_tag_start: { entry_id: string; timeout?: number };
  register_tag_cancel: Record<string, never>;
  led_set: { pattern: string; color?: string; duration_ms?: number };
  get_status: Record<string, never>;
}

export type KioskEventName = keyof KioskServerEvents;

/** A message as the seed's handlers receive it: the event name as `type`, then the envelope. */
export interface KioskMessage<K extends KioskEventName = KioskEventName> {
  type: K;
  timestamp: string;
  data: KioskServerEvents[K];
}

export type AnyKioskMessage = { [K in KioskEventName]: KioskMessage<K> }[KioskEventName];

export interface UseWebSocketOptions {
  /** The Switchboard server; default the page's origin. */
  url?: string;
  /** socket.io-client options, over the defaults below. */
  ioOptions?: Partial<ManagerOptions & SocketOptions>;
  /** The socket.io `io` function; tests pass a fake. */
  io?: (url: string, options: Partial<ManagerOptions & SocketOptions>) => Socket;
}

export interface UseWebSocketResult {
  connected: boolean;
  /** Emits `(type, {timestamp, data})` as the seed did; returns false (nothing sent) while disconnected. */
  sendMessage: <K extends keyof KioskClientEvents>(type: K, data: KioskClientEvents[K]) => boolean;
  lastMessage: AnyKioskMessage | null;
  /** One handler per message type (a new one replaces the old); returns its unregister. */
  registerHandler: <K extends KioskEventName>(type: K, handler: (message: KioskMessage<K>) => void) => () => void;
}

/** The seed reconnected 5 times and then gave up on a kiosk that must run unattended: here it
 * keeps trying, with socket.io's own jittered backoff capped at 10 s. */
export const KIOSK_IO_DEFAULTS: Partial<ManagerOptions & SocketOptions> = {
  reconnection: true,
  reconnectionDelay: 1000,
  reconnectionDelayMax: 10_000,
  randomizationFactor: 0.5,
  reconnectionAttempts: Infinity,
};

export function useWebSocket(options: UseWebSocketOptions = {}): UseWebSocketResult {
  const socket = useRef<Socket | null>(null);
  const [connected, setConnected] = useState(false);
  const [lastMessage, setLastMessage] = useState<AnyKioskMessage | null>(null);
  const handlers = useRef(new Map<string, (message: never) => void>());
  const { url, io = socketIo } = options;
  const ioOptions = useRef(options.ioOptions);

  useEffect(() => {
    const base = url ?? (globalThis as { location?: { origin: string } }).location?.origin ?? "";
    const s = io(base, { ...KIOSK_IO_DEFAULTS, ...ioOptions.current });
    socket.current = s;
    s.on("connect", () => setConnected(true));
    s.on("disconnect", () => setConnected(false));
    s.onAny((eventName: string, envelope: { timestamp?: string; data?: unknown }) => {
      const message = { type: eventName, ...envelope } as AnyKioskMessage;
      setLastMessage(message);
      const handler = handlers.current.get(eventName);
      handler?.(message as never);
    });
    return () => {
      s.disconnect();
      socket.current = null;
    };
  }, [url, io]);

  const sendMessage = useCallback<UseWebSocketResult["sendMessage"]>((type, data) => {
    const s = socket.current;
    if (!s || !s.connected) return false;
    s.emit(type, { timestamp: new Date().toISOString(), data });
    return true;
  }, []);

  const registerHandler = useCallback<UseWebSocketResult["registerHandler"]>((type, handler) => {
    handlers.current.set(type, handler as (message: never) => void);
    return () => {
      if (handlers.current.get(type) === handler) handlers.current.delete(type);
    };
  }, []);

  return { connected, sendMessage, lastMessage, registerHandler };
}
