import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import type { createClient } from 'redis';
import type { ControlListener, ControlMessage, ThreadListener, ThreadPubSub } from '../core/pubsub.js';
import type { EventStore, StoredEvent } from '../stores/store.js';
import { decode, encode, redact } from './redis-wire.js';

/** One node-redis connection. */
export type RedisClient = ReturnType<typeof createClient>;

/** Threads probed at once after a reconnect or a resync. */
const PROBE_CONCURRENCY = 8;
/** The control message that asks every instance to probe all its threads (a publish was lost). */
const RESYNC = 'resync';
/** Fewest ms between two resync requests from this instance. */
const RESYNC_INTERVAL_MS = 250;
/** Prefix of a relay control message on the control channel: `ctl:` + JSON `[instanceId, message]`. */
const CONTROL = 'ctl:';
/** Longest control message read (a cancel is well under 300 characters). */
const MAX_CONTROL_LENGTH = 4_096;

/**
 * A {@link ThreadPubSub} over Redis pub/sub (through the `redis` client, an optional peer dependency): live
 * fan-out of stored events across relay instances. Listeners in this process hear this process's publishes
 * at once, as with the in-process default; other instances hear them through one Redis channel per thread
 * (subscribed while the thread has listeners here; this instance's own messages coming back are ignored).
 *
 * Redis pub/sub delivers at most once: a message is lost when a connection drops or Redis restarts. The
 * relay's subscriptions already detect a seq gap and read it back from the store, so what this adapter must
 * guarantee is that a subscriber always hears, sooner or later, an event at least as new as the thread's
 * newest: after any possible loss (its subscriber connection came back, a channel subscription became
 * active, another instance could not publish) it reads each affected thread's newest stored event and hands
 * it to the listeners as a probe; a subscription that is behind reads the gap from the store, one that is
 * not drops it by seq. Delivery to browsers stays exactly once and in order.
 *
 * Bounded: no offline queue (a publish while Redis is down is dropped and a resync requested instead), at
 * most `maxPendingPublishes` unanswered publishes, messages of at most `maxMessageBytes`, at most 8 probes
 * at once. Redis going away and coming back are each logged once.
 *
 * @example
 * import { openRedisPubSub } from '@threadline/relay/redis';
 * const pubsub = await openRedisPubSub({ url: process.env.REDIS_URL!, store });
 * const relay = createRelay({ store, pubsub, agent, tokens, toolsBaseUrl, tools });
 */
export class RedisPubSub implements ThreadPubSub {
  readonly #id = randomUUID();
  readonly #local = new EventEmitter<Record<string, [readonly StoredEvent[]]>>();
  readonly #control = new EventEmitter<{ message: [ControlMessage] }>();
  readonly #pub: RedisClient;
  readonly #sub: RedisClient;
  readonly #store: Pick<EventStore, 'read' | 'lastSeq'>;
  readonly #prefix: string;
  readonly #maxPending: number;
  readonly #maxMessageBytes: number;
  readonly #logger: Pick<Console, 'warn'>;
  readonly #url: string;
  /** The Redis listener of each subscribed thread's channel. */
  readonly #channels = new Map<string, (message: string) => void>();
  /** Threads whose SUBSCRIBE failed: sent again when the subscriber connection is back. */
  readonly #unconfirmed = new Set<string>();
  #pending = 0;
  /** A publish was dropped: the other instances must be asked to probe their threads. */
  #resyncWanted = false;
  #resyncTimer: NodeJS.Timeout | undefined;
  #lastResync = 0;
  /** Threads waiting for a probe, and how many probes run. */
  readonly #probeQueue = new Set<string>();
  #probing = 0;
  #down = false;
  #closed = false;

  /** Use {@link openRedisPubSub}, which connects. */
  constructor(options: {
    publisher: RedisClient;
    subscriber: RedisClient;
    store: Pick<EventStore, 'read' | 'lastSeq'>;
    prefix: string;
    maxPendingPublishes: number;
    maxMessageBytes: number;
    logger: Pick<Console, 'warn'>;
    url: string;
  }) {
    this.#pub = options.publisher;
    this.#sub = options.subscriber;
    this.#store = options.store;
    this.#prefix = options.prefix;
    this.#maxPending = options.maxPendingPublishes;
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#logger = options.logger;
    this.#url = options.url;
    for (const client of [this.#pub, this.#sub]) {
      client.on('error', (error: unknown) => this.#wentDown(error));
      client.on('ready', () => this.#cameBack(client));
    }
  }

  /** True while both connections to Redis are up. */
  get connected(): boolean {
    return this.#pub.isReady && this.#sub.isReady;
  }

  /** Subscribes the control channel. Called once by {@link openRedisPubSub}. */
  async start(): Promise<void> {
    await this.#sub.subscribe(`${this.#prefix}control`, (message: string) => {
      if (message.startsWith(CONTROL)) {
        this.#onControl(message);
        return;
      }
      if (message !== RESYNC && !message.startsWith(`${RESYNC}:`)) return;
      if (message === `${RESYNC}:${this.#id}`) return;
      this.#probeAll();
    });
  }

  publish(threadId: string, events: readonly StoredEvent[]): void {
    if (events.length === 0 || this.#closed) return;
    this.#local.emit(threadId, events);
    // Another instance hears this only if it listens to the thread; PUBLISH to a channel nobody subscribed
    // costs Redis next to nothing, so there is no need to track who listens where.
    if (!this.#pub.isReady || this.#pending >= this.#maxPending) {
      this.#dropped();
      return;
    }
    let message = encode(this.#id, events);
    if (message.length > this.#maxMessageBytes) message = encode(this.#id, events.slice(-1));
    this.#pending += 1;
    this.#pub.publish(this.#channel(threadId), message).then(
      () => {
        this.#pending -= 1;
        if (this.#resyncWanted) this.#scheduleResync();
      },
      () => {
        this.#pending -= 1;
        this.#dropped();
      },
    );
  }

  subscribe(threadId: string, listener: ThreadListener): () => void {
    this.#local.on(threadId, listener);
    if (!this.#channels.has(threadId) && !this.#closed) {
      const onMessage = (message: string) => this.#onMessage(threadId, message);
      this.#channels.set(threadId, onMessage);
      this.#listen(threadId, onMessage);
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#local.off(threadId, listener);
      if (this.#local.listenerCount(threadId) > 0) return;
      const onMessage = this.#channels.get(threadId);
      this.#channels.delete(threadId);
      if (onMessage && !this.#closed)
        this.#sub.unsubscribe(this.#channel(threadId), onMessage).catch(() => {});
    };
  }

  listenerCount(threadId: string): number {
    return this.#local.listenerCount(threadId);
  }

  /**
   * Sends a control message to every relay instance: at once to this process's listeners, through the
   * control channel to the others. At most once: while Redis is down, or past `maxPendingPublishes`
   * unanswered publishes, it reaches this process only (the relay that sent a cancel then finds out, bounded,
   * that the run did not end, and the owner learns it from the store at its next lease renewal).
   */
  publishControl(message: ControlMessage): void {
    if (this.#closed) return;
    this.#control.emit('message', { ...message });
    if (!this.#pub.isReady || this.#pending >= this.#maxPending) return;
    this.#pending += 1;
    this.#pub.publish(`${this.#prefix}control`, `${CONTROL}${JSON.stringify([this.#id, message])}`).then(
      () => {
        this.#pending -= 1;
      },
      () => {
        this.#pending -= 1;
      },
    );
  }

  subscribeControl(listener: ControlListener): () => void {
    this.#control.on('message', listener);
    return () => {
      this.#control.off('message', listener);
    };
  }

  #onControl(text: string): void {
    if (this.#closed || text.length > MAX_CONTROL_LENGTH) return;
    let parts: unknown;
    try {
      parts = JSON.parse(text.slice(CONTROL.length));
    } catch {
      return;
    }
    if (!Array.isArray(parts) || parts.length !== 2 || parts[0] === this.#id) return;
    const message = parts[1] as { type?: unknown; runId?: unknown; threadId?: unknown } | null;
    if (message?.type === 'cancel' && typeof message.runId === 'string')
      this.#control.emit('message', { type: 'cancel', runId: message.runId });
    else if (message?.type === 'thread_deleted' && typeof message.threadId === 'string')
      this.#control.emit('message', { type: 'thread_deleted', threadId: message.threadId });
  }

  /** Stops listening and closes both connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#resyncTimer);
    this.#probeQueue.clear();
    this.#channels.clear();
    this.#unconfirmed.clear();
    this.#local.removeAllListeners();
    this.#control.removeAllListeners();
    await Promise.all(
      [this.#pub, this.#sub].map(async (client) => {
        try {
          if (client.isReady) await client.close();
          else client.destroy();
        } catch {
          client.destroy();
        }
      }),
    );
  }

  /**
   * Subscribes the thread's channel and, once Redis confirmed it, probes the thread: whatever was published
   * before the subscription became active may be lost to us. A SUBSCRIBE that fails (the connection dropped
   * before Redis answered) is sent again when the connection is back.
   */
  #listen(threadId: string, onMessage: (message: string) => void): void {
    const channel = this.#channel(threadId);
    this.#sub.subscribe(channel, onMessage).then(
      () => {
        // Unsubscribed while the SUBSCRIBE was in flight: undo it.
        if (this.#channels.get(threadId) !== onMessage)
          this.#sub.unsubscribe(channel, onMessage).catch(() => {});
        else this.#probe(threadId);
      },
      () => {
        if (this.#closed || this.#channels.get(threadId) !== onMessage) return;
        this.#unconfirmed.add(threadId);
        if (this.#sub.isReady) this.#retrySubscribes();
      },
    );
  }

  #retrySubscribes(): void {
    const threads = [...this.#unconfirmed];
    this.#unconfirmed.clear();
    for (const threadId of threads) {
      const onMessage = this.#channels.get(threadId);
      if (onMessage) this.#listen(threadId, onMessage);
    }
  }

  #channel(threadId: string): string {
    return `${this.#prefix}thread:${threadId}`;
  }

  #onMessage(threadId: string, message: string): void {
    if (this.#closed) return;
    const decoded = decode(message);
    if (decoded === null) {
      // Not ours or damaged: whatever it stood for, the store has it.
      this.#probe(threadId);
      return;
    }
    if (decoded.from === this.#id) return; // our own publish, already delivered here
    this.#local.emit(threadId, decoded.events);
  }

  /** A publish did not reach Redis: ask every instance to probe, once Redis takes publishes again. */
  #dropped(): void {
    this.#resyncWanted = true;
    this.#scheduleResync();
  }

  #scheduleResync(): void {
    if (this.#resyncTimer || this.#closed || !this.#pub.isReady) return;
    if (this.#pending >= this.#maxPending / 2) return; // retried when publishes drain
    const wait = Math.max(0, this.#lastResync + RESYNC_INTERVAL_MS - Date.now());
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = undefined;
      if (this.#closed || !this.#resyncWanted || !this.#pub.isReady) return;
      this.#resyncWanted = false;
      this.#lastResync = Date.now();
      this.#pub.publish(`${this.#prefix}control`, `${RESYNC}:${this.#id}`).catch(() => this.#dropped());
    }, wait);
    this.#resyncTimer.unref?.();
  }

  #probeAll(): void {
    for (const threadId of this.#channels.keys()) this.#probe(threadId);
  }

  /** Queues a read of the thread's newest stored event, handed to its listeners (at most 8 reads at once). */
  #probe(threadId: string): void {
    if (this.#closed || this.#local.listenerCount(threadId) === 0) return;
    this.#probeQueue.add(threadId);
    this.#drainProbes();
  }

  #drainProbes(): void {
    while (this.#probing < PROBE_CONCURRENCY && this.#probeQueue.size > 0) {
      const threadId = this.#probeQueue.values().next().value as string;
      this.#probeQueue.delete(threadId);
      this.#probing += 1;
      void this.#probeOne(threadId).finally(() => {
        this.#probing -= 1;
        this.#drainProbes();
      });
    }
  }

  async #probeOne(threadId: string): Promise<void> {
    try {
      const last = await this.#store.lastSeq(threadId);
      if (last === 0 || this.#closed) return;
      const events = await this.#store.read(threadId, { afterSeq: last - 1, limit: 1 });
      if (events.length > 0 && !this.#closed) this.#local.emit(threadId, events);
    } catch {
      // The store is down too: the subscriptions notice on their own reads. Nothing to fill now.
    }
  }

  #wentDown(error: unknown): void {
    if (this.#down || this.#closed) return;
    this.#down = true;
    const why = error instanceof Error ? error.message : String(error);
    this.#logger.warn(
      `threadline redis pub/sub: lost Redis at ${redact(this.#url)} (${why}); live events between instances pause and resume from the store when it is back`,
    );
  }

  #cameBack(client: RedisClient): void {
    if (this.#closed) return;
    // The subscriber resubscribed every channel before 'ready': probe them all for what passed meanwhile.
    if (client === this.#sub) {
      this.#retrySubscribes();
      this.#probeAll();
    }
    if (client === this.#pub && this.#resyncWanted) this.#scheduleResync();
    if (this.#down && this.connected) {
      this.#down = false;
      this.#logger.warn(
        `threadline redis pub/sub: Redis at ${redact(this.#url)} is back; filling gaps from the store`,
      );
    }
  }
}
