/**
 * Counts open WebSockets per key (`user:<id>`, `address:<ip>`) for the per-user and per-address bounds of
 * `attachWebSocketServer`. The default counts in this process; a cluster can implement it over a shared
 * store (an atomic check-and-increment per key) so the bounds hold across instances.
 */
export interface ConnectionCounter {
  /** Takes one slot of `key` when fewer than `limit` are taken, and says whether it did. */
  acquire(key: string, limit: number): boolean | Promise<boolean>;
  /** Gives back one slot `acquire` took for `key`. */
  release(key: string): void | Promise<void>;
}

/**
 * The in-process {@link ConnectionCounter}: one map entry per key with a slot taken, so its size is bounded
 * by the open sockets.
 */
export class MemoryConnectionCounter implements ConnectionCounter {
  readonly #held = new Map<string, number>();

  acquire(key: string, limit: number): boolean {
    const held = this.#held.get(key) ?? 0;
    if (held >= limit) return false;
    this.#held.set(key, held + 1);
    return true;
  }

  release(key: string): void {
    const held = this.#held.get(key);
    if (held === undefined) return;
    if (held <= 1) this.#held.delete(key);
    else this.#held.set(key, held - 1);
  }

  /** Slots taken for `key` (for tests and metrics). */
  held(key: string): number {
    return this.#held.get(key) ?? 0;
  }

  /** Keys with a slot taken. */
  get size(): number {
    return this.#held.size;
  }
}
