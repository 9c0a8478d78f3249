// The NATS server (JetStream) a cluster test needs: the one scripts/test started
// ($SB_TEST_NATS_URL), else one started here from `nats-server` on the PATH and ended by PID.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Nats {
  url: string;
  stop(): Promise<void>;
}

export async function startNats(): Promise<Nats> {
  const given = process.env.SB_TEST_NATS_URL;
  if (given) return { url: given, stop: async () => {} };
  const dir = mkdtempSync(join(tmpdir(), "switchboard-e2e-nats-"));
  const child: ChildProcess = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", "-1", "-sd", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr?.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      const match = /Listening for client connections on (\S+)/.exec(log);
      if (match?.[1]) resolve(`nats://${match[1]}`);
    });
    child.once("error", (e) => reject(new Error(`nats-server (2.11 or later) is needed on the PATH: ${e.message}`)));
    child.once("exit", (code) => reject(new Error(`nats-server exited with ${code}:\n${log}`)));
  });
  return {
    url,
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(child.pid as number, "SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
