import type { AgentEvent } from '@threadline/contracts';
import type { ThreadPubSub } from './pubsub.js';
import type { EventStore, StoredEvent } from './store.js';

/** Who to tell when a batch holding one's events could not be stored. */
export interface WriteOwner {
  onStoreError(error: unknown): void;
}

/** One buffered event; consecutive text chunks of one message share an entry (coalesced for storage). */
interface Entry {
  event: AgentEvent;
  /** Deltas of coalesced TEXT_MESSAGE_CHUNKs, joined once when the batch is written. */
  parts: string[] | null;
  length: number;
  owner: WriteOwner | null;
  stored: StoredEvent | null;
}

/** Bounds and timing of a {@link ThreadWriter}. */
export interface WriterOptions {
  /** Extra time to wait for more events before writing; 0 writes at the end of the current I/O turn. */
  coalesceWindowMs: number;
  /** Most buffered entries; reaching it writes at once. */
  maxBatchEvents: number;
  /** Longest delta a coalesced chunk may reach. */
  maxCoalescedDeltaLength: number;
}

/**
 * @internal Appends one thread's events in order: one store transaction per batch (group commit — while a
 * write is in flight, new events gather for the next one), chunks of the same message coalesced, every
 * stored batch published to the thread's subscribers after the store confirmed it, never before.
 */
export class ThreadWriter {
  readonly threadId: string;
  #buffer: Entry[] = [];
  /** The serial chain of store operations on this thread. */
  #tail: Promise<unknown> = Promise.resolve();
  #ops = 0;
  #scheduled: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;
  readonly #store: EventStore;
  readonly #pubsub: ThreadPubSub;
  readonly #options: WriterOptions;
  readonly #onIdle: (writer: ThreadWriter) => void;

  constructor(
    threadId: string,
    store: EventStore,
    pubsub: ThreadPubSub,
    options: WriterOptions,
    onIdle: (writer: ThreadWriter) => void,
  ) {
    this.threadId = threadId;
    this.#store = store;
    this.#pubsub = pubsub;
    this.#options = options;
    this.#onIdle = onIdle;
  }

  /** Entries waiting for the next write. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** True when nothing is buffered or being written. */
  get idle(): boolean {
    return this.#buffer.length === 0 && this.#ops === 0;
  }

  /**
   * Buffers an event for the next write. `mergeable` lets a TEXT_MESSAGE_CHUNK join the previous chunk of the
   * same run and message. Returns the entry, whose `stored` is set once written.
   */
  add(
    event: AgentEvent,
    owner: WriteOwner | null,
    mergeable: boolean,
  ): { readonly stored: StoredEvent | null } {
    if (mergeable && event.type === 'TEXT_MESSAGE_CHUNK') {
      const last = this.#buffer[this.#buffer.length - 1];
      if (
        last !== undefined &&
        last.parts !== null &&
        last.owner === owner &&
        last.event.type === 'TEXT_MESSAGE_CHUNK' &&
        last.event.messageId === event.messageId &&
        last.event.runId === event.runId &&
        last.length + event.delta.length <= this.#options.maxCoalescedDeltaLength
      ) {
        last.parts.push(event.delta);
        last.length += event.delta.length;
        return last;
      }
    }
    const entry: Entry = {
      event,
      parts: mergeable && event.type === 'TEXT_MESSAGE_CHUNK' ? [event.delta] : null,
      length: event.type === 'TEXT_MESSAGE_CHUNK' ? event.delta.length : 0,
      owner,
      stored: null,
    };
    this.#buffer.push(entry);
    if (this.#buffer.length >= this.#options.maxBatchEvents) void this.flush().catch(() => {});
    else this.#schedule();
    return entry;
  }

  /** Writes everything buffered so far; resolves once stored and published, rejects if the store failed. */
  flush(): Promise<void> {
    this.#cancelSchedule();
    if (this.#buffer.length === 0) {
      // Something earlier may still be in flight; callers expect it to be written when this resolves.
      return this.#ops === 0 ? Promise.resolve() : this.#chain(async () => {});
    }
    const batch = this.#buffer;
    this.#buffer = [];
    return this.#chain(() => this.#write(batch));
  }

  /** Runs `fn` on the thread's serial chain after everything buffered so far is written. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#buffer.length > 0) void this.flush().catch(() => {});
    return this.#chain(fn);
  }

  #chain<T>(op: () => Promise<T>): Promise<T> {
    this.#ops++;
    const run = this.#tail.then(op);
    this.#tail = run.then(
      () => this.#done(),
      () => this.#done(),
    );
    return run;
  }

  #done(): void {
    this.#ops--;
    if (this.idle) this.#onIdle(this);
  }

  async #write(batch: Entry[]): Promise<void> {
    const events = batch.map(toEvent);
    let stored: StoredEvent[];
    try {
      stored = await this.#store.append(this.threadId, events);
    } catch (error) {
      const told = new Set<WriteOwner>();
      for (const entry of batch) {
        if (entry.owner && !told.has(entry.owner)) {
          told.add(entry.owner);
          entry.owner.onStoreError(error);
        }
      }
      throw error;
    }
    for (let i = 0; i < batch.length; i++) batch[i]!.stored = stored[i] ?? null;
    this.#pubsub.publish(this.threadId, stored);
  }

  #schedule(): void {
    if (this.#scheduled !== undefined) return;
    const fire = () => {
      this.#scheduled = undefined;
      void this.flush().catch(() => {});
    };
    this.#scheduled =
      this.#options.coalesceWindowMs > 0
        ? setTimeout(fire, this.#options.coalesceWindowMs)
        : setImmediate(fire);
  }

  #cancelSchedule(): void {
    if (this.#scheduled === undefined) return;
    if (this.#options.coalesceWindowMs > 0) clearTimeout(this.#scheduled as ReturnType<typeof setTimeout>);
    else clearImmediate(this.#scheduled as ReturnType<typeof setImmediate>);
    this.#scheduled = undefined;
  }
}

function toEvent(entry: Entry): AgentEvent {
  if (entry.parts === null || entry.parts.length === 1 || entry.event.type !== 'TEXT_MESSAGE_CHUNK')
    return entry.event;
  return { ...entry.event, delta: entry.parts.join('') };
}
