import type { AgentEvent } from '@threadline/contracts';
import type pg from 'pg';
import type { ToolStore } from '@threadline/tools-kit';
import { ToolStorePart } from '../tool-store-part.js';
import { StoreError } from '../../errors.js';
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
} from '../store.js';
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
  prepareBatches,
  prepareEvents,
  prepareStartRun,
  threadListLimit,
  type PreparedBatch,
  withSeq,
} from '../store-input.js';
import { isId, PgRunner, type PgQuery } from './driver.js';
import {
  appendSql,
  NOW_MS,
  RUN_COLUMNS,
  startFastSql,
  startWriteSql,
  THREAD_COLUMNS,
  toRun,
  toThread,
  type RunRow,
  type ThreadRow,
} from './sql.js';
import { PostgresToolStorage } from './tool-store.js';
import { migrateSchema, startRunsIn } from './transactions.js';

/**
 * An {@link EventStore} on PostgreSQL through `pg` (node-postgres, an optional peer dependency): the store
 * for several relay instances sharing one database. Tables are created, or migrated, when it opens (a schema
 * version row, under an advisory lock so that instances starting together don't race).
 *
 * Sequencing lives in the database: each thread's row holds its seq counter, every write bumps it under the
 * row's lock in the same transaction as the events it numbers, and `(thread_id, seq)` is the events' primary
 * key, so no two instances can ever hand out the same seq or leave a hole. `append` and the group commit
 * `appendMany` are one statement each (one round trip and one commit for any number of threads and events);
 * `startRun`/`startRuns` are one statement when every input starts (the common case), else one transaction of
 * five round trips whatever the batch size. Every call is all or
 * nothing. With the server down, calls fail with StoreError `store_error` ("PostgreSQL is unavailable")
 * after at most `connectionTimeoutMs`, and work again once it is back.
 *
 * It is tools-kit's `ToolStore` too (profiles, session items, idempotent results, paused runs' states) in
 * the same database, so one store serves the relay and the tool router.
 *
 * @example
 * import { openPostgresStore } from '@threadline/relay/postgres';
 * const store = await openPostgresStore({ connectionString: process.env.DATABASE_URL! });
 */
export class PostgresStore extends ToolStorePart implements EventStore, ToolStore {
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #p: string;
  readonly #sql: { append: PgQuery; startWrite: string; startFast: PgQuery };
  readonly #pg: PgRunner;
  readonly #tools: PostgresToolStorage;
  #closed = false;

  /** Use {@link openPostgresStore}, which checks the options and creates or migrates the schema. */
  constructor(options: {
    pool: pg.Pool;
    ownsPool: boolean;
    tablePrefix: string;
    preparedStatements?: boolean;
  }) {
    super();
    this.#pool = options.pool;
    this.#ownsPool = options.ownsPool;
    this.#p = options.tablePrefix;
    // The two hot writes as named (prepared) statements unless turned off.
    const named = options.preparedStatements !== false;
    this.#sql = {
      append: { text: appendSql(this.#p), rowMode: 'array', name: named ? `${this.#p}append_v1` : undefined },
      startWrite: startWriteSql(this.#p),
      startFast: {
        text: startFastSql(this.#p),
        rowMode: 'array',
        name: named ? `${this.#p}start_v1` : undefined,
      },
    };
    this.#pg = new PgRunner(this.#pool);
    this.#tools = new PostgresToolStorage(this.#pg, this.#p, () => this.#open());
  }

  /**
   * Creates the tables, or migrates them to {@link POSTGRES_SCHEMA_VERSION}, in one transaction under an
   * advisory lock (instances opening at once wait for each other). Refuses a database of a newer version.
   */
  async migrate(): Promise<void> {
    await migrateSchema(this.#pg, this.#p);
  }

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    const now = Date.now();
    const { rowCount } = await this.#pg.query(
      'creating a thread',
      `INSERT INTO ${this.#p}threads (thread_id, owner_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (thread_id) DO NOTHING`,
      [threadId, ownerId, JSON.stringify(title), now],
    );
    if (rowCount === 0) throw new StoreError('conflict', `thread "${threadId}" already exists`);
    return { threadId, ownerId, title, createdAt: now, updatedAt: now };
  }

  async getThread(threadId: string): Promise<ThreadRecord | null> {
    this.#open();
    if (!isId(threadId)) return null;
    const { rows } = await this.#pg.query<ThreadRow>(
      'reading a thread',
      `SELECT ${THREAD_COLUMNS} FROM ${this.#p}threads WHERE thread_id = $1`,
      [threadId],
    );
    return rows[0] ? toThread(rows[0]) : null;
  }

  async listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]> {
    this.#open();
    const limit = threadListLimit(options);
    if (!isId(ownerId)) return [];
    const { rows } = await this.#pg.query<ThreadRow>(
      'listing threads',
      `SELECT ${THREAD_COLUMNS} FROM ${this.#p}threads WHERE owner_id = $1 ORDER BY updated_at DESC, thread_id LIMIT $2`,
      [ownerId, limit],
    );
    return rows.map(toThread);
  }

  async renameThread(
    threadId: string,
    title: string,
    options?: { onlyIfUntitled?: boolean },
  ): Promise<ThreadRecord | null> {
    this.#open();
    const next = checkNewTitle(title);
    if (!isId(threadId)) return null;
    // One statement: with onlyIfUntitled the row keeps a title it already has (stored as the JSON '""' when empty).
    const { rows } = await this.#pg.query<ThreadRow>(
      'renaming a thread',
      `UPDATE ${this.#p}threads SET title = CASE WHEN $3 AND title <> '""' THEN title ELSE $1 END WHERE thread_id = $2 RETURNING ${THREAD_COLUMNS}`,
      [JSON.stringify(next), threadId, options?.onlyIfUntitled === true],
    );
    return rows[0] ? toThread(rows[0]) : null;
  }

  async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    this.#open();
    if (!isId(threadId)) return 'not_found';
    const p = this.#p;
    return this.#pg.transaction('deleting a thread', async (client) => {
      // The thread's row lock orders this against every write to the thread (each one locks the row first).
      const locked = await client.query(`SELECT 1 FROM ${p}threads WHERE thread_id = $1 FOR UPDATE`, [
        threadId,
      ]);
      if (locked.rowCount === 0) return 'not_found';
      const running = await client.query(
        `SELECT 1 FROM ${p}runs WHERE thread_id = $1 AND status = 'running'`,
        [threadId],
      );
      if ((running.rowCount ?? 0) > 0) return 'run_active';
      await client.query(`DELETE FROM ${p}events WHERE thread_id = $1`, [threadId]);
      await client.query(`DELETE FROM ${p}runs WHERE thread_id = $1`, [threadId]);
      await client.query(`DELETE FROM ${p}session_items WHERE thread_id = $1`, [threadId]);
      await client.query(`DELETE FROM ${p}threads WHERE thread_id = $1`, [threadId]);
      return 'deleted';
    });
  }

  async append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]> {
    this.#open();
    const prepared = prepareEvents(threadId, events);
    const [stored] = await this.#appendPrepared([{ threadId, events: prepared }]);
    return stored!;
  }

  async appendMany(batches: readonly AppendBatch[]): Promise<StoredEvent[][]> {
    this.#open();
    const prepared = prepareBatches(batches);
    if (prepared.length === 0) return [];
    return this.#appendPrepared(prepared);
  }

  /** Appends validated batches with the one {@link appendSql} statement. */
  async #appendPrepared(batches: readonly PreparedBatch[]): Promise<StoredEvent[][]> {
    const ordinal = new Map<string, number>();
    const threadIds: string[] = [];
    const counts: number[] = [];
    for (const { threadId, events } of batches) {
      let i = ordinal.get(threadId);
      if (i === undefined) {
        i = threadIds.length + 1;
        ordinal.set(threadId, i);
        threadIds.push(threadId);
        counts.push(0);
      }
      counts[i - 1]! += events.length;
    }
    const eventThread: number[] = [];
    const eventOffset: number[] = [];
    const bodies: string[] = [];
    const endThread: string[] = [];
    const endRun: string[] = [];
    const endStatus: string[] = [];
    const ended = new Set<string>();
    const taken = new Array<number>(threadIds.length).fill(0);
    for (const { threadId, events } of batches) {
      const i = ordinal.get(threadId)!;
      for (const p of events) {
        eventThread.push(i);
        eventOffset.push(++taken[i - 1]!);
        bodies.push(p.body);
        // The first terminal event of a run wins, as it would appending one by one.
        const key = `${threadId}\n${p.event.runId}`;
        if (p.ends && !ended.has(key)) {
          ended.add(key);
          endThread.push(threadId);
          endRun.push(p.event.runId);
          endStatus.push(p.ends);
        }
      }
    }
    const { rows } = await this.#pg.query<[string]>('appending events', this.#sql.append, [
      threadIds,
      counts,
      eventThread,
      eventOffset,
      bodies.join('\n'),
      Date.now(),
      endThread,
      endRun,
      endStatus,
    ]);
    const next = rows.map((row) => Number(row[0]));
    return batches.map(({ threadId, events }) => {
      const i = ordinal.get(threadId)! - 1;
      const out = new Array<StoredEvent>(events.length);
      for (let k = 0; k < events.length; k++) {
        const seq = ++next[i]!;
        out[k] = { seq, json: withSeq(events[k]!.body, seq) };
      }
      return out;
    });
  }

  async read(threadId: string, options: { afterSeq: number; limit: number }): Promise<StoredEvent[]> {
    this.#open();
    const afterSeq = checkAfterSeq(options?.afterSeq);
    const limit = checkLimit('limit', options.limit);
    if (!isId(threadId)) return [];
    const { rows } = await this.#pg.query<[string, string]>(
      'reading events',
      {
        text: `SELECT seq, json FROM ${this.#p}events WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
        rowMode: 'array',
      },
      [threadId, afterSeq, limit],
    );
    const out = new Array<StoredEvent>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = { seq: Number(rows[i]![0]), json: rows[i]![1] };
    return out;
  }

  async lastSeq(threadId: string): Promise<number> {
    this.#open();
    if (!isId(threadId)) return 0;
    const { rows } = await this.#pg.query<{ last_seq: string }>(
      'reading the last seq',
      `SELECT last_seq FROM ${this.#p}threads WHERE thread_id = $1`,
      [threadId],
    );
    return rows[0] ? Number(rows[0].last_seq) : 0;
  }

  async startRun(input: StartRunInput): Promise<StartRunResult> {
    this.#open();
    const [result] = await startRunsIn(this.#pg, this.#p, this.#sql, [input], [prepareStartRun(input).body]);
    return result!;
  }

  async startRuns(inputs: readonly StartRunInput[]): Promise<StartRunResult[]> {
    this.#open();
    if (!Array.isArray(inputs)) throw new StoreError('invalid_message', 'startRuns takes an array');
    const bodies = inputs.map((input) => prepareStartRun(input).body);
    if (inputs.length === 0) return [];
    return startRunsIn(this.#pg, this.#p, this.#sql, inputs, bodies);
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.#open();
    if (!isId(runId)) return null;
    const { rows } = await this.#pg.query<RunRow>(
      'reading a run',
      `SELECT ${RUN_COLUMNS} FROM ${this.#p}runs WHERE run_id = $1`,
      [runId],
    );
    return rows[0] ? toRun(rows[0]) : null;
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    if (!isId(threadId)) return null;
    const { rows } = await this.#pg.query<RunRow>(
      'reading the active run',
      `SELECT ${RUN_COLUMNS} FROM ${this.#p}runs WHERE thread_id = $1 AND status = 'running'`,
      [threadId],
    );
    return rows[0] ? toRun(rows[0]) : null;
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    const { rows } = await this.#pg.query<RunRow>(
      'listing running runs',
      `SELECT ${RUN_COLUMNS} FROM ${this.#p}runs WHERE status = 'running' ORDER BY started_at, run_id`,
      [],
    );
    return rows.map(toRun);
  }

  async renewLeases(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#open();
    const input = checkRenew(owner, runIds, ttlMs);
    if (input.runIds.length === 0) return [];
    const { rows } = await this.#pg.query<{ run_id: string }>(
      'renewing leases',
      `UPDATE ${this.#p}runs SET lease_expires = ${NOW_MS} + $3::bigint
       WHERE run_id = ANY($1::text[]) AND lease_owner = $2 AND status = 'running' RETURNING run_id`,
      [input.runIds, input.owner, input.ttlMs],
    );
    return rows.map((r) => r.run_id);
  }

  async claimRuns(input: ClaimRunsInput): Promise<RunRecord[]> {
    this.#open();
    const { owner, ttlMs, limit, orphans } = checkClaim(input);
    const p = this.#p;
    // One statement. The runs are picked FOR UPDATE SKIP LOCKED: a run another instance is claiming right now
    // is skipped, and one it claimed a moment ago no longer matches (the condition is checked again on the
    // newest row once locked), so two instances never claim the same run.
    const { rows } = await this.#pg.query<RunRow>(
      'claiming runs',
      `WITH n AS (SELECT ${NOW_MS} AS now),
       picked AS (
         SELECT r.run_id FROM ${p}runs AS r, n
         WHERE r.status = 'running'
           AND (r.lease_expires < n.now OR ($3::boolean AND (r.lease_owner IS NULL OR r.lease_owner = $1)))
         ORDER BY r.lease_expires NULLS FIRST
         LIMIT $4
         FOR UPDATE OF r SKIP LOCKED
       )
       UPDATE ${p}runs AS ru SET lease_owner = $1, lease_expires = n.now + $2::bigint
       FROM picked, n
       WHERE ru.run_id = picked.run_id AND ru.status = 'running'
       RETURNING ${RUN_COLUMNS.split(', ')
         .map((c) => `ru.${c}`)
         .join(', ')}`,
      [owner, ttlMs, orphans, limit],
    );
    return rows.map(toRun);
  }

  /** The ToolStore part every ToolStore method of this store forwards to. */
  protected override get toolStore(): ToolStore {
    return this.#tools;
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    const p = this.#p;
    return this.#pg.transaction('pruning old threads', async (client) => {
      // The threads are locked as they are picked (SKIP LOCKED: one a run is starting in is left for later). A
      // run or event committed meanwhile moved updated_at past the cutoff, which the lock re-checks.
      const picked = await client.query<{ thread_id: string }>(
        `SELECT thread_id FROM ${p}threads AS t WHERE updated_at < $1 AND NOT EXISTS (SELECT 1 FROM ${p}runs AS r WHERE r.thread_id = t.thread_id AND r.status = 'running') ORDER BY updated_at, thread_id LIMIT $2 FOR UPDATE SKIP LOCKED`,
        [input.cutoff, input.limit],
      );
      const ids = picked.rows.map((r) => r.thread_id);
      const result: PruneResult = { threads: 0, events: 0, runs: 0, sessionItems: 0, more: false };
      if (ids.length === 0) return result;
      const remove = async (table: string) =>
        (await client.query(`DELETE FROM ${p}${table} WHERE thread_id = ANY($1::text[])`, [ids])).rowCount ??
        0;
      result.events = await remove('events');
      result.runs = await remove('runs');
      result.sessionItems = await remove('session_items');
      result.threads = await remove('threads');
      result.more = ids.length === input.limit;
      return result;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsPool) await this.#pool.end();
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }
}
