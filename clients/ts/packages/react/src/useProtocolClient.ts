// The lifecycle every hook shares: make a protocol client when mounted (or when what it
// connects to changes), mirror its connection state into React state, close it on unmount.

import { useEffect, useState } from "react";
import type { ConnectionState, ProtocolClient, ProtocolEvents } from "@switchboard/client";

export interface ConnectionStatus {
  isConnected: boolean;
  isConnecting: boolean;
  /** The last connection problem; cleared when a connection opens. */
  error: Error | null;
}

export function useProtocolClient<C extends ProtocolClient<ProtocolEvents>>(
  create: (() => C) | null,
  deps: readonly unknown[],
): ConnectionStatus & { client: C | null; state: ConnectionState } {
  const [client, setClient] = useState<C | null>(null);
  const [state, setState] = useState<ConnectionState>("closed");
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    if (!create) {
      setState("closed");
      return;
    }
    const made = create();
    setClient(made);
    setState(made.state);
    const off = [
      made.on("state", setState),
      made.on("open", () => setError(null)),
      made.on("close", ({ code, reason, wasClean }) => {
        if (!wasClean) setError(new Error(`connection lost (${code}${reason ? `: ${reason}` : ""})`));
      }),
      made.on("error", ({ error: cause }) =>
        setError(cause instanceof Error ? cause : new Error("WebSocket error")),
      ),
    ];
    return () => {
      off.forEach((unsubscribe) => unsubscribe());
      made.close();
      setClient(null);
    };
    // `create` is a fresh closure each render; what it connects to is in `deps`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  return {
    client,
    state,
    error,
    isConnected: state === "open",
    isConnecting: state === "connecting" || state === "reconnecting",
  };
}

/** Keeps the latest value of a prop in a ref-like box, so a callback prop can change every
 * render without reconnecting. */
export function useLatest<T>(value: T): { readonly current: T } {
  const [box] = useState(() => ({ current: value }));
  box.current = value;
  return box;
}
