// useDisplaySession: a restaurant display's session state, kept current across reconnects
// (each connection starts with the whole state, so nothing is lost while offline).

import { useEffect, useState } from "react";
import { DisplayClient, type DisplayOptions, type DisplayState, type DisplayUpdate } from "@switchboard/client";
import { useLatest, useProtocolClient, type ConnectionStatus } from "./useProtocolClient.js";

export interface UseDisplaySessionOptions {
  url?: string;
  onUpdate?: (update: DisplayUpdate) => void;
  clientOptions?: Omit<DisplayOptions, "url">;
}

export interface UseDisplaySessionResult extends ConnectionStatus {
  /** The session's state; null until the first `initial_state`. */
  state: DisplayState | null;
  lastUpdate: DisplayUpdate | null;
}

export function useDisplaySession(
  sessionId: string | null,
  options: UseDisplaySessionOptions = {},
): UseDisplaySessionResult {
  const latest = useLatest(options);
  const [state, setState] = useState<DisplayState | null>(null);
  const [lastUpdate, setLastUpdate] = useState<DisplayUpdate | null>(null);
  const status = useProtocolClient(
    sessionId === null
      ? null
      : () => new DisplayClient(sessionId, { ...latest.current.clientOptions, url: options.url }),
    [sessionId, options.url],
  );
  const { client } = status;

  useEffect(() => {
    setState(null);
    setLastUpdate(null);
    if (!client) return;
    const offState = client.on("state_change", setState);
    const offUpdate = client.on("update", (update) => {
      setLastUpdate(update);
      latest.current.onUpdate?.(update);
    });
    return () => {
      offState();
      offUpdate();
    };
  }, [client, latest]);

  return { isConnected: status.isConnected, isConnecting: status.isConnecting, error: status.error, state, lastUpdate };
}
