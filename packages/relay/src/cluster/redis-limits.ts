import { randomUUID } from 'node:crypto';
import { createClient, type RedisClientOptions } from 'redis';
import type { ConnectionCounter } from '../browser/connection-counter.js';
import { RelayError } from '../errors.js';
import type { UserShares } from '../core/relay.js';

/** Options of {@link openRedisLimits}. */
export interface RedisLimitsOptions {
  /** The Redis server every instance shares, e.g. `redis://127.0.0.1:6379`. */
  url: string;
  /** Prefix of every key (default `threadline:limits:`). */
  keyPrefix?: string;
  /**
   * How long a dead instance's slots (open sockets, runs in progress) keep counting (default 15000 ms). Each
   * instance renews its own liveness every third of it; once it stops, the others drop its slots.
   */
  ttlMs?: number;
  /** How long {@link openRedisLimits} waits for the connection (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Where Redis going away and coming back are said, one line each (default `console`). */
  logger?: Pick<Console, 'warn'>;
  /** Further node-redis client options (TLS, credentials, ...). */
  clientOptions?: Omit<RedisClientOptions, 'url'>;
}

const DEFAULT_PREFIX = 'threadline:limits:';
const DEFAULT_TTL_MS = 15_000;
/** Slot hashes of keys nobody touched for this long expire (each acquire, and every hour each holder, renews). */
const HELD_KEY_TTL_MS = 86_400_000;
const REASSERT_EVERY_MS = 3_600_000;

/** Redis's clock in ms, the same for every instance. */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS: slot hash, instances zset · ARGV: instance, limit, hash ttl. Counts live instances' slots; takes one if fewer than limit. */
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local f = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #f, 2 do
  if f[i] == ARGV[1] or redis.call('ZSCORE', KEYS[2], f[i]) then total = total + tonumber(f[i + 1])
  else redis.call('HDEL', KEYS[1], f[i]) end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

/** KEYS: slot hash · ARGV: instance. */
const RELEASE = `local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n`;

/** KEYS: instances zset · ARGV: instance, ttl. Renews this instance; 1 when it had been dropped (its slots with it). */
const HEARTBEAT = `${NOW}
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if (not s) or tonumber(s) < now then return 1 end
return 0`;

/** KEYS: starts zset · ARGV: limit, window, member. Sliding window: 0 when taken, else ms until the oldest leaves. */
const WINDOW = `${NOW}
local w = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - w)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(o[2]) + w - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], w)
return 0`;

/** KEYS: budget · ARGV: amount, limit, window. Fixed window: 0 when taken, else ms until the window ends. */
const BUDGET = `local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  return math.max(1, ttl)
end
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0`;

/** KEYS: budget · ARGV: amount. Gives bytes back, never below 0, never creating the key. */
const REFUND = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('DECRBY', KEYS[1], ARGV[1])
if v < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
return 0`;

type Client = ReturnType<typeof createClient>;

/**
 * Per-user bounds shared by every instance of a cluster, on Redis: a {@link ConnectionCounter} for
 * `attachWebSocketServer` (sockets per user and per address) and {@link UserShares} for `createRelay` (runs in
 * progress per user, run starts per window), plus a fixed-window budget ({@link RedisLimits.take}) a host can
 * charge message bytes to.
 *
 * Slots held (a socket, a run) are counted per instance in one small hash per key; each instance renews its
 * liveness in Redis every `ttlMs / 3`, and an acquire anywhere drops the slots of instances that have not for
 * `ttlMs`, so a killed instance's share comes free within `ttlMs`. Windows and budgets expire with their
 * window. Every key is bounded (one hash field per live instance, at most `limit` window entries) and expires.
 *
 * Redis down: fails open to per-process bounds. Each call then decides on this process's own count (a socket
 * is refused once this process holds `limit` for the key; windows and budgets admit, the relay's and host's
 * in-process bounds still apply), with one log line when Redis goes away and one when it is back.
 *
 * @example
 * import { openRedisLimits } from '@threadline/relay/redis';
 * const limits = await openRedisLimits({ url: process.env.REDIS_URL! });
 * const relay = createRelay({ store, pubsub, userShares: limits, ... });
 * attachWebSocketServer(server, relay, { authenticate, counter: limits });
 */
export class RedisLimits implements ConnectionCounter, UserShares {
  /** This process's id in the slot hashes: new for every process, so a restart never inherits dead slots. */
  readonly instance = `i-${randomUUID()}`;
  readonly #client: Client;
  readonly #p: string;
  readonly #ttlMs: number;
  readonly #logger: Pick<Console, 'warn'>;
  /** Slots this process holds per key: in Redis, and taken locally while Redis was down. */
  readonly #held = new Map<string, { redis: number; local: number }>();
  readonly #timer: NodeJS.Timeout;
  #down = false;
  #lastReassert = Date.now();
  #member = 0;
  #closed = false;

  /** Use {@link openRedisLimits}. */
  constructor(options: { client: Client; prefix: string; ttlMs: number; logger: Pick<Console, 'warn'> }) {
    this.#client = options.client;
    this.#p = options.prefix;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger;
    this.#timer = setInterval(() => void this.heartbeat(), Math.max(1, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  /** Renews this instance's liveness (runs every `ttlMs / 3`); puts its slots back if it had been dropped. */
  async heartbeat(): Promise<void> {
    const dropped = await this.#call(() =>
      this.#client.eval(HEARTBEAT, {
        keys: [`${this.#p}instances`],
        arguments: [this.instance, String(this.#ttlMs)],
      }),
    );
    if (dropped === undefined) return;
    if (dropped === 1 || Date.now() - this.#lastReassert > REASSERT_EVERY_MS) {
      this.#lastReassert = Date.now();
      const multi = this.#client.multi();
      for (const [key, held] of this.#held) {
        if (held.redis <= 0) continue;
        multi.hSet(this.#heldKey(key), this.instance, String(held.redis));
        multi.pExpire(this.#heldKey(key), HELD_KEY_TTL_MS);
      }
      await this.#call(() => multi.exec());
    }
  }

  async acquire(key: string, limit: number): Promise<boolean> {
    const held = this.#held.get(key) ?? { redis: 0, local: 0 };
    const taken = await this.#call(() =>
      this.#client.eval(ACQUIRE, {
        keys: [this.#heldKey(key), `${this.#p}instances`],
        arguments: [this.instance, String(limit), String(HELD_KEY_TTL_MS)],
      }),
    );
    if (taken === undefined) {
      // Redis down: this process's own count decides.
      if (held.redis + held.local >= limit) return false;
      held.local++;
    } else if (taken === 1) held.redis++;
    else return false;
    this.#held.set(key, held);
    return true;
  }

  async release(key: string): Promise<void> {
    const held = this.#held.get(key);
    if (!held) return;
    if (held.local > 0) held.local--;
    else {
      held.redis--;
      await this.#call(() =>
        this.#client.eval(RELEASE, { keys: [this.#heldKey(key)], arguments: [this.instance] }),
      );
    }
    if (held.redis <= 0 && held.local <= 0) this.#held.delete(key);
  }

  async takeStart(
    key: string,
    limit: number,
    windowMs: number,
  ): Promise<{ token: string } | { retryAfterMs: number }> {
    const token = `${this.instance}:${++this.#member}`;
    const wait = await this.#call(() =>
      this.#client.eval(WINDOW, {
        keys: [`${this.#p}starts:${key}`],
        arguments: [String(limit), String(windowMs), token],
      }),
    );
    if (typeof wait === 'number' && wait > 0) return { retryAfterMs: wait };
    return { token };
  }

  async refundStart(key: string, token: string): Promise<void> {
    await this.#call(() => this.#client.zRem(`${this.#p}starts:${key}`, token));
  }

  /**
   * Takes `amount` from the fixed-window budget `key` (`limit` per `windowMs`, the window starting at the first
   * take) if it fits: 0 when taken, else the ms until the window ends. Redis down: 0 (the caller's in-process
   * budget decides).
   */
  async take(key: string, amount: number, limit: number, windowMs: number): Promise<number> {
    const wait = await this.#call(() =>
      this.#client.eval(BUDGET, {
        keys: [`${this.#p}budget:${key}`],
        arguments: [String(amount), String(limit), String(windowMs)],
      }),
    );
    return typeof wait === 'number' ? wait : 0;
  }

  /** Gives back `amount` taken from budget `key` (a send that stored nothing). */
  async refund(key: string, amount: number): Promise<void> {
    await this.#call(() =>
      this.#client.eval(REFUND, { keys: [`${this.#p}budget:${key}`], arguments: [String(amount)] }),
    );
  }

  /** Slots this process holds for `key` (for tests and metrics). */
  held(key: string): number {
    const held = this.#held.get(key);
    return held ? held.redis + held.local : 0;
  }

  /** Stops the heartbeat and disconnects. This instance's slots then expire in the others' eyes within `ttlMs`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      if (this.#client.isReady) await this.#client.close();
      else this.#client.destroy();
    } catch {
      this.#client.destroy();
    }
  }

  #heldKey(key: string): string {
    return `${this.#p}held:${key}`;
  }

  /** Runs a Redis call; on failure logs once (until one works again) and answers undefined. */
  async #call<T>(fn: () => Promise<T>): Promise<T | undefined> {
    if (this.#closed) return undefined;
    try {
      const result = await fn();
      if (this.#down) {
        this.#down = false;
        this.#logger.warn('[threadline/relay] Redis is back: per-user bounds hold across instances again');
      }
      return result;
    } catch (error) {
      if (!this.#down && !this.#closed) {
        this.#down = true;
        this.#logger.warn(
          `[threadline/relay] Redis is unavailable for per-user bounds (${(error as Error)?.message ?? error}): each instance enforces them on its own until it is back`,
        );
      }
      return undefined;
    }
  }
}

/**
 * Connects to Redis for the shared per-user bounds. Throws RelayError `pubsub_unavailable` when Redis can't be
 * reached within `connectTimeoutMs`, `invalid_options` for bad options. Once open, Redis going away makes it
 * fail open to per-process bounds (logged) until it is back.
 */
export async function openRedisLimits(options: RedisLimitsOptions): Promise<RedisLimits> {
  if (typeof options !== 'object' || options === null)
    throw new RelayError('invalid_options', 'openRedisLimits needs options');
  if (typeof options.url !== 'string' || !/^rediss?:\/\//.test(options.url))
    throw new RelayError('invalid_options', 'url must be a redis:// or rediss:// URL');
  const prefix = options.keyPrefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || prefix.length > 64)
    throw new RelayError('invalid_options', 'keyPrefix must be a string of at most 64 characters');
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 30 || ttlMs > 3_600_000)
    throw new RelayError('invalid_options', 'ttlMs must be an integer from 30 to 3600000');
  const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  if (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs < 1)
    throw new RelayError('invalid_options', 'connectTimeoutMs must be a positive integer');
  const client = createClient({
    ...options.clientOptions,
    url: options.url,
    // No offline queue: while Redis is down a call fails at once (and the bound falls back to this process).
    disableOfflineQueue: true,
    socket: {
      ...options.clientOptions?.socket,
      connectTimeout: connectTimeoutMs,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 16), 2_000),
    },
  } as RedisClientOptions) as Client;
  client.on('error', () => {}); // reported by the calls that fail, once per outage
  let timer: NodeJS.Timeout | undefined;
  const connecting = client.connect();
  try {
    await Promise.race([
      connecting,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no connection within ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
      }),
    ]);
  } catch (error) {
    connecting.catch(() => {});
    client.destroy();
    throw new RelayError(
      'pubsub_unavailable',
      `could not connect to Redis for per-user bounds: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  } finally {
    clearTimeout(timer);
  }
  const limits = new RedisLimits({ client, prefix, ttlMs, logger: options.logger ?? console });
  await limits.heartbeat();
  return limits;
}
