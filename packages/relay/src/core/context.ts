import { randomUUID } from 'node:crypto';
import { IdSchema, LIMITS, safeParse } from '@threadline/contracts';
import type { AgentEvent, RunErrorCode } from '@threadline/contracts';
import type { AgentTransport } from '../agent/agent-transport.js';
import { RelayError } from '../errors.js';
import { optionsError } from '../options.js';
import type { EventStore, ThreadRecord } from '../stores/store.js';
import { AgentGate } from './agent-gate.js';
import { GroupCommitter } from './group-commit.js';
import { InProcessPubSub } from './pubsub.js';
import type { ThreadPubSub } from './pubsub.js';
import { resolveSettings } from './settings.js';
import type { RelaySettings } from './settings.js';
import type { ThreadSubscription } from './subscription.js';
import { ThreadWriter } from './thread-writer.js';
import type { WriteOwner, WriterOptions } from './thread-writer.js';
import type { RelayHealth, RelayOptions, UserShares } from './types.js';

// The state one relay's modules share. Each module (admission, run pump, terminal writes, leases, approvals,
// sends, threads, subscriptions) is plain functions over this context; createRelay builds it once.

/** Why a run was stopped from the relay's side: the abort reason of its controller, and its RUN_ERROR. */
export class RunStop extends Error {
  readonly code: RunErrorCode;
  constructor(code: RunErrorCode, message: string) {
    super(message);
    this.name = 'RunStop';
    this.code = code;
  }
}

/** A run streaming in this process: its agent call, its abort controller and the end of its pump. */
export interface ActiveRun extends WriteOwner {
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

/** A run of this instance that waits for a person's decision on one tool call. */
export interface PausedRun {
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

/** A paused run as its holder learns it (the timer and the listener are the holder's own). */
export type PausedRunInput = Omit<PausedRun, 'timer' | 'unlisten'>;

/** A run's RUN_ERROR that is not stored yet. */
export interface PendingTerminal {
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

/** One relay's configuration and state, handed to each of its modules. */
export interface RelayContext {
  readonly options: RelayOptions;
  /** The store for reads and the relay's own writes (through `committer` and the writers). */
  readonly store: EventStore;
  readonly agent: AgentTransport;
  readonly pubsub: ThreadPubSub;
  readonly logger: Pick<Console, 'error' | 'warn'>;
  readonly limits: RelaySettings;
  readonly instanceId: string;
  /** The store keeps run leases: runs carry this instance's lease, renewed and swept. */
  readonly leases: boolean;
  /** Other instances may share the store (see {@link ResolvedCluster.clustered}). */
  readonly clustered: boolean;
  /** The cluster has a pub/sub of its own (not the in-process default). */
  readonly sharedPubSub: boolean;
  readonly userShares: UserShares | undefined;
  readonly authorize: (user: { id: string }, thread: ThreadRecord) => boolean | Promise<boolean>;
  readonly committer: GroupCommitter;
  readonly writerOptions: WriterOptions;
  readonly gate: AgentGate;
  /** What the relay's writes say of the store (see {@link RelayHealth}). */
  readonly storeHealth: RelayHealth['store'];
  readonly writers: Map<string, ThreadWriter>;
  /** Runs streaming here, by runId. */
  readonly runs: Map<string, ActiveRun>;
  readonly subscriptions: Set<ThreadSubscription>;
  /** Open subscriptions per thread. */
  readonly perThread: Map<string, number>;
  /** Sends waiting (queue mode) for a thread's run to end. */
  readonly queues: Map<string, Set<() => void>>;
  /**
   * Runs whose RUN_ERROR could not be stored yet (the store failed), by runId. While the relay retries, the run
   * is still in `runs`; once it gave up, the entry alone says the run is over, for the next `send` to end it.
   */
  readonly unterminated: Map<string, PendingTerminal>;
  /** Wakes every wait that must end when the relay closes (terminal-write backoffs, cancel waits). */
  readonly retrySleepers: Set<() => void>;
  /** Per user: runs in progress here plus sends about to start one. */
  readonly userRuns: Map<string, number>;
  /** Per user: when their runs in the current window started (at most maxRunStartsPerUser each). */
  readonly userStarts: Map<string, number[]>;
  /** Runs whose RUN_ERROR this relay is storing (its own, or ones it claimed): their leases are renewed too. */
  readonly ending: Set<string>;
  /** Runs this instance holds while they wait for a tool approval (their leases are renewed too), by runId. */
  readonly pausedRuns: Map<string, PausedRun>;
  /** One decision, expiry or cancel of a paused run at a time per thread in this process. */
  readonly decisionLocks: Map<string, Promise<void>>;
  /**
   * Shares reserved by a decision taken here for a paused run held here, by runId: its resume starts with it
   * (and gives it back when it ends), so decisions taken at once cannot resume more runs than the shares allow.
   */
  readonly resumeShares: Map<string, (refund: boolean) => void>;
  /**
   * Paused runs taken over at start (alone, without `pubsub` or `instanceId`) whose lease still names the
   * previous process: their renewal fails until the lease expires and the sweep claims it for this instance,
   * which is no loss (nobody else shares the store).
   */
  readonly foreignLeases: Set<string>;
  /** The lease loops' in-flight flags and failure streaks (each streak logged once). */
  readonly leaseLoops: {
    renewing: boolean;
    sweeping: boolean;
    rechecking: boolean;
    trouble: { renew: boolean; sweep: boolean };
  };
  closed: boolean;
}

/** Validates the options and builds a relay's context (no timers or listeners yet: createRelay starts those). */
export function createContext(options: RelayOptions): RelayContext {
  const limits = resolveSettings(options);
  const cluster = resolveCluster(options);
  const { store, agent } = options;
  const storeHealth: RelayHealth['store'] = { writable: true };
  /** The store as the relay's writes reach it: every write's outcome updates `storeHealth`. */
  const writes = observeWrites(store, (error) => {
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
  return {
    options,
    store,
    agent,
    pubsub: cluster.pubsub ?? new InProcessPubSub(),
    logger: options.logger ?? console,
    limits,
    instanceId: cluster.instanceId,
    leases: typeof store.renewLeases === 'function' && typeof store.claimRuns === 'function',
    clustered: cluster.clustered,
    sharedPubSub: cluster.pubsub !== undefined,
    userShares: cluster.userShares,
    authorize:
      options.authorize ?? ((user: { id: string }, thread: ThreadRecord) => thread.ownerId === user.id),
    committer: new GroupCommitter(
      writes,
      limits.coalesceWindowMs,
      limits.earlyWriteThreads > 0 ? limits.earlyWriteThreads : Number.POSITIVE_INFINITY,
    ),
    writerOptions: {
      maxBatchEvents: limits.maxBatchEvents,
      maxCoalescedDeltaLength: Math.min(limits.maxCoalescedDeltaLength, LIMITS.maxDeltaLength),
    },
    gate: new AgentGate({
      maxWaiting: limits.maxAgentQueue,
      timeoutMs: limits.agentQueueTimeoutMs,
      defaultRetryMs: 1_000,
    }),
    storeHealth,
    writers: new Map(),
    runs: new Map(),
    subscriptions: new Set(),
    perThread: new Map(),
    queues: new Map(),
    unterminated: new Map(),
    retrySleepers: new Set(),
    userRuns: new Map(),
    userStarts: new Map(),
    ending: new Set(),
    pausedRuns: new Map(),
    decisionLocks: new Map(),
    resumeShares: new Map(),
    foreignLeases: new Set(),
    leaseLoops: {
      renewing: false,
      sweeping: false,
      rechecking: false,
      trouble: { renew: false, sweep: false },
    },
    closed: false,
  };
}

/** The thread's writer (one per thread while it has work; it removes itself once idle). */
export function writerFor(ctx: RelayContext, threadId: string): ThreadWriter {
  let writer = ctx.writers.get(threadId);
  if (!writer) {
    writer = new ThreadWriter(threadId, ctx.committer, ctx.pubsub, ctx.writerOptions, (w) => {
      if (ctx.writers.get(w.threadId) === w) ctx.writers.delete(w.threadId);
    });
    ctx.writers.set(threadId, writer);
  }
  return writer;
}

/** Runs a store call; a failure that is not the relay's own refusal becomes `store_error`. */
export async function storeCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (cause) {
    if (cause instanceof RelayError && cause.code !== 'internal_error') throw cause;
    throw new RelayError('store_error', `the store failed while ${what}; try again`, { cause });
  }
}

/** The thread if `authorize` lets the user use it; `not_found` otherwise. */
export async function threadFor(
  ctx: RelayContext,
  user: { id: string },
  threadId: string,
): Promise<ThreadRecord> {
  const thread = await storeCall('reading the thread', () => ctx.store.getThread(threadId));
  // One answer for "missing" and "not yours", so ids of other users' threads are not revealed.
  if (!thread || !(await ctx.authorize(user, thread))) {
    throw new RelayError('not_found', `thread ${threadId} does not exist or you may not use it`);
  }
  return thread;
}

/** Throws `closed` once the relay is closed. */
export function checkOpen(ctx: RelayContext): void {
  if (ctx.closed) throw new RelayError('closed', 'the relay is closed');
}

/** Throws `invalid_message` unless `value` is an id. */
export function checkId(value: unknown, what: string): asserts value is string {
  if (!safeParse(IdSchema, value).ok) {
    throw new RelayError(
      'invalid_message',
      `${what} must be 1-${LIMITS.maxIdLength} letters, digits or _ . : -`,
    );
  }
}

/** An error's message for a log line or a RUN_ERROR, at most 500 characters. */
export function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/** The RUN_ERROR that ends a run the relay stopped. */
export function runErrorEvent(threadId: string, runId: string, stop: RunStop): AgentEvent {
  return { type: 'RUN_ERROR', threadId, runId, ts: Date.now(), code: stop.code, message: stop.message };
}

/** How this relay shares work with other instances, with the deprecated top-level spellings folded in. */
export interface ResolvedCluster {
  pubsub: ThreadPubSub | undefined;
  instanceId: string;
  userShares: UserShares | undefined;
  /**
   * Other instances may share the store: with a pub/sub or an instance id given, `recover()` leaves the runs
   * other live instances hold. Alone (the in-process default and a random id) it ends every run left running.
   */
  clustered: boolean;
}

/**
 * Reads `cluster` and the deprecated top-level `pubsub`, `instanceId` and `userShares`: either spelling works,
 * both with different values is `invalid_options` (which one was meant cannot be told).
 */
export function resolveCluster(options: RelayOptions): ResolvedCluster {
  const cluster = options.cluster ?? {};
  if (typeof cluster !== 'object' || cluster === null)
    throw optionsError('createRelay', 'cluster must be an object');
  const pick = <K extends 'pubsub' | 'instanceId' | 'userShares'>(key: K) => {
    const nested = cluster[key];
    const top = options[key];
    if (nested !== undefined && top !== undefined && nested !== top)
      throw optionsError(
        'createRelay',
        `${key} is given twice with different values: pass only cluster.${key}`,
      );
    return nested ?? top;
  };
  const pubsub = pick('pubsub');
  const given = pick('instanceId');
  const userShares = pick('userShares');
  const instanceId = given ?? `relay-${randomUUID()}`;
  if (!safeParse(IdSchema, instanceId).ok)
    throw new RelayError(
      'invalid_options',
      `instanceId must be 1-${LIMITS.maxIdLength} of A-Z a-z 0-9 _ . : -`,
    );
  return { pubsub, instanceId, userShares, clustered: pubsub !== undefined || given !== undefined };
}
