import type { DatabaseSync } from 'node:sqlite';
import type { RunRecord, RunStatus, ThreadRecord } from '../store.js';

// The SQLite store's prepared statements and row mappers.

/** Rows per multi-row INSERT: fewer statement executions for big batches, well under SQLite's 32766 parameters. */
export const INSERT_CHUNK = 64;
/** Threads (or rows) per statement of appendMany's batched statements. */
export const BATCH_ROWS = 64;

/** A row of `threads`. */
export interface ThreadRow {
  thread_id: string;
  owner_id: string;
  title: string;
  created_at: number;
  updated_at: number;
}
/** A row of `runs`. */
export interface RunRow {
  run_id: string;
  thread_id: string;
  user_id: string;
  client_message_id: string;
  status: RunStatus;
  started_at: number;
  ended_at: number | null;
  lease_owner: string | null;
  lease_expires: number | null;
}

/** A thread record from its row. */
export function toThread(row: ThreadRow): ThreadRecord {
  return {
    threadId: row.thread_id,
    ownerId: row.owner_id,
    title: row.title,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
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
    startedAt: row.started_at,
  };
  if (row.ended_at !== null) run.endedAt = row.ended_at;
  if (row.lease_owner !== null && row.lease_expires !== null)
    run.lease = { owner: row.lease_owner, expiresAt: row.lease_expires };
  return run;
}

/** The statements appendMany prepares once per row count. */
export type BatchKind = 'lastSeqs' | 'insertTail' | 'bumpThreads';

/** The SQL of a batched statement of `kind` for `rows` rows. */
export function batchSql(kind: BatchKind, rows: number): string {
  const list = (item: string) => Array.from({ length: rows }, () => item).join(', ');
  switch (kind) {
    case 'lastSeqs':
      return `SELECT thread_id, last_seq FROM threads WHERE thread_id IN (${list('?')})`;
    case 'insertTail':
      return insertEventsSql(rows);
    case 'bumpThreads':
      // UPDATE … FROM (SQLite 3.33+): one statement sets each listed thread's counter to its own value.
      return `UPDATE threads SET last_seq = v.column2, updated_at = ? FROM (VALUES ${list('(?, ?)')}) AS v WHERE threads.thread_id = v.column1`;
  }
}

/** A multi-row INSERT into the tail for `rows` rows. */
export function insertEventsSql(rows: number): string {
  return `INSERT INTO event_tail (thread_id, seq, json) VALUES ${Array.from({ length: rows }, () => '(?, ?, ?)').join(', ')}`;
}

/** Prepares every statement the store runs on each call (once, at open). */
export function prepareStatements(db: DatabaseSync) {
  const readEvents = db.prepare(
    'SELECT seq, json FROM events WHERE thread_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  );
  readEvents.setReturnArrays(true);
  const readTail = db.prepare(
    'SELECT seq, json FROM event_tail WHERE thread_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  );
  readTail.setReturnArrays(true);
  return {
    insertThread: db.prepare(
      'INSERT INTO threads (thread_id, owner_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (thread_id) DO NOTHING',
    ),
    getThread: db.prepare(
      'SELECT thread_id, owner_id, title, created_at, updated_at FROM threads WHERE thread_id = ?',
    ),
    listThreads: db.prepare(
      'SELECT thread_id, owner_id, title, created_at, updated_at FROM threads WHERE owner_id = ? ORDER BY updated_at DESC, thread_id LIMIT ?',
    ),
    lastSeq: db.prepare('SELECT last_seq FROM threads WHERE thread_id = ?'),
    renameThread: db.prepare("UPDATE threads SET title = ? WHERE thread_id = ? AND (? = 0 OR title = '')"),
    deleteThreadEvents: db.prepare('DELETE FROM events WHERE thread_id = ?'),
    deleteThreadTail: db.prepare('DELETE FROM event_tail WHERE thread_id = ?'),
    shrinkTailRows: db.prepare('UPDATE tail_state SET rows = max(0, rows - ?) WHERE id = 1'),
    deleteThreadRuns: db.prepare('DELETE FROM runs WHERE thread_id = ?'),
    deleteThreadRow: db.prepare('DELETE FROM threads WHERE thread_id = ?'),
    bumpThread: db.prepare('UPDATE threads SET last_seq = ?, updated_at = ? WHERE thread_id = ?'),
    insertEvent: db.prepare('INSERT INTO event_tail (thread_id, seq, json) VALUES (?, ?, ?)'),
    readEvents,
    readTail,
    tailRows: db.prepare('SELECT rows FROM tail_state WHERE id = 1'),
    setTailRows: db.prepare('UPDATE tail_state SET rows = ? WHERE id = 1'),
    oldestTailThread: db.prepare('SELECT thread_id FROM event_tail ORDER BY id LIMIT 1'),
    moveTailRows: db.prepare(
      'INSERT INTO events (thread_id, seq, json) SELECT thread_id, seq, json FROM event_tail WHERE thread_id = ? ORDER BY seq',
    ),
    dropTailRows: db.prepare('DELETE FROM event_tail WHERE thread_id = ?'),
    endRun: db.prepare(
      "UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ? AND thread_id = ? AND status = 'running'",
    ),
    insertRun: db.prepare(
      "INSERT INTO runs (run_id, thread_id, user_id, client_message_id, status, started_at, lease_owner, lease_expires) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
    ),
    renewLeases: db.prepare(
      "UPDATE runs SET lease_expires = ? WHERE run_id IN (SELECT value FROM json_each(?)) AND lease_owner = ? AND status = 'running' RETURNING run_id",
    ),
    claimRuns: db.prepare(
      `UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE run_id IN (
         SELECT run_id FROM runs WHERE status = 'running'
           AND (lease_expires < ? OR (? AND (lease_owner IS NULL OR lease_owner = ?)))
         ORDER BY lease_expires LIMIT ?
       ) RETURNING *`,
    ),
    getRun: db.prepare('SELECT * FROM runs WHERE run_id = ?'),
    runByMessage: db.prepare('SELECT * FROM runs WHERE thread_id = ? AND client_message_id = ?'),
    runningRunOfThread: db.prepare("SELECT * FROM runs WHERE thread_id = ? AND status = 'running'"),
    runningRuns: db.prepare("SELECT * FROM runs WHERE status = 'running' ORDER BY started_at, run_id"),
    getProfile: db.prepare('SELECT json FROM profiles WHERE user_id = ?'),
    putProfile: db.prepare(
      'INSERT INTO profiles (user_id, json) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET json = excluded.json',
    ),
    lastSessionItems: db.prepare(
      'SELECT json FROM (SELECT id, json FROM session_items WHERE thread_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id',
    ),
    addSessionItem: db.prepare('INSERT INTO session_items (thread_id, json) VALUES (?, ?)'),
    popSessionItem: db.prepare(
      'DELETE FROM session_items WHERE id = (SELECT id FROM session_items WHERE thread_id = ? ORDER BY id DESC LIMIT 1) RETURNING json',
    ),
    clearSession: db.prepare('DELETE FROM session_items WHERE thread_id = ?'),
    getIdempotent: db.prepare('SELECT json FROM idempotency WHERE key = ?'),
    getRunState: db.prepare('SELECT state FROM run_states WHERE thread_id = ? AND run_id = ?'),
    putRunState: db.prepare(
      'INSERT INTO run_states (thread_id, run_id, state) VALUES (?, ?, ?) ON CONFLICT (thread_id, run_id) DO UPDATE SET state = excluded.state',
    ),
    deleteRunState: db.prepare('DELETE FROM run_states WHERE thread_id = ? AND run_id = ?'),
    putIdempotent: db.prepare(
      'INSERT INTO idempotency (key, json) VALUES (?, ?) ON CONFLICT (key) DO NOTHING',
    ),
  };
}

/** The store's prepared statements. */
export type SqliteStatements = ReturnType<typeof prepareStatements>;

/**
 * Statements of pruneOlderThan. The pick scans `threads` (no index on updated_at: it changes on every append, and
 * retention runs rarely) and skips threads with a running run.
 */
export function preparePrune(db: DatabaseSync) {
  return {
    pick: db.prepare(
      "SELECT thread_id FROM threads AS t WHERE updated_at < ? AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.thread_id = t.thread_id AND r.status = 'running') ORDER BY updated_at, thread_id LIMIT ?",
    ),
    events: db.prepare('DELETE FROM events WHERE thread_id = ?'),
    tail: db.prepare('DELETE FROM event_tail WHERE thread_id = ?'),
    runs: db.prepare('DELETE FROM runs WHERE thread_id = ?'),
    sessionItems: db.prepare('DELETE FROM session_items WHERE thread_id = ?'),
    thread: db.prepare('DELETE FROM threads WHERE thread_id = ?'),
  };
}
