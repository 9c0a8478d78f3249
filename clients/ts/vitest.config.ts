// Two test projects: `unit` (fake sockets, fake timers, a DOM where a hook needs one) and
// `e2e` (headless Chromium against the real switchboard binary; see e2e/README.md).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Unit tests run the sources, so no build is needed first.
const alias = {
  "@switchboard/client": fileURLToPath(new URL("./packages/client/src/index.ts", import.meta.url)),
};

export default defineConfig({
  test: {
    projects: [
      {
        resolve: { alias },
        test: { name: "unit", include: ["packages/*/test/**/*.test.ts"], environment: "node" },
      },
      {
        test: {
          name: "e2e",
          include: ["e2e/**/*.test.ts"],
          // Failure bounds only: every step waits on a signal from the page or the server.
          testTimeout: 30_000,
          hookTimeout: 60_000,
          // One browser and one server at a time: the machine may be small.
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
