import { createHash } from 'node:crypto';
import { ID_PATTERN, LIMITS, type AgentEvent, type JsonValue } from '@threadline/contracts';
import pg from 'pg';
import { StoreError } from '../errors.js';
import type {
  AppendBatch,
  ClaimRunsInput,
  DeleteThreadResult,
  EventStore,
  PruneResult,
  RunRecord,
  RunStatus,
  StartRunInput,
  StartRunResult,
  StoredEvent,
  ThreadRecord,
} from './store.js';
import {
  checkAfterSeq,
  checkClaim,
  checkId,
  checkIdempotencyKey,
  checkJson,
  checkJsonObject,
  checkLimit,
  checkNewTitle,
  checkPrune,
  checkRenew,
  checkTitle,
  closedError,
  mergeProfile,
  newRun,
  notFoundThread,
  prepareBatches,
  prepareEvents,
  prepareStartRun,
  threadListLimit,
  toStoreError,
  type PreparedBatch,
  withSeq,
  checkRunState,
} from './store-input.js';

/** Options of {@link openPostgresStore}: give either `connectionString` (the store owns a pool) or `pool`. */
export type PostgresStoreOptions = (
  { connectionString: string; pool?: undefined } | { pool: pg.Pool; connectionString?: undefined }
) & {
  /** Most connections of the store's own pool (default 10, from 1 to 1000). Ignored with `pool`. */
  maxConnections?: number;
  /**
   * How long a call waits for a connection (a free one from the pool, or a new one to the server) before it
   * fails with StoreError `store_error` (default 5000 ms). This bounds the pool's wait queue in time: with
   * PostgreSQL down or every connection busy, calls fail after this long instead of piling up.
   */
  connectionTimeoutMs?: number;
  /**
   * Longest one statement may run on the server (PostgreSQL's `statement_timeout`) before it is cancelled
   * and the call fails with `store_error` (default 30000 ms). Ignored with `pool`.
   */
  statementTimeoutMs?: number;
  /** Prefix of every table (and the one function) the store creates, so it can share a schema. Default `threadline_`. */
  tablePrefix?: string;
  /**
   * Runs the two hot writes (appending events, starting runs) as named prepared statements, parsed and planned
   * once per connection instead of on every call (default true). Set false behind a connection pooler that
   * cannot keep prepared statements across transactions (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
};

const DEFAULT_MAX_CONNECTIONS = 10;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
/** The schema this version creates; a database at a newer version is refused, an older one is migrated. */
export const POSTGRES_SCHEMA_VERSION = 2;
/** Our SQLSTATE for "thread does not exist", raised inside a statement so that the whole statement rolls back. */
const THREAD_MISSING = 'TL404';
const UNIQUE_VIOLATION = '23505';
/** The server's clock in ms since the epoch: leases are compared on one clock, whatever the instances' clocks say. */
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Every table and function of one prefix, created (or migrated) inside one transaction at open. */
function schemaSql(p: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${p}threads (
  thread_id text COLLATE "C" PRIMARY KEY,
  owner_id text COLLATE "C" NOT NULL,
  -- The title as a JSON string literal: PostgreSQL text can hold neither NUL nor a lone surrogate.
  title text NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  -- The seq counter: every write bumps it under the row's lock, so seqs are handed out once, in order.
  last_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ${p}threads_by_owner ON ${p}threads (owner_id, updated_at DESC, thread_id);
-- The primary key is the (thread, seq) uniqueness: no two writers can ever store the same seq twice.
CREATE TABLE IF NOT EXISTS ${p}events (
  thread_id text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  json text NOT NULL,
  PRIMARY KEY (thread_id, seq)
);
CREATE TABLE IF NOT EXISTS ${p}runs (
  run_id text COLLATE "C" PRIMARY KEY,
  thread_id text COLLATE "C" NOT NULL,
  user_id text COLLATE "C" NOT NULL,
  client_message_id text COLLATE "C" NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
  started_at bigint NOT NULL,
  ended_at bigint,
  UNIQUE (thread_id, client_message_id)
);
-- Version 2: the run's lease, which relay instance streams it and until when (ms, the server's clock).
ALTER TABLE ${p}runs ADD COLUMN IF NOT EXISTS lease_owner text COLLATE "C";
ALTER TABLE ${p}runs ADD COLUMN IF NOT EXISTS lease_expires bigint;
CREATE INDEX IF NOT EXISTS ${p}runs_by_lease ON ${p}runs (lease_expires) WHERE status = 'running';
-- At most one running run per thread, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS ${p}runs_one_running ON ${p}runs (thread_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS ${p}runs_running ON ${p}runs (started_at, run_id) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS ${p}profiles (user_id text COLLATE "C" PRIMARY KEY, json text NOT NULL);
CREATE TABLE IF NOT EXISTS ${p}session_items (
  id bigserial PRIMARY KEY,
  thread_id text COLLATE "C" NOT NULL,
  json text NOT NULL
);
CREATE INDEX IF NOT EXISTS ${p}session_items_by_thread ON ${p}session_items (thread_id, id);
-- Keyed by the SHA-256 of the key's JSON text: keys may be 1024 characters of anything (a btree entry can't).
CREATE TABLE IF NOT EXISTS ${p}idempotency (key_sha256 bytea PRIMARY KEY, json text NOT NULL);
CREATE TABLE IF NOT EXISTS ${p}run_states (
  thread_id text COLLATE "C" NOT NULL,
  run_id text COLLATE "C" NOT NULL,
  state text NOT NULL,
  PRIMARY KEY (thread_id, run_id)
);
CREATE OR REPLACE FUNCTION ${p}thread_missing(thread_id text) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION 'thread "%" does not exist', thread_id USING ERRCODE = '${THREAD_MISSING}', DETAIL = thread_id;
END
$f$;
-- Event JSON is compressed with lz4 where the server has it (PostgreSQL 14+ built with lz4): a stored text chunk
-- coalesces up to tens of KB, and compressing that with pglz, the default, is a good part of its commit's time.
-- New rows only; the ALTER (a short exclusive lock) runs once, when the column is not lz4 yet.
DO $lz4$
BEGIN
  IF current_setting('server_version_num')::int >= 140000 THEN
    IF (SELECT attcompression FROM pg_attribute
        WHERE attrelid = '${p}events'::regclass AND attname = 'json') IS DISTINCT FROM 'l' THEN
      EXECUTE 'ALTER TABLE ${p}events ALTER COLUMN json SET COMPRESSION lz4';
    END IF;
  END IF;
EXCEPTION WHEN feature_not_supported THEN NULL; -- built without lz4: pglz stays
END
$lz4$;
`;
}

/**
 * The group-commit statement: for several threads at once, locks their counter rows (in thread id order, so
 * two writers can't deadlock), reserves each thread's seqs, inserts every event with its seq spliced into its
 * JSON, and ends the runs their terminal events name. One statement is one round trip and one atomic commit;
 * a thread that does not exist raises {@link THREAD_MISSING} from the last SELECT, which rolls back everything.
 *
 * $1 thread ids (distinct) · $2 events per thread · $3 event → thread ordinal (1-based) · $4 event offset in
 * its thread (1-based) · $5 event JSON without seq · $6 now · $7 $8 $9 run ends: thread id, run id, status.
 */
function appendSql(p: string): string {
  return `
WITH c AS (
  SELECT * FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS c(thread_id, n, i)
), l AS (
  SELECT thread_id FROM ${p}threads WHERE thread_id = ANY($1::text[]) ORDER BY thread_id FOR UPDATE
), t AS (
  UPDATE ${p}threads AS th
  SET last_seq = th.last_seq + x.n,
      updated_at = CASE WHEN x.n > 0 THEN greatest(th.updated_at, $6::bigint) ELSE th.updated_at END
  FROM (SELECT c.thread_id, c.n FROM l JOIN c ON c.thread_id = l.thread_id) AS x
  WHERE th.thread_id = x.thread_id
  RETURNING th.thread_id, th.last_seq - x.n AS base
), e AS (
  INSERT INTO ${p}events (thread_id, seq, json)
  SELECT c.thread_id, t.base + u.k, left(u.body, -1) || ',"seq":' || (t.base + u.k) || '}'
  FROM unnest($3::int[], $4::int[], $5::text[]) AS u(ti, k, body)
  JOIN c ON c.i = u.ti
  JOIN t ON t.thread_id = c.thread_id
), r AS (
  UPDATE ${p}runs AS ru SET status = y.status, ended_at = $6::bigint
  FROM unnest($7::text[], $8::text[], $9::text[]) AS y(thread_id, run_id, status)
  WHERE ru.run_id = y.run_id AND ru.thread_id = y.thread_id AND ru.status = 'running'
)
SELECT coalesce(t.base, ${p}thread_missing(c.thread_id)) AS base
FROM c LEFT JOIN t ON t.thread_id = c.thread_id
ORDER BY c.i`;
}

/** The write of a startRuns call, once decided: new runs, their USER_MESSAGE events and the counters. */
function startWriteSql(p: string): string {
  return `
WITH ru AS (
  INSERT INTO ${p}runs (run_id, thread_id, user_id, client_message_id, status, started_at, lease_owner, lease_expires)
  SELECT run_id, thread_id, user_id, client_message_id, 'running', $5::bigint, lease_owner, lease_expires
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $10::text[], $11::bigint[])
    AS x(run_id, thread_id, user_id, client_message_id, lease_owner, lease_expires)
), ev AS (
  INSERT INTO ${p}events (thread_id, seq, json)
  SELECT * FROM unnest($2::text[], $6::bigint[], $7::text[])
)
UPDATE ${p}threads AS th SET last_seq = x.last, updated_at = greatest(th.updated_at, $5::bigint)
FROM unnest($8::text[], $9::bigint[]) AS x(thread_id, last)
WHERE th.thread_id = x.thread_id`;
}

/**
 * The common case of a startRuns call as ONE statement (one round trip, one commit): every input starts.
 * Locks the threads' counter rows (in id order, as {@link appendSql}), bumps each counter by one, inserts the
 * runs and their first events with the seq spliced in. Any other outcome (a duplicate clientMessageId, a run
 * in progress, a run id taken) violates a unique constraint and the whole statement rolls back; the caller then
 * decides with the full transaction. A missing thread raises {@link THREAD_MISSING}.
 *
 * $1 run ids · $2 thread ids (distinct) · $3 user ids · $4 client message ids · $5 first event JSON without seq ·
 * $6 lease owners (null: no lease) · $7 lease ttls · $8 now (started_at, updated_at)
 */
function startFastSql(p: string): string {
  return `
WITH x AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
    WITH ORDINALITY AS x(run_id, thread_id, user_id, client_message_id, body, lease_owner, lease_ttl, i)
), n AS (
  SELECT ${NOW_MS} AS now
), l AS (
  SELECT thread_id FROM ${p}threads WHERE thread_id = ANY($2::text[]) ORDER BY thread_id FOR UPDATE
), t AS (
  UPDATE ${p}threads AS th SET last_seq = th.last_seq + 1, updated_at = greatest(th.updated_at, $8::bigint)
  FROM l WHERE th.thread_id = l.thread_id
  RETURNING th.thread_id, th.last_seq AS seq
), ru AS (
  INSERT INTO ${p}runs (run_id, thread_id, user_id, client_message_id, status, started_at, lease_owner, lease_expires)
  SELECT x.run_id, x.thread_id, x.user_id, x.client_message_id, 'running', $8::bigint, x.lease_owner,
    CASE WHEN x.lease_owner IS NULL THEN NULL ELSE n.now + x.lease_ttl END
  FROM x JOIN t ON t.thread_id = x.thread_id, n
), ev AS (
  INSERT INTO ${p}events (thread_id, seq, json)
  SELECT x.thread_id, t.seq, left(x.body, -1) || ',"seq":' || t.seq || '}'
  FROM x JOIN t ON t.thread_id = x.thread_id
)
SELECT coalesce(t.seq, ${p}thread_missing(x.thread_id)) AS seq, n.now
FROM x LEFT JOIN t ON t.thread_id = x.thread_id, n
ORDER BY x.i`;
}

interface ThreadRow {
  thread_id: string;
  owner_id: string;
  title: string;
  created_at: string;
  updated_at: string;
}
interface RunRow {
  run_id: string;
  thread_id: string;
  user_id: string;
  client_message_id: string;
  status: RunStatus;
  started_at: string;
  ended_at: string | null;
  lease_owner: string | null;
  lease_expires: string | null;
}

const RUN_COLUMNS =
  'run_id, thread_id, user_id, client_message_id, status, started_at, ended_at, lease_owner, lease_expires';
const THREAD_COLUMNS = 'thread_id, owner_id, title, created_at, updated_at';

function toThread(row: ThreadRow): ThreadRecord {
  return {
    threadId: row.thread_id,
    ownerId: row.owner_id,
    title: JSON.parse(row.title) as string,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toRun(row: RunRow): RunRecord {
  const run: RunRecord = {
    runId: row.run_id,
    threadId: row.thread_id,
    userId: row.user_id,
    clientMessageId: row.client_message_id,
    status: row.status,
    startedAt: Number(row.started_at),
  };
  if (row.ended_at !== null) run.endedAt = Number(row.ended_at);
  if (row.lease_owner !== null && row.lease_expires !== null)
    run.lease = { owner: row.lease_owner, expiresAt: Number(row.lease_expires) };
  return run;
}

/** Driver error codes (Node's and PostgreSQL's) that mean the server is unreachable or went away. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '53300', // too_many_connections
]);

function isUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (typeof message !== 'string') return false;
  // node-postgres reports these without a code.
  return (
    message.includes('Connection terminated') ||
    message.includes('timeout exceeded when trying to connect') ||
    message.includes('Client has encountered a connection error') ||
    message.includes('Connection closed')
  );
}

/** Maps a driver failure to a StoreError: `not_found` from our SQLSTATE, a clear "unavailable" `store_error`, or `store_error`. */
function toPgStoreError(error: unknown, doing: string): StoreError {
  if (error instanceof StoreError) return error;
  const e = error as { code?: unknown; detail?: unknown; message?: unknown } | null;
  if (e?.code === THREAD_MISSING) return notFoundThread(String(e.detail ?? ''));
  if (isUnavailable(error)) {
    const why = typeof e?.message === 'string' && e.message !== '' ? e.message : String(e?.code ?? error);
    return new StoreError('store_error', `PostgreSQL is unavailable (${why}) while ${doing}; try again`, {
      cause: error,
    });
  }
  return toStoreError(error, doing);
}

function idempotencyHash(key: string): Buffer {
  // JSON text: lone surrogates come out escaped, so two different keys never hash the same input.
  return createHash('sha256').update(JSON.stringify(key)).digest();
}

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
 * five round trips whatever the batch size. Every call is all or nothing. With the server down, calls fail with StoreError `store_error` ("PostgreSQL is unavailable")
 * after at most `connectionTimeoutMs`, and work again once it is back.
 *
 * @example
 * import { openPostgresStore } from '@threadline/relay/postgres';
 * const store = await openPostgresStore({ connectionString: process.env.DATABASE_URL! });
 */
export class PostgresStore implements EventStore {
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #p: string;
  readonly #sql: { append: string; startWrite: string; startFast: string };
  /** Statement names of the hot writes (prepared once per connection), or undefined for unnamed statements. */
  readonly #names: { append: string; startFast: string } | undefined;
  #closed = false;

  /** Use {@link openPostgresStore}, which checks the options and creates or migrates the schema. */
  constructor(options: {
    pool: pg.Pool;
    ownsPool: boolean;
    tablePrefix: string;
    preparedStatements?: boolean;
  }) {
    this.#pool = options.pool;
    this.#ownsPool = options.ownsPool;
    this.#p = options.tablePrefix;
    this.#sql = {
      append: appendSql(this.#p),
      startWrite: startWriteSql(this.#p),
      startFast: startFastSql(this.#p),
    };
    this.#names =
      options.preparedStatements === false
        ? undefined
        : { append: `${this.#p}append_v1`, startFast: `${this.#p}start_v1` };
  }

  /**
   * Creates the tables, or migrates them to {@link POSTGRES_SCHEMA_VERSION}, in one transaction under an
   * advisory lock (instances opening at once wait for each other). Refuses a database of a newer version.
   */
  async migrate(): Promise<void> {
    const p = this.#p;
    await this.#transaction('creating the schema', async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`threadline:schema:${p}`]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${p}schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`,
      );
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${p}schema_version`);
      const version = rows[0]?.version ?? 0;
      if (version > POSTGRES_SCHEMA_VERSION) {
        throw new StoreError(
          'store_error',
          `the database schema (version ${version}) is newer than this @threadline/relay understands (${POSTGRES_SCHEMA_VERSION})`,
        );
      }
      // Version 1 is the first: creating is migrating from 0. Later versions add their steps after this one.
      await client.query(schemaSql(p));
      await client.query(
        `INSERT INTO ${p}schema_version (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = excluded.version`,
        [POSTGRES_SCHEMA_VERSION],
      );
    });
  }

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    const now = Date.now();
    const { rowCount } = await this.#query(
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
    const { rows } = await this.#query<ThreadRow>(
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
    const { rows } = await this.#query<ThreadRow>(
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
    const { rows } = await this.#query<ThreadRow>(
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
    return this.#transaction('deleting a thread', async (client) => {
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
    const { rows } = await this.#query<[string]>(
      'appending events',
      { text: this.#sql.append, rowMode: 'array', name: this.#names?.append },
      [threadIds, counts, eventThread, eventOffset, bodies, Date.now(), endThread, endRun, endStatus],
    );
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
    const { rows } = await this.#query<[string, string]>(
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
    const { rows } = await this.#query<{ last_seq: string }>(
      'reading the last seq',
      `SELECT last_seq FROM ${this.#p}threads WHERE thread_id = $1`,
      [threadId],
    );
    return rows[0] ? Number(rows[0].last_seq) : 0;
  }

  async startRun(input: StartRunInput): Promise<StartRunResult> {
    this.#open();
    const [result] = await this.#startRuns([input], [prepareStartRun(input).body]);
    return result!;
  }

  async startRuns(inputs: readonly StartRunInput[]): Promise<StartRunResult[]> {
    this.#open();
    if (!Array.isArray(inputs)) throw new StoreError('invalid_message', 'startRuns takes an array');
    const bodies = inputs.map((input) => prepareStartRun(input).body);
    if (inputs.length === 0) return [];
    return this.#startRuns(inputs, bodies);
  }

  /**
   * One transaction: lock the threads' counter rows (in id order), read the runs that decide each input
   * (same clientMessageId, running, same runId), decide in order as `startRun` would, write every start with
   * one statement. Any refusal rolls the whole call back.
   */
  async #startRuns(inputs: readonly StartRunInput[], bodies: readonly string[]): Promise<StartRunResult[]> {
    const p = this.#p;
    const threadIds = [...new Set(inputs.map((i) => i.threadId))];
    // One round trip when every input starts (one input per thread); otherwise the transaction below decides.
    if (threadIds.length === inputs.length) {
      const started = await this.#startFast(inputs, bodies);
      if (started) return started;
    }
    return this.#transaction('starting a run', async (client) => {
      const locked = await client.query<{ thread_id: string; last_seq: string; now_ms: string }>(
        `SELECT thread_id, last_seq, ${NOW_MS} AS now_ms FROM ${p}threads WHERE thread_id = ANY($1::text[]) ORDER BY thread_id FOR UPDATE`,
        [threadIds],
      );
      // Leases run on the server's clock.
      const leaseNow = Number(locked.rows[0]?.now_ms ?? Date.now());
      const lastOf = new Map(locked.rows.map((r) => [r.thread_id, Number(r.last_seq)]));
      for (const threadId of threadIds) if (!lastOf.has(threadId)) throw notFoundThread(threadId);
      // Read after the locks: every run of these threads is written under them, so this read is current.
      const runs = await client.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM ${p}runs
         WHERE (thread_id = ANY($1::text[]) AND status = 'running')
            OR (thread_id, client_message_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
            OR run_id = ANY($4::text[])`,
        [
          threadIds,
          inputs.map((i) => i.threadId),
          inputs.map((i) => i.clientMessageId),
          inputs.map((i) => i.runId),
        ],
      );
      const byMessage = new Map<string, RunRecord>();
      const active = new Map<string, RunRecord>();
      const runIds = new Set<string>();
      for (const row of runs.rows) {
        const run = toRun(row);
        runIds.add(run.runId);
        byMessage.set(`${run.threadId}\n${run.clientMessageId}`, run);
        if (run.status === 'running') active.set(run.threadId, run);
      }
      const now = Date.now();
      const write = {
        runIds: [] as string[],
        threadIds: [] as string[],
        userIds: [] as string[],
        messageIds: [] as string[],
        seqs: [] as number[],
        jsons: [] as string[],
        leaseOwners: [] as (string | null)[],
        leaseExpiries: [] as (number | null)[],
      };
      const results = inputs.map((input, i): StartRunResult => {
        const seen = byMessage.get(`${input.threadId}\n${input.clientMessageId}`);
        if (seen) return { status: 'duplicate', run: { ...seen } };
        const running = active.get(input.threadId);
        if (running) return { status: 'run_active', activeRun: { ...running } };
        if (runIds.has(input.runId)) throw new StoreError('conflict', `run "${input.runId}" already exists`);
        const run = newRun(input, now, leaseNow);
        const seq = lastOf.get(input.threadId)! + 1;
        lastOf.set(input.threadId, seq);
        const userMessage = { seq, json: withSeq(bodies[i]!, seq) };
        runIds.add(run.runId);
        byMessage.set(`${input.threadId}\n${input.clientMessageId}`, run);
        active.set(input.threadId, run);
        write.runIds.push(run.runId);
        write.threadIds.push(run.threadId);
        write.userIds.push(run.userId);
        write.messageIds.push(run.clientMessageId);
        write.seqs.push(seq);
        write.jsons.push(userMessage.json);
        write.leaseOwners.push(run.lease?.owner ?? null);
        write.leaseExpiries.push(run.lease?.expiresAt ?? null);
        return { status: 'started', run: { ...run }, userMessage };
      });
      if (write.runIds.length > 0) {
        const bumped = [...new Set(write.threadIds)];
        try {
          await client.query(this.#sql.startWrite, [
            write.runIds,
            write.threadIds,
            write.userIds,
            write.messageIds,
            now,
            write.seqs,
            write.jsons,
            bumped,
            bumped.map((t) => lastOf.get(t)!),
            write.leaseOwners,
            write.leaseExpiries,
          ]);
        } catch (error) {
          // Another transaction took one of the run ids meanwhile (in another thread).
          const e = error as { code?: unknown; constraint?: unknown };
          if (e.code === UNIQUE_VIOLATION && e.constraint === `${p}runs_pkey`)
            throw new StoreError('conflict', 'a run id of this call already exists', { cause: error });
          throw error;
        }
      }
      return results;
    });
  }

  /**
   * {@link startFastSql}: the results when every input started, or null when one would not (a unique
   * constraint refused the statement, so nothing was written) and the full transaction must decide.
   */
  async #startFast(
    inputs: readonly StartRunInput[],
    bodies: readonly string[],
  ): Promise<StartRunResult[] | null> {
    const now = Date.now();
    let rows: [string, string][];
    try {
      ({ rows } = await this.#pool.query<[string, string]>({
        text: this.#sql.startFast,
        name: this.#names?.startFast,
        rowMode: 'array',
        values: [
          inputs.map((i) => i.runId),
          inputs.map((i) => i.threadId),
          inputs.map((i) => i.userId),
          inputs.map((i) => i.clientMessageId),
          bodies,
          inputs.map((i) => i.lease?.owner ?? null),
          inputs.map((i) => i.lease?.ttlMs ?? null),
          now,
        ],
      }));
    } catch (error) {
      // Nothing was written; the transaction gives the answer (and the error of the first missing thread).
      const code = (error as { code?: unknown } | null)?.code;
      if (code === UNIQUE_VIOLATION || code === THREAD_MISSING) return null;
      throw toPgStoreError(error, 'starting a run');
    }
    return inputs.map((input, i): StartRunResult => {
      const seq = Number(rows[i]![0]);
      return {
        status: 'started',
        run: newRun(input, now, Number(rows[i]![1])),
        userMessage: { seq, json: withSeq(bodies[i]!, seq) },
      };
    });
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.#open();
    if (!isId(runId)) return null;
    const { rows } = await this.#query<RunRow>(
      'reading a run',
      `SELECT ${RUN_COLUMNS} FROM ${this.#p}runs WHERE run_id = $1`,
      [runId],
    );
    return rows[0] ? toRun(rows[0]) : null;
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    if (!isId(threadId)) return null;
    const { rows } = await this.#query<RunRow>(
      'reading the active run',
      `SELECT ${RUN_COLUMNS} FROM ${this.#p}runs WHERE thread_id = $1 AND status = 'running'`,
      [threadId],
    );
    return rows[0] ? toRun(rows[0]) : null;
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    const { rows } = await this.#query<RunRow>(
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
    const { rows } = await this.#query<{ run_id: string }>(
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
    const { rows } = await this.#query<RunRow>(
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

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#open();
    if (!isId(userId)) return {};
    const { rows } = await this.#query<{ json: string }>(
      'reading a profile',
      `SELECT json FROM ${this.#p}profiles WHERE user_id = $1`,
      [userId],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as Record<string, JsonValue>) : {};
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    const p = this.#p;
    return this.#transaction('patching a profile', async (client) => {
      // The upsert takes the row's lock (creating the row if needed): concurrent patches apply one after another.
      const { rows } = await client.query<{ json: string }>(
        `INSERT INTO ${p}profiles (user_id, json) VALUES ($1, '{}') ON CONFLICT (user_id) DO UPDATE SET json = ${p}profiles.json RETURNING json`,
        [userId],
      );
      const current = JSON.parse(rows[0]!.json) as Record<string, JsonValue>;
      const text = JSON.stringify(mergeProfile(current, patch));
      await client.query(`UPDATE ${p}profiles SET json = $2 WHERE user_id = $1`, [userId, text]);
      return JSON.parse(text) as Record<string, JsonValue>;
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#open();
    const n = limit === undefined ? null : checkLimit('limit', limit);
    if (!isId(threadId)) return [];
    const { rows } = await this.#query<{ json: string }>(
      'reading session items',
      // LIMIT NULL is "no limit".
      `SELECT json FROM (SELECT id, json FROM ${this.#p}session_items WHERE thread_id = $1 ORDER BY id DESC LIMIT $2) AS s ORDER BY id`,
      [threadId, n],
    );
    return rows.map((row) => JSON.parse(row.json) as JsonValue);
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    await this.#query(
      'adding session items',
      `INSERT INTO ${this.#p}session_items (thread_id, json) SELECT $1, u.json FROM unnest($2::text[]) WITH ORDINALITY AS u(json, n) ORDER BY u.n`,
      [threadId, texts],
    );
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#open();
    if (!isId(threadId)) return null;
    const p = this.#p;
    // One statement; FOR UPDATE makes a concurrent pop wait and then take the next newest, not the same row.
    const { rows } = await this.#query<{ json: string }>(
      'popping a session item',
      `DELETE FROM ${p}session_items WHERE id = (SELECT id FROM ${p}session_items WHERE thread_id = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE) RETURNING json`,
      [threadId],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as JsonValue) : null;
  }

  async clearSession(threadId: string): Promise<void> {
    this.#open();
    if (!isId(threadId)) return;
    await this.#query('clearing a session', `DELETE FROM ${this.#p}session_items WHERE thread_id = $1`, [
      threadId,
    ]);
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#open();
    checkIdempotencyKey(key);
    const { rows } = await this.#query<{ json: string }>(
      'reading an idempotency key',
      `SELECT json FROM ${this.#p}idempotency WHERE key_sha256 = $1`,
      [idempotencyHash(key)],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as JsonValue) : null;
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#open();
    checkIdempotencyKey(key);
    const text = JSON.stringify(checkJson('idempotent value', value));
    const hash = idempotencyHash(key);
    const p = this.#p;
    const inserted = await this.#query<{ json: string }>(
      'storing an idempotency key',
      `INSERT INTO ${p}idempotency (key_sha256, json) VALUES ($1, $2) ON CONFLICT (key_sha256) DO NOTHING RETURNING json`,
      [hash, text],
    );
    if (inserted.rows[0]) return JSON.parse(inserted.rows[0].json) as JsonValue;
    // Someone else's row won (its insert committed before ours gave up): a new statement sees it.
    const { rows } = await this.#query<{ json: string }>(
      'reading an idempotency key',
      `SELECT json FROM ${p}idempotency WHERE key_sha256 = $1`,
      [hash],
    );
    if (!rows[0]) throw new StoreError('store_error', `idempotency key "${key}" vanished after a conflict`);
    return JSON.parse(rows[0].json) as JsonValue;
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#open();
    checkRunState(threadId, runId);
    const { rows } = await this.#query<{ state: string }>(
      'reading a run state',
      `SELECT state FROM ${this.#p}run_states WHERE thread_id = $1 AND run_id = $2`,
      [threadId, runId],
    );
    return rows[0] ? rows[0].state : null;
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#open();
    const text = checkRunState(threadId, runId, state);
    await this.#query(
      'storing a run state',
      `INSERT INTO ${this.#p}run_states (thread_id, run_id, state) VALUES ($1, $2, $3) ON CONFLICT (thread_id, run_id) DO UPDATE SET state = excluded.state`,
      [threadId, runId, text],
    );
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#open();
    checkRunState(threadId, runId);
    await this.#query(
      'deleting a run state',
      `DELETE FROM ${this.#p}run_states WHERE thread_id = $1 AND run_id = $2`,
      [threadId, runId],
    );
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    const p = this.#p;
    return this.#transaction('pruning old threads', async (client) => {
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

  async #query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    doing: string,
    query: string | { text: string; rowMode: 'array'; name?: string | undefined },
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      // Array rows (`rowMode: 'array'`) for the hot reads: no object per row; R describes the tuple then.
      return (await this.#pool.query(query as pg.QueryConfig, values)) as pg.QueryResult<R>;
    } catch (error) {
      throw toPgStoreError(error, doing);
    }
  }

  /** Runs `fn` in BEGIN … COMMIT on one pooled connection; any failure rolls back (nothing half-written). */
  async #transaction<T>(doing: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw toPgStoreError(error, doing);
    }
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError; // the connection is gone: the server rolls back for us
      }
      throw toPgStoreError(error, doing);
    } finally {
      // A connection that failed its rollback is destroyed, not reused.
      client.release(broken === undefined ? undefined : (broken as Error));
    }
  }
}

/** A contract id: anything else was never stored, so lookups answer "none" without asking (and without sending PostgreSQL a NUL it would refuse). */
function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= LIMITS.maxIdLength && ID_PATTERN.test(value);
}

/**
 * Connects to PostgreSQL and creates or migrates the store's tables. Throws StoreError `invalid_message` for
 * bad options and `store_error` when the server can't be reached (within `connectionTimeoutMs`).
 *
 * @example
 * import { openPostgresStore } from '@threadline/relay/postgres';
 * const store = await openPostgresStore({ connectionString: 'postgres://app@127.0.0.1/app', maxConnections: 20 });
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools });
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  if (typeof options !== 'object' || options === null)
    throw new StoreError('invalid_options', 'openPostgresStore needs options');
  const hasUrl = typeof options.connectionString === 'string' && options.connectionString !== '';
  const hasPool = options.pool instanceof pg.Pool;
  if (hasUrl === hasPool)
    throw new StoreError(
      'invalid_options',
      'openPostgresStore needs exactly one of `connectionString` or `pool`',
    );
  const prefix = options.tablePrefix ?? 'threadline_';
  if (typeof prefix !== 'string' || !/^[a-z_][a-z0-9_]{0,31}$/.test(prefix)) {
    throw new StoreError(
      'invalid_options',
      'tablePrefix must start with a lowercase letter or _ and hold only lowercase letters, digits and _ (at most 32)',
    );
  }
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== 'boolean')
    throw new StoreError('invalid_options', 'preparedStatements must be a boolean');
  const max = integerOption('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 1000);
  const connectTimeout = integerOption(
    'connectionTimeoutMs',
    options.connectionTimeoutMs,
    DEFAULT_CONNECTION_TIMEOUT_MS,
    1,
    600_000,
  );
  const statementTimeout = integerOption(
    'statementTimeoutMs',
    options.statementTimeoutMs,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    1,
    3_600_000,
  );
  const pool = hasPool
    ? options.pool!
    : new pg.Pool({
        connectionString: options.connectionString!,
        max,
        connectionTimeoutMillis: connectTimeout,
        statement_timeout: statementTimeout,
        // A query the server never answers (a dead network) fails too, a little after the server-side bound.
        query_timeout: statementTimeout + connectTimeout,
        idleTimeoutMillis: 30_000,
        keepAlive: true,
        application_name: 'threadline-relay',
      });
  // An idle connection that dies (the server restarted) is reported here; the pool drops it and the next call
  // connects anew. Without a listener the error would crash the process.
  if (!hasPool) pool.on('error', () => {});
  const store = new PostgresStore({
    pool,
    ownsPool: !hasPool,
    tablePrefix: prefix,
    preparedStatements: options.preparedStatements !== false,
  });
  try {
    await store.migrate();
    return store;
  } catch (error) {
    if (!hasPool) await pool.end().catch(() => undefined);
    throw toPgStoreError(error, 'opening the PostgreSQL store');
  }
}

function integerOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    throw new StoreError('invalid_options', `${name} must be an integer from ${min} to ${max}`);
  return value;
}
