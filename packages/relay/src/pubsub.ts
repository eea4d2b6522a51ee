import { EventEmitter } from 'eventemitter3';
import type { StoredEvent } from './store.js';

/** Receives one thread's newly stored events, in seq order, in batches. */
export type ThreadListener = (events: readonly StoredEvent[]) => void;

/**
 * The live fan-out port: per-thread publish/subscribe of events that are already stored. The relay publishes
 * after every append; subscribers hear every thread event published by any relay sharing the port. The
 * in-process default reaches one process; a cluster adapter (MongoDB change streams, Redis pub/sub) can make
 * it cluster-wide with no change to the relay. Delivery may skip or reorder across processes: subscribers
 * detect a gap by `seq` and read it back from the store.
 */
export interface ThreadPubSub {
  publish(threadId: string, events: readonly StoredEvent[]): void;
  /** Starts listening to a thread; returns the function that stops it. */
  subscribe(threadId: string, listener: ThreadListener): () => void;
  /** Number of listeners on a thread in this process. */
  listenerCount(threadId: string): number;
  close?(): Promise<void>;
}

/**
 * The in-process {@link ThreadPubSub}: an event emitter keyed by thread id.
 *
 * @example
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools, pubsub: new InProcessPubSub() });
 */
export class InProcessPubSub implements ThreadPubSub {
  readonly #emitter = new EventEmitter<Record<string, [readonly StoredEvent[]]>>();

  publish(threadId: string, events: readonly StoredEvent[]): void {
    if (events.length > 0) this.#emitter.emit(threadId, events);
  }

  subscribe(threadId: string, listener: ThreadListener): () => void {
    this.#emitter.on(threadId, listener);
    return () => {
      this.#emitter.off(threadId, listener);
    };
  }

  listenerCount(threadId: string): number {
    return this.#emitter.listenerCount(threadId);
  }
}
