// Test support for the kiosk's Socket.IO protocol: the real `switchboard` binary as a child
// process on its own data folder, and real socket.io-client sockets that record every event.
// Timeouts here only bound how long a test waits for a signal before it fails.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

export const SECRET = "test-secret-0123456789abcdef";
/// How long a test waits for anything before it fails.
export const WAIT_MS = 10_000;

const BINARY = process.env.SWITCHBOARD_BIN ?? new URL("../../target/debug/switchboard", import.meta.url).pathname;

/// Starts `switchboard serve` on `port` (0: any) with `dataDir` (default: a fresh one) and
/// waits for it to log its address.
export async function startServer({ port = 0, dataDir, sets = [] } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "switchboard-kiosk-"));
  const args = ["serve", "--listen", `127.0.0.1:${port}`, "--log-format", "json", "--data-dir", dir];
  for (const set of sets) args.push("--set", set);
  // The server reads every SWITCHBOARD_* variable as configuration (and refuses unknown ones,
  // such as SWITCHBOARD_BIN): it gets none but its secret.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHBOARD_")));
  const child = spawn(BINARY, args, {
    env: { ...env, SWITCHBOARD_AUTH_SECRET: SECRET, RUST_LOG: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const said = [];
  const addr = await within(
    new Promise((resolve, reject) => {
      createInterface({ input: child.stderr }).on("line", (line) => {
        try {
          const addr = JSON.parse(line)?.fields?.addr;
          if (addr) resolve(addr);
        } catch {
          // Not a JSON log line: an error before logging started.
          said.push(line);
        }
      });
      exited.then(({ code }) => reject(new Error(`switchboard exited with ${code} before listening: ${said.join(" ")}`)));
    }),
    "the server to log its address",
  );
  const url = `http://${addr}`;
  return {
    url,
    port: Number(addr.split(":").pop()),
    dataDir: dir,
    /// Stops the server with `signal` and waits for it to exit.
    async stop(signal = "SIGTERM") {
      child.kill(signal);
      return within(exited, "the server to exit");
    },
    /// Stops the server and deletes its data folder (unless it was given one).
    async close() {
      if (child.exitCode === null && child.signalCode === null) await this.stop();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// `promise`, or a failure naming `what` after `ms`.
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/// A socket.io-client socket that records every event it receives, in order, as
/// `{type, payload, connection}` (`connection` counts the socket's connects).
export class Client {
  constructor(url, options = {}, connect = io) {
    this.events = [];
    this.connections = 0;
    this.waiters = [];
    this.socket = connect(url, { reconnectionDelay: 100, reconnectionDelayMax: 500, ...options });
    this.socket.on("connect", () => {
      this.connections += 1;
      this.notify();
    });
    this.socket.on("disconnect", (reason) => {
      this.lastDisconnect = reason;
      this.notify();
    });
    this.socket.on("connect_error", (error) => {
      this.lastError = error;
      this.notify();
    });
    this.socket.onAny((type, payload) => {
      this.events.push({ type, payload, connection: this.connections });
      this.notify();
    });
    this.cursor = 0;
  }

  notify() {
    for (const waiter of [...this.waiters]) waiter();
  }

  /// Resolves once `check()` returns something other than undefined.
  until(check, what) {
    return within(
      new Promise((resolve) => {
        const attempt = () => {
          const value = check();
          if (value !== undefined) {
            this.waiters = this.waiters.filter((w) => w !== attempt);
            resolve(value);
          }
        };
        this.waiters.push(attempt);
        attempt();
      }),
      what,
    );
  }

  connected() {
    return this.until(() => (this.socket.connected ? true : undefined), "the socket to connect");
  }

  /// The next event not yet taken, which must be of `type`.
  async next(type) {
    const event = await this.until(() => this.events[this.cursor], `event ${type}`);
    this.cursor += 1;
    if (event.type !== type) {
      throw new Error(`expected ${type}, got ${event.type}: ${JSON.stringify(event.payload)}`);
    }
    return event.payload;
  }

  /// The next event of `type`, skipping others (broadcast `status` updates, say).
  async nextOf(type) {
    for (;;) {
      const event = await this.until(() => this.events[this.cursor], `event ${type}`);
      this.cursor += 1;
      if (event.type === type) return event.payload;
    }
  }

  /// Skips every event received so far.
  skip() {
    this.cursor = this.events.length;
  }

  /// Emits in the seed's envelope, as its `sendMessage` does.
  send(type, data) {
    this.socket.emit(type, { timestamp: new Date().toISOString(), data });
  }

  close() {
    this.socket.disconnect();
  }
}

/// `POST /api/nfc/simulate`; returns `{status, body}`.
export async function simulate(url, uid, { auth = `Bearer ${SECRET}`, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (auth) headers.authorization = auth;
  const response = await fetch(`${url}/api/nfc/simulate`, {
    method: "POST",
    headers,
    body: body ?? JSON.stringify({ uid }),
  });
  return { status: response.status, body: await response.json() };
}

/// Checks the seed's envelope `{type, timestamp, data}` and returns `data`.
export function data(type, payload) {
  if (payload?.type !== type) throw new Error(`envelope type ${payload?.type} is not ${type}`);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(payload.timestamp)) {
    throw new Error(`timestamp ${payload.timestamp} is not ISO with milliseconds`);
  }
  return payload.data;
}
