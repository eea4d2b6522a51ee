import { createClient, type RedisClientOptions } from 'redis';
import { RelayError } from '../errors.js';
import type { EventStore } from '../stores/store.js';
import { RedisPubSub, type RedisClient } from './redis-pubsub.js';
import { redact } from './redis-wire.js';

export { RedisPubSub } from './redis-pubsub.js';
export { openRedisLimits, RedisLimits } from './redis-limits.js';
export type { RedisLimitsOptions } from './redis-limits.js';

// `@threadline/relay/redis`: opening the Redis pub/sub adapter (options, the two connections, reconnects). The
// adapter itself (fan-out, control channel, gap fill) is redis-pubsub.ts, its message format redis-wire.ts.

/** Options of {@link openRedisPubSub}. */
export interface RedisPubSubOptions {
  /** The Redis server, e.g. `redis://127.0.0.1:6379` (`rediss://` for TLS). */
  url: string;
  /**
   * The relay's store (the same one every instance shares). After a reconnect, a dropped publish or a new
   * channel subscription, the adapter reads each subscribed thread's newest stored event from it and hands it
   * to the thread's listeners, whose seq check then reads whatever they missed from the store.
   */
  store: Pick<EventStore, 'read' | 'lastSeq'>;
  /** Prefix of every channel (one per thread, plus `<prefix>control`). Default `threadline:`. */
  channelPrefix?: string;
  /**
   * Most publishes sent to Redis and not yet answered (default 1000). Past it a publish is dropped rather
   * than queued, and the other instances are told to fill the gap from the store once Redis keeps up again.
   */
  maxPendingPublishes?: number;
  /**
   * Largest message published for one batch, in characters of JSON (default 1,048,576). A bigger batch is
   * published as its last event alone: subscribers elsewhere read the rest from the store.
   */
  maxMessageBytes?: number;
  /** How long {@link openRedisPubSub} waits for the first connection (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Longest wait between reconnect attempts while Redis is down (default 2000 ms). */
  maxReconnectDelayMs?: number;
  /** Where the adapter says that Redis went away or came back, one line each (default `console`). */
  logger?: Pick<Console, 'warn'>;
  /** Further node-redis client options (TLS, credentials, ...). `url` and reconnect settings are the adapter's. */
  clientOptions?: Omit<RedisClientOptions, 'url'>;
}

const DEFAULT_MAX_PENDING_PUBLISHES = 1_000;
const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_RECONNECT_DELAY_MS = 2_000;
/**
 * Connects to Redis (two connections: one publishes, one subscribes) and returns the {@link RedisPubSub}.
 * Throws RelayError `invalid_options` for bad options and `pubsub_unavailable` when Redis can't be reached
 * within `connectTimeoutMs`. Once open it never gives up: while Redis is down it retries, and live delivery
 * between instances resumes, gaps filled from the store, when Redis is back.
 *
 * @example
 * import { openRedisPubSub } from '@threadline/relay/redis';
 * const pubsub = await openRedisPubSub({ url: 'redis://127.0.0.1:6379', store });
 */
export async function openRedisPubSub(options: RedisPubSubOptions): Promise<RedisPubSub> {
  if (typeof options !== 'object' || options === null)
    throw new RelayError('invalid_options', 'openRedisPubSub needs options');
  const { url } = options;
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url))
    throw new RelayError('invalid_options', 'url must be a redis:// or rediss:// URL');
  const store = options.store;
  if (typeof store?.read !== 'function' || typeof store.lastSeq !== 'function')
    throw new RelayError(
      'invalid_options',
      'store must be the relay’s EventStore (it fills gaps after Redis loses messages)',
    );
  const prefix = options.channelPrefix ?? 'threadline:';
  if (typeof prefix !== 'string' || prefix.length > 64)
    throw new RelayError('invalid_options', 'channelPrefix must be a string of at most 64 characters');
  const maxPendingPublishes = integer(
    'maxPendingPublishes',
    options.maxPendingPublishes,
    DEFAULT_MAX_PENDING_PUBLISHES,
    1,
  );
  const maxMessageBytes = integer(
    'maxMessageBytes',
    options.maxMessageBytes,
    DEFAULT_MAX_MESSAGE_BYTES,
    1_024,
  );
  const connectTimeoutMs = integer(
    'connectTimeoutMs',
    options.connectTimeoutMs,
    DEFAULT_CONNECT_TIMEOUT_MS,
    1,
  );
  const maxDelay = integer(
    'maxReconnectDelayMs',
    options.maxReconnectDelayMs,
    DEFAULT_MAX_RECONNECT_DELAY_MS,
    1,
  );
  const logger = options.logger ?? console;
  const clientOptions = {
    ...options.clientOptions,
    url,
    // No offline queue: a command while Redis is down fails at once instead of piling up in memory.
    disableOfflineQueue: true,
    socket: {
      ...options.clientOptions?.socket,
      connectTimeout: connectTimeoutMs,
      // Never give up; back off from 50 ms to maxReconnectDelayMs.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 16), maxDelay),
    },
  } as RedisClientOptions;
  const publisher = createClient(clientOptions);
  const subscriber = createClient(clientOptions);
  // Until the adapter takes over, swallow the error events (an unhandled 'error' would crash the process).
  const ignore = () => {};
  publisher.on('error', ignore);
  subscriber.on('error', ignore);
  const connectBoth = Promise.all([publisher.connect(), subscriber.connect()]);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no connection within ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
  });
  try {
    await Promise.race([connectBoth, timeout]);
  } catch (error) {
    connectBoth.catch(() => {});
    publisher.destroy();
    subscriber.destroy();
    const why = error instanceof Error ? error.message : String(error);
    throw new RelayError('pubsub_unavailable', `could not connect to Redis at ${redact(url)}: ${why}`, {
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
  const pubsub = new RedisPubSub({
    publisher: publisher as RedisClient,
    subscriber: subscriber as RedisClient,
    store,
    prefix,
    maxPendingPublishes,
    maxMessageBytes,
    logger,
    url,
  });
  publisher.off('error', ignore);
  subscriber.off('error', ignore);
  try {
    await pubsub.start();
  } catch (error) {
    await pubsub.close();
    throw new RelayError('pubsub_unavailable', `could not subscribe on Redis at ${redact(url)}`, {
      cause: error,
    });
  }
  return pubsub;
}

function integer(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new RelayError('invalid_options', `${name} must be an integer >= ${min}`);
  return value;
}
