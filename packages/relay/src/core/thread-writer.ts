import type { AgentEvent } from '@threadline/contracts';
import type { Flushable, GroupCommitter } from './group-commit.js';
import type { ThreadPubSub } from './pubsub.js';
import type { StoredEvent } from '../stores/store.js';

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

/** Bounds of a {@link ThreadWriter}. */
export interface WriterOptions {
  /** Most buffered entries; reaching it writes at once. */
  maxBatchEvents: number;
  /** Longest delta a coalesced chunk may reach. */
  maxCoalescedDeltaLength: number;
}

/**
 * @internal How long a run's RUN_STARTED waits for the run's next event to share its store write (see
 * {@link ThreadWriter.hold}) before it is written on its own.
 */
export const START_HOLD_MS = 25;

/**
 * @internal Appends one thread's events in order: batches go through the relay's shared
 * {@link GroupCommitter} (one store transaction for every thread's batch of the turn; while this thread's
 * write is in flight, new events gather for the next one), chunks of the same message coalesced, every
 * stored batch published to the thread's subscribers after the store confirmed it, never before.
 */
export class ThreadWriter implements Flushable {
  readonly threadId: string;
  #buffer: Entry[] = [];
  /** The serial chain of store operations on this thread. */
  #tail: Promise<unknown> = Promise.resolve();
  #ops = 0;
  #requested = false;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #committer: GroupCommitter;
  readonly #pubsub: ThreadPubSub;
  readonly #options: WriterOptions;
  readonly #onIdle: (writer: ThreadWriter) => void;

  constructor(
    threadId: string,
    committer: GroupCommitter,
    pubsub: ThreadPubSub,
    options: WriterOptions,
    onIdle: (writer: ThreadWriter) => void,
  ) {
    this.threadId = threadId;
    this.#committer = committer;
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
    if (this.#buffer.length >= this.#options.maxBatchEvents) void this.#flush(true).catch(() => {});
    else if (!this.#requested) {
      this.#requested = true;
      this.#committer.request(this);
    }
    return entry;
  }

  /**
   * Buffers a run's RUN_STARTED without asking for a write: the run's next event (with an agent service, its
   * first output, which comes once the agent has fetched its tools and history from this API) takes it along in
   * the same write, so those fetches are not answered behind a commit of its own. Asks for the write after
   * {@link START_HOLD_MS} when nothing followed.
   */
  hold(event: AgentEvent, owner: WriteOwner | null): void {
    this.#buffer.push({ event, parts: null, length: 0, owner, stored: null });
    if (this.#buffer.length >= this.#options.maxBatchEvents) void this.#flush(true).catch(() => {});
    else if (!this.#requested && this.#holdTimer === undefined) {
      this.#holdTimer = setTimeout(() => {
        this.#holdTimer = undefined;
        if (this.#buffer.length > 0 && !this.#requested) {
          this.#requested = true;
          this.#committer.request(this);
        }
      }, START_HOLD_MS);
    }
  }

  /** Writes everything buffered so far; resolves once stored and published, rejects if the store failed. */
  flush(): Promise<void> {
    return this.#flush(false);
  }

  /** @internal The shared flush of the turn. */
  flushNow(): void {
    this.#requested = false;
    void this.#flush(false).catch(() => {});
  }

  #flush(urgent: boolean): Promise<void> {
    if (this.#holdTimer !== undefined) {
      clearTimeout(this.#holdTimer);
      this.#holdTimer = undefined;
    }
    if (this.#requested) {
      this.#requested = false;
      this.#committer.cancel(this);
    }
    if (this.#buffer.length === 0) {
      // Something earlier may still be in flight; callers expect it to be written when this resolves.
      return this.#ops === 0 ? Promise.resolve() : this.#chain(async () => {});
    }
    const batch = this.#buffer;
    this.#buffer = [];
    return this.#chain(() => this.#write(batch, urgent));
  }

  /** Runs `fn` on the thread's serial chain after everything buffered so far is written. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#buffer.length > 0) void this.flush().catch(() => {});
    return this.#chain(fn);
  }

  #chain<T>(op: () => Promise<T>): Promise<T> {
    // An idle chain starts the op at once, so a shared flush collects every writer's batch in the same tick.
    const idle = this.#ops === 0;
    this.#ops++;
    const run = idle ? start(op) : this.#tail.then(op);
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

  async #write(batch: Entry[], urgent: boolean): Promise<void> {
    const events = batch.map(toEvent);
    let stored: StoredEvent[];
    try {
      stored = await this.#committer.submit(this.threadId, events, urgent);
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
}

/** Starts an async op now, turning a synchronous throw into a rejection. */
function start<T>(op: () => Promise<T>): Promise<T> {
  try {
    return op();
  } catch (error) {
    return Promise.reject(error);
  }
}

function toEvent(entry: Entry): AgentEvent {
  if (entry.parts === null || entry.parts.length === 1 || entry.event.type !== 'TEXT_MESSAGE_CHUNK')
    return entry.event;
  return { ...entry.event, delta: entry.parts.join('') };
}
