// The reconnect delays: full jitter under a ceiling that grows exponentially and is capped.
import { describe, expect, it } from "vitest";
import { backoffDelay } from "../src/index.js";

/** A seeded generator, so the distribution checks are repeatable. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe("backoffDelay", () => {
  const options = { minDelay: 100, maxDelay: 10_000, factor: 2 };

  it("spans the whole window [0, ceiling): full jitter", () => {
    expect(backoffDelay(0, options, () => 0)).toBe(0);
    expect(backoffDelay(0, options, () => 0.999999)).toBe(99);
    expect(backoffDelay(3, options, () => 0.5)).toBe(400);
  });

  it("doubles the ceiling per attempt until maxDelay", () => {
    const top = (attempt: number) => backoffDelay(attempt, options, () => 0.999999) + 1;
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(top)).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000]);
    expect(top(1000)).toBe(10_000);
    expect(Number.isFinite(backoffDelay(1e9, options, () => 0.5))).toBe(true);
  });

  it("spreads clients evenly over the window", () => {
    const random = lcg(42);
    const samples = Array.from({ length: 4000 }, () => backoffDelay(4, options, random));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...samples)).toBeLessThan(1600);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    expect(mean).toBeGreaterThan(1600 * 0.45);
    expect(mean).toBeLessThan(1600 * 0.55);
    // Each quarter of the window gets about a quarter of the clients.
    for (let q = 0; q < 4; q++) {
      const share = samples.filter((s) => s >= q * 400 && s < (q + 1) * 400).length / samples.length;
      expect(share).toBeGreaterThan(0.2);
      expect(share).toBeLessThan(0.3);
    }
  });

  it("uses the documented defaults", () => {
    expect(backoffDelay(0, {}, () => 0.999999) + 1).toBe(500);
    expect(backoffDelay(50, {}, () => 0.999999) + 1).toBe(30_000);
  });
});
