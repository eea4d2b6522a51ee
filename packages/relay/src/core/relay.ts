import { randomUUID } from 'node:crypto';
import {
  AgentEventSchema,
  ApproveMessageSchema,
  ContractError,
  IdSchema,
  LIMITS,
  RegenerateMessageSchema,
  RunRequestSchema,
  SendMessageSchema,
  safeParse,
} from '@threadline/contracts';
import type { AgentEvent, RunErrorCode, RunRequest, RunResume } from '@threadline/contracts';
import { AgentTransportError } from '../agent/agent-transport.js';
import { isPlainChunk } from '../agent/chunk-check.js';
import type { ChunkIdCache } from '../agent/chunk-check.js';
import type { AgentTransport } from '../agent/agent-transport.js';
import { RelayError } from '../errors.js';
import { AgentGate } from './agent-gate.js';
import { GroupCommitter } from './group-commit.js';
import { InProcessPubSub } from './pubsub.js';
import type { ThreadPubSub } from './pubsub.js';
import type { EventStore, RunRecord, StoredEvent, ThreadRecord } from '../stores/store.js';
import { ThreadSubscription } from './subscription.js';
import type { Subscription } from './subscription.js';
import { ThreadWriter } from './thread-writer.js';
import { MAX_TITLE_LENGTH } from '../stores/store-input.js';
import { titleFromMessage } from './titles.js';
import type { WriteOwner } from './thread-writer.js';

/** Bounds of a relay: what it holds and allows. Every field has a default; see {@link DEFAULT_RELAY_LIMITS}. */
export interface RelayLimits {
  /** Most subscriptions on one thread in this process. */
  maxSubscribersPerThread: number;
  /** Most subscriptions in this process. */
  maxSubscribers: number;
  /** Most live events buffered for one subscriber before it is ended as `slow_consumer`. */
  maxBufferedEvents: number;
  /** Most bytes of event JSON buffered for one subscriber before it is ended as `slow_consumer`. */
  maxBufferedBytes: number;
  /** A run whose agent sends nothing for this long fails with RUN_ERROR `agent_idle_timeout`. */
  agentIdleTimeoutMs: number;
  /** Most runs in progress in this process; beyond it `send` fails with `agent_unavailable`. */
  maxActiveRuns: number;
  /**
   * Most runs in progress for one user in this process (a run waiting for the agent counts); beyond it `send`
   * fails with `too_many_runs`. A person has a few threads going at once, not dozens.
   */
  maxRunsPerUser: number;
  /** Most runs one user may start per `runStartWindowMs`; beyond it `send` fails with `rate_limited`. */
  maxRunStartsPerUser: number;
  /** The sliding window of `maxRunStartsPerUser`, in ms. */
  runStartWindowMs: number;
  /**
   * Most runs waiting for a place at the agent service while it answers "at capacity" (HTTP 429); a run
   * beyond it ends at once with RUN_ERROR `agent_busy`. Waiting runs are served fairly across users.
   */
  maxAgentQueue: number;
  /** Longest a run waits for a place at the agent service before it ends with RUN_ERROR `agent_busy`. */
  agentQueueTimeoutMs: number;
  /** With `whenRunActive: 'queue'`: most sends waiting per thread; beyond it `queue_full`. */
  maxQueuedSends: number;
  /** With `whenRunActive: 'queue'`: longest a send waits for the active run to end before `run_active`. */
  queueTimeoutMs: number;
  /**
   * Length of a run's lease in the store (with a store that has leases): the instance streaming the run
   * renews it every `leaseRenewMs`; once it is this long without renewal, another instance ends the run with
   * RUN_ERROR `owner_lost`. Must be more than `leaseRenewMs`.
   */
  leaseTtlMs: number;
}

/**
 * How a relay batches, pages and times its own work: knobs for benchmarks and unusual deployments, not bounds.
 * Every field has a default; see {@link DEFAULT_RELAY_TUNING}.
 */
export interface RelayTuning {
  /** Events read from the store per query when replaying a thread. */
  replayPageSize: number;
  /** Extra time to gather events into one store write; 0 writes at the end of the current I/O turn. */
  coalesceWindowMs: number;
  /**
   * When this many threads have events waiting for the shared store write, it starts at once instead of at
   * the end of the I/O turn (or window): with many threads streaming, the events read first then need not wait
   * for every other socket of the turn to be read. 0 turns it off. The default is 256, or 0 when the agent
   * transport is `multiplexed` (all runs on one connection, e.g. HTTP/2): one read then carries many runs'
   * events, and splitting it costs commits without letting any event go sooner.
   */
  earlyWriteThreads: number;
  /** Most events in one store write (a full batch is written at once and the agent stream waits for it). */
  maxBatchEvents: number;
  /** Longest delta that coalesced TEXT_MESSAGE_CHUNKs may reach (at most LIMITS.maxDeltaLength). */
  maxCoalescedDeltaLength: number;
  /**
   * How long the relay keeps trying to store the RUN_ERROR that ends a failed run (e.g. while the disk is
   * full), with a backoff up to `terminalWriteMaxDelayMs` between attempts. Past it the failure is logged and
   * the run is ended at the latest when someone sends to its thread again, or by `recover()` at the next start.
   */
  terminalWriteTimeoutMs: number;
  /** Longest pause between two attempts to store a run's RUN_ERROR. */
  terminalWriteMaxDelayMs: number;
  /** How often this instance renews the leases of all its runs (one store call for all of them). */
  leaseRenewMs: number;
  /**
   * How often this instance looks for runs whose lease expired and ends them (`owner_lost`). A dead instance's
   * runs end within `leaseTtlMs + leaseSweepMs` of its last renewal.
   */
  leaseSweepMs: number;
  /**
   * How long a tool call waits for a person's decision (TOOL_APPROVAL_REQUESTED's `expiresAt` is set from it);
   * past it the run ends with RUN_ERROR `approval_expired`. At most 7 days.
   */
  approvalTtlMs: number;
}

/** The tuning keys that `limits` still accepts (deprecated: pass them as `tuning`; removed in the next major). */
export type DeprecatedTuningLimits = { [K in keyof RelayTuning]?: RelayTuning[K] };

/** The defaults of {@link RelayLimits}. */
export const DEFAULT_RELAY_LIMITS: Readonly<RelayLimits> = Object.freeze({
  maxSubscribersPerThread: 256,
  maxSubscribers: 10_000,
  maxBufferedEvents: 10_000,
  maxBufferedBytes: 8 * 1024 * 1024,
  agentIdleTimeoutMs: 60_000,
  maxActiveRuns: 1_000,
  maxRunsPerUser: 4,
  maxRunStartsPerUser: 30,
  runStartWindowMs: 60_000,
  maxAgentQueue: 256,
  agentQueueTimeoutMs: 60_000,
  maxQueuedSends: 8,
  queueTimeoutMs: 300_000,
  leaseTtlMs: 10_000,
});

/** The defaults of {@link RelayTuning}. */
export const DEFAULT_RELAY_TUNING: Readonly<RelayTuning> = Object.freeze({
  replayPageSize: 1_000,
  coalesceWindowMs: 0,
  earlyWriteThreads: 256,
  maxBatchEvents: 512,
  maxCoalescedDeltaLength: LIMITS.maxDeltaLength,
  terminalWriteTimeoutMs: 600_000,
  terminalWriteMaxDelayMs: 5_000,
  leaseRenewMs: 3_000,
  leaseSweepMs: 2_000,
  approvalTtlMs: 24 * 60 * 60 * 1000,
});

/** Limits and tuning as the relay uses them. */
type RelaySettings = RelayLimits & RelayTuning;

/** Longest `approvalTtlMs` (7 days; a timer cannot wait much longer than 24 days anyway). */
const MAX_APPROVAL_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Events read from the end of a thread to find a run's pending approval. */
const APPROVAL_TAIL = 256;

/** The run request's `message` on a resume (required by the contract, not used by the agent). */
const RESUME_MESSAGE = 'Continue after the tool approval.';

/** Runs one lease sweep claims per store call. */
const SWEEP_BATCH = 100;
/**
 * A regenerate looks for the thread's last user message in at most this many pages (`replayPageSize` events
 * each) back from the end of the log; one further back is not found (`nothing_to_regenerate`).
 */
const REGENERATE_SCAN_PAGES = 16;

/** Mints the act-as token a run's agent calls tools with (e.g. tools-kit's `createTokenIssuer()`). */
export interface RunTokenIssuer {
  issue(input: { userId: string; threadId: string; runId: string; tools: string[] }): Promise<string>;
}

/** Options of {@link createRelay}. */
export interface RelayOptions {
  store: EventStore;
  agent: AgentTransport;
  /** May this user use this thread? Default: only its owner. */
  authorize?(user: { id: string }, thread: ThreadRecord): boolean | Promise<boolean>;
  tokens: RunTokenIssuer;
  /** Base URL of the host's tool endpoints, passed to the agent in every run request. */
  toolsBaseUrl: string;
  /** Tool names every run's token allows. */
  tools: string[];
  limits?: Partial<RelayLimits> & DeprecatedTuningLimits;
  /** Batching, paging and timing knobs (see {@link RelayTuning}); the defaults suit every host we know. */
  tuning?: Partial<RelayTuning>;
  /** What a `send` does while the thread has a run in progress: fail with `run_active` (default) or wait. */
  whenRunActive?: 'reject' | 'queue';
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
   * Give an untitled thread (title '') a title made from its first message ({@link titleFromMessage}, no
   * model call), stored once when its first run starts. Default true.
   */
  autoTitle?: boolean;
  /**
   * Per-user run shares every instance of a cluster counts together (e.g. `openRedisLimits` from
   * `@threadline/relay/redis`): `maxRunsPerUser` and `maxRunStartsPerUser` then hold across instances. This
   * instance's own shares apply as well. A call that throws is logged and admits (fail open to the per-process
   * shares).
   */
  userShares?: UserShares;
  /** Where unexpected failures are reported (default `console`). */
  logger?: Pick<Console, 'error' | 'warn'>;
}

/**
 * Shared per-user counts for {@link RelayOptions.userShares}: slots held (runs in progress, key
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

/** Why a run was stopped from the relay's side: the abort reason of its controller, and its RUN_ERROR. */
class RunStop extends Error {
  readonly code: RunErrorCode;
  constructor(code: RunErrorCode, message: string) {
    super(message);
    this.name = 'RunStop';
    this.code = code;
  }
}

interface ActiveRun extends WriteOwner {
  runId: string;
  threadId: string;
  userId: string;
  clientMessageId: string;
  /** The run whose answer this one replaces (a regenerate): its RUN_STARTED is stored already. */
  regenerates?: string;
  controller: AbortController;
  done: Promise<void>;
  /** The store no longer has this run as ours (it ended, or another instance took it over): write nothing. */
  lost: boolean;
}

const RELAY_ONLY_TYPES = new Set([
  'RUN_STARTED',
  'RUN_FINISHED',
  'RUN_ERROR',
  'USER_MESSAGE',
  'TOOL_APPROVAL_REQUESTED',
  'TOOL_APPROVAL_RESOLVED',
]);

/** A run of this instance that waits for a person's decision on one tool call. */
interface PausedRun {
  threadId: string;
  runId: string;
  userId: string;
  toolCallId: string;
  /** When the wait ends (ms since epoch). */
  expiresAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Stops listening for the decision on the pub/sub. */
  unlisten: () => void;
}

/** What the end of a thread's log says about a run's approvals. */
interface ApprovalView {
  /** The run's newest TOOL_APPROVAL_REQUESTED, if it is in the tail. */
  requested?: { toolCallId: string; expiresAt: number };
  /** Decisions in the tail, by toolCallId. */
  resolved: Map<string, { approved: boolean; decidedBy: string; reason?: string }>;
  /** The run's terminal event is in the tail. */
  ended: boolean;
  /** The type of the run's newest event in the tail. */
  last?: string;
}

/** A run's RUN_ERROR that is not stored yet. */
interface PendingTerminal {
  threadId: string;
  runId: string;
  event: AgentEvent;
  /** The attempt under way, so two never overlap. */
  inFlight: Promise<boolean> | undefined;
  lastError: unknown;
}

/** Store write methods whose outcome tells whether the store can write. */
const WRITE_METHODS = new Set<PropertyKey>(['append', 'appendMany', 'startRun', 'startRuns']);
/** Refusals of one input, not failures of the store. */
const REFUSAL_CODES = new Set(['invalid_message', 'not_found', 'conflict']);

/** The store with its writes observed: `report` gets undefined after a write that worked, else the error. */
function observeWrites(store: EventStore, report: (error: unknown) => void): EventStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (!WRITE_METHODS.has(prop)) return value.bind(target);
      return async (...args: unknown[]) => {
        try {
          const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          report(undefined);
          return result;
        } catch (error) {
          if (!(error instanceof RelayError && REFUSAL_CODES.has(error.code))) report(error);
          throw error;
        }
      };
    },
  });
}

/**
 * Creates a relay over a store and an agent transport.
 *
 * @example
 * const store = await openSqliteStore({ path: 'threadline.db' });
 * const relay = createRelay({
 *   store,
 *   agent: httpAgentTransport({ url: 'http://127.0.0.1:4100', credential: secret }),
 *   tokens: createTokenIssuer({ secret: toolSecret, issuer: 'my-api' }),
 *   toolsBaseUrl: 'http://127.0.0.1:3000',
 *   tools: router.toolNames,
 * });
 * await relay.recover();
 * attachWebSocketServer(httpServer, relay, { authenticate, allowedOrigins: ['https://app.example'] });
 */
export function createRelay(options: RelayOptions): Relay {
  const limits: RelaySettings = {
    ...DEFAULT_RELAY_LIMITS,
    ...DEFAULT_RELAY_TUNING,
    ...(options.agent?.multiplexed === true ? { earlyWriteThreads: 0 } : {}),
    ...options.limits,
    ...options.tuning,
  };
  validateLimits(limits);
  if (options.tools.length > LIMITS.maxToolsPerToken) {
    throw new RelayError(
      'invalid_options',
      `at most ${LIMITS.maxToolsPerToken} tools may be allowed per run`,
    );
  }
  if (limits.approvalTtlMs > MAX_APPROVAL_TTL_MS)
    throw new RelayError('invalid_message', `limits.approvalTtlMs must be at most ${MAX_APPROVAL_TTL_MS}`);
  if (limits.leaseRenewMs >= limits.leaseTtlMs)
    throw new RelayError('invalid_options', 'limits.leaseRenewMs must be less than limits.leaseTtlMs');
  const instanceId = options.instanceId ?? `relay-${randomUUID()}`;
  if (!safeParse(IdSchema, instanceId).ok)
    throw new RelayError(
      'invalid_options',
      `instanceId must be 1-${LIMITS.maxIdLength} of A-Z a-z 0-9 _ . : -`,
    );
  const { store, agent } = options;
  const pubsub = options.pubsub ?? new InProcessPubSub();
  /** The store keeps run leases: runs carry this instance's lease, renewed and swept. */
  const leases = typeof store.renewLeases === 'function' && typeof store.claimRuns === 'function';
  /**
   * Other instances may share the store: with a pub/sub or an instance id given, `recover()` leaves the runs
   * other live instances hold. Alone (the in-process default and a random id) it ends every run left running.
   */
  const clustered = options.pubsub !== undefined || options.instanceId !== undefined;
  const logger = options.logger ?? console;
  const storeHealth: RelayHealth['store'] = { writable: true };
  /** The store as the relay's writes reach it: every write's outcome updates `storeHealth`. */
  const writes = observeWrites(options.store, (error) => {
    if (error === undefined) {
      if (!storeHealth.writable) {
        storeHealth.writable = true;
        delete storeHealth.failingSince;
      }
      return;
    }
    const at = Date.now();
    if (storeHealth.writable) storeHealth.failingSince = at;
    storeHealth.writable = false;
    storeHealth.lastError = { at, message: describe(error) };
  });
  const authorize =
    options.authorize ?? ((user: { id: string }, thread: ThreadRecord) => thread.ownerId === user.id);
  const whenRunActive = options.whenRunActive ?? 'reject';
  const committer = new GroupCommitter(
    writes,
    limits.coalesceWindowMs,
    limits.earlyWriteThreads > 0 ? limits.earlyWriteThreads : Number.POSITIVE_INFINITY,
  );
  const writerOptions = {
    maxBatchEvents: limits.maxBatchEvents,
    maxCoalescedDeltaLength: Math.min(limits.maxCoalescedDeltaLength, LIMITS.maxDeltaLength),
  };

  const writers = new Map<string, ThreadWriter>();
  const runs = new Map<string, ActiveRun>();
  const subscriptions = new Set<ThreadSubscription>();
  const perThread = new Map<string, number>();
  /** Sends waiting (queue mode) for a thread's run to end. */
  const queues = new Map<string, Set<() => void>>();
  /**
   * Runs whose RUN_ERROR could not be stored yet (the store failed), by runId. While the relay retries, the run
   * is still in `runs`; once it gave up, the entry alone says the run is over, for the next `send` to end it.
   */
  const unterminated = new Map<string, PendingTerminal>();
  /** Wakes every terminal-write retry waiting out its backoff (on close). */
  const retrySleepers = new Set<() => void>();
  /** Per user: runs in progress here plus sends about to start one. */
  const userRuns = new Map<string, number>();
  /** Per user: when their runs in the current window started (at most maxRunStartsPerUser each). */
  const userStarts = new Map<string, number[]>();
  const gate = new AgentGate({
    maxWaiting: limits.maxAgentQueue,
    timeoutMs: limits.agentQueueTimeoutMs,
    defaultRetryMs: 1_000,
  });
  // Forgets users whose starts left the window, so the map holds only users active in the last window.
  const startSweep = setInterval(() => {
    const since = Date.now() - limits.runStartWindowMs;
    for (const [userId, starts] of userStarts)
      if (starts[starts.length - 1]! <= since) userStarts.delete(userId);
  }, limits.runStartWindowMs);
  startSweep.unref?.();
  let closed = false;
  /** Runs whose RUN_ERROR this relay is storing (its own, or ones it claimed): their leases are renewed too. */
  const ending = new Set<string>();
  /** Runs this instance holds while they wait for a tool approval (their leases are renewed too), by runId. */
  const pausedRuns = new Map<string, PausedRun>();
  /** One decision, expiry or cancel of a paused run at a time per thread in this process. */
  const decisionLocks = new Map<string, Promise<void>>();
  /**
   * Paused runs taken over at start (alone, without `pubsub` or `instanceId`) whose lease still names the
   * previous process: their renewal fails until the lease expires and the sweep claims it for this instance,
   * which is no loss (nobody else shares the store).
   */
  const foreignLeases = new Set<string>();
  /** The failure streaks of the lease calls, logged once each. */
  const leaseTrouble = { renew: false, sweep: false };
  let renewing = false;
  let sweeping = false;
  const renewTimer = leases ? setInterval(() => void renewLeases(), limits.leaseRenewMs) : undefined;
  renewTimer?.unref?.();
  const sweepTimer =
    leases || options.pubsub !== undefined
      ? setInterval(() => {
          if (leases) void sweepLeases();
          if (options.pubsub !== undefined) void recheckQuietThreads();
        }, limits.leaseSweepMs)
      : undefined;
  sweepTimer?.unref?.();
  // A cancel sent on another instance reaches the run here.
  const unlistenControl = pubsub.subscribeControl?.((message) => {
    if (message?.type === 'thread_deleted') return endSubscriptionsOf(message.threadId);
    if (message?.type !== 'cancel') return;
    const paused = pausedRuns.get(message.runId);
    if (paused) void cancelPaused(paused).catch(() => {});
    const run = runs.get(message.runId);
    if (run && !run.controller.signal.aborted)
      run.controller.abort(new RunStop('cancelled', 'the run was cancelled'));
  });

  function leaseFailed(which: 'renew' | 'sweep', error: unknown): void {
    if (leaseTrouble[which] || closed) return;
    leaseTrouble[which] = true;
    logger.warn(
      `[threadline/relay] could not ${which === 'renew' ? 'renew the leases of this instance’s runs' : 'look for runs whose owner is gone'}: ${describe(error)}; trying again every ${which === 'renew' ? limits.leaseRenewMs : limits.leaseSweepMs} ms`,
    );
  }

  /**
   * Renews, in one store call, the leases of every run this instance streams or is ending. A run the store no
   * longer has as ours ended elsewhere or was taken over (this instance was cut off longer than the lease):
   * it is stopped here without writing anything more to it.
   */
  async function renewLeases(): Promise<void> {
    if (renewing || closed) return;
    const ids = [...new Set([...runs.keys(), ...ending, ...pausedRuns.keys()])];
    if (ids.length === 0) return;
    renewing = true;
    try {
      const held = new Set(await store.renewLeases!(instanceId, ids, limits.leaseTtlMs));
      leaseTrouble.renew = false;
      for (const runId of ids) if (!held.has(runId)) lostRun(runId);
    } catch (error) {
      leaseFailed('renew', error);
    } finally {
      renewing = false;
    }
  }

  function lostRun(runId: string): void {
    if (!clustered && foreignLeases.has(runId)) return;
    const run = runs.get(runId);
    if (run) {
      run.lost = true;
      if (!run.controller.signal.aborted)
        run.controller.abort(
          new RunStop('owner_lost', 'the run ended elsewhere or another relay instance took it over'),
        );
    }
    // A RUN_ERROR still being retried: the store has the run ended or someone else's now.
    unterminated.delete(runId);
    // A paused run another instance took over waits there now (alone, nobody else can hold it: keep it).
    const paused = pausedRuns.get(runId);
    if (paused && clustered) releasePaused(paused);
  }

  /** Claims the runs whose lease expired (their instance is gone) and ends each with RUN_ERROR `owner_lost`. */
  async function sweepLeases(): Promise<void> {
    if (sweeping || closed) return;
    sweeping = true;
    try {
      for (;;) {
        const claimed = await store.claimRuns!({
          owner: instanceId,
          ttlMs: limits.leaseTtlMs,
          limit: SWEEP_BATCH,
        });
        leaseTrouble.sweep = false;
        for (const run of claimed)
          takeOver(
            run,
            new RunStop('owner_lost', 'the relay instance running this run stopped; send the message again'),
          );
        if (claimed.length < SWEEP_BATCH || closed) break;
      }
    } catch (error) {
      leaseFailed('sweep', error);
    } finally {
      sweeping = false;
    }
  }

  let rechecking = false;
  /**
   * With a shared pub/sub, an instance that dies between storing events and publishing them leaves the
   * subscribers elsewhere without them until the thread's next event. So a subscription that has heard
   * nothing for `leaseTtlMs` while a run of its thread may be going on gets the thread's newest seq from the
   * store (one read per thread, at most every `leaseTtlMs`, at most 256 threads per sweep) and reads what it
   * missed.
   */
  async function recheckQuietThreads(): Promise<void> {
    if (rechecking || closed) return;
    rechecking = true;
    try {
      const now = Date.now();
      const quiet = new Map<string, ThreadSubscription[]>();
      for (const sub of subscriptions) {
        const since = sub.quietMidRunSince;
        if (since === null || now - since < limits.leaseTtlMs) continue;
        const list = quiet.get(sub.threadId);
        if (list) list.push(sub);
        else if (quiet.size < 256) quiet.set(sub.threadId, [sub]);
      }
      for (const [threadId, subs] of quiet) {
        if (closed) return;
        let last: number;
        try {
          last = await store.lastSeq(threadId);
        } catch {
          continue; // the store is down: the subscriptions find out on their own reads
        }
        for (const sub of subs) sub.recheck(last);
      }
    } finally {
      rechecking = false;
    }
  }

  /** A run this instance just claimed: ends it, unless it is one of ours still going (the claim renewed it). */
  function takeOver(run: RunRecord, stop: RunStop): Promise<void> {
    foreignLeases.delete(run.runId); // the claim made the lease this instance's
    if (runs.has(run.runId) || ending.has(run.runId)) return Promise.resolve();
    const pending = unterminated.get(run.runId);
    if (pending) return storeTerminal(pending, false).then(() => {});
    // A run waiting for a tool approval is not lost with its instance: this one holds it from now on.
    return adoptIfPaused(run).then((adopted) =>
      adopted ? undefined : writeRunError(run.threadId, run.runId, stop),
    );
  }

  function writerFor(threadId: string): ThreadWriter {
    let writer = writers.get(threadId);
    if (!writer) {
      writer = new ThreadWriter(threadId, committer, pubsub, writerOptions, (w) => {
        if (writers.get(w.threadId) === w) writers.delete(w.threadId);
      });
      writers.set(threadId, writer);
    }
    return writer;
  }

  async function storeCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      if (cause instanceof RelayError && cause.code !== 'internal_error') throw cause;
      throw new RelayError('store_error', `the store failed while ${what}; try again`, { cause });
    }
  }

  async function threadFor(user: { id: string }, threadId: string): Promise<ThreadRecord> {
    const thread = await storeCall('reading the thread', () => store.getThread(threadId));
    // One answer for "missing" and "not yours", so ids of other users' threads are not revealed.
    if (!thread || !(await authorize(user, thread))) {
      throw new RelayError('not_found', `thread ${threadId} does not exist or you may not use it`);
    }
    return thread;
  }

  /**
   * Admits one run start for the user against their shares (runs at once, starts per window) and reserves it:
   * the returned function gives the reservation back (`refund`: the start did not happen, so it does not count
   * against the window either). Throws `too_many_runs` or `rate_limited`.
   */
  function admit(userId: string): (refund: boolean) => void {
    const inProgress = userRuns.get(userId) ?? 0;
    if (inProgress >= limits.maxRunsPerUser) {
      throw new RelayError(
        'too_many_runs',
        `you have ${inProgress} runs in progress, the most allowed at once; wait for one to end or cancel one`,
      );
    }
    const now = Date.now();
    let starts = userStarts.get(userId);
    if (starts) {
      const since = now - limits.runStartWindowMs;
      let expired = 0;
      while (expired < starts.length && starts[expired]! <= since) expired++;
      if (expired > 0) starts.splice(0, expired);
    } else userStarts.set(userId, (starts = []));
    if (starts.length >= limits.maxRunStartsPerUser) {
      const retryAfterMs = Math.max(1, starts[0]! + limits.runStartWindowMs - now);
      throw new RelayError(
        'rate_limited',
        `you started ${starts.length} runs in the last ${Math.round(limits.runStartWindowMs / 1000)} s, the most allowed; try again in ${Math.ceil(retryAfterMs / 1000)} s`,
        { retryAfterMs },
      );
    }
    const stamp = now;
    starts.push(stamp);
    const owned = starts;
    userRuns.set(userId, inProgress + 1);
    let released = false;
    return (refund) => {
      if (released) return;
      released = true;
      const n = (userRuns.get(userId) ?? 1) - 1;
      if (n <= 0) userRuns.delete(userId);
      else userRuns.set(userId, n);
      if (refund) {
        const i = owned.lastIndexOf(stamp);
        if (i !== -1) owned.splice(i, 1);
        if (owned.length === 0 && userStarts.get(userId) === owned) userStarts.delete(userId);
      }
    };
  }

  /**
   * Admits one run start for the user against the shares every instance counts together, on top of this
   * instance's (`local`, already taken; given back here when refused). Returns the release of both. A failing
   * `userShares` is logged and admits: this instance's own shares still hold.
   */
  async function admitShared(
    shares: UserShares,
    userId: string,
    local: (refund: boolean) => void,
  ): Promise<(refund: boolean) => void> {
    const runsKey = `runs:${userId}`;
    const startsKey = `starts:${userId}`;
    let held = false;
    let token: string | undefined;
    try {
      if (!(await shares.acquire(runsKey, limits.maxRunsPerUser))) {
        throw new RelayError(
          'too_many_runs',
          `you have ${limits.maxRunsPerUser} runs in progress, the most allowed at once; wait for one to end or cancel one`,
        );
      }
      held = true;
      const start = await shares.takeStart(startsKey, limits.maxRunStartsPerUser, limits.runStartWindowMs);
      if ('retryAfterMs' in start) {
        const retryAfterMs = Math.max(1, Math.ceil(start.retryAfterMs));
        throw new RelayError(
          'rate_limited',
          `you started ${limits.maxRunStartsPerUser} runs in the last ${Math.round(limits.runStartWindowMs / 1000)} s, the most allowed; try again in ${Math.ceil(retryAfterMs / 1000)} s`,
          { retryAfterMs },
        );
      }
      token = start.token;
    } catch (error) {
      if (error instanceof RelayError) {
        local(true);
        if (held) void shares.release(runsKey).catch(() => {});
        throw error;
      }
      logger.warn(
        `[threadline/relay] userShares failed (${describe(error)}); admitting on this instance's shares`,
      );
      if (!held) return local;
    }
    let released = false;
    return (refund) => {
      if (released) return;
      released = true;
      local(refund);
      if (held) void shares.release(runsKey).catch(() => {});
      if (refund && token !== undefined) void shares.refundStart(startsKey, token).catch(() => {});
    };
  }

  /** The id of a run in progress here that this very send (user, thread, clientMessageId) started. */
  function sameSend(userId: string, threadId: string, clientMessageId: string): string | undefined {
    for (const run of runs.values()) {
      if (run.threadId === threadId && run.clientMessageId === clientMessageId && run.userId === userId)
        return run.runId;
    }
    return undefined;
  }

  function checkOpen(): void {
    if (closed) throw new RelayError('closed', 'the relay is closed');
  }

  function checkId(value: unknown, what: string): asserts value is string {
    if (!safeParse(IdSchema, value).ok) {
      throw new RelayError(
        'invalid_message',
        `${what} must be 1-${LIMITS.maxIdLength} letters, digits or _ . : -`,
      );
    }
  }

  async function send(input: SendInput): Promise<{ runId: string }> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    const parsed = safeParse(
      SendMessageSchema,
      { type: 'send', threadId: input.threadId, text: input.text, clientMessageId: input.clientMessageId },
      'send',
    );
    if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
    const { threadId, text, clientMessageId } = parsed.value;
    const user = { id: input.user.id };
    const thread = await threadFor(user, threadId);
    return begin(user, threadId, clientMessageId, text, undefined, thread.title === '');
  }

  async function regenerate(input: RegenerateInput): Promise<{ runId: string }> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    const parsed = safeParse(
      RegenerateMessageSchema,
      { type: 'regenerate', threadId: input.threadId, clientMessageId: input.clientMessageId },
      'regenerate',
    );
    if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
    const { threadId, clientMessageId } = parsed.value;
    const user = { id: input.user.id };
    await threadFor(user, threadId);
    const turn = await storeCall('reading the thread', () => lastTurn(threadId));
    if (!turn) {
      throw new RelayError(
        'nothing_to_regenerate',
        `thread ${threadId} has no message to answer again; send one first`,
      );
    }
    return begin(user, threadId, clientMessageId, turn.text, turn.runId, false);
  }

  /**
   * The thread's last user message, and the newest run (the one a regenerate replaces), read backwards from
   * the end of the log: at most {@link REGENERATE_SCAN_PAGES} pages.
   */
  async function lastTurn(threadId: string): Promise<{ text: string; runId: string } | null> {
    let newest: string | undefined;
    let hi = await store.lastSeq(threadId);
    for (let page = 0; hi > 0 && page < REGENERATE_SCAN_PAGES; page++) {
      const lo = Math.max(0, hi - limits.replayPageSize);
      const events = await store.read(threadId, { afterSeq: lo, limit: hi - lo });
      for (let i = events.length - 1; i >= 0; i--) {
        const json = events[i]!.json;
        if (!json.includes('"USER_MESSAGE"') && !json.includes('"RUN_STARTED"')) continue;
        const event = JSON.parse(json) as AgentEvent;
        if (event.type === 'USER_MESSAGE') return { text: event.text, runId: newest ?? event.runId };
        if (event.type === 'RUN_STARTED') newest ??= event.runId;
      }
      hi = lo;
    }
    return null;
  }

  /**
   * Stores a run's first event and starts it: a send's USER_MESSAGE, or (with `regenerates`) a RUN_STARTED
   * that replaces that run's answer. One run per thread and idempotency on `clientMessageId` are the store's.
   */
  async function begin(
    user: { id: string },
    threadId: string,
    clientMessageId: string,
    text: string,
    regenerates: string | undefined,
    /** The thread has no title yet: the message names it once its run has started. */
    untitled: boolean,
  ): Promise<{ runId: string }> {
    let queued = false;
    let healed = false;
    let deadline = 0;
    for (;;) {
      if (runs.size >= limits.maxActiveRuns) {
        throw new RelayError(
          'agent_unavailable',
          `too many runs in progress (${limits.maxActiveRuns}); try again shortly`,
        );
      }
      let release: (refund: boolean) => void;
      try {
        release = admit(user.id);
        if (options.userShares) release = await admitShared(options.userShares, user.id, release);
      } catch (error) {
        // A retry of a send whose run is still going (a browser resending after a reconnect) is answered
        // as always, with that run's id: it starts nothing, so no share is needed.
        const same = sameSend(user.id, threadId, clientMessageId);
        if (same) return { runId: same };
        throw error;
      }
      const runId = `run_${randomUUID()}`;
      const userMessage: AgentEvent =
        regenerates === undefined
          ? {
              type: 'USER_MESSAGE',
              threadId,
              runId,
              ts: Date.now(),
              messageId: `msg_${randomUUID()}`,
              clientMessageId,
              userId: user.id,
              text,
            }
          : { type: 'RUN_STARTED', threadId, runId, ts: Date.now(), regenerates };
      const writer = writerFor(threadId);
      let result: Awaited<ReturnType<GroupCommitter['start']>>;
      try {
        result = await storeCall('storing the message', () =>
          writer.exclusive(async () => {
            // Through the shared flush: every send of this turn is started in one store transaction.
            const r = await committer.start({
              threadId,
              runId,
              userId: user.id,
              clientMessageId,
              userMessage,
              ...(leases ? { lease: { owner: instanceId, ttlMs: limits.leaseTtlMs } } : {}),
            });
            if (r.status === 'started') pubsub.publish(threadId, [r.userMessage]);
            return r;
          }),
        );
      } catch (error) {
        release(true);
        throw error;
      }
      if (result.status === 'started') {
        startRun(result.run, text, release, regenerates);
        if (untitled && options.autoTitle !== false) await titleThread(threadId, text);
        return { runId };
      }
      release(true);
      if (result.status === 'duplicate') return { runId: result.run.runId };
      // The active run is one this relay ended but could not yet record as ended (the store failed): try now,
      // so a thread is never left `run_active` once the store can take the write.
      const stale = unterminated.get(result.activeRun.runId);
      if (stale && !healed) {
        healed = true;
        if (await storeTerminal(stale, false)) continue;
      }
      if (await awaitsApproval(result.activeRun)) {
        throw new RelayError(
          'run_awaiting_approval',
          `the run of thread ${threadId} (${result.activeRun.runId}) waits for a decision on a tool call; approve or reject it, or cancel the run`,
        );
      }
      if (whenRunActive === 'reject' || closed || regenerates !== undefined) {
        throw new RelayError(
          'run_active',
          `thread ${threadId} has a run in progress (${result.activeRun.runId}); wait for it to end or cancel it`,
        );
      }
      if (!queued) {
        const waiting = queues.get(threadId)?.size ?? 0;
        if (waiting >= limits.maxQueuedSends) {
          throw new RelayError(
            'queue_full',
            `${waiting} messages already wait for thread ${threadId}; try again later`,
          );
        }
        queued = true;
        deadline = Date.now() + limits.queueTimeoutMs;
      }
      await waitForRunEnd(threadId, result.activeRun.runId, deadline);
    }
  }

  /** Resolves when the thread's run ends (heard from any relay sharing the pub/sub) or rejects at the deadline. */
  function waitForRunEnd(threadId: string, runId: string, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let set = queues.get(threadId);
      if (!set) queues.set(threadId, (set = new Set()));
      const waiters = set;
      const cleanup = () => {
        clearTimeout(timer);
        unlisten();
        waiters.delete(wake);
        if (waiters.size === 0 && queues.get(threadId) === waiters) queues.delete(threadId);
      };
      const wake = () => {
        cleanup();
        if (closed) reject(new RelayError('closed', 'the relay is closed'));
        else resolve();
      };
      const timer = setTimeout(
        () => {
          cleanup();
          reject(
            new RelayError(
              'run_active',
              `thread ${threadId} still has a run in progress (${runId}) after waiting`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const unlisten = pubsub.subscribe(threadId, (events) => {
        for (const e of events) {
          if (e.json.includes('"RUN_FINISHED"') || e.json.includes('"RUN_ERROR"')) {
            wake();
            return;
          }
        }
      });
      waiters.add(wake);
      // The run may have ended between startRun's answer and now.
      void store.getRun(runId).then(
        (run) => {
          if (run && run.status !== 'running') wake();
        },
        () => {},
      );
    });
  }

  function startRun(
    record: RunRecord,
    message: string,
    release: (refund: boolean) => void,
    regenerates?: string,
    resume?: RunResume,
  ): void {
    const controller = new AbortController();
    const run: ActiveRun = {
      runId: record.runId,
      threadId: record.threadId,
      userId: record.userId,
      clientMessageId: record.clientMessageId,
      ...(regenerates === undefined ? {} : { regenerates }),
      controller,
      done: Promise.resolve(),
      lost: false,
      onStoreError(error: unknown) {
        if (!controller.signal.aborted) {
          controller.abort(
            new RunStop(
              'store_unavailable',
              `the store could not save the run's events: ${describe(error)}; send the message again later`,
            ),
          );
        }
      },
    };
    runs.set(run.runId, run);
    run.done = pump(run, message, resume).finally(() => {
      runs.delete(run.runId);
      if (!pausedRuns.has(run.runId)) foreignLeases.delete(run.runId);
      release(false);
    });
  }

  async function pump(run: ActiveRun, message: string, resume?: RunResume): Promise<void> {
    const { threadId, runId, controller } = run;
    const signal = controller.signal;
    const writer = writerFor(threadId);
    // Batches of events from a transport with runBatches (one async step per batch), else single events.
    let iterator: AsyncIterator<AgentEvent | readonly AgentEvent[]> | undefined;
    const batched = agent.runBatches !== undefined;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    let failure: RunStop | undefined;
    let onAbort: (() => void) | undefined;
    /** The run holds a place at the agent service (it was not refused as at capacity). */
    let atAgent = false;
    /** The agent asked for a tool approval and ended its stream: the run waits for a person. */
    let pausedOn: { toolCallId: string; expiresAt: number } | undefined;
    let paused = false;
    try {
      const request = await buildRequest(run, message, resume);
      const open = () =>
        (agent.runBatches ? agent.runBatches(request, { signal }) : agent.run(request, { signal }))[
          Symbol.asyncIterator
        ]();
      // Every await of the loop can be cut short by the abort signal. Not Promise.race against one shared
      // promise: each race leaves a reaction on it until the run ends (one per event: a leak and GC churn).
      let interrupt: ((reason: unknown) => void) | undefined;
      onAbort = () => interrupt?.(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      const interruptible = <T>(promise: Promise<T>): Promise<T> => {
        if (signal.aborted) {
          promise.catch(() => {});
          return Promise.reject(signal.reason as Error);
        }
        return new Promise<T>((resolve, reject) => {
          interrupt = reject;
          promise.then(resolve, reject);
        });
      };
      let last = Date.now();
      const idle = limits.agentIdleTimeoutMs;
      const watch = () => {
        const quiet = Date.now() - last;
        if (quiet >= idle) {
          controller.abort(new RunStop('agent_idle_timeout', `the agent sent nothing for ${idle} ms`));
        } else idleTimer = setTimeout(watch, idle - quiet);
      };
      // Until the agent takes the run: while it answers "at capacity", the run waits its turn at the gate
      // (bounded; the idle bound does not run meanwhile) and tries again. Nothing is stored before that.
      let first: IteratorResult<AgentEvent | readonly AgentEvent[]> | undefined;
      let waitedSince = 0;
      let retry = false;
      while (first === undefined) {
        const granted = retry || gate.mustWait;
        if (granted) {
          if (waitedSince === 0) waitedSince = Date.now();
          await interruptible(gate.wait(run.userId, waitedSince, signal, retry));
        }
        last = Date.now();
        idleTimer = setTimeout(watch, idle);
        gate.trying(run.userId, granted);
        atAgent = true;
        try {
          iterator = open();
          first = await interruptible(iterator.next());
        } catch (error) {
          const busy =
            !signal.aborted && error instanceof AgentTransportError && error.runErrorCode === 'agent_busy';
          atAgent = !busy;
          gate.answered(run.userId, granted, !busy, busy ? error.retryAfterMs : undefined);
          if (!busy) throw error;
          clearTimeout(idleTimer);
          retry = true;
          continue;
        }
        gate.answered(run.userId, granted, true);
      }
      // A regenerate's RUN_STARTED is stored already; the agent's own, if it sends one first, is dropped.
      // A resumed run started earlier: its log has its RUN_STARTED already.
      let started = run.regenerates !== undefined || resume !== undefined;
      let skipStart = run.regenerates !== undefined;
      const seen: ChunkIdCache = {};
      for (let next: typeof first | undefined = first; ; next = undefined) {
        next ??= await interruptible(iterator!.next());
        if (next.done) {
          if (pausedOn) {
            // The agent saved the run and ended its stream after asking: the run waits, with no terminal event.
            await interruptible(writer.flush());
            paused = true;
            break;
          }
          failure = new RunStop('agent_stream_ended', 'the agent stream ended before the run finished');
          break;
        }
        last = Date.now();
        const value = next.value;
        if (batched && !Array.isArray(value)) {
          throw new AgentTransportError(
            'agent_stream_invalid',
            'the agent transport yielded a batch that is not an array',
          );
        }
        const count = batched ? (value as readonly AgentEvent[]).length : 1;
        for (let i = 0; i < count; i++) {
          if (signal.aborted) throw signal.reason;
          const raw = batched ? (value as readonly AgentEvent[])[i] : value;
          const event = checkAgentEvent(raw, threadId, runId, seen);
          if (skipStart) {
            skipStart = false;
            if (event.type === 'RUN_STARTED') continue;
          }
          if (event.type === 'RUN_STARTED') {
            if (started)
              throw new AgentTransportError('agent_stream_invalid', 'the agent sent RUN_STARTED twice');
            started = true;
            // Written with the run's next event (the agent's fetches back to this API are not held up by it).
            writer.hold(event, run);
            continue;
          }
          if (!started) {
            // The log always opens a run with RUN_STARTED, even when the agent does not send one.
            writer.add({ type: 'RUN_STARTED', threadId, runId, ts: event.ts }, run, false);
            started = true;
          }
          if (event.type === 'TOOL_APPROVAL_RESOLVED')
            throw new AgentTransportError('agent_stream_invalid', 'only the relay writes approval decisions');
          if (event.type === 'TOOL_APPROVAL_REQUESTED') {
            // The relay's bound on the wait is the one that counts.
            const expiresAt = Date.now() + limits.approvalTtlMs;
            writer.add({ ...event, expiresAt: new Date(expiresAt).toISOString() }, run, false);
            pausedOn = { toolCallId: event.toolCallId, expiresAt };
            continue;
          }
          pausedOn = undefined;
          if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
            writer.add(event, run, false);
            // Not interruptible: once the agent's terminal event is on its way to the store, a cancel (or a
            // shutdown) arriving now must not add a second one. Only a failed write leads to a RUN_ERROR.
            await writer.flush();
            return;
          }
          writer.add(event, run, true);
          // Backpressure: a full batch is written before the agent stream is read further.
          if (writer.buffered >= limits.maxBatchEvents) await interruptible(writer.flush());
        }
      }
    } catch (error) {
      failure = toStop(error, signal);
    } finally {
      clearTimeout(idleTimer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
      // Its place at the agent goes to the next run waiting for one.
      if (atAgent) gate.released(run.userId);
    }
    if (paused && pausedOn && !signal.aborted && !run.lost) {
      holdPaused({
        threadId,
        runId,
        userId: run.userId,
        toolCallId: pausedOn.toolCallId,
        expiresAt: pausedOn.expiresAt,
      });
      return;
    }
    // The run failed: stop the agent and store the RUN_ERROR that ends it.
    if (!signal.aborted) controller.abort(failure);
    if (iterator?.return) {
      Promise.resolve()
        .then(() => iterator.return!())
        .catch(() => {});
    }
    if (failure && failure.code !== 'agent_unreachable' && failure.code !== 'agent_busy' && agent.cancel) {
      agent.cancel(runId).catch(() => {});
    }
    // Ended elsewhere or taken over by another instance: its log is not ours to write any more.
    if (run.lost) return;
    await writeRunError(
      threadId,
      runId,
      failure ?? new RunStop('internal_error', 'the run stopped unexpectedly'),
    );
  }

  /**
   * Stores the RUN_ERROR that ends a run. While the store fails (a full disk), it tries again with a backoff
   * (50 ms doubling up to `terminalWriteMaxDelayMs`) for up to `terminalWriteTimeoutMs`, so the run ends as soon
   * as the store can take the write; the run keeps its place in `runs` (and its user's share) meanwhile.
   */
  async function writeRunError(threadId: string, runId: string, stop: RunStop): Promise<void> {
    if (ending.has(runId)) return; // already being ended here
    ending.add(runId);
    try {
      await writeRunErrorOnce(threadId, runId, stop);
    } finally {
      ending.delete(runId);
    }
  }

  async function writeRunErrorOnce(threadId: string, runId: string, stop: RunStop): Promise<void> {
    const pending: PendingTerminal = {
      threadId,
      runId,
      event: { type: 'RUN_ERROR', threadId, runId, ts: Date.now(), code: stop.code, message: stop.message },
      inFlight: undefined,
      lastError: undefined,
    };
    const giveUpAt = Date.now() + limits.terminalWriteTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (await storeTerminal(pending, attempt === 0)) return;
      if (attempt === 0) unterminated.set(runId, pending);
      const pause = Math.min(50 * 2 ** Math.min(attempt, 20), limits.terminalWriteMaxDelayMs);
      if (closed || Date.now() + pause > giveUpAt) break;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          retrySleepers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, pause);
        retrySleepers.add(wake);
      });
      if (!unterminated.has(runId)) return; // a send ended it in the meantime
    }
    // The run stays `running` in the store: the next send to its thread ends it (see `send`), else
    // `recover()` at the next start. Bounded: the oldest such runs are forgotten first.
    logger.error(
      `[threadline/relay] could not store RUN_ERROR for run ${runId}: ${describe(pending.lastError)}`,
    );
    while (unterminated.size > limits.maxActiveRuns) {
      unterminated.delete(unterminated.keys().next().value!);
    }
  }

  /**
   * One attempt to store a run's RUN_ERROR; true once the run is ended in the store. One attempt at a time
   * per run, and after a failed one the run's status is read first: a write whose outcome was unknown, or
   * another relay, may have ended it already, and a run never gets a second terminal event.
   */
  function storeTerminal(pending: PendingTerminal, first: boolean): Promise<boolean> {
    if (pending.inFlight) return pending.inFlight;
    const attempt = (async () => {
      try {
        if (!first) {
          const run = await store.getRun(pending.runId);
          if (run !== null && run.status !== 'running') {
            unterminated.delete(pending.runId);
            return true;
          }
        }
        const writer = writerFor(pending.threadId);
        writer.add(pending.event, null, false);
        await writer.flush();
        unterminated.delete(pending.runId);
        return true;
      } catch (error) {
        pending.lastError = error;
        return false;
      }
    })();
    pending.inFlight = attempt;
    void attempt.then(() => {
      if (pending.inFlight === attempt) pending.inFlight = undefined;
    });
    return attempt;
  }

  async function buildRequest(run: ActiveRun, message: string, resume?: RunResume): Promise<RunRequest> {
    let token: string;
    try {
      token = await options.tokens.issue({
        userId: run.userId,
        threadId: run.threadId,
        runId: run.runId,
        tools: [...options.tools],
      });
    } catch (cause) {
      throw new RunStop('internal_error', `could not mint the run's act-as token: ${describe(cause)}`);
    }
    const request = safeParse(
      RunRequestSchema,
      {
        threadId: run.threadId,
        runId: run.runId,
        user: { id: run.userId },
        message,
        ...(run.regenerates === undefined ? {} : { regenerates: run.regenerates }),
        tools: { baseUrl: options.toolsBaseUrl, token },
        ...(resume ? { resume } : {}),
      },
      'run request',
    );
    if (!request.ok)
      throw new RunStop('internal_error', `could not build the run request: ${request.error.message}`);
    return request.value;
  }

  async function subscribe(input: SubscribeInput): Promise<Subscription> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    checkId(input.threadId, 'threadId');
    const afterSeq = input.afterSeq;
    if (typeof afterSeq !== 'number' || !Number.isSafeInteger(afterSeq) || afterSeq < 0) {
      throw new RelayError('invalid_message', 'afterSeq must be a non-negative integer');
    }
    await threadFor({ id: input.user.id }, input.threadId);
    checkOpen();
    const onThread = perThread.get(input.threadId) ?? 0;
    if (onThread >= limits.maxSubscribersPerThread) {
      throw new RelayError(
        'too_many_subscribers',
        `thread ${input.threadId} has ${onThread} subscribers, the most allowed`,
      );
    }
    if (subscriptions.size >= limits.maxSubscribers) {
      throw new RelayError(
        'too_many_subscribers',
        `the relay has ${subscriptions.size} subscribers, the most allowed`,
      );
    }
    const maxBufferedEvents = Math.max(
      1,
      Math.min(input.maxBufferedEvents ?? Infinity, limits.maxBufferedEvents),
    );
    perThread.set(input.threadId, onThread + 1);
    const threadId = input.threadId;
    const subscription: ThreadSubscription = new ThreadSubscription({
      store,
      pubsub,
      threadId,
      afterSeq,
      bounds: {
        maxBufferedEvents,
        maxBufferedBytes: limits.maxBufferedBytes,
        replayPageSize: limits.replayPageSize,
      },
      onEnd: () => {
        subscriptions.delete(subscription);
        const n = (perThread.get(threadId) ?? 1) - 1;
        if (n <= 0) perThread.delete(threadId);
        else perThread.set(threadId, n);
      },
    });
    if (!subscription.ended) subscriptions.add(subscription);
    return subscription;
  }

  /** Stores a title made from the thread's first message, unless it got one meanwhile; failures only logged. */
  async function titleThread(threadId: string, text: string): Promise<void> {
    const title = titleFromMessage(text);
    if (title === '') return;
    try {
      await store.renameThread(threadId, title, { onlyIfUntitled: true });
    } catch (error) {
      logger.warn(`[threadline/relay] could not store the title of thread ${threadId}: ${describe(error)}`);
    }
  }

  /** The thread if `user` owns it; `not_found` as for a missing one otherwise. */
  async function ownedThread(user: { id: string }, threadId: string): Promise<ThreadRecord> {
    const thread = await storeCall('reading the thread', () => store.getThread(threadId));
    if (!thread || thread.ownerId !== user.id) {
      throw new RelayError('not_found', `thread ${threadId} does not exist or is not yours`);
    }
    return thread;
  }

  async function createThread(input: {
    user: { id: string };
    title?: string;
    threadId?: string;
  }): Promise<ThreadRecord> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    const threadId = input.threadId ?? `thr_${randomUUID()}`;
    checkId(threadId, 'threadId');
    const title =
      input.title === undefined ? '' : typeof input.title === 'string' ? input.title.trim() : null;
    if (title === null || title.length > MAX_TITLE_LENGTH) {
      throw new RelayError('invalid_message', `title must be at most ${MAX_TITLE_LENGTH} characters`);
    }
    return storeCall('creating the thread', () =>
      store.createThread({ threadId, ownerId: input.user.id, title }),
    );
  }

  async function listThreads(input: { user: { id: string }; limit?: number }): Promise<ThreadRecord[]> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    const limit = input.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1_000) {
      throw new RelayError('invalid_message', 'limit must be an integer from 1 to 1000');
    }
    return storeCall('listing threads', () => store.listThreads(input.user.id, { limit }));
  }

  async function getThread(input: { user: { id: string }; threadId: string }): Promise<ThreadRecord> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    checkId(input.threadId, 'threadId');
    return threadFor(input.user, input.threadId);
  }

  async function renameThread(input: {
    user: { id: string };
    threadId: string;
    title: string;
  }): Promise<ThreadRecord> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    checkId(input.threadId, 'threadId');
    const title = typeof input.title === 'string' ? input.title.trim() : '';
    if (title.length === 0 || title.length > MAX_TITLE_LENGTH) {
      throw new RelayError('invalid_message', `title must be 1 to ${MAX_TITLE_LENGTH} characters`);
    }
    await ownedThread(input.user, input.threadId);
    const renamed = await storeCall('renaming the thread', () => store.renameThread(input.threadId, title));
    if (!renamed)
      throw new RelayError('not_found', `thread ${input.threadId} does not exist or is not yours`);
    return renamed;
  }

  async function deleteThread(input: { user: { id: string }; threadId: string }): Promise<void> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    checkId(input.threadId, 'threadId');
    const threadId = input.threadId;
    await ownedThread(input.user, threadId);
    const outcome = await storeCall('deleting the thread', () => store.deleteThread(threadId));
    if (outcome === 'run_active') {
      throw new RelayError(
        'run_active',
        `thread ${threadId} has a run in progress; stop it, then delete the thread`,
      );
    }
    // Gone (by this call, or by a delete that raced it): either way no subscription may stay open on it.
    endSubscriptionsOf(threadId);
    pubsub.publishControl?.({ type: 'thread_deleted', threadId });
    if (outcome === 'not_found') {
      throw new RelayError('not_found', `thread ${threadId} does not exist or is not yours`);
    }
  }

  /** Ends this process's subscriptions to a deleted thread with `thread_deleted`. */
  function endSubscriptionsOf(threadId: string): void {
    if (typeof threadId !== 'string') return;
    for (const subscription of [...subscriptions]) {
      if (subscription.threadId === threadId)
        subscription.fail(new RelayError('thread_deleted', `thread ${threadId} was deleted`));
    }
  }

  async function cancel(input: { user: { id: string }; runId: string }): Promise<void> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    checkId(input.runId, 'runId');
    const local = runs.get(input.runId);
    const record = local ? null : await storeCall('reading the run', () => store.getRun(input.runId));
    const threadId = local?.threadId ?? record?.threadId;
    const notFound = new RelayError(
      'not_found',
      `run ${input.runId} does not exist or you may not cancel it`,
    );
    if (threadId === undefined) throw notFound;
    try {
      await threadFor({ id: input.user.id }, threadId);
    } catch (error) {
      if (error instanceof RelayError && error.code === 'not_found') throw notFound;
      throw error;
    }
    if (local) {
      if (!local.controller.signal.aborted)
        local.controller.abort(new RunStop('cancelled', 'the run was cancelled'));
      await local.done;
      return;
    }
    const paused = pausedRuns.get(input.runId);
    if (paused) {
      await cancelPaused(paused);
      return;
    }
    if (record?.status !== 'running') return;
    const owner = record.lease?.owner;
    if (leases && pubsub.publishControl && owner !== undefined && owner !== instanceId) {
      // Another instance streams it: ask it to stop (it aborts the agent's call and stores the RUN_ERROR), and
      // wait for the end. If that instance is gone, the lease sweep ends the run with owner_lost meanwhile.
      pubsub.publishControl({ type: 'cancel', runId: input.runId });
      const bound = limits.leaseTtlMs + limits.leaseSweepMs + limits.leaseRenewMs;
      if (!(await untilRunEnds(threadId, input.runId, bound))) {
        checkOpen();
        throw new RelayError(
          'agent_unavailable',
          `the relay instance streaming run ${input.runId} did not stop it within ${bound} ms; try again`,
        );
      }
      return;
    }
    // Nobody to ask (no lease, or one this instance's earlier process held, or no control channel): end it in
    // the log. A live owner finds the run ended at its next lease renewal and stops its agent.
    await writeRunError(threadId, input.runId, new RunStop('cancelled', 'the run was cancelled'));
  }

  /**
   * Resolves true once the run has ended (its terminal event heard on the pub/sub, or its record read from the
   * store, at least every second), false after `timeoutMs` or when the relay closes.
   */
  function untilRunEnds(threadId: string, runId: string, timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let done = false;
      const marker = `"runId":${JSON.stringify(runId)}`;
      const finish = (ended: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        unlisten();
        retrySleepers.delete(onClose);
        resolve(ended);
      };
      const onClose = () => finish(false);
      const unlisten = pubsub.subscribe(threadId, (events) => {
        for (const e of events) {
          if (
            (e.json.includes('"RUN_FINISHED"') || e.json.includes('"RUN_ERROR"')) &&
            e.json.includes(marker)
          )
            finish(true);
        }
      });
      const check = () => {
        store.getRun(runId).then(
          (run) => {
            if (!run || run.status !== 'running') finish(true);
          },
          () => {},
        );
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const poll = setInterval(check, Math.min(1_000, timeoutMs));
      retrySleepers.add(onClose);
      check();
    });
  }

  /** Runs `fn` after every decision, expiry or cancel of a paused run of the thread started before it here. */
  function withDecisionLock<T>(threadId: string, fn: () => Promise<T>): Promise<T> {
    const before = decisionLocks.get(threadId) ?? Promise.resolve();
    const result = before.then(fn);
    const tail = result.then(
      () => {},
      () => {},
    );
    decisionLocks.set(threadId, tail);
    void tail.then(() => {
      if (decisionLocks.get(threadId) === tail) decisionLocks.delete(threadId);
    });
    return result;
  }

  /**
   * What the end of the thread's log (the newest {@link APPROVAL_TAIL} events) says about a run's approvals.
   * The log is the truth: it survives restarts and every instance reads the same.
   */
  async function approvalView(threadId: string, runId: string): Promise<ApprovalView> {
    const last = await store.lastSeq(threadId);
    const tail = await store.read(threadId, {
      afterSeq: Math.max(0, last - APPROVAL_TAIL),
      limit: APPROVAL_TAIL,
    });
    const view: ApprovalView = { resolved: new Map(), ended: false };
    const marker = `"runId":${JSON.stringify(runId)}`;
    for (const stored of tail) {
      if (!stored.json.includes(marker)) continue;
      const event = JSON.parse(stored.json) as AgentEvent;
      if (event.runId !== runId) continue;
      view.last = event.type;
      if (event.type === 'TOOL_APPROVAL_REQUESTED')
        view.requested = { toolCallId: event.toolCallId, expiresAt: Date.parse(event.expiresAt) };
      else if (event.type === 'TOOL_APPROVAL_RESOLVED')
        view.resolved.set(event.toolCallId, {
          approved: event.approved,
          decidedBy: event.decidedBy,
          ...(event.reason !== undefined ? { reason: event.reason } : {}),
        });
      else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') view.ended = true;
    }
    return view;
  }

  /** True when the run waits for a decision on a tool call (held here, or so says the log). */
  async function awaitsApproval(run: RunRecord): Promise<boolean> {
    if (pausedRuns.has(run.runId)) return true;
    if (runs.has(run.runId)) return false;
    try {
      const view = await approvalView(run.threadId, run.runId);
      return (
        !view.ended &&
        view.requested !== undefined &&
        !view.resolved.has(view.requested.toolCallId) &&
        view.last === 'TOOL_APPROVAL_REQUESTED'
      );
    } catch {
      return false;
    }
  }

  /**
   * A running run in the store whose log ends with a pending approval (or with its decision, the run not yet
   * resumed): held here from now on (resumed when decided). False when it is not paused: the caller ends it.
   */
  async function adoptIfPaused(run: RunRecord): Promise<boolean> {
    if (pausedRuns.has(run.runId)) return true;
    if (closed) return false;
    const foreign = run.lease !== undefined && run.lease.owner !== instanceId && !clustered;
    let view: ApprovalView;
    try {
      view = await approvalView(run.threadId, run.runId);
    } catch {
      return false;
    }
    const requested = view.requested;
    if (view.ended || !requested) return false;
    const decision = view.resolved.get(requested.toolCallId);
    if (decision && view.last === 'TOOL_APPROVAL_RESOLVED') {
      if (foreign) foreignLeases.add(run.runId);
      // Decided, but whoever held it stopped before the run went on: it goes on here. (A tool call that had
      // started already does not run twice: its call id is its idempotency key.)
      resumeRun(run, {
        toolCallId: requested.toolCallId,
        approved: decision.approved,
        ...(decision.reason !== undefined ? { reason: decision.reason } : {}),
      });
      return true;
    }
    if (decision || view.last !== 'TOOL_APPROVAL_REQUESTED') return false;
    if (foreign) foreignLeases.add(run.runId);
    holdPaused({
      threadId: run.threadId,
      runId: run.runId,
      userId: run.userId,
      toolCallId: requested.toolCallId,
      expiresAt: requested.expiresAt,
    });
    return true;
  }

  /**
   * Holds a paused run: its lease is renewed with this instance's runs, it ends at `expiresAt`
   * (approval_expired), and it resumes when its decision shows up on the thread's pub/sub (written here or by
   * another instance).
   */
  function holdPaused(input: Omit<PausedRun, 'timer' | 'unlisten'>): void {
    if (pausedRuns.has(input.runId) || closed) return;
    const entry: PausedRun = { ...input, timer: undefined, unlisten: () => {} };
    const runMarker = `"runId":${JSON.stringify(input.runId)}`;
    const callMarker = `"toolCallId":${JSON.stringify(input.toolCallId)}`;
    entry.unlisten = pubsub.subscribe(input.threadId, (events) => {
      for (const stored of events) {
        if (!stored.json.includes(runMarker)) continue;
        if (stored.json.includes('"RUN_FINISHED"') || stored.json.includes('"RUN_ERROR"')) {
          releasePaused(entry);
          return;
        }
        if (!stored.json.includes('"TOOL_APPROVAL_RESOLVED"') || !stored.json.includes(callMarker)) continue;
        const event = JSON.parse(stored.json) as Extract<AgentEvent, { type: 'TOOL_APPROVAL_RESOLVED' }>;
        releasePaused(entry);
        resumeRun(entry, {
          toolCallId: event.toolCallId,
          approved: event.approved,
          ...(event.reason !== undefined ? { reason: event.reason } : {}),
        });
        return;
      }
    });
    armExpiry(entry);
    pausedRuns.set(input.runId, entry);
  }

  function armExpiry(entry: PausedRun): void {
    clearTimeout(entry.timer);
    const wait = Math.min(Math.max(0, entry.expiresAt - Date.now()), MAX_APPROVAL_TTL_MS);
    entry.timer = setTimeout(() => void expirePaused(entry), wait);
    entry.timer.unref?.();
  }

  function releasePaused(entry: PausedRun): void {
    clearTimeout(entry.timer);
    entry.unlisten();
    if (pausedRuns.get(entry.runId) === entry) pausedRuns.delete(entry.runId);
  }

  /** The wait is over with no decision: the run ends with RUN_ERROR `approval_expired`. */
  async function expirePaused(entry: PausedRun): Promise<void> {
    try {
      await withDecisionLock(entry.threadId, async () => {
        if (pausedRuns.get(entry.runId) !== entry) return;
        const view = await approvalView(entry.threadId, entry.runId);
        // Decided (or ended) just now: the pub/sub listener takes it from here.
        if (view.ended || view.resolved.has(entry.toolCallId)) return;
        releasePaused(entry);
        await writeRunError(
          entry.threadId,
          entry.runId,
          new RunStop(
            'approval_expired',
            'nobody approved or rejected the tool call in time; send the message again',
          ),
        );
        store.deleteRunState(entry.threadId, entry.runId).catch(() => {});
      });
    } catch (error) {
      // The store failed: try again shortly (the run stays paused meanwhile).
      if (pausedRuns.get(entry.runId) === entry && !closed) {
        logger.warn(`[threadline/relay] could not expire paused run ${entry.runId}: ${describe(error)}`);
        entry.expiresAt = Date.now() + 5_000;
        armExpiry(entry);
      }
    }
  }

  /** Cancels a paused run held here: RUN_ERROR `cancelled`, its saved state dropped. */
  async function cancelPaused(entry: PausedRun): Promise<void> {
    await withDecisionLock(entry.threadId, async () => {
      if (pausedRuns.get(entry.runId) !== entry) return;
      releasePaused(entry);
      await writeRunError(entry.threadId, entry.runId, new RunStop('cancelled', 'the run was cancelled'));
      store.deleteRunState(entry.threadId, entry.runId).catch(() => {});
    });
  }

  /** Sends a decided run back to the agent: same runId, seqs continue, one terminal event at the end. */
  function resumeRun(run: Pick<RunRecord, 'runId' | 'threadId' | 'userId'>, resume: RunResume): void {
    if (closed) return;
    // The stream that paused may not have let go of the run yet: go on once it has.
    const current = runs.get(run.runId);
    if (current) {
      void current.done.then(() => resumeRun(run, resume));
      return;
    }
    const record: RunRecord = {
      runId: run.runId,
      threadId: run.threadId,
      userId: run.userId,
      clientMessageId: '',
      status: 'running',
      startedAt: Date.now(),
    };
    // The agent continues from its saved state; the message is not used on a resume.
    startRun(record, RESUME_MESSAGE, () => {}, undefined, resume);
  }

  async function approve(input: ApproveInput): Promise<void> {
    checkOpen();
    checkId(input?.user?.id, 'user.id');
    const parsed = safeParse(
      ApproveMessageSchema,
      {
        type: 'approve',
        threadId: input.threadId,
        runId: input.runId,
        toolCallId: input.toolCallId,
        approved: input.approved,
        ...(input.reason !== undefined ? { reason: input.reason } : {}),
      },
      'approve',
    );
    if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
    const { threadId, runId, toolCallId, approved, reason } = parsed.value;
    const user = { id: input.user.id };
    await threadFor(user, threadId);
    const notPending = (why: string) =>
      new RelayError('approval_not_pending', `tool call ${toolCallId} of run ${runId} ${why}`);
    await withDecisionLock(threadId, async () => {
      const record = await storeCall('reading the run', () => store.getRun(runId));
      if (!record || record.threadId !== threadId) throw notPending('does not wait for approval');
      const view = await storeCall('reading the thread', () => approvalView(threadId, runId));
      const made = view.resolved.get(toolCallId);
      if (made) {
        // The same decision again (a retried frame) is answered like the first; another one is refused.
        if (made.approved === approved && (made.reason ?? '') === (reason ?? '')) return;
        throw new RelayError(
          'approval_already_decided',
          `tool call ${toolCallId} was already ${made.approved ? 'approved' : 'rejected'}`,
        );
      }
      if (record.status !== 'running' || view.ended) throw notPending('belongs to a run that has ended');
      if (view.requested?.toolCallId !== toolCallId) throw notPending('does not wait for approval');
      if (view.requested.expiresAt <= Date.now()) throw notPending('waited too long; the request expired');
      const event: AgentEvent = {
        type: 'TOOL_APPROVAL_RESOLVED',
        threadId,
        runId,
        ts: Date.now(),
        toolCallId,
        approved,
        decidedBy: user.id,
        ...(reason !== undefined && reason !== '' ? { reason } : {}),
      };
      const writer = writerFor(threadId);
      writer.add(event, null, false);
      // Stored before anything goes on; whoever holds the run hears it on the pub/sub and resumes it.
      await storeCall('storing the decision', () => writer.flush());
    });
  }

  async function publish(threadId: string, events: AgentEvent[]): Promise<StoredEvent[]> {
    checkOpen();
    checkId(threadId, 'threadId');
    if (!Array.isArray(events)) throw new RelayError('invalid_message', 'events must be an array');
    if (events.length > limits.maxBatchEvents) {
      throw new RelayError(
        'invalid_message',
        `at most ${limits.maxBatchEvents} events may be published at once`,
      );
    }
    const checked: AgentEvent[] = [];
    for (const raw of events) {
      const parsed = safeParse(AgentEventSchema, raw, 'event');
      if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
      const event = parsed.value;
      if (event.threadId !== threadId)
        throw new RelayError('invalid_message', `event belongs to thread ${event.threadId}, not ${threadId}`);
      if (RELAY_ONLY_TYPES.has(event.type))
        throw new RelayError('invalid_message', `${event.type} events are written by the relay only`);
      checked.push(event);
    }
    if (checked.length === 0) return [];
    const thread = await storeCall('reading the thread', () => store.getThread(threadId));
    if (!thread) throw new RelayError('not_found', `thread ${threadId} does not exist`);
    const writer = writerFor(threadId);
    const entries = checked.map((event) => writer.add(event, null, false));
    await storeCall('storing events', () => writer.flush());
    return entries.map((entry) => {
      if (!entry.stored) throw new RelayError('internal_error', 'the store did not return a stored event');
      return entry.stored;
    });
  }

  async function recover(): Promise<number> {
    checkOpen();
    if (clustered && leases) return recoverInCluster();
    const running = await storeCall('listing running runs', () => store.listRunningRuns());
    const stop = new RunStop(
      'relay_restarted',
      'the relay restarted while this run was in progress; send the message again',
    );
    let count = 0;
    for (const run of running) if (await endStaleRun(run, stop)) count++;
    return count;
  }

  /** Stores the RUN_ERROR of a run a dead process left; false when it is (being ended) here already. */
  async function endStaleRun(run: RunRecord, stop: RunStop): Promise<boolean> {
    if (runs.has(run.runId) || ending.has(run.runId)) return false;
    // A run waiting for a tool approval survives the restart: it is held here and waits on.
    if (await adoptIfPaused(run)) return false;
    ending.add(run.runId);
    try {
      const event: AgentEvent = {
        type: 'RUN_ERROR',
        threadId: run.threadId,
        runId: run.runId,
        ts: Date.now(),
        code: stop.code,
        message: stop.message,
      };
      const writer = writerFor(run.threadId);
      writer.add(event, null, false);
      await storeCall('failing a stale run', () => writer.flush());
      return true;
    } finally {
      ending.delete(run.runId);
    }
  }

  /**
   * recover() among other instances: claims (atomically, so two instances starting together never end a run
   * twice) first the runs whose lease expired, ended with owner_lost, then the runs without a lease or with
   * this instance's id, ended with relay_restarted. Runs other live instances hold are left alone.
   */
  async function recoverInCluster(): Promise<number> {
    let count = 0;
    const passes: [boolean, RunStop][] = [
      [
        false,
        new RunStop('owner_lost', 'the relay instance running this run stopped; send the message again'),
      ],
      [
        true,
        new RunStop(
          'relay_restarted',
          'the relay restarted while this run was in progress; send the message again',
        ),
      ],
    ];
    for (const [orphans, stop] of passes) {
      for (;;) {
        const claimed = await storeCall('claiming runs left running', () =>
          store.claimRuns!({ owner: instanceId, ttlMs: limits.leaseTtlMs, limit: SWEEP_BATCH, orphans }),
        );
        for (const run of claimed) if (await endStaleRun(run, stop)) count++;
        if (claimed.length < SWEEP_BATCH) break;
      }
    }
    return count;
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    clearInterval(startSweep);
    clearInterval(renewTimer);
    clearInterval(sweepTimer);
    unlistenControl?.();
    // Paused runs stay paused in the store: the next start (or another instance) holds them again.
    for (const paused of [...pausedRuns.values()]) releasePaused(paused);
    for (const wake of [...retrySleepers]) wake();
    for (const run of runs.values()) {
      if (!run.controller.signal.aborted)
        run.controller.abort(new RunStop('shutdown', 'the relay shut down'));
    }
    await Promise.all([...runs.values()].map((r) => r.done));
    for (const [, waiters] of queues) for (const wake of [...waiters]) wake();
    const error = new RelayError('closed', 'the relay is closed');
    for (const subscription of [...subscriptions]) subscription.fail(error);
    await Promise.all([...writers.values()].map((w) => w.flush().catch(() => {})));
  }

  function health(): RelayHealth {
    return {
      store: {
        ...storeHealth,
        ...(storeHealth.lastError ? { lastError: { ...storeHealth.lastError } } : {}),
      },
      unterminatedRuns: unterminated.size,
      waitingForAgent: gate.waiting,
    };
  }

  return {
    send,
    regenerate,
    subscribe,
    cancel,
    createThread,
    listThreads,
    getThread,
    renameThread,
    deleteThread,
    approve,
    publish,
    recover,
    close,
    health,
    get activeRuns() {
      return runs.size;
    },
    get subscribers() {
      return subscriptions.size;
    },
    instanceId,
  };
}

/** Validates an event from the agent: contract shape, this run's thread and run, and a type an agent may send. */
function checkAgentEvent(value: unknown, threadId: string, runId: string, seen: ChunkIdCache): AgentEvent {
  if (isPlainChunk(value, threadId, runId, seen)) return value;
  const parsed = safeParse(AgentEventSchema, value, 'agent event');
  if (!parsed.ok)
    throw new AgentTransportError('agent_stream_invalid', `the agent sent an ${parsed.error.message}`, {
      cause: parsed.error,
    });
  const event = parsed.value;
  if (event.threadId !== threadId || event.runId !== runId) {
    throw new AgentTransportError(
      'agent_stream_invalid',
      `the agent sent an event of another thread or run (${event.threadId}/${event.runId})`,
    );
  }
  if (event.type === 'USER_MESSAGE')
    throw new AgentTransportError('agent_stream_invalid', 'the agent may not send USER_MESSAGE events');
  return event;
}

function toStop(error: unknown, signal: AbortSignal): RunStop {
  if (error instanceof RunStop) return error;
  if (signal.aborted && signal.reason instanceof RunStop) return signal.reason;
  if (error instanceof AgentTransportError) return new RunStop(error.runErrorCode, error.message);
  if (error instanceof ContractError)
    return new RunStop('agent_stream_invalid', `the agent sent an ${error.message}`);
  if (error instanceof RelayError && error.code === 'store_error')
    return new RunStop('store_unavailable', error.message);
  return new RunStop('internal_error', `the agent failed: ${describe(error)}`);
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

function validateLimits(limits: RelaySettings): void {
  for (const [key, value] of Object.entries(limits)) {
    const min = key === 'coalesceWindowMs' || key === 'earlyWriteThreads' ? 0 : 1;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
      const group = Object.hasOwn(DEFAULT_RELAY_TUNING, key) ? 'tuning' : 'limits';
      throw new RelayError('invalid_options', `${group}.${key} must be a number >= ${min}`);
    }
  }
}
