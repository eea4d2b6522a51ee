import { endsRun } from './run-end.js';
import { RelayError } from '../errors.js';
import type { ThreadPubSub } from './pubsub.js';
import type { EventStore, StoredEvent } from '../stores/store.js';

/**
 * A live view of one thread: every stored event with `seq > afterSeq`, in order, then the live tail, with no
 * gap and no duplicate. Consume it with `for await` (one event at a time) or `nextBatch()` (everything
 * buffered at once, for writers that batch). A consumer that falls behind past its bound is ended with a
 * {@link RelayError} `slow_consumer`; it can subscribe again from {@link Subscription.lastSeq}.
 */
export interface Subscription extends AsyncIterable<StoredEvent> {
  readonly threadId: string;
  /** The seq of the last event handed to the consumer (the `afterSeq` to resume from). */
  readonly lastSeq: number;
  /** True once ended (closed, slow consumer, relay closed, store failure). */
  readonly ended: boolean;
  /**
   * Resolves with every buffered event (at least one), waiting if none; `null` once closed. Rejects with
   * the {@link RelayError} that ended the subscription (`slow_consumer`, `store_error`, `closed`).
   */
  nextBatch(): Promise<StoredEvent[] | null>;
  /** Stops the subscription and releases its slot. Idempotent. */
  close(): void;
}

/** Bounds of one subscription. */
export interface SubscriptionBounds {
  /** Most live events buffered for a consumer that has not taken them yet. */
  maxBufferedEvents: number;
  /** Most bytes of event JSON buffered the same way. */
  maxBufferedBytes: number;
  /** Events read from the store per backlog query. */
  replayPageSize: number;
}

type Waiter = { resolve(batch: StoredEvent[] | null): void; reject(error: unknown): void };

/** @internal The relay's implementation of {@link Subscription}. */
export class ThreadSubscription implements Subscription {
  readonly threadId: string;
  #lastSeq: number;
  /** Highest seq accepted into the buffer (the store read cursor). */
  #cursor: number;
  #buffer: StoredEvent[] = [];
  #bufferedBytes = 0;
  /** Live events heard while the backlog (or a gap) is being read from the store. */
  #pending: StoredEvent[] = [];
  #pendingBytes = 0;
  #catchingUp = false;
  #waiter: Waiter | undefined;
  #spaceWaiter: (() => void) | undefined;
  #end: { error: RelayError | null } | undefined;
  /** When the consumer last got an event (or the subscription began). */
  #quietSince = Date.now();
  /** The last event delivered was not a run's end (or nothing was delivered yet): a run may be going on. */
  #maybeMidRun = true;
  #unlisten: (() => void) | undefined;
  readonly #store: EventStore;
  readonly #bounds: SubscriptionBounds;
  readonly #onEnd: () => void;

  constructor(options: {
    store: EventStore;
    pubsub: ThreadPubSub;
    threadId: string;
    afterSeq: number;
    bounds: SubscriptionBounds;
    onEnd: () => void;
  }) {
    this.threadId = options.threadId;
    this.#store = options.store;
    this.#bounds = options.bounds;
    this.#onEnd = options.onEnd;
    this.#lastSeq = options.afterSeq;
    this.#cursor = options.afterSeq;
    // Listen before the first read so that nothing stored after the read begins can be missed.
    this.#unlisten = options.pubsub.subscribe(this.threadId, (events) => this.#onLive(events));
    this.#catchingUp = true;
    void this.#catchUp();
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  nextBatch(): Promise<StoredEvent[] | null> {
    if (this.#buffer.length > 0) return Promise.resolve(this.#take());
    if (this.#end) return this.#end.error ? Promise.reject(this.#end.error) : Promise.resolve(null);
    if (this.#waiter) return Promise.reject(new RelayError('conflict', 'nextBatch() is already waiting'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  close(): void {
    this.#finish(null);
  }

  /** @internal Ends the subscription with an error (relay shutdown, slow consumer). */
  fail(error: RelayError): void {
    this.#finish(error);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StoredEvent> {
    try {
      for (;;) {
        const batch = await this.nextBatch();
        if (batch === null) return;
        for (const event of batch) yield event;
      }
    } finally {
      // A consumer that breaks out of the loop is done with the subscription.
      this.close();
    }
  }

  #take(): StoredEvent[] {
    const batch = this.#buffer;
    this.#buffer = [];
    this.#bufferedBytes = 0;
    const last = batch[batch.length - 1];
    if (last) this.#lastSeq = last.seq;
    const space = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    space?.();
    return batch;
  }

  /**
   * @internal Since when this subscription has heard nothing while a run of its thread may be going on, or
   * null (it is reading the store, ended, or the last event it delivered ended a run).
   */
  get quietMidRunSince(): number | null {
    return this.#end || this.#catchingUp || !this.#maybeMidRun ? null : this.#quietSince;
  }

  /**
   * @internal The thread's newest seq, read from the store by the relay for a quiet subscription: events the
   * pub/sub never brought (their instance died between storing and publishing them) are read now.
   */
  recheck(lastSeq: number): void {
    this.#quietSince = Date.now();
    if (this.#end || this.#catchingUp || lastSeq <= this.#cursor) return;
    this.#catchingUp = true;
    void this.#catchUp();
  }

  #push(event: StoredEvent, live: boolean): void {
    this.#quietSince = Date.now();
    this.#maybeMidRun = !endsRun(event);
    this.#buffer.push(event);
    this.#bufferedBytes += event.json.length;
    this.#cursor = event.seq;
    if (
      live &&
      (this.#buffer.length > this.#bounds.maxBufferedEvents ||
        this.#bufferedBytes > this.#bounds.maxBufferedBytes)
    ) {
      this.#finish(
        new RelayError(
          'slow_consumer',
          `subscriber fell more than ${this.#bounds.maxBufferedEvents} events or ${this.#bounds.maxBufferedBytes} bytes behind; resubscribe with afterSeq ${this.#lastSeq}`,
        ),
      );
      return;
    }
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter.resolve(this.#take());
    }
  }

  #onLive(events: readonly StoredEvent[]): void {
    if (this.#end) return;
    if (this.#catchingUp) {
      for (const event of events) {
        this.#pending.push(event);
        this.#pendingBytes += event.json.length;
      }
      if (
        this.#pending.length > this.#bounds.maxBufferedEvents ||
        this.#pendingBytes > this.#bounds.maxBufferedBytes
      ) {
        this.#finish(
          new RelayError(
            'slow_consumer',
            `subscriber fell behind while catching up; resubscribe with afterSeq ${this.#lastSeq}`,
          ),
        );
      }
      return;
    }
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      if (event.seq <= this.#cursor) continue; // already delivered (read from the store first)
      if (event.seq === this.#cursor + 1) {
        this.#push(event, true);
        if (this.#end) return;
        continue;
      }
      // A hole: events published elsewhere, or out of order. Read it back from the store.
      for (let j = i; j < events.length; j++) {
        this.#pending.push(events[j]!);
        this.#pendingBytes += events[j]!.json.length;
      }
      this.#catchingUp = true;
      void this.#catchUp();
      return;
    }
  }

  async #catchUp(): Promise<void> {
    const limit = Math.max(1, Math.min(this.#bounds.replayPageSize, this.#bounds.maxBufferedEvents));
    try {
      for (;;) {
        // Backlog pages are paced by the consumer: read the next page only once it has taken the last.
        while (this.#buffer.length > 0 && !this.#end) {
          await new Promise<void>((resolve) => {
            this.#spaceWaiter = resolve;
          });
        }
        if (this.#end) return;
        const page = await this.#store.read(this.threadId, { afterSeq: this.#cursor, limit });
        if (this.#end) return;
        for (const event of page) if (event.seq > this.#cursor) this.#push(event, false);
        if (page.length >= limit) continue;
        // The store has nothing more: hand over to the live events heard meanwhile.
        const pending = this.#pending;
        let i = 0;
        while (i < pending.length && pending[i]!.seq <= this.#cursor) i++;
        if (i < pending.length && pending[i]!.seq > this.#cursor + 1 && page.length > 0) {
          // Still a hole (the store may be a replica that lags): drop what is delivered and read again.
          this.#pending = pending.slice(i);
          this.#pendingBytes = this.#pending.reduce((n, e) => n + e.json.length, 0);
          continue;
        }
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#catchingUp = false;
        // The store is the truth: a hole it cannot fill either is not one we can wait out, so take the rest.
        for (; i < pending.length && !this.#end; i++)
          if (pending[i]!.seq > this.#cursor) this.#push(pending[i]!, true);
        return;
      }
    } catch (cause) {
      this.#finish(new RelayError('store_error', 'reading the thread from the store failed', { cause }));
    }
  }

  #finish(error: RelayError | null): void {
    if (this.#end) return;
    this.#end = { error };
    this.#buffer = [];
    this.#pending = [];
    this.#unlisten?.();
    this.#unlisten = undefined;
    const space = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    space?.();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) {
      if (error) waiter.reject(error);
      else waiter.resolve(null);
    }
    this.#onEnd();
  }
}
