import type { AgentEvent } from '@threadline/contracts';
import { StoreError } from '../errors.js';
import type {
  AppendBatch,
  ClaimRunsInput,
  DeleteThreadResult,
  EventStore,
  PruneResult,
  RunRecord,
  StartRunInput,
  StartRunResult,
  StoredEvent,
  ThreadRecord,
} from './store.js';
import {
  checkAfterSeq,
  checkClaim,
  checkId,
  checkLimit,
  checkNewTitle,
  checkPrune,
  checkRenew,
  checkTitle,
  closedError,
  newRun,
  notFoundThread,
  prepareBatches,
  prepareEvents,
  prepareStartRun,
  threadListLimit,
  type PreparedEvent,
  withSeq,
} from './store-input.js';

interface ThreadState {
  record: ThreadRecord;
  events: StoredEvent[];
  /** clientMessageId → runId */
  messages: Map<string, string>;
  activeRunId: string | null;
}

/**
 * An {@link EventStore} held in process memory: for tests and demos, lost on exit. Every method runs to
 * completion without yielding, so each one is atomic, and it refuses exactly what the other adapters
 * refuse (it passes the same conformance suite). Values are copied in and out (JSON text), so callers can
 * never mutate what is stored.
 *
 * It holds the relay's data only. The tool router's storage in memory is tools-kit's `MemoryToolStore`; a
 * host that deletes or prunes threads clears their sessions there itself (`toolStore.clearSession(threadId)`).
 *
 * @example
 * import { createMemoryStore } from '@threadline/relay/memory';
 * const store = createMemoryStore();
 * await store.createThread({ threadId: 't1', ownerId: 'u1' });
 */
export class MemoryStore implements EventStore {
  readonly #threads = new Map<string, ThreadState>();
  readonly #runs = new Map<string, RunRecord>();
  #closed = false;

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    if (this.#threads.has(threadId)) throw new StoreError('conflict', `thread "${threadId}" already exists`);
    const now = Date.now();
    const record: ThreadRecord = { threadId, ownerId, title, createdAt: now, updatedAt: now };
    this.#threads.set(threadId, { record, events: [], messages: new Map(), activeRunId: null });
    return { ...record };
  }

  async getThread(threadId: string): Promise<ThreadRecord | null> {
    this.#open();
    const state = this.#threads.get(threadId);
    return state ? { ...state.record } : null;
  }

  async listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]> {
    this.#open();
    const limit = threadListLimit(options);
    const mine: ThreadRecord[] = [];
    for (const state of this.#threads.values())
      if (state.record.ownerId === ownerId) mine.push({ ...state.record });
    mine.sort(
      (a, b) => b.updatedAt - a.updatedAt || (a.threadId < b.threadId ? -1 : a.threadId > b.threadId ? 1 : 0),
    );
    return mine.slice(0, limit);
  }

  async renameThread(
    threadId: string,
    title: string,
    options?: { onlyIfUntitled?: boolean },
  ): Promise<ThreadRecord | null> {
    this.#open();
    const next = checkNewTitle(title);
    const state = this.#threads.get(threadId);
    if (!state) return null;
    if (options?.onlyIfUntitled !== true || state.record.title === '') state.record.title = next;
    return { ...state.record };
  }

  async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    this.#open();
    const state = this.#threads.get(threadId);
    if (!state) return 'not_found';
    if (state.activeRunId !== null) return 'run_active';
    for (const runId of state.messages.values()) this.#runs.delete(runId);
    this.#threads.delete(threadId);
    return 'deleted';
  }

  async append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]> {
    this.#open();
    const prepared = prepareEvents(threadId, events);
    const state = this.#threads.get(threadId);
    if (!state) throw notFoundThread(threadId);
    return this.#apply(state, prepared, Date.now());
  }

  async appendMany(batches: readonly AppendBatch[]): Promise<StoredEvent[][]> {
    this.#open();
    const prepared = prepareBatches(batches);
    // Every thread is checked before the first write: the call is all or nothing.
    const states = prepared.map((b) => {
      const state = this.#threads.get(b.threadId);
      if (!state) throw notFoundThread(b.threadId);
      return state;
    });
    const now = Date.now();
    return prepared.map((b, i) => this.#apply(states[i]!, b.events, now));
  }

  async read(threadId: string, options: { afterSeq: number; limit: number }): Promise<StoredEvent[]> {
    this.#open();
    const afterSeq = checkAfterSeq(options?.afterSeq);
    const limit = checkLimit('limit', options.limit);
    const events = this.#threads.get(threadId)?.events ?? [];
    // seq n lives at index n - 1: no search needed.
    return events.slice(afterSeq, afterSeq + limit).map((e) => ({ seq: e.seq, json: e.json }));
  }

  async lastSeq(threadId: string): Promise<number> {
    this.#open();
    return this.#threads.get(threadId)?.events.length ?? 0;
  }

  async startRun(input: StartRunInput): Promise<StartRunResult> {
    this.#open();
    const prepared = prepareStartRun(input);
    const state = this.#threads.get(input.threadId);
    if (!state) throw notFoundThread(input.threadId);
    return this.#startIn(state, input, prepared.body, Date.now());
  }

  async startRuns(inputs: readonly StartRunInput[]): Promise<StartRunResult[]> {
    this.#open();
    if (!Array.isArray(inputs)) throw new StoreError('invalid_message', 'startRuns takes an array');
    const prepared = inputs.map((input) => {
      const body = prepareStartRun(input).body;
      const state = this.#threads.get(input.threadId);
      if (!state) throw notFoundThread(input.threadId);
      return { input, body, state };
    });
    // A dry run first, so a run id conflict rejects the whole call before anything is written.
    const seen = new Map<ThreadState, Set<string>>();
    const started = new Set<ThreadState>();
    const runIds = new Set<string>();
    for (const { input, state } of prepared) {
      const messages = seen.get(state) ?? new Set<string>();
      seen.set(state, messages);
      if (state.messages.has(input.clientMessageId) || messages.has(input.clientMessageId)) continue;
      if (state.activeRunId !== null || started.has(state)) continue;
      if (this.#runs.has(input.runId) || runIds.has(input.runId))
        throw new StoreError('conflict', `run "${input.runId}" already exists`);
      messages.add(input.clientMessageId);
      started.add(state);
      runIds.add(input.runId);
    }
    const now = Date.now();
    return prepared.map(({ input, body, state }) => this.#startIn(state, input, body, now));
  }

  /** startRun on a validated input of an existing thread. */
  #startIn(state: ThreadState, input: StartRunInput, body: string, now: number): StartRunResult {
    const seenRunId = state.messages.get(input.clientMessageId);
    if (seenRunId !== undefined) return { status: 'duplicate', run: this.#copyRun(seenRunId) };
    if (state.activeRunId !== null)
      return { status: 'run_active', activeRun: this.#copyRun(state.activeRunId) };
    if (this.#runs.has(input.runId)) throw new StoreError('conflict', `run "${input.runId}" already exists`);
    const run = newRun(input, now);
    this.#runs.set(run.runId, run);
    state.messages.set(input.clientMessageId, run.runId);
    state.activeRunId = run.runId;
    const seq = state.events.length + 1;
    const userMessage = { seq, json: withSeq(body, seq) };
    state.events.push(userMessage);
    state.record.updatedAt = now;
    return { status: 'started', run: copyRun(run), userMessage: { ...userMessage } };
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#runs.has(runId) ? this.#copyRun(runId) : null;
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    const runId = this.#threads.get(threadId)?.activeRunId;
    return runId ? this.#copyRun(runId) : null;
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    const out: RunRecord[] = [];
    for (const run of this.#runs.values()) if (run.status === 'running') out.push(copyRun(run));
    return out;
  }

  async renewLeases(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#open();
    const input = checkRenew(owner, runIds, ttlMs);
    const expiresAt = Date.now() + input.ttlMs;
    const renewed: string[] = [];
    for (const runId of input.runIds) {
      const run = this.#runs.get(runId);
      if (run?.status !== 'running' || run.lease?.owner !== input.owner) continue;
      run.lease = { owner: input.owner, expiresAt };
      renewed.push(runId);
    }
    return renewed;
  }

  async claimRuns(input: ClaimRunsInput): Promise<RunRecord[]> {
    this.#open();
    const { owner, ttlMs, limit, orphans } = checkClaim(input);
    const now = Date.now();
    const claimed: RunRecord[] = [];
    for (const run of this.#runs.values()) {
      if (claimed.length >= limit) break;
      if (run.status !== 'running') continue;
      const lease = run.lease;
      const take = lease ? lease.expiresAt < now || (orphans && lease.owner === owner) : orphans;
      if (!take) continue;
      run.lease = { owner, expiresAt: now + ttlMs };
      claimed.push(copyRun(run));
    }
    return claimed;
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    const old = [...this.#threads.values()]
      .filter((t) => t.record.updatedAt < input.cutoff && t.activeRunId === null)
      .sort((a, b) => a.record.updatedAt - b.record.updatedAt)
      .slice(0, input.limit);
    const result: PruneResult = { threads: 0, events: 0, runs: 0, sessionItems: 0, more: false };
    const ids = new Set(old.map((t) => t.record.threadId));
    for (const state of old) {
      result.threads++;
      result.events += state.events.length;
      this.#threads.delete(state.record.threadId);
    }
    for (const [runId, run] of this.#runs)
      if (ids.has(run.threadId)) {
        this.#runs.delete(runId);
        result.runs++;
      }
    result.more = result.threads === input.limit;
    return result;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  #apply(state: ThreadState, prepared: readonly PreparedEvent[], now: number): StoredEvent[] {
    if (prepared.length === 0) return [];
    let seq = state.events.length;
    const stored: StoredEvent[] = [];
    for (const p of prepared) {
      seq += 1;
      const row = { seq, json: withSeq(p.body, seq) };
      state.events.push(row);
      stored.push({ ...row });
      if (p.ends) this.#endRun(state, p.event.runId, p.ends, now);
    }
    state.record.updatedAt = now;
    return stored;
  }

  #copyRun(runId: string): RunRecord {
    const run = this.#runs.get(runId);
    if (!run) throw new StoreError('internal_error', `run "${runId}" is indexed but missing`);
    return copyRun(run);
  }

  #endRun(state: ThreadState, runId: string, status: 'finished' | 'failed', now: number): void {
    const run = this.#runs.get(runId);
    // Only this thread's running run can be ended from this thread's log.
    if (!run || run.threadId !== state.record.threadId || run.status !== 'running') return;
    run.status = status;
    run.endedAt = now;
    if (state.activeRunId === runId) state.activeRunId = null;
  }
}

/** A copy of a run record (its lease too), so callers can't change what is stored. */
function copyRun(run: RunRecord): RunRecord {
  return run.lease ? { ...run, lease: { ...run.lease } } : { ...run };
}

/**
 * Creates an empty {@link MemoryStore}.
 *
 * @example
 * const relay = createRelay({ store: createMemoryStore(), agent, tokens, toolsBaseUrl, tools });
 */
export function createMemoryStore(): MemoryStore {
  return new MemoryStore();
}
