/** How the element retries after a dropped connection. Every field has a bound; see {@link DEFAULT_RECONNECT}. */
export interface ReconnectOptions {
  /** Delay cap for the first retry, in ms. */
  baseDelayMs: number;
  /** Largest delay between two retries, in ms. */
  maxDelayMs: number;
  /** Consecutive failed attempts before the element gives up and shows a Reconnect button. */
  maxAttempts: number;
}

/** Defaults: 0.5 s doubling up to 15 s, giving up after 10 consecutive failures (about 1.5 minutes). */
export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = Object.freeze({
  baseDelayMs: 500,
  maxDelayMs: 15_000,
  maxAttempts: 10,
});

/** Merges page-supplied options over the defaults, clamping nonsense (negative, NaN, absurd) to sane values. */
export function resolveReconnect(partial: Partial<ReconnectOptions> | undefined): ReconnectOptions {
  const pick = (v: number | undefined, fallback: number, min: number, max: number): number =>
    typeof v === 'number' && Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : fallback;
  const baseDelayMs = pick(partial?.baseDelayMs, DEFAULT_RECONNECT.baseDelayMs, 1, 60_000);
  return {
    baseDelayMs,
    maxDelayMs: pick(
      partial?.maxDelayMs,
      Math.max(baseDelayMs, DEFAULT_RECONNECT.maxDelayMs),
      baseDelayMs,
      300_000,
    ),
    maxAttempts: Math.round(pick(partial?.maxAttempts, DEFAULT_RECONNECT.maxAttempts, 0, 1_000)),
  };
}

/**
 * Delay before retry number `attempt` (1-based): exponential, capped, with "equal jitter" (half fixed, half
 * random) so that many tabs dropped by one server restart do not all come back in the same millisecond, yet
 * no retry fires immediately.
 */
export function backoffDelay(
  attempt: number,
  options: ReconnectOptions,
  random: () => number = Math.random,
): number {
  const cap = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
