import type { AgentEvent, SequencedAgentEvent } from '@threadline/contracts';

/**
 * Longest run state the relay's stores keep (characters): a paused run's serialized state, history included.
 * The same bound as tools-kit's `MAX_RUN_STATE_LENGTH`; `runToolStoreConformance` checks it on every store.
 */
export const MAX_RUN_STATE_LENGTH = 16 * 1024 * 1024;

/** A thread and who owns it. */
export interface ThreadRecord {
  threadId: string;
  ownerId: string;
  title: string;
  createdAt: number;
  updatedAt: number;
}

export type RunStatus = 'running' | 'finished' | 'failed';

/** One run of the agent in a thread, started by one user message. */
export interface RunRecord {
  runId: string;
  threadId: string;
  userId: string;
  clientMessageId: string;
  status: RunStatus;
  startedAt: number;
  endedAt?: number;
  /** Which relay instance streams the run, and until when: see {@link RunLease}. Absent for runs without one. */
  lease?: RunLease;
}

/**
 * The lease of a running run: the relay instance streaming it renews it in bulk (one store call per interval
 * for all its runs); once it expired, any instance may claim the run ({@link EventStore.claimRuns}) and end it.
 */
export interface RunLease {
  /** The id of the relay instance that holds the run. */
  owner: string;
  /** When the lease ends unless renewed, in ms since the epoch on the store's clock. */
  expiresAt: number;
}

/** Input of {@link EventStore.claimRuns}. */
export interface ClaimRunsInput {
  /** The instance that takes the runs over. */
  owner: string;
  /** Length of the new lease, in ms (from the store's clock). */
  ttlMs: number;
  /** Most runs one call claims. */
  limit: number;
  /**
   * Also claim running runs that have no lease (started before leases existed, or by a relay without them) and
   * runs whose lease names `owner` itself (left by an earlier process with the same instance id), expired or
   * not. For the start of an instance (`relay.recover()`); the periodic sweep claims expired leases only.
   */
  orphans?: boolean;
}

/**
 * An event as stored: its `seq` and its JSON text exactly as it goes to browsers (a SequencedAgentEvent,
 * serialized once at append time), so replay can send it without parsing and re-serializing.
 */
export interface StoredEvent {
  seq: number;
  json: string;
}

/** One thread's events in an {@link EventStore.appendMany} call. */
export interface AppendBatch {
  threadId: string;
  events: readonly AgentEvent[];
}

/** Input of {@link EventStore.startRun} (and each entry of {@link EventStore.startRuns}). */
export interface StartRunInput {
  threadId: string;
  runId: string;
  userId: string;
  clientMessageId: string;
  /**
   * The run's first event, appended with it: the USER_MESSAGE of a `send` (same runId, userId and
   * clientMessageId), or for a `regenerate` a RUN_STARTED with `regenerates` (same runId).
   */
  userMessage: AgentEvent;
  /** Record the run with a lease held by `owner` for `ttlMs` (from the store's clock), in the same transaction. */
  lease?: { owner: string; ttlMs: number };
}

/** What {@link EventStore.startRun} did. */
export type StartRunResult =
  | { status: 'started'; run: RunRecord; userMessage: StoredEvent }
  /** The clientMessageId was seen before in this thread: nothing new was written. */
  | { status: 'duplicate'; run: RunRecord }
  /** Another run of this thread is still running: nothing was written. */
  | { status: 'run_active'; activeRun: RunRecord };

/** What {@link EventStore.deleteThread} did. */
export type DeleteThreadResult = 'deleted' | 'not_found' | 'run_active';

/**
 * The relay's storage port. Every method is atomic: it commits whole or not at all. Sequencing lives here
 * (a counter plus uniqueness on (threadId, seq)) so that several relay processes sharing one database can
 * never hand out the same seq or leave a hole.
 *
 * Adapters: `@threadline/relay/memory`, `@threadline/relay/sqlite`, `@threadline/relay/postgres`,
 * `@threadline/relay/mongodb`; all pass the conformance suite in `@threadline/relay/testing`. The SQLite,
 * PostgreSQL and MongoDB stores also implement tools-kit's `ToolStore` (the tool router's storage: profiles,
 * the agent's session items, idempotent results, paused runs' states) in the same database; the memory store
 * does not (use tools-kit's `MemoryToolStore` next to it).
 */
export interface EventStore {
  /** Creates a thread. Fails with StoreError code `conflict` if the id exists. */
  createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord>;
  getThread(threadId: string): Promise<ThreadRecord | null>;
  /** The owner's threads, most recently updated first. */
  listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]>;
  /**
   * Sets a thread's title (checked like createThread's, at most 200 characters). With `onlyIfUntitled` it is
   * set only while the title is '' (so a title made from the first message is stored once and never replaces
   * a rename). Leaves `updatedAt` as it is. Returns the thread as stored after the call, null if none.
   */
  renameThread(
    threadId: string,
    title: string,
    options?: { onlyIfUntitled?: boolean },
  ): Promise<ThreadRecord | null>;
  /**
   * In one transaction removes the thread and everything stored under it: its events, its runs (and the
   * clientMessageIds they remember) and, in a store that also implements tools-kit's `ToolStore`, the agent's
   * session items. `run_active`, with nothing removed, while one of its runs is running; `not_found` when
   * there is no such thread. Per-user data (the profile, idempotency keys) is kept.
   */
  deleteThread(threadId: string): Promise<DeleteThreadResult>;

  /**
   * Appends events to a thread, assigning consecutive seqs after the thread's last one, all in one
   * transaction. A RUN_FINISHED or RUN_ERROR among them ends its run (status `finished` / `failed`) in the
   * same transaction. Returns what was stored, in order.
   */
  append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]>;
  /**
   * Optional group commit: appends several threads' batches in ONE transaction, so N threads streaming at
   * once cost one commit (one fsync) instead of N. Each batch gets what {@link EventStore.append} would give
   * it (consecutive seqs after its thread's last; a thread named twice continues where its earlier batch
   * ended; terminal events end their run) and the result holds one `StoredEvent[]` per batch, in order.
   *
   * All or nothing for the whole call: every batch is validated (contract shape, its own thread, the thread
   * exists) before anything is written, and one invalid batch rejects the call (`invalid_message` naming the
   * batch, or `not_found`) with nothing stored for any thread. The relay then retries the batches one by one
   * with `append`, so only the bad one fails. Adapters that can't commit across threads atomically must not
   * offer this method (the relay falls back to `append` per thread).
   */
  appendMany?(batches: readonly AppendBatch[]): Promise<StoredEvent[][]>;
  /** Stored events with `seq > afterSeq`, ascending, at most `limit`. */
  read(threadId: string, options: { afterSeq: number; limit: number }): Promise<StoredEvent[]>;
  /** The thread's highest seq, 0 when it has none. */
  lastSeq(threadId: string): Promise<number>;

  /**
   * In one transaction: if `clientMessageId` was seen in this thread, returns `duplicate`; else if a run of
   * the thread is `running`, returns `run_active`; else appends `userMessage` (a USER_MESSAGE event, or the
   * RUN_STARTED of a regenerate) and records the run as running.
   */
  startRun(input: StartRunInput): Promise<StartRunResult>;
  /**
   * Optional grouped run start: several {@link EventStore.startRun} calls in ONE transaction, so N users
   * sending at once cost one commit (one fsync) instead of N. Inputs are taken in order and each gets what
   * `startRun` would have given it at that point (`started`, `duplicate` or `run_active`; a thread named twice
   * sees the earlier input's effect), one result per input, in order.
   *
   * All or nothing for the whole call: an input that `startRun` would reject (`invalid_message`, `not_found`,
   * `conflict`) rejects the call with nothing stored for any input; the relay then retries the inputs one by
   * one with `startRun`, so only the bad one fails. Adapters that can't commit several run starts atomically
   * must not offer this method (the relay falls back to `startRun` per input).
   */
  startRuns?(inputs: readonly StartRunInput[]): Promise<StartRunResult[]>;
  getRun(runId: string): Promise<RunRecord | null>;
  /** The thread's run in status `running`, if any. */
  activeRun(threadId: string): Promise<RunRecord | null>;
  /** Every run in status `running` (used at start to fail what a previous process left running). */
  listRunningRuns(): Promise<RunRecord[]>;

  // Run leases, for several relay instances sharing the store. Optional: a store without them gets the
  // single-instance behaviour (a starting relay fails every run left running). Both are atomic per run.
  /**
   * Renews, in one call, the leases of those of `runIds` that are still running and held by `owner`: their
   * expiry becomes the store's now + `ttlMs`. Returns the ids renewed; a missing one has ended or was claimed
   * by another instance, and its owner must stop streaming it without writing to it.
   */
  renewLeases?(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]>;
  /**
   * Atomically takes over, for `owner`, up to `limit` running runs whose lease expired before the store's
   * now (and with `orphans`, those without a lease or held by `owner`): each gets the lease `owner` until
   * now + `ttlMs`, and is returned with it. Two instances claiming at once never get the same run.
   */
  claimRuns?(input: ClaimRunsInput): Promise<RunRecord[]>;

  /**
   * Optional: forgets the saved state of a paused run (see tools-kit's `ToolStore.deleteRunState`; a store
   * that implements that port has it). The relay calls it when it cancels a paused run or its approval
   * expires, so the state does not outlive the run; without it the state stays until the tool router drops it.
   */
  deleteRunState?(threadId: string, runId: string): Promise<void>;

  // Retention.
  /**
   * Removes, in one transaction, up to `limit` threads (default {@link DEFAULT_PRUNE_LIMIT}, at most
   * {@link MAX_PRUNE_LIMIT}) whose last activity (`updatedAt`: a message or an agent event) is before `cutoff`
   * (ms since the epoch) and that have no run in status `running`, oldest first: each thread with its event
   * log, its runs and, in a store that also implements tools-kit's `ToolStore`, its session items (the
   * agent's memory). A thread that gets activity or a run while this runs is left alone. Profiles and
   * idempotency keys stay.
   */
  pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult>;

  /** Releases connections and file handles. */
  close(): Promise<void>;
}

/** Threads a {@link EventStore.pruneOlderThan} call removes when it is given no limit. */
export const DEFAULT_PRUNE_LIMIT = 100;
/** Most threads one {@link EventStore.pruneOlderThan} call removes. */
export const MAX_PRUNE_LIMIT = 1000;

/** What {@link EventStore.pruneOlderThan} removed. */
export interface PruneResult {
  threads: number;
  events: number;
  runs: number;
  /** Session items removed with the threads; 0 in a store without tools-kit's `ToolStore` part. */
  sessionItems: number;
  /** True when the call removed as many threads as its limit: more may qualify (call again). */
  more: boolean;
}

export type { SequencedAgentEvent };
