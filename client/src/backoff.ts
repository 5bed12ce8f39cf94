/*
 * Reconnect delays for WSClient: exponential backoff with full jitter and a
 * cap.  The nth consecutive failure waits a uniformly random time in
 * [0, min(maxDelay, initialDelay * factor^n)), so that thousands of browsers
 * that lost the same bridge do not all come back in the same millisecond.
 */

/** How reconnects are paced.  All times in milliseconds. */
export interface BackoffOptions {
  /** Ceiling of the first retry's delay (default 500). */
  initialDelay: number;
  /** No delay is ever longer than this (default 30000). */
  maxDelay: number;
  /** Growth of the ceiling per consecutive failure (default 2). */
  factor: number;
  /** A connection that stays open this long resets the backoff (default 10000). */
  stableAfter: number;
}

/** The defaults documented in docs/client.md. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialDelay: 500,
  maxDelay: 30000,
  factor: 2,
  stableAfter: 10000,
});

/** Fill in the defaults and reject settings that cannot work. */
export function resolveBackoff(partial?: Partial<BackoffOptions>): BackoffOptions {
  const b: BackoffOptions = { ...DEFAULT_BACKOFF, ...(partial ?? {}) };
  for (const key of ['initialDelay', 'maxDelay', 'factor', 'stableAfter'] as const) {
    if (typeof b[key] !== 'number' || !Number.isFinite(b[key]) || b[key] < 0)
      throw new RangeError(`backoff.${key} must be a finite number >= 0`);
  }
  if (b.factor < 1) throw new RangeError('backoff.factor must be >= 1');
  return b;
}

/** The upper bound of the delay after `attempt` (0-based) consecutive failures. */
export function backoffCeiling(attempt: number, b: BackoffOptions): number {
  // factor^attempt overflows to Infinity for large attempts; min() caps it.
  return Math.min(b.maxDelay, b.initialDelay * Math.pow(b.factor, Math.max(0, attempt)));
}

/** The delay before retry number `attempt` (0-based): full jitter under the ceiling. */
export function backoffDelay(attempt: number, b: BackoffOptions,
                             random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, b));
}
