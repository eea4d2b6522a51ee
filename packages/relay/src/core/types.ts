import type { AgentEvent } from '@threadline/contracts';
import type { AgentTransport } from '../agent/agent-transport.js';
import type { EventStore, StoredEvent, ThreadRecord } from '../stores/store.js';
import type { ThreadPubSub } from './pubsub.js';
import type { DeprecatedTuningLimits, RelayLimits, RelayTuning } from './settings.js';
import type { Subscription } from './subscription.js';

// The relay's public shapes: its options, the inputs of its methods, and the Relay itself.

/** Mints the act-as token a run's agent calls tools with (e.g. tools-kit's `createTokenIssuer()`). */
export interface RunTokenIssuer {
  issue(input: { userId: string; threadId: string; runId: string; tools: string[] }): Promise<string>;
}

/** Options of {@link createRelay}. */
export interface RelayOptions {
  /** Where threads, events and runs are kept (`@threadline/relay/sqlite`, `/postgres`, `/mongodb`, `/memory`). */
  store: EventStore;
  /** How runs reach the agent service (`httpAgentTransport`, `inProcessAgentTransport`). */
  agent: AgentTransport;
  /** May this user use this thread? Default: only its owner. */
  authorize?(user: { id: string }, thread: ThreadRecord): boolean | Promise<boolean>;
  /** Mints each run's act-as token for the tools (e.g. tools-kit's `createTokenIssuer()`). */
  tokens: RunTokenIssuer;
  /** Base URL of the host's tool endpoints, passed to the agent in every run request. */
  toolsBaseUrl: string;
  /** Tool names every run's token allows. */
  tools: string[];
  /** Bounds: what the relay holds and allows (see {@link RelayLimits}). */
  limits?: Partial<RelayLimits> & DeprecatedTuningLimits;
  /** Batching, paging and timing knobs (see {@link RelayTuning}); the defaults suit every host we know. */
  tuning?: Partial<RelayTuning>;
  /** What a `send` does while the thread has a run in progress: fail with `run_active` (default) or wait. */
  whenRunActive?: 'reject' | 'queue';
  /** How this instance works with the other instances of a cluster; leave it out for a single process. */
  cluster?: RelayClusterOptions;
  /**
   * Give an untitled thread (title '') a title made from its first message ({@link titleFromMessage}, no
   * model call), stored once when its first run starts. Default true.
   */
  autoTitle?: boolean;
  /** Where unexpected failures are reported (default `console`). */
  logger?: Pick<Console, 'error' | 'warn'>;
  /** @deprecated use `cluster.pubsub` (removed in the next major). */
  pubsub?: ThreadPubSub;
  /** @deprecated use `cluster.instanceId` (removed in the next major). */
  instanceId?: string;
  /** @deprecated use `cluster.userShares` (removed in the next major). */
  userShares?: UserShares;
}

/** {@link RelayOptions.cluster}: what the instances of a cluster share. */
export interface RelayClusterOptions {
  /**
   * Live fan-out; default in-process. Pass the same adapter (e.g. `@threadline/relay/redis`) to every
   * instance of a cluster: it carries their events and, when it has a control channel, their cancels.
   */
  pubsub?: ThreadPubSub;
  /**
   * This relay instance's id in run leases (1-128 of `A-Za-z0-9_.:-`); default random per process. Give each
   * instance of a cluster a stable id of its own (a pod or host name) so that, restarted, it at once ends the
   * runs its previous process left (`recover()`), instead of waiting for their leases to expire.
   */
  instanceId?: string;
  /**
   * Per-user run shares every instance of a cluster counts together (e.g. `openRedisLimits` from
   * `@threadline/relay/redis`): `maxRunsPerUser` and `maxRunStartsPerUser` then hold across instances. This
   * instance's own shares apply as well. A call that throws is logged and admits (fail open to the per-process
   * shares).
   */
  userShares?: UserShares;
}

/** Where a host's tools hand the events they emit (STATE_CHANGED, TOOL_CALL_* …); see {@link Relay.toolEvents}. */
export interface ToolEventSink {
  /** Checks the event like {@link Relay.publish} and appends it to its thread's log; rejects like `publish`. */
  emit(event: AgentEvent): Promise<void>;
}

/**
 * Shared per-user counts for {@link RelayClusterOptions.userShares}: slots held (runs in progress, key
 * `runs:<userId>`) and a sliding window of starts (key `starts:<userId>`).
 */
export interface UserShares {
  /** Takes one slot of `key` when fewer than `limit` are held across instances; says whether it did. */
  acquire(key: string, limit: number): Promise<boolean>;
  /** Gives back a slot `acquire` took. */
  release(key: string): Promise<void>;
  /** Records a start in the `windowMs` window of `key` if fewer than `limit` are in it; else how long to wait. */
  takeStart(
    key: string,
    limit: number,
    windowMs: number,
  ): Promise<{ token: string } | { retryAfterMs: number }>;
  /** Takes back a start `takeStart` recorded (the run did not start). */
  refundStart(key: string, token: string): Promise<void>;
}

/** Input of {@link Relay.send}. */
export interface SendInput {
  user: { id: string };
  threadId: string;
  text: string;
  clientMessageId: string;
}

/** Input of {@link Relay.regenerate}. */
export interface RegenerateInput {
  user: { id: string };
  threadId: string;
  /** The browser's id for this request, as in `send`: a retry with the same id gets the first run's id. */
  clientMessageId: string;
}

/** Input of {@link Relay.subscribe}. */
export interface SubscribeInput {
  user: { id: string };
  threadId: string;
  /** Deliver events with `seq > afterSeq`; 0 for the whole thread. */
  afterSeq: number;
  /** Lower this subscriber's buffer bound below the relay's. */
  maxBufferedEvents?: number;
}

/** Input of {@link Relay.approve}: the decision on a tool call that waits for approval. */
export interface ApproveInput {
  user: { id: string };
  threadId: string;
  runId: string;
  toolCallId: string;
  approved: boolean;
  reason?: string;
}

/** The relay: persists, sequences, fans out and resumes agent runs. Create it with {@link createRelay}. */
export interface Relay {
  /**
   * Stores the user's message and starts a run, returning its id. Idempotent on `clientMessageId`: a retry
   * returns the first run's id and starts nothing. Rejects with {@link RelayError} `invalid_message`,
   * `not_found` (no such thread, or not the user's), `run_active`, `queue_full`, `too_many_runs` (the user's
   * share of runs at once), `rate_limited` (the user's runs per window, with `retryAfterMs`),
   * `agent_unavailable`, `store_error` or `closed`; nothing is acknowledged that was not stored.
   */
  send(input: SendInput): Promise<{ runId: string }>;
  /**
   * Starts a new run that answers the thread's last user message again and replaces the last answer: its
   * RUN_STARTED carries `regenerates` (the run it replaces) and no USER_MESSAGE is written. Idempotent on
   * `clientMessageId` like `send`. Rejects like `send` (`run_active` while a run is in progress, whatever
   * `whenRunActive` says), or `nothing_to_regenerate` when the thread has no user message.
   */
  regenerate(input: RegenerateInput): Promise<{ runId: string }>;
  /** Streams a thread's events after `afterSeq`, then live. Rejects like `send`, or `too_many_subscribers`. */
  subscribe(input: SubscribeInput): Promise<Subscription>;
  /**
   * Creates a thread owned by `user` (id `thr_<uuid>` unless `threadId` is given; `conflict` if it exists).
   * Without a title it is untitled (`''`) until its first message names it (see `autoTitle`).
   */
  createThread(input: { user: { id: string }; title?: string; threadId?: string }): Promise<ThreadRecord>;
  /** The user's own threads, most recently updated first (`limit` 1-1000, default 100). */
  listThreads(input: { user: { id: string }; limit?: number }): Promise<ThreadRecord[]>;
  /** One thread the user may use (`authorize`); `not_found` otherwise, as for a missing thread. */
  getThread(input: { user: { id: string }; threadId: string }): Promise<ThreadRecord>;
  /**
   * Renames the user's thread: `title` is trimmed and must be 1-200 characters (`invalid_message`). Only its
   * owner may (anyone else gets `not_found`, as for a missing thread). Resolves with the thread as stored.
   */
  renameThread(input: { user: { id: string }; threadId: string; title: string }): Promise<ThreadRecord>;
  /**
   * Deletes the user's thread and everything stored under it (the store's `deleteThread`: events, runs, the
   * agent's session items), then ends every subscription to it with RelayError `thread_deleted`: in this
   * process, and on the other instances through the pub/sub's control channel when it has one. Only its owner
   * may (`not_found` otherwise, as for a missing thread). Refused with `run_active`, nothing deleted, while a
   * run of the thread is going: cancel it first.
   */
  deleteThread(input: { user: { id: string }; threadId: string }): Promise<void>;
  /** Cancels a run: the agent is stopped and RUN_ERROR `cancelled` stored. A run already ended is left as is. */
  cancel(input: { user: { id: string }; runId: string }): Promise<void>;
  /**
   * Decides a tool call that waits for approval (TOOL_APPROVAL_REQUESTED): stores TOOL_APPROVAL_RESOLVED, then
   * the run goes on (same runId) through the agent transport. Only users who may use the thread decide (others
   * get `not_found`, nothing written); `approval_not_pending` when the run or call does not wait (ended,
   * cancelled, expired, never asked); `approval_already_decided` for a decision that differs from the one made;
   * the same decision again resolves and writes nothing.
   */
  approve(input: ApproveInput): Promise<void>;
  /**
   * Appends events a tool emitted (STATE_CHANGED, TOOL_CALL_* …) to a thread, sequenced and fanned out like the
   * agent's. Terminal events and USER_MESSAGE / RUN_STARTED are the relay's own and are refused.
   */
  publish(threadId: string, events: AgentEvent[]): Promise<StoredEvent[]>;
  /**
   * The sink for a tool router's emitted events (tools-kit's `events` option takes it as is): each event is
   * published to its own thread, with the checks of {@link Relay.publish}.
   */
  readonly toolEvents: ToolEventSink;
  /**
   * Ends the runs a previous process left `running` (RUN_ERROR `relay_restarted`); returns how many. Alone
   * (no `pubsub` and no `instanceId` given) that is every running run. In a cluster it leaves the runs other
   * live instances hold: it ends runs without a lease, runs of its own `instanceId`, and runs whose lease
   * expired (those with `owner_lost`).
   */
  recover(): Promise<number>;
  /** Stops runs in progress (RUN_ERROR `shutdown`) and ends subscriptions. Leaves the store open. */
  close(): Promise<void>;
  /**
   * What the relay knows of its store's health, for a host's health check: whether its last write
   * succeeded, and the last write failure. Cheap (no I/O): it reports the writes the relay made anyway.
   */
  health(): RelayHealth;
  /** Runs in progress in this process. */
  readonly activeRuns: number;
  /** Open subscriptions in this process. */
  readonly subscribers: number;
  /** This instance's id in run leases. */
  readonly instanceId: string;
}

/** What {@link Relay.health} reports. */
export interface RelayHealth {
  store: {
    /** False from a failed write until the next write succeeds. */
    writable: boolean;
    /** The last failed write: when (ms since epoch) and why. */
    lastError?: { at: number; message: string };
    /** When the current run of failures began (only while not writable). */
    failingSince?: number;
  };
  /** Runs whose ending RUN_ERROR is not stored yet (the store failed); their threads answer `run_active`. */
  unterminatedRuns: number;
  /** Runs waiting for a place at the agent service. */
  waitingForAgent: number;
}
