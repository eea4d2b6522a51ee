import { LIMITS } from '@threadline/contracts';
import { RelayError } from '../errors.js';

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
export type RelaySettings = RelayLimits & RelayTuning;

/** Longest `approvalTtlMs` (7 days; a timer cannot wait much longer than 24 days anyway). */
export const MAX_APPROVAL_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/** The relay's limits and tuning: defaults, then `limits` (with its deprecated tuning keys), then `tuning`. */
export function resolveSettings(options: {
  agent?: { multiplexed?: boolean };
  tools: readonly string[];
  limits?: Partial<RelaySettings> | undefined;
  tuning?: Partial<RelayTuning> | undefined;
}): RelaySettings {
  const settings: RelaySettings = {
    ...DEFAULT_RELAY_LIMITS,
    ...DEFAULT_RELAY_TUNING,
    ...(options.agent?.multiplexed === true ? { earlyWriteThreads: 0 } : {}),
    ...options.limits,
    ...options.tuning,
  };
  validateLimits(settings);
  if (options.tools.length > LIMITS.maxToolsPerToken) {
    throw new RelayError(
      'invalid_options',
      `at most ${LIMITS.maxToolsPerToken} tools may be allowed per run`,
    );
  }
  if (settings.approvalTtlMs > MAX_APPROVAL_TTL_MS)
    throw new RelayError('invalid_message', `limits.approvalTtlMs must be at most ${MAX_APPROVAL_TTL_MS}`);
  if (settings.leaseRenewMs >= settings.leaseTtlMs)
    throw new RelayError('invalid_options', 'limits.leaseRenewMs must be less than limits.leaseTtlMs');
  return settings;
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
