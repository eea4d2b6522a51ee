import {
  AgentEventSchema,
  ContractError,
  findNonJson,
  formatPath,
  IdSchema,
  isTerminalEvent,
  safeParse,
  type AgentEvent,
  type JsonValue,
  type RunStartedEvent,
  type UserMessageEvent,
} from '@threadline/contracts';
import { isPlainChunk } from '../agent/chunk-check.js';
import type { ChunkIdCache } from '../agent/chunk-check.js';
import { StoreError } from '../errors.js';
import { MAX_RUN_STATE_LENGTH } from './store.js';
import type { ClaimRunsInput, RunRecord, RunStatus, StartRunInput } from './store.js';
import { DEFAULT_PRUNE_LIMIT, MAX_PRUNE_LIMIT } from './store.js';

// Input checks shared by every store adapter, so that all of them refuse exactly the same things with the
// same codes before anything is written (the conformance suite relies on that). Not exported from the package.

/** Longest idempotency key a store accepts. Tools-kit prefixes user keys with user and tool names. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 1024;
/** Longest thread title. */
export const MAX_TITLE_LENGTH = 200;
/** Default and largest page of {@link EventStore.listThreads}. */
export const DEFAULT_THREAD_LIST_LIMIT = 100;
export const MAX_THREAD_LIST_LIMIT = 1000;

/** One validated event, serialized once; `json` gets its `seq` spliced in at append time. */
export interface PreparedEvent {
  event: AgentEvent;
  /** `JSON.stringify(event)`: an object text, so it always ends in `}`. */
  body: string;
  /** The run status a terminal event sets, or null. */
  ends: Exclude<RunStatus, 'running'> | null;
}

function invalid(message: string, cause?: unknown): StoreError {
  return new StoreError('invalid_message', message, cause === undefined ? undefined : { cause });
}

/** Throws StoreError `invalid_message` unless `value` is a contract id. */
export function checkId(what: string, value: unknown): string {
  const r = safeParse(IdSchema, value, what);
  if (!r.ok) throw invalid(r.error.message, r.error);
  return r.value;
}

/** Throws StoreError `invalid_message` unless `value` is plain JSON (no forbidden keys, bounded depth). */
export function checkJson(what: string, value: unknown): JsonValue {
  const found = findNonJson(value);
  if (found) {
    const where = found.path.length ? ` at ${formatPath(found.path)}` : '';
    throw invalid(`${what} is not valid JSON: ${found.reason}${where}`);
  }
  return value as JsonValue;
}

/** Throws unless `value` is a plain JSON object (a profile patch). */
export function checkJsonObject(what: string, value: unknown): Record<string, JsonValue> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${what} must be a JSON object`);
  return checkJson(what, value) as Record<string, JsonValue>;
}

/** A positive integer (a page size). */
export function checkLimit(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(`${what} must be a positive integer`);
  }
  return value;
}

/** A non-negative integer (a seq cursor). */
export function checkAfterSeq(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid('afterSeq must be a non-negative integer');
  }
  return value;
}

export function checkIdempotencyKey(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw invalid(`idempotency key must be a string of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  }
  return value;
}

/** Checks a run state's ids and text; returns the text. */
export function checkRunState(threadId: unknown, runId: unknown, state?: unknown): string {
  checkId('threadId', threadId);
  checkId('runId', runId);
  if (state === undefined) return '';
  if (typeof state !== 'string') throw invalid('a run state must be a string');
  if (state.length > MAX_RUN_STATE_LENGTH)
    throw invalid(`a run state may be at most ${MAX_RUN_STATE_LENGTH} characters`);
  return state;
}

export function checkTitle(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || value.length > MAX_TITLE_LENGTH) {
    throw invalid(`title must be a string of at most ${MAX_TITLE_LENGTH} characters`);
  }
  return value;
}

/** A new title for an existing thread: a string (unlike createThread's, not optional). */
export function checkNewTitle(value: unknown): string {
  if (typeof value !== 'string') throw invalid('title must be a string');
  return checkTitle(value);
}

export function threadListLimit(options: { limit?: number } | undefined): number {
  if (options?.limit === undefined) return DEFAULT_THREAD_LIST_LIMIT;
  return Math.min(checkLimit('limit', options.limit), MAX_THREAD_LIST_LIMIT);
}

/**
 * Validates a whole batch against the contracts before anything is written (all-or-nothing), checks every
 * event belongs to `threadId` (a store never lets one thread's writer land events in another thread), and
 * serializes each event once.
 */
export function prepareEvents(threadId: string, events: readonly unknown[]): PreparedEvent[] {
  if (!Array.isArray(events)) throw invalid('events must be an array');
  const out: PreparedEvent[] = new Array<PreparedEvent>(events.length);
  const seen: ChunkIdCache = {};
  for (let i = 0; i < events.length; i++) {
    const value: unknown = events[i];
    let event: AgentEvent;
    if (isPlainChunk(value, threadId, null, seen)) event = value;
    else {
      const r = safeParse(AgentEventSchema, value, `event [${i}]`);
      if (!r.ok) throw invalid(r.error.message, r.error);
      event = r.value;
    }
    if (event.threadId !== threadId) {
      throw invalid(`event [${i}] belongs to thread "${event.threadId}", not "${threadId}"`);
    }
    out[i] = {
      event,
      body: JSON.stringify(event),
      ends: isTerminalEvent(event) ? (event.type === 'RUN_FINISHED' ? 'finished' : 'failed') : null,
    };
  }
  return out;
}

/** One validated batch of {@link prepareBatches}. */
export interface PreparedBatch {
  threadId: string;
  events: PreparedEvent[];
}

/**
 * Validates every batch of an appendMany call before anything is written: the call is all or nothing, so
 * one bad batch (named by its index) rejects the whole call.
 */
export function prepareBatches(batches: readonly unknown[]): PreparedBatch[] {
  if (!Array.isArray(batches)) throw invalid('batches must be an array');
  const out: PreparedBatch[] = new Array<PreparedBatch>(batches.length);
  for (let b = 0; b < batches.length; b++) {
    const batch = batches[b] as { threadId?: unknown; events?: unknown } | null;
    if (typeof batch !== 'object' || batch === null) throw invalid(`batch [${b}] must be an object`);
    const threadId = checkId(`batch [${b}] threadId`, batch.threadId);
    try {
      out[b] = { threadId, events: prepareEvents(threadId, batch.events as readonly unknown[]) };
    } catch (error) {
      if (error instanceof StoreError)
        throw invalid(`batch [${b}] (thread "${threadId}"): ${error.message}`, error);
      throw error;
    }
  }
  return out;
}

/** The stored text of a sequenced event: the event's JSON with `seq` added, without re-serializing it. */
export function withSeq(body: string, seq: number): string {
  return `${body.slice(0, -1)},"seq":${seq}}`;
}

/**
 * Checks a startRun input: ids, and a first event that agrees with them: the USER_MESSAGE of a `send`, or the
 * RUN_STARTED (with `regenerates`) of a `regenerate`, which adds no user message.
 */
export function prepareStartRun(input: {
  threadId: string;
  runId: string;
  userId: string;
  clientMessageId: string;
  userMessage: AgentEvent;
  lease?: unknown;
}): PreparedEvent & { event: UserMessageEvent | RunStartedEvent } {
  if (typeof input !== 'object' || input === null) throw invalid('startRun input must be an object');
  checkId('threadId', input.threadId);
  checkId('runId', input.runId);
  checkId('userId', input.userId);
  checkId('clientMessageId', input.clientMessageId);
  if (input.lease !== undefined) checkLeaseInput(input.lease);
  const [prepared] = prepareEvents(input.threadId, [input.userMessage]);
  const event = prepared?.event;
  if (event?.type === 'RUN_STARTED' && event.regenerates !== undefined) {
    if (event.runId !== input.runId) throw invalid('userMessage must carry the same runId as the run');
    return prepared as PreparedEvent & { event: RunStartedEvent };
  }
  if (!prepared || event?.type !== 'USER_MESSAGE')
    throw invalid('userMessage must be a USER_MESSAGE event, or a RUN_STARTED event with regenerates');
  if (
    event.runId !== input.runId ||
    event.userId !== input.userId ||
    event.clientMessageId !== input.clientMessageId
  ) {
    throw invalid('userMessage must carry the same runId, userId and clientMessageId as the run');
  }
  return prepared as PreparedEvent & { event: UserMessageEvent };
}

/** Applies a profile patch: shallow merge, `null` deletes. Returns a fresh object with no prototype tricks. */
export function mergeProfile(
  current: Record<string, JsonValue>,
  patch: Record<string, JsonValue>,
): Record<string, JsonValue> {
  const next: Record<string, JsonValue> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete next[key];
    else next[key] = value;
  }
  return next;
}

/** Wraps an unexpected driver error as StoreError `store_error`, keeping StoreErrors as they are. */
export function toStoreError(cause: unknown, doing: string): StoreError {
  if (cause instanceof StoreError) return cause;
  if (cause instanceof ContractError) return invalid(cause.message, cause);
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new StoreError('store_error', `store failed while ${doing}${detail}`, { cause });
}

export function closedError(): StoreError {
  return new StoreError('closed', 'the store is closed');
}

export function notFoundThread(threadId: string): StoreError {
  return new StoreError('not_found', `thread "${threadId}" does not exist`);
}

/**
 * The record of a run that starts now: `running`, from a validated start input; with its lease when the input
 * asks for one (`leaseNow`: the store's clock, default `now`).
 */
export function newRun(input: StartRunInput, now: number, leaseNow = now): RunRecord {
  const run: RunRecord = {
    runId: input.runId,
    threadId: input.threadId,
    userId: input.userId,
    clientMessageId: input.clientMessageId,
    status: 'running',
    startedAt: now,
  };
  if (input.lease) run.lease = { owner: input.lease.owner, expiresAt: leaseNow + input.lease.ttlMs };
  return run;
}

/** Longest lease a store grants: a day. */
export const MAX_LEASE_TTL_MS = 86_400_000;
/** Most runs one renewLeases or claimRuns call takes. */
export const MAX_LEASE_BATCH = 100_000;

/** A lease length in ms: an integer from 1 to a day. */
export function checkTtl(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_LEASE_TTL_MS)
    throw invalid(`ttlMs must be an integer from 1 to ${MAX_LEASE_TTL_MS}`);
  return value;
}

/** The lease of a startRun input: an owner id and a ttl. */
export function checkLeaseInput(value: unknown): { owner: string; ttlMs: number } {
  if (typeof value !== 'object' || value === null) throw invalid('lease must be { owner, ttlMs }');
  const lease = value as { owner?: unknown; ttlMs?: unknown };
  return { owner: checkId('lease.owner', lease.owner), ttlMs: checkTtl(lease.ttlMs) };
}

/** The arguments of renewLeases: an owner id, an array of run ids (at most MAX_LEASE_BATCH) and a ttl. */
export function checkRenew(
  owner: unknown,
  runIds: unknown,
  ttlMs: unknown,
): { owner: string; runIds: string[]; ttlMs: number } {
  const checkedOwner = checkId('owner', owner);
  if (!Array.isArray(runIds) || runIds.length > MAX_LEASE_BATCH)
    throw invalid(`runIds must be an array of at most ${MAX_LEASE_BATCH} run ids`);
  const ids = runIds.map((id, i) => checkId(`runIds[${i}]`, id));
  return { owner: checkedOwner, runIds: [...new Set(ids)], ttlMs: checkTtl(ttlMs) };
}

/** The input of claimRuns. */
export function checkClaim(value: unknown): Required<ClaimRunsInput> {
  if (typeof value !== 'object' || value === null) throw invalid('claimRuns takes { owner, ttlMs, limit }');
  const input = value as Partial<ClaimRunsInput>;
  const limit = checkLimit('limit', input.limit);
  if (limit > MAX_LEASE_BATCH) throw invalid(`limit must be at most ${MAX_LEASE_BATCH}`);
  if (input.orphans !== undefined && typeof input.orphans !== 'boolean')
    throw invalid('orphans must be a boolean');
  return {
    owner: checkId('owner', input.owner),
    ttlMs: checkTtl(input.ttlMs),
    limit,
    orphans: input.orphans ?? false,
  };
}

/** The arguments of pruneOlderThan: a cutoff in ms since the epoch and a limit of threads (default 100, 1..1000). */
export function checkPrune(cutoff: unknown, options: unknown): { cutoff: number; limit: number } {
  if (typeof cutoff !== 'number' || !Number.isSafeInteger(cutoff) || cutoff < 0)
    throw invalid('cutoff must be a time in ms since the epoch (a non-negative integer)');
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw invalid('options must be { limit? }');
  const limit = (options as { limit?: unknown } | undefined)?.limit ?? DEFAULT_PRUNE_LIMIT;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PRUNE_LIMIT)
    throw invalid(`limit must be an integer from 1 to ${MAX_PRUNE_LIMIT}`);
  return { cutoff, limit };
}
