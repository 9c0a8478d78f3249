// Starts the real `switchboard` binary for a test, on a fresh data folder, and restarts it on
// the same port and data (a crash: SIGKILL by PID). Ready means: it printed its address.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const AUTH_SECRET = "e2e-auth-secret-0123456789";
const JWT_SECRET = "e2e-jwt-secret-0123456789abcdef";

/** The binary under test: $SB_E2E_BINARY, else the workspace's debug build. (Not a SWITCHBOARD_
 * name: the server refuses environment variables of its prefix that it does not know.) */
const BINARY =
  process.env.SB_E2E_BINARY ??
  resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../../target/debug/switchboard");

export class SwitchboardServer {
  readonly dataDir = mkdtempSync(join(tmpdir(), "switchboard-e2e-"));
  private child: ChildProcess | undefined;
  private address = "127.0.0.1:0";
  /** Everything the server printed, for a failing test's report. */
  output = "";

  /** `env`: more settings, e.g. a cluster's (`SWITCHBOARD_NATS_URL`…). */
  constructor(
    private readonly corsOrigin: string,
    private readonly env: Record<string, string> = {},
  ) {}

  get url(): string {
    return `http://${this.address}`;
  }

  /** Starts it (again, on the same port and data folder) and resolves once it listens. */
  async start(): Promise<void> {
    const child = spawn(BINARY, ["serve", "--listen", this.address, "--data-dir", this.dataDir], {
      env: {
        // Only this test's configuration: none of the caller's SWITCHBOARD_* settings.
        ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("SWITCHBOARD_"))),
        SWITCHBOARD_AUTH_SECRET: AUTH_SECRET,
        SWITCHBOARD_JWT_SECRET: JWT_SECRET,
        SWITCHBOARD_CORS_ORIGINS: this.corsOrigin,
        ...this.env,
        NO_COLOR: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    this.address = await new Promise<string>((resolveAddress, reject) => {
      const onData = (chunk: Buffer) => {
        this.output += chunk.toString();
        // eslint-disable-next-line no-control-regex
        const match = /switchboard listening.*?addr\S*?=\S*?(127\.0\.0\.1:\d+)/.exec(this.output.replace(/\x1b\[[0-9;]*m/g, ""));
        if (match?.[1]) resolveAddress(match[1]);
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => reject(new Error(`switchboard exited with ${code} before listening:\n${this.output}`)));
      child.once("error", reject);
    });
  }

  /** Kills it by its PID, like a crash, and resolves once it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(child.pid as number, "SIGKILL");
    await exited;
    this.output = "";
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A call to the server's API with the API secret. */
  async api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(this.url + path, {
      method,
      headers: { authorization: `Bearer ${AUTH_SECRET}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** An HS256 JWT for the rooms protocol, signed with the test server's secret. */
export function signToken(claims: { sub: string; branchId: string; role: string }, ttlSeconds = 3600): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ ...claims, exp: Math.floor(Date.now() / 1000) + ttlSeconds })}`;
  return `${body}.${createHmac("sha256", JWT_SECRET).update(body).digest("base64url")}`;
}
