// Example: the counter seed's component on @switchboard/react — useCounterWebSocket keeps the
// TanStack Query cache current, the component only reads its query. ?server=URL&name=NAME
import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { counterRpc } from "@switchboard/client";
import { counterQueryKeys, useCounterWebSocket } from "@switchboard/react";
import { createRoot } from "react-dom/client";

const params = new URLSearchParams(location.search);
const server = params.get("server") ?? undefined;
const name = params.get("name") ?? "my-counter";
const rpc = counterRpc(server);

function Counter() {
  const { isConnected, isConnecting, error, lastUpdate } = useCounterWebSocket(name, {
    url: server,
    clientOptions: { backoff: { minDelay: 100, maxDelay: 500 } },
  });
  const { data } = useQuery({ queryKey: counterQueryKeys.value(name), queryFn: () => rpc.getValue(name) });
  const state = isConnected ? "open" : isConnecting ? "connecting" : "closed";
  return (
    <main style={{ font: "16px system-ui, sans-serif", margin: "2rem" }}>
      <h1>
        Counter <code>{name}</code> (React)
      </h1>
      <p>
        Connection: <span id="status" data-state={state}>{state}</span>
        {error && <span id="error"> · {error.message}</span>}
      </p>
      <div id="value" style={{ fontSize: "4rem" }}>
        {data?.value ?? "–"}
      </div>
      <button id="dec" onClick={() => void rpc.decrement(name)}>
        −1
      </button>{" "}
      <button id="inc" onClick={() => void rpc.increment(name)}>
        +1
      </button>
      {lastUpdate && <p id="last">Last update: {lastUpdate.toLocaleTimeString()}</p>}
    </main>
  );
}

const queryClient = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } });
createRoot(document.getElementById("root") as HTMLElement).render(
  <QueryClientProvider client={queryClient}>
    <Counter />
  </QueryClientProvider>,
);
