import { EventEmitter } from 'eventemitter3';
import type { StoredEvent } from '../stores/store.js';

/** Receives one thread's newly stored events, in seq order, in batches. */
export type ThreadListener = (events: readonly StoredEvent[]) => void;

/**
 * A message between relay instances: `cancel` asks the instance streaming `runId` to stop it (its agent call
 * is aborted and it stores RUN_ERROR `cancelled`); `thread_deleted` tells every instance to end its
 * subscriptions to `threadId`. Instances ignore types they do not know.
 */
export type ControlMessage = { type: 'cancel'; runId: string } | { type: 'thread_deleted'; threadId: string };

/** Receives control messages. */
export type ControlListener = (message: ControlMessage) => void;

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
  /**
   * Optional control channel: sends a message to every relay sharing the port, this process included, at
   * most once (a relay that sent a cancel waits, bounded, for the run to end). Without it a cancel on one
   * instance reaches the owner of the run only through the store (at its next lease renewal).
   */
  publishControl?(message: ControlMessage): void;
  /** Optional: hears every control message; returns the function that stops it. */
  subscribeControl?(listener: ControlListener): () => void;
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
  readonly #control = new EventEmitter<{ message: [ControlMessage] }>();

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

  publishControl(message: ControlMessage): void {
    this.#control.emit('message', { ...message });
  }

  subscribeControl(listener: ControlListener): () => void {
    this.#control.on('message', listener);
    return () => {
      this.#control.off('message', listener);
    };
  }
}
