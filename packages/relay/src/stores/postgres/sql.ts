import type { RunRecord, RunStatus, ThreadRecord } from '../store.js';

// The PostgreSQL store's schema and its multi-row statements, and the row mappers.

/** The schema this version creates; a database at a newer version is refused, an older one is migrated. */
export const POSTGRES_SCHEMA_VERSION = 2;
/** Our SQLSTATE for "thread does not exist", raised inside a statement so that the whole statement rolls back. */
export const THREAD_MISSING = 'TL404';
/** PostgreSQL's SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = '23505';
/** The server's clock in ms since the epoch: leases are compared on one clock, whatever the instances' clocks say. */
export const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Every table and function of one prefix, created (or migrated) inside one transaction at open. */
export function schemaSql(p: string): string {
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
 * its thread (1-based) · $5 the events' JSON without seq, joined by newlines (one text: JSON.stringify never
 * writes a raw newline, and a text[] parameter would cost the client an escaping pass over every quote in every
 * event) · $6 now · $7 $8 $9 run ends: thread id, run id, status.
 */
export function appendSql(p: string): string {
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
  FROM unnest($3::int[], $4::int[], string_to_array($5::text, chr(10))) AS u(ti, k, body)
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
export function startFastSql(p: string): string {
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

/** The write of a startRuns call, once decided: new runs, their USER_MESSAGE events and the counters. */
export function startWriteSql(p: string): string {
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

/** A row of `threads`. */
export interface ThreadRow {
  thread_id: string;
  owner_id: string;
  title: string;
  created_at: string;
  updated_at: string;
}
/** A row of `runs`. */
export interface RunRow {
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

/** The columns of a run record, in `SELECT` lists. */
export const RUN_COLUMNS =
  'run_id, thread_id, user_id, client_message_id, status, started_at, ended_at, lease_owner, lease_expires';
/** The columns of a thread record. */
export const THREAD_COLUMNS = 'thread_id, owner_id, title, created_at, updated_at';

/** A thread record from its row. */
export function toThread(row: ThreadRow): ThreadRecord {
  return {
    threadId: row.thread_id,
    ownerId: row.owner_id,
    title: JSON.parse(row.title) as string,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** A run record (with its lease) from its row. */
export function toRun(row: RunRow): RunRecord {
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
