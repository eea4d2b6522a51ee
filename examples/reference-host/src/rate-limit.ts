/**
 * A fixed-window counter per key (e.g. client address), bounded in memory: at most `maxKeys` keys are tracked;
 * when full, expired windows are dropped first and then the oldest keys.
 */
export class RateLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #hits = new Map<string, { count: number; resetAt: number }>();

  constructor(options: { limit: number; windowMs: number; maxKeys?: number; now?: () => number }) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Counts one hit for `key`; returns false when the key is over its limit in the current window. */
  hit(key: string): boolean {
    const now = this.#now();
    let entry = this.#hits.get(key);
    if (!entry || entry.resetAt <= now) {
      if (!entry && this.#hits.size >= this.#maxKeys) this.#evict(now);
      entry = { count: 0, resetAt: now + this.#windowMs };
      this.#hits.set(key, entry);
    }
    entry.count += 1;
    return entry.count <= this.#limit;
  }

  /** Takes back one hit of `key` (e.g. an attempt that turned out to be a correct sign-in). */
  forgive(key: string): void {
    const entry = this.#hits.get(key);
    if (entry && entry.count > 0) entry.count -= 1;
  }

  /** Forgets `key` entirely (its count starts over). */
  reset(key: string): void {
    this.#hits.delete(key);
  }

  /** Seconds until `key`'s window ends (at least 1), for a `Retry-After` header. */
  retryAfterSeconds(key: string): number {
    const entry = this.#hits.get(key);
    const ms = entry ? entry.resetAt - this.#now() : 0;
    return Math.max(1, Math.ceil(ms / 1000));
  }

  /** Number of keys tracked (for tests of the bound). */
  get size(): number {
    return this.#hits.size;
  }

  #evict(now: number): void {
    for (const [k, v] of this.#hits) if (v.resetAt <= now) this.#hits.delete(k);
    // Map iteration is insertion order, so this drops the oldest keys.
    for (const k of this.#hits.keys()) {
      if (this.#hits.size < this.#maxKeys) break;
      this.#hits.delete(k);
    }
  }
}
