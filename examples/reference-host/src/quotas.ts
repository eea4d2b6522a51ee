import { RelayError, type Relay } from '@threadline/relay';

/** Options of {@link MessageQuota}. */
export interface MessageQuotaOptions {
  /** Bytes of message text one user may send per window. */
  bytesPerWindow: number;
  /** The window, in ms (fixed windows, one per user, starting at the user's first send). */
  windowMs: number;
  /** Most users tracked; when full, ended windows are dropped first, then the oldest. Default 100,000. */
  maxUsers?: number;
  now?: () => number;
}

/** A per-user budget of message bytes per fixed window, bounded in memory. */
export class MessageQuota {
  readonly bytesPerWindow: number;
  readonly windowMs: number;
  readonly #maxUsers: number;
  readonly #now: () => number;
  readonly #used = new Map<string, { bytes: number; resetAt: number }>();

  constructor(options: MessageQuotaOptions) {
    this.bytesPerWindow = options.bytesPerWindow;
    this.windowMs = options.windowMs;
    this.#maxUsers = options.maxUsers ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Takes `bytes` from the user's budget if they fit. Returns 0 when taken, else the seconds until the window
   * ends (nothing is taken then).
   */
  take(userId: string, bytes: number): number {
    const now = this.#now();
    let entry = this.#used.get(userId);
    if (!entry || entry.resetAt <= now) {
      if (!entry && this.#used.size >= this.#maxUsers) this.#evict(now);
      entry = { bytes: 0, resetAt: now + this.windowMs };
      this.#used.set(userId, entry);
    }
    if (entry.bytes + bytes > this.bytesPerWindow)
      return Math.max(1, Math.ceil((entry.resetAt - now) / 1000));
    entry.bytes += bytes;
    return 0;
  }

  /** Gives back bytes taken for a send that stored nothing. */
  refund(userId: string, bytes: number): void {
    const entry = this.#used.get(userId);
    if (entry) entry.bytes = Math.max(0, entry.bytes - bytes);
  }

  /** Users tracked (for tests of the bound). */
  get size(): number {
    return this.#used.size;
  }

  #evict(now: number): void {
    for (const [k, v] of this.#used) if (v.resetAt <= now) this.#used.delete(k);
    for (const k of this.#used.keys()) {
      if (this.#used.size < this.#maxUsers) break;
      this.#used.delete(k);
    }
  }
}

/**
 * A budget every instance of a cluster charges together (`RedisLimits` from `@threadline/relay/redis`): `take`
 * answers 0 when taken, else the ms until the window ends.
 */
export interface SharedBudget {
  take(key: string, amount: number, limit: number, windowMs: number): Promise<number>;
  refund(key: string, amount: number): Promise<void>;
}

/**
 * The relay as browsers reach it, with `send` charged to the user's {@link MessageQuota}: a send over the
 * budget is refused with RelayError `rate_limited` (the message says when to try again) before anything is
 * stored; a send the relay refuses gives its bytes back. With `shared` (REDIS_URL) the same bytes are charged
 * to the user's budget across instances too (key `bytes:<userId>`, the same window); this process's budget
 * still applies, so with Redis down each instance holds the bound on its own. Everything else is the relay.
 */
export function withMessageQuota(relay: Relay, quota: MessageQuota, shared?: SharedBudget): Relay {
  const guarded = Object.create(relay) as Relay;
  const refuse = (waitSeconds: number) => {
    const minutes = Math.ceil(waitSeconds / 60);
    return new RelayError(
      'rate_limited',
      `you sent more than ${quota.bytesPerWindow} bytes of messages within an hour; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`,
    );
  };
  guarded.send = async (input) => {
    const bytes = Buffer.byteLength(typeof input?.text === 'string' ? input.text : '', 'utf8');
    const userId = String(input?.user?.id);
    const wait = quota.take(userId, bytes);
    if (wait > 0) throw refuse(wait);
    if (shared) {
      const sharedWait = await shared.take(`bytes:${userId}`, bytes, quota.bytesPerWindow, quota.windowMs);
      if (sharedWait > 0) {
        quota.refund(userId, bytes);
        throw refuse(Math.ceil(sharedWait / 1000));
      }
    }
    try {
      return await relay.send(input);
    } catch (error) {
      quota.refund(userId, bytes);
      if (shared) await shared.refund(`bytes:${userId}`, bytes).catch(() => {});
      throw error;
    }
  };
  return guarded;
}
