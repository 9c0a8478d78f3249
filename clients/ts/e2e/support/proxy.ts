// A TCP proxy in front of the server that can cut the network silently: while cut, nothing is
// forwarded and nothing is closed (a dead Wi-Fi, a NAT that forgot the flow), and new
// connections are accepted but never answered. Only a heartbeat or a timeout can notice.

import { createServer, connect, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface Proxy {
  url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startProxy(target: () => URL): Promise<Proxy> {
  let cut = false;
  const open = new Set<Socket>();
  const track = (socket: Socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const server = createServer((client) => {
    track(client);
    if (cut) return; // accepted, never answered
    const { hostname, port } = target();
    const upstream = connect(Number(port), hostname);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      cut = true;
      // Stop every byte, close nothing.
      for (const socket of open) {
        socket.unpipe();
        socket.pause();
      }
    },
    restore() {
      cut = false;
      // What was open during the cut is dead for its peers already: let it go.
      for (const socket of open) socket.destroy();
    },
    close: () =>
      new Promise((r) => {
        for (const socket of open) socket.destroy();
        server.close(() => r());
      }),
  };
}
