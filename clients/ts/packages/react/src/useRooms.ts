// useRooms: a dashboard's JWT socket in rooms, with every event once and in order across
// reconnects, and a plain signal when a room's state must be reloaded.

import { useCallback, useEffect, useState } from "react";
import {
  RoomsClient,
  type ReloadReason,
  type RoomEvent,
  type RoomsOptions,
  type SubscribeReply,
} from "@switchboard/client";
import { useLatest, useProtocolClient, type ConnectionStatus } from "./useProtocolClient.js";

export interface UseRoomsOptions {
  url?: string;
  /** How many recent events `events` keeps. Default 100. */
  keep?: number;
  onEvent?: (event: RoomEvent) => void;
  /** Events of `room` were lost for good: reload its state from the backend. */
  onReload?: (room: string, reason: ReloadReason) => void;
  clientOptions?: Omit<RoomsOptions, "url">;
}

export interface UseRoomsResult extends ConnectionStatus {
  /** The most recent events, oldest first. */
  events: RoomEvent[];
  lastEvent: RoomEvent | null;
  subscribe: (room: string) => Promise<SubscribeReply>;
  unsubscribe: (room: string) => Promise<unknown>;
  subscribeToOrder: (orderId: string) => Promise<SubscribeReply>;
  client: RoomsClient | null;
}

/**
 * `token` is a JWT or a function returning one (asked before every reconnect); null stays
 * disconnected. A new token does not reconnect: it is used by the next connection, so the
 * rooms and their recovery positions are kept.
 */
export function useRooms(
  token: string | (() => string | Promise<string>) | null,
  options: UseRoomsOptions = {},
): UseRoomsResult {
  const latest = useLatest({ ...options, token });
  const [events, setEvents] = useState<RoomEvent[]>([]);
  const status = useProtocolClient(
    token === null
      ? null
      : () =>
          new RoomsClient(
            async () => {
              const current = latest.current.token;
              if (current === null) throw new Error("no token");
              return typeof current === "string" ? current : current();
            },
            { ...latest.current.clientOptions, url: options.url },
          ),
    [token === null, options.url],
  );
  const { client } = status;

  useEffect(() => {
    if (!client) return;
    const offEvent = client.on("event", (event) => {
      const keep = latest.current.keep ?? 100;
      setEvents((list) => [...list, event].slice(-keep));
      latest.current.onEvent?.(event);
    });
    const offReload = client.on("reload", ({ room, reason }) => latest.current.onReload?.(room, reason));
    return () => {
      offEvent();
      offReload();
    };
  }, [client, latest]);

  const notConnected = () => Promise.reject(new Error("useRooms: no token, no connection"));
  const subscribe = useCallback((room: string) => client?.subscribe(room) ?? notConnected(), [client]);
  const unsubscribe = useCallback((room: string) => client?.unsubscribe(room) ?? notConnected(), [client]);
  const subscribeToOrder = useCallback(
    (orderId: string) => client?.subscribeToOrder(orderId) ?? notConnected(),
    [client],
  );

  return {
    isConnected: status.isConnected,
    isConnecting: status.isConnecting,
    error: status.error,
    events,
    lastEvent: events[events.length - 1] ?? null,
    subscribe,
    unsubscribe,
    subscribeToOrder,
    client,
  };
}
