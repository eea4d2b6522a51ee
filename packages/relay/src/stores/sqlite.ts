import type { DatabaseSync } from 'node:sqlite';
import type { AgentEvent } from '@threadline/contracts';
import type { ToolStore } from '@threadline/tools-kit';
import { ToolStorePart } from './tool-store-part.js';
import { StoreError } from '../errors.js';
import { EventTail } from './sqlite/event-tail.js';
import {
  openDatabase,
  startCheckpointer,
  stopCheckpointer,
  type Checkpointer,
  type SqliteStoreOptions,
} from './sqlite/schema.js';
import {
  prepareStatements,
  preparePrune,
  toRun,
  toThread,
  type RunRow,
  type SqliteStatements,
  type ThreadRow,
} from './sqlite/statements.js';
import { SqliteToolStorage } from './sqlite/tool-store.js';
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
  toStoreError,
  type PreparedEvent,
  withSeq,
} from './store-input.js';

export type { SqliteStoreOptions } from './sqlite/schema.js';
export type { ToolStorePart } from './tool-store-part.js';

/**
 * An {@link EventStore} in one SQLite file through `node:sqlite` (Node 22.13+): the embedded default. WAL
 * mode, prepared statements, every write in one `BEGIN IMMEDIATE` transaction; seq comes from a per-thread
 * counter row and the `(thread_id, seq)` primary key, so several relay processes can share the file
 * without ever duplicating or skipping a seq. Events are stored as their final JSON text, so replay sends
 * them as they are. Calls are synchronous underneath (node:sqlite has no async API): a write waiting for
 * another process's lock blocks this thread for up to `busyTimeoutMs`.
 *
 * It is tools-kit's `ToolStore` too (profiles, session items, idempotent results, paused runs' states) in
 * the same file, so one store serves the relay and the tool router.
 *
 * @example
 * import { openSqliteStore } from '@threadline/relay/sqlite';
 * const store = openSqliteStore({ path: './threadline.db' });
 */
export class SqliteStore extends ToolStorePart implements EventStore, ToolStore {
  readonly #db: DatabaseSync;
  readonly #stmt: SqliteStatements;
  readonly #tail: EventTail;
  readonly #tools: SqliteToolStorage;
  #checkpointer: Checkpointer | undefined;
  #closed = false;
  /** Statements of pruneOlderThan, prepared at its first call. */
  #pruneStatements: ReturnType<typeof preparePrune> | undefined;

  constructor(options: SqliteStoreOptions) {
    super();
    const { db, tailTarget, checkpointer } = openDatabase(options);
    try {
      this.#stmt = prepareStatements(db);
      this.#tail = new EventTail(db, this.#stmt, tailTarget);
    } catch (error) {
      db.close();
      throw toStoreError(error, `opening the SQLite database at ${options.path}`);
    }
    this.#db = db;
    this.#tools = new SqliteToolStorage(this.#stmt, {
      open: () => this.#open(),
      do: (doing, fn) => this.#do(doing, fn),
      write: (doing, fn) => this.#write(doing, fn),
    });
    if (checkpointer) this.#checkpointer = startCheckpointer(checkpointer);
  }

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    return this.#do('creating a thread', () => {
      const now = Date.now();
      const { changes } = this.#stmt.insertThread.run(threadId, ownerId, title, now, now);
      if (changes === 0) throw new StoreError('conflict', `thread "${threadId}" already exists`);
      return { threadId, ownerId, title, createdAt: now, updatedAt: now };
    });
  }

  async getThread(threadId: string): Promise<ThreadRecord | null> {
    this.#open();
    return this.#do('reading a thread', () => {
      const row = this.#stmt.getThread.get(threadId) as ThreadRow | undefined;
      return row ? toThread(row) : null;
    });
  }

  async listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]> {
    this.#open();
    const limit = threadListLimit(options);
    return this.#do('listing threads', () =>
      (this.#stmt.listThreads.all(ownerId, limit) as unknown as ThreadRow[]).map(toThread),
    );
  }

  async renameThread(
    threadId: string,
    title: string,
    options?: { onlyIfUntitled?: boolean },
  ): Promise<ThreadRecord | null> {
    this.#open();
    const next = checkNewTitle(title);
    const onlyIfUntitled = options?.onlyIfUntitled === true ? 1 : 0;
    return this.#write('renaming a thread', () => {
      this.#stmt.renameThread.run(next, threadId, onlyIfUntitled);
      const row = this.#stmt.getThread.get(threadId) as ThreadRow | undefined;
      return row ? toThread(row) : null;
    });
  }

  async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    this.#open();
    return this.#write('deleting a thread', () => {
      if (!this.#stmt.getThread.get(threadId)) return 'not_found';
      if (this.#stmt.runningRunOfThread.get(threadId)) return 'run_active';
      this.#stmt.deleteThreadEvents.run(threadId);
      const { changes } = this.#stmt.deleteThreadTail.run(threadId);
      if (Number(changes) > 0) this.#stmt.shrinkTailRows.run(Number(changes));
      this.#stmt.deleteThreadRuns.run(threadId);
      this.#stmt.clearSession.run(threadId);
      this.#stmt.deleteThreadRow.run(threadId);
      return 'deleted';
    });
  }

  async append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]> {
    this.#open();
    const prepared = prepareEvents(threadId, events);
    return this.#write('appending events', () => {
      const last = this.#lastSeqOrThrow(threadId);
      const stored = this.#appendIn(threadId, last, prepared, Date.now());
      this.#tail.settle(true);
      return stored;
    });
  }

  async appendMany(batches: readonly AppendBatch[]): Promise<StoredEvent[][]> {
    this.#open();
    const prepared = prepareBatches(batches);
    if (prepared.length === 0) return [];
    // One BEGIN IMMEDIATE … COMMIT for every thread: one WAL sync however many threads are streaming. Counters
    // are read, rows inserted and counters bumped 64 threads per statement: with one event per thread per
    // commit (many paced streams), statements per row, not rows, were the cost.
    return this.#write('appending events', () => {
      const now = Date.now();
      const threadIds = [...new Set(prepared.map((b) => b.threadId))];
      const lastOf = this.#tail.lastSeqs(threadIds);
      const rows: (string | number)[] = [];
      const stored = prepared.map(({ threadId, events }) => {
        let last = lastOf.get(threadId)!;
        const out: StoredEvent[] = new Array<StoredEvent>(events.length);
        for (let i = 0; i < events.length; i++) {
          const p = events[i]!;
          const seq = ++last;
          const json = withSeq(p.body, seq);
          out[i] = { seq, json };
          rows.push(threadId, seq, json);
          if (p.ends) this.#stmt.endRun.run(p.ends, now, p.event.runId, threadId);
        }
        lastOf.set(threadId, last);
        return out;
      });
      this.#tail.insertRows(rows);
      this.#tail.bumpThreads(threadIds, lastOf, now);
      this.#tail.settle(true);
      return stored;
    });
  }

  async read(threadId: string, options: { afterSeq: number; limit: number }): Promise<StoredEvent[]> {
    this.#open();
    const afterSeq = checkAfterSeq(options?.afterSeq);
    const limit = checkLimit('limit', options.limit);
    return this.#do('reading events', () => {
      // One read transaction (a snapshot) over both tables: another process moving this thread's tail rows
      // into `events` between the two queries could otherwise hide them from both.
      const own = !this.#db.isTransaction;
      if (own) this.#db.exec('BEGIN');
      try {
        const rows = this.#stmt.readEvents.all(threadId, afterSeq, limit) as unknown as [number, string][];
        const out: StoredEvent[] = new Array<StoredEvent>(rows.length);
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!;
          out[i] = { seq: row[0], json: row[1] };
        }
        if (out.length < limit) {
          const after = out.length > 0 ? out[out.length - 1]!.seq : afterSeq;
          const tail = this.#stmt.readTail.all(threadId, after, limit - out.length) as unknown as [
            number,
            string,
          ][];
          for (const row of tail) out.push({ seq: row[0], json: row[1] });
        }
        return out;
      } finally {
        if (own && this.#db.isTransaction) this.#db.exec('COMMIT');
      }
    });
  }

  async lastSeq(threadId: string): Promise<number> {
    this.#open();
    return this.#do('reading the last seq', () => {
      const row = this.#stmt.lastSeq.get(threadId) as { last_seq: number } | undefined;
      return row?.last_seq ?? 0;
    });
  }

  async startRun(input: StartRunInput): Promise<StartRunResult> {
    this.#open();
    const prepared = prepareStartRun(input);
    return this.#write('starting a run', () => {
      const result = this.#startIn(input, prepared, Date.now());
      this.#tail.settle(false);
      return result;
    });
  }

  async startRuns(inputs: readonly StartRunInput[]): Promise<StartRunResult[]> {
    this.#open();
    if (!Array.isArray(inputs)) throw new StoreError('invalid_message', 'startRuns takes an array');
    const prepared = inputs.map((input) => prepareStartRun(input));
    if (inputs.length === 0) return [];
    // One BEGIN IMMEDIATE … COMMIT for every run start; any refusal rolls the whole call back.
    return this.#write('starting runs', () => {
      const now = Date.now();
      const results = inputs.map((input, i) => this.#startIn(input, prepared[i]!, now));
      this.#tail.settle(false);
      return results;
    });
  }

  /** startRun on a validated input. Inside a write transaction. */
  #startIn(input: StartRunInput, prepared: PreparedEvent, now: number): StartRunResult {
    const last = this.#lastSeqOrThrow(input.threadId);
    const seen = this.#stmt.runByMessage.get(input.threadId, input.clientMessageId) as RunRow | undefined;
    if (seen) return { status: 'duplicate', run: toRun(seen) };
    const active = this.#stmt.runningRunOfThread.get(input.threadId) as RunRow | undefined;
    if (active) return { status: 'run_active', activeRun: toRun(active) };
    if (this.#stmt.getRun.get(input.runId)) {
      throw new StoreError('conflict', `run "${input.runId}" already exists`);
    }
    const run = newRun(input, now);
    this.#stmt.insertRun.run(
      input.runId,
      input.threadId,
      input.userId,
      input.clientMessageId,
      now,
      run.lease?.owner ?? null,
      run.lease?.expiresAt ?? null,
    );
    const [userMessage] = this.#tail.insertEvents(input.threadId, last, [prepared]);
    this.#stmt.bumpThread.run(last + 1, now, input.threadId);
    return { status: 'started', run, userMessage: userMessage! };
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#do('reading a run', () => {
      const row = this.#stmt.getRun.get(runId) as RunRow | undefined;
      return row ? toRun(row) : null;
    });
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#do('reading the active run', () => {
      const row = this.#stmt.runningRunOfThread.get(threadId) as RunRow | undefined;
      return row ? toRun(row) : null;
    });
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    return this.#do('listing running runs', () =>
      (this.#stmt.runningRuns.all() as unknown as RunRow[]).map(toRun),
    );
  }

  async renewLeases(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#open();
    const input = checkRenew(owner, runIds, ttlMs);
    if (input.runIds.length === 0) return [];
    return this.#write('renewing leases', () => {
      const rows = this.#stmt.renewLeases.all(
        Date.now() + input.ttlMs,
        JSON.stringify(input.runIds),
        input.owner,
      ) as { run_id: string }[];
      return rows.map((r) => r.run_id);
    });
  }

  async claimRuns(input: ClaimRunsInput): Promise<RunRecord[]> {
    this.#open();
    const { owner, ttlMs, limit, orphans } = checkClaim(input);
    // BEGIN IMMEDIATE: the write lock is taken before the expired runs are picked, so two processes never
    // claim the same run.
    return this.#write('claiming runs', () => {
      const now = Date.now();
      const rows = this.#stmt.claimRuns.all(
        owner,
        now + ttlMs,
        now,
        orphans ? 1 : 0,
        owner,
        limit,
      ) as unknown as RunRow[];
      return rows.map(toRun);
    });
  }

  /** The ToolStore part every ToolStore method of this store forwards to. */
  protected override get toolStore(): ToolStore {
    return this.#tools;
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    return this.#write('pruning old threads', () => {
      const s = (this.#pruneStatements ??= preparePrune(this.#db));
      const ids = (s.pick.all(input.cutoff, input.limit) as { thread_id: string }[]).map((r) => r.thread_id);
      const result: PruneResult = { threads: 0, events: 0, runs: 0, sessionItems: 0, more: false };
      let tailRows = 0;
      for (const id of ids) {
        const tail = Number(s.tail.run(id).changes);
        tailRows += tail;
        result.events += tail + Number(s.events.run(id).changes);
        result.runs += Number(s.runs.run(id).changes);
        result.sessionItems += Number(s.sessionItems.run(id).changes);
        result.threads += Number(s.thread.run(id).changes);
      }
      if (tailRows > 0) {
        const row = this.#stmt.tailRows.get() as { rows: number } | undefined;
        this.#stmt.setTailRows.run(Math.max(0, (row?.rows ?? 0) - tailRows));
      }
      result.more = ids.length === input.limit;
      return result;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#checkpointer) await stopCheckpointer(this.#checkpointer);
    this.#db.close();
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  #lastSeqOrThrow(threadId: string): number {
    const row = this.#stmt.lastSeq.get(threadId) as { last_seq: number } | undefined;
    if (!row) throw notFoundThread(threadId);
    return row.last_seq;
  }

  /** Appends a validated batch after seq `last`, ends runs and bumps the counter. Inside a write transaction. */
  #appendIn(threadId: string, last: number, prepared: readonly PreparedEvent[], now: number): StoredEvent[] {
    if (prepared.length === 0) return [];
    const stored = this.#tail.insertEvents(threadId, last, prepared);
    for (const p of prepared) {
      if (p.ends) this.#stmt.endRun.run(p.ends, now, p.event.runId, threadId);
    }
    this.#stmt.bumpThread.run(last + prepared.length, now, threadId);
    return stored;
  }

  /** Runs `fn` (synchronous) and maps failures to StoreError. */
  #do<T>(doing: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw toStoreError(error, doing);
    }
  }

  /** Runs `fn` in one `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so the counter read and the inserts can't race another process. */
  #write<T>(doing: string, fn: () => T): T {
    return this.#do(doing, () => {
      this.#db.exec('BEGIN IMMEDIATE');
      this.#tail.begin();
      try {
        const result = fn();
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw error;
      }
    });
  }
}

/**
 * Opens (creating if needed) a SQLite-backed {@link EventStore}. Synchronous; throws StoreError
 * `store_error` if the file can't be opened.
 *
 * @example
 * import { openSqliteStore } from '@threadline/relay/sqlite';
 * const store = openSqliteStore({ path: process.env.THREADLINE_DB ?? './threadline.db' });
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools });
 */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(options);
}
