import type { AgentEvent } from '@threadline/contracts';
import { StoreError } from '../errors.js';
import type { EventStore, StartRunInput, StartRunResult, StoredEvent } from '../stores/store.js';

/** Something with buffered events that wants them written at the next shared flush. */
export interface Flushable {
  /** Hands its buffer to the committer (through {@link GroupCommitter.submit}). */
  flushNow(): void;
}

interface Job {
  threadId: string;
  events: AgentEvent[];
  resolve(stored: StoredEvent[]): void;
  reject(error: unknown): void;
}

interface StartJob {
  input: StartRunInput;
  resolve(result: StartRunResult): void;
  reject(error: unknown): void;
}

/** Codes with which a store refuses an appendMany call before writing anything, for one batch's sake. */
const REFUSED_BEFORE_WRITING = new Set(['invalid_message', 'not_found']);
/** The same for a startRuns call (a run id that exists is refused too, with nothing written). */
const START_REFUSED_BEFORE_WRITING = new Set(['invalid_message', 'not_found', 'conflict']);

/**
 * @internal Group commit across threads. Every thread writer asks for a flush instead of arming its own
 * timer; once per I/O turn (or `coalesceWindowMs`) the committer flushes all of them and writes every batch
 * handed to it in ONE store transaction (`EventStore.appendMany`), so N threads streaming at once cost one
 * commit (one fsync on SQLite) per turn instead of N. Once `earlyThreads` writers are asking, the flush starts
 * at once (after the current callback) instead: with a thousand threads streaming, one I/O turn reads a
 * thousand sockets, and the first events read would otherwise wait for all of them, then for one big write.
 * While a commit is in flight new batches gather for the next one. Stores without `appendMany` get one
 * `append` per batch, as before. Run starts (USER_MESSAGE and run record) join the same turn through
 * {@link GroupCommitter.start}: all of them in one `startRuns` transaction, so a burst of N sends costs one
 * commit, not N (stores without it: one `startRun` each).
 *
 * If the shared commit fails: when the store refused it up front for one batch's sake (`invalid_message`,
 * `not_found`: nothing was written), each batch is retried alone so only the bad one fails; any other
 * failure (I/O, lock timeout) fails every batch of that commit, and their runs end with `store_unavailable`.
 * Nothing is ever retried after a failure that might have written, so nothing can be stored twice.
 */
export class GroupCommitter {
  readonly #store: EventStore;
  readonly #windowMs: number;
  readonly #earlyThreads: number;
  #asking = new Set<Flushable>();
  #queue: Job[] = [];
  #starts: StartJob[] = [];
  #timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;
  /** A flush is queued as a microtask (the early flush); `#timer` may still be armed and is then cleared. */
  #early = false;
  #inTick = false;
  #inFlight = false;

  constructor(store: EventStore, windowMs: number, earlyThreads = Number.POSITIVE_INFINITY) {
    this.#store = store;
    this.#windowMs = windowMs;
    this.#earlyThreads = earlyThreads;
  }

  /** Flushes `writer` at the next shared flush. */
  request(writer: Flushable): void {
    this.#asking.add(writer);
    this.#arm();
  }

  /** Turns the armed flush into an early one when enough writers are asking and nothing is in flight. */
  #maybeEarly(): void {
    if (this.#early || this.#inFlight || this.#inTick) return;
    if (this.#asking.size + this.#queue.length < this.#earlyThreads) return;
    this.#early = true;
    queueMicrotask(this.#tick);
  }

  /** Forgets a pending request (the writer flushed on its own). */
  cancel(writer: Flushable): void {
    this.#asking.delete(writer);
  }

  /**
   * Queues one thread's batch for the next commit; resolves with what was stored. `urgent` commits at once
   * (with whatever else is queued) when nothing is in flight: a full batch that holds the agent stream up.
   */
  submit(threadId: string, events: AgentEvent[], urgent = false): Promise<StoredEvent[]> {
    return new Promise<StoredEvent[]>((resolve, reject) => {
      this.#queue.push({ threadId, events, resolve, reject });
      if (this.#inTick) return; // the tick commits when every writer has handed its batch over
      if (urgent && !this.#inFlight) this.#commit();
      else this.#arm();
    });
  }

  /**
   * Queues a run start for the next commit; resolves with the store's answer for it. The caller keeps the
   * thread's writes serial (it calls this on the thread's chain), so a commit holds at most one job per thread.
   */
  start(input: StartRunInput): Promise<StartRunResult> {
    return new Promise<StartRunResult>((resolve, reject) => {
      this.#starts.push({ input, resolve, reject });
      if (!this.#inTick) this.#arm();
    });
  }

  #pending(): boolean {
    return this.#queue.length > 0 || this.#starts.length > 0;
  }

  #arm(): void {
    if (this.#inTick) return;
    if (this.#timer === undefined && !this.#early)
      this.#timer = this.#windowMs > 0 ? setTimeout(this.#tick, this.#windowMs) : setImmediate(this.#tick);
    this.#maybeEarly();
  }

  readonly #tick = (): void => {
    if (this.#timer !== undefined) {
      if (this.#windowMs > 0) clearTimeout(this.#timer as ReturnType<typeof setTimeout>);
      else clearImmediate(this.#timer as ReturnType<typeof setImmediate>);
      this.#timer = undefined;
    }
    this.#early = false;
    const asking = this.#asking;
    this.#asking = new Set();
    this.#inTick = true;
    try {
      for (const writer of asking) writer.flushNow();
    } finally {
      this.#inTick = false;
    }
    if (this.#inFlight) {
      if (this.#pending()) this.#arm();
    } else this.#commit();
  };

  #commit(): void {
    if (!this.#pending()) return;
    const jobs = this.#queue;
    const starts = this.#starts;
    this.#queue = [];
    this.#starts = [];
    this.#inFlight = true;
    const writeAppends = () => this.#write(jobs);
    void this.#startAll(starts)
      .then(writeAppends, writeAppends)
      .finally(() => {
        this.#inFlight = false;
        if (this.#pending() || this.#asking.size > 0) this.#arm();
      });
  }

  async #startAll(jobs: StartJob[]): Promise<void> {
    if (jobs.length === 0) return;
    const store = this.#store;
    if (jobs.length === 1 || !store.startRuns) {
      await Promise.all(jobs.map((job) => this.#startOne(job)));
      return;
    }
    let results: StartRunResult[];
    try {
      results = await store.startRuns(jobs.map((job) => job.input));
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && START_REFUSED_BEFORE_WRITING.has(code)) {
        // Nothing was written: isolate the bad input by starting each one alone.
        await Promise.all(jobs.map((job) => this.#startOne(job)));
      } else {
        for (const job of jobs) job.reject(error);
      }
      return;
    }
    for (let i = 0; i < jobs.length; i++) {
      const result = results[i];
      if (result) jobs[i]!.resolve(result);
      else jobs[i]!.reject(new StoreError('internal_error', 'the store returned too few run starts'));
    }
  }

  async #startOne(job: StartJob): Promise<void> {
    try {
      job.resolve(await this.#store.startRun(job.input));
    } catch (error) {
      job.reject(error);
    }
  }

  async #write(jobs: Job[]): Promise<void> {
    const store = this.#store;
    if (jobs.length === 1 || !store.appendMany) {
      await Promise.all(jobs.map((job) => this.#writeOne(job)));
      return;
    }
    let results: StoredEvent[][];
    try {
      results = await store.appendMany(jobs.map((job) => ({ threadId: job.threadId, events: job.events })));
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && REFUSED_BEFORE_WRITING.has(code)) {
        // Nothing was written: isolate the bad batch by writing each one alone.
        await Promise.all(jobs.map((job) => this.#writeOne(job)));
      } else {
        for (const job of jobs) job.reject(error);
      }
      return;
    }
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      const stored = results[i];
      if (stored?.length === job.events.length) job.resolve(stored);
      else
        job.reject(new StoreError('internal_error', 'the store returned the wrong number of stored events'));
    }
  }

  async #writeOne(job: Job): Promise<void> {
    try {
      job.resolve(await this.#store.append(job.threadId, job.events));
    } catch (error) {
      job.reject(error);
    }
  }
}
