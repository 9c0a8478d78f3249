// Reconnect delays: exponential backoff with full jitter, so that a thousand browsers cut off
// by the same outage do not all come back in the same millisecond.

/** How the delay before a reconnect grows. Every field has a default; see `DEFAULT_BACKOFF`. */
export interface BackoffOptions {
  /** The ceiling of the first delay, in ms. Default 500. */
  minDelay?: number;
  /** No delay is longer than this, in ms. Default 30000. */
  maxDelay?: number;
  /** The ceiling grows by this factor per failed attempt. Default 2. */
  factor?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  minDelay: 500,
  maxDelay: 30_000,
  factor: 2,
};

/**
 * The delay before reconnect attempt number `attempt` (0 for the first one after a drop):
 * uniformly random in [0, min(maxDelay, minDelay * factor^attempt)). "Full jitter" spreads
 * clients over the whole window, which beats "equal jitter" at draining a thundering herd.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const { minDelay, maxDelay, factor } = { ...DEFAULT_BACKOFF, ...options };
  // Capped before the power overflows to Infinity on a long outage.
  const ceiling = Math.min(maxDelay, minDelay * Math.pow(factor, Math.min(attempt, 64)));
  return Math.floor(random() * ceiling);
}
