// useCounterWebSocket: the counter seed's hook, same name and shape, on Switchboard's client.
// Every update lands in the TanStack Query cache, so components reading the counter's queries
// re-render without polling or invalidating by hand.

import { useQueryClient, type QueryKey } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { CounterClient, type CounterOptions, type CounterUpdate } from "@switchboard/client";
import { useLatest, useProtocolClient, type ConnectionStatus } from "./useProtocolClient.js";

/** The query keys of a counter's three reads. Match them to the keys your queries use. */
export interface CounterQueryKeys {
  value: (name: string) => QueryKey;
  metadata: (name: string) => QueryKey;
  history: (name: string) => QueryKey;
}

export const counterQueryKeys: CounterQueryKeys = {
  value: (name) => ["counter", "getValue", { name }],
  metadata: (name) => ["counter", "getMetadata", { name }],
  history: (name) => ["counter", "getHistory", { name }],
};

export interface UseCounterWebSocketOptions {
  /** `false` keeps the socket closed (the seed's "live updates" toggle). Default true. */
  enabled?: boolean;
  /** The Switchboard server; default the page's origin. */
  url?: string;
  /** Called with every update, after the cache is updated. */
  onUpdate?: (update: CounterUpdate) => void;
  queryKeys?: CounterQueryKeys;
  /** The seed's fixed reconnect delay, in ms; here the ceiling of the first backoff delay
   * (the delay then grows, with jitter). Default 500. */
  reconnectInterval?: number;
  /** The seed's ping interval, in ms: a ping after this much silence. Default 25000. */
  pingInterval?: number;
  /** Passed to the CounterClient (backoff, heartbeat timings, a WebSocket for tests…). */
  clientOptions?: Omit<CounterOptions, "url">;
}

export interface UseCounterWebSocketResult extends ConnectionStatus {
  /** When the last update arrived. */
  lastUpdate: Date | null;
}

export function useCounterWebSocket(
  name: string,
  options: UseCounterWebSocketOptions = {},
): UseCounterWebSocketResult {
  const { enabled = true, url, queryKeys = counterQueryKeys } = options;
  const queryClient = useQueryClient();
  const latest = useLatest({ onUpdate: options.onUpdate, queryKeys, clientOptions: options.clientOptions });
  const [lastUpdate, setLastUpdate] = useState<Date | null>(null);

  const status = useProtocolClient(
    enabled ? () => new CounterClient(name, counterClientOptions(options)) : null,
    [name, url, enabled],
  );
  const { client } = status;

  useEffect(() => {
    if (!client) return;
    const keys = () => latest.current.queryKeys;
    const offUpdate = client.on("update", (update) => {
      queryClient.setQueryData(keys().value(name), { value: update.value });
      queryClient.setQueryData(keys().metadata(name), update.metadata);
      void queryClient.invalidateQueries({ queryKey: keys().history(name) });
      setLastUpdate(new Date());
      latest.current.onUpdate?.(update);
    });
    // Counters keep no event history: after a reconnect, what changed meanwhile is read again.
    let opened = false;
    const offOpen = client.on("open", () => {
      if (opened) {
        for (const key of [keys().value(name), keys().metadata(name), keys().history(name)]) {
          void queryClient.invalidateQueries({ queryKey: key });
        }
      }
      opened = true;
    });
    return () => {
      offUpdate();
      offOpen();
    };
  }, [client, name, queryClient, latest]);

  return { isConnected: status.isConnected, isConnecting: status.isConnecting, error: status.error, lastUpdate };
}

/** The client's options from the hook's: the seed's two timing knobs folded into the client's
 * own (explicit clientOptions win). */
function counterClientOptions(options: UseCounterWebSocketOptions): CounterOptions {
  const { clientOptions = {}, url, reconnectInterval, pingInterval } = options;
  const backoff = reconnectInterval === undefined ? undefined : { minDelay: reconnectInterval };
  const heartbeat = pingInterval === undefined ? undefined : { interval: pingInterval };
  return {
    ...clientOptions,
    url,
    backoff: { ...backoff, ...clientOptions.backoff },
    heartbeat: clientOptions.heartbeat ?? heartbeat,
  };
}
