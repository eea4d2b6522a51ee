import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { StoreError } from '../../errors.js';
import { toStoreError } from '../store-input.js';

// The SQLite store's options, schema and migrations, and its background WAL checkpointer.

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** The database file (created if missing), or `':memory:'` for a private in-memory database. */
  path: string;
  /**
   * How long a write waits for another connection (e.g. a second relay process on the same file) to release
   * the write lock before failing with StoreError `store_error`. The wait blocks this thread. Default 5000.
   */
  busyTimeoutMs?: number;
  /**
   * SQLite `synchronous` setting. `'full'` (default) syncs the write-ahead log on every commit, so an
   * acknowledged event survives power loss; `'normal'` is faster and still survives a process crash, but the
   * last commits may roll back after an OS crash or power cut.
   */
  synchronous?: 'full' | 'normal';
  /**
   * Rows the hot tail of new events may hold before writes start moving them, whole threads at a time, into
   * the per-thread table (default 16384). Larger: fewer pages written per event while many threads stream.
   */
  tailTargetRows?: number;
  /**
   * WAL pages after which a commit also checkpoints them into the database file (SQLite's
   * `wal_autocheckpoint`; default 10000, about 40 MiB). Larger than SQLite's own 1000: while many threads
   * stream, each commit rewrites the same tail pages, and a rarer checkpoint writes each of them once.
   */
  walAutocheckpointPages?: number;
  /**
   * Where the WAL is checkpointed into the database file. `'background'` (default for a file): a worker
   * thread with its own connection runs a passive checkpoint every `checkpointIntervalMs`, so writes never
   * wait for one (a checkpoint inside a commit held the event loop for tens of ms while many threads
   * streamed); `walAutocheckpointPages` stays as the backstop should the worker fall behind. `'inline'`:
   * SQLite's own checkpoint inside the commit that crosses `walAutocheckpointPages`. `':memory:'` is always inline.
   */
  checkpoint?: 'background' | 'inline';
  /** How often the background checkpointer runs, in ms (default 100, from 5 to 60000). */
  checkpointIntervalMs?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const MAX_BUSY_TIMEOUT_MS = 600_000;
/** The schema version this code writes and reads (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 4;
/**
 * Rows the hot tail (`event_tail`) may hold before each write also moves some threads' rows into `events`.
 * Why a tail: `events` is ordered by (thread, seq), so a commit holding one event for each of N streaming
 * threads dirtied N separate 4 KiB pages (about 35 ms and 4 MiB of WAL per commit at 1,000 threads). New
 * events go to the end of the tail instead (a few contiguous pages per commit), and each thread's rows move
 * to `events` many at a time, so a page is written once per many events.
 */
const DEFAULT_TAIL_TARGET_ROWS = 16_384;
const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 100;

/**
 * The background checkpointer: its own connection to the file, a PASSIVE checkpoint per interval (it copies
 * what it can without waiting for, or blocking, the writer). Failures are ignored: the writer's own
 * autocheckpoint is the backstop. Plain CommonJS for `eval`.
 */
const CHECKPOINTER = `
const { workerData, parentPort } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(workerData.path, { timeout: 0 });
db.exec('PRAGMA synchronous = ' + workerData.synchronous);
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try { checkpoint.get(); } catch {}
}, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  try { db.close(); } catch {}
  parentPort.close();
});
`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS threads (
  thread_id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS threads_by_owner ON threads (owner_id, updated_at DESC, thread_id);
-- The primary key is the (threadId, seq) uniqueness: no two writers can ever store the same seq twice.
CREATE TABLE IF NOT EXISTS events (
  thread_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  json TEXT NOT NULL,
  PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID;
-- The newest events, in commit order; for every thread its rows here come after its rows in events (a
-- thread's rows always move together). The unique index keeps the (threadId, seq) guarantee for the tail.
CREATE TABLE IF NOT EXISTS event_tail (
  id INTEGER PRIMARY KEY,
  thread_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  json TEXT NOT NULL,
  UNIQUE (thread_id, seq)
);
-- How many rows event_tail holds, kept by every write (counting them would read the whole tail). Schema 3.
CREATE TABLE IF NOT EXISTS tail_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  thread_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  client_message_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  -- The lease (schema 4): which relay instance streams the run, and until when (ms since the epoch).
  lease_owner TEXT,
  lease_expires INTEGER,
  UNIQUE (thread_id, client_message_id)
);
-- At most one running run per thread, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running ON runs (thread_id) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_items (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  thread_id TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_items_by_thread ON session_items (thread_id, id);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_states (
  thread_id TEXT NOT NULL,
  run_id TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (thread_id, run_id)
);
`;

/** A database opened by {@link openDatabase}, with the settings the store keeps. */
export interface OpenedDatabase {
  db: DatabaseSync;
  /** Rows the event tail may hold before writes move some into `events`. */
  tailTarget: number;
  /** Where a background checkpointer should run, or null to checkpoint inline. */
  checkpointer: { path: string; synchronous: string; intervalMs: number } | null;
}

/**
 * Checks the options, opens the file in WAL mode and brings its schema to {@link SCHEMA_VERSION} under the
 * write lock (so two processes opening a new file at once do not race). Throws StoreError `invalid_options`
 * for bad options and `store_error` when the file can't be opened or its schema is newer than this version.
 */
export function openDatabase(options: SqliteStoreOptions): OpenedDatabase {
  if (typeof options?.path !== 'string' || options.path === '') {
    throw new StoreError('invalid_options', 'openSqliteStore needs a `path` (a file, or ":memory:")');
  }
  const busy = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(busy) || busy < 0 || busy > MAX_BUSY_TIMEOUT_MS) {
    throw new StoreError(
      'invalid_options',
      `busyTimeoutMs must be an integer from 0 to ${MAX_BUSY_TIMEOUT_MS}`,
    );
  }
  const tailTarget = options.tailTargetRows ?? DEFAULT_TAIL_TARGET_ROWS;
  if (!Number.isSafeInteger(tailTarget) || tailTarget < 1) {
    throw new StoreError('invalid_options', 'tailTargetRows must be a positive integer');
  }
  const checkpointPages = options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES;
  if (!Number.isSafeInteger(checkpointPages) || checkpointPages < 1) {
    throw new StoreError('invalid_options', 'walAutocheckpointPages must be a positive integer');
  }
  const checkpoint = options.checkpoint ?? 'background';
  if (checkpoint !== 'background' && checkpoint !== 'inline') {
    throw new StoreError('invalid_options', "checkpoint must be 'background' or 'inline'");
  }
  const intervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 5 || intervalMs > 60_000) {
    throw new StoreError('invalid_options', 'checkpointIntervalMs must be an integer from 5 to 60000');
  }
  const synchronous = options.synchronous ?? 'full';
  if (synchronous !== 'full' && synchronous !== 'normal') {
    throw new StoreError('invalid_options', "synchronous must be 'full' or 'normal'");
  }
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(options.path, { timeout: busy });
    db.exec(`PRAGMA busy_timeout = ${busy}`);
    db.exec('PRAGMA journal_mode = WAL');
    db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
    db.exec(`PRAGMA wal_autocheckpoint = ${checkpointPages}`);
    migrate(db);
  } catch (error) {
    if (db?.isOpen) {
      if (db.isTransaction) db.exec('ROLLBACK');
      db.close();
    }
    throw toStoreError(error, `opening the SQLite database at ${options.path}`);
  }
  const background =
    checkpoint === 'background' && options.path !== ':memory:' && !options.path.startsWith('file:');
  return {
    db,
    tailTarget,
    checkpointer: background
      ? { path: options.path, synchronous: synchronous.toUpperCase(), intervalMs }
      : null,
  };
}

/** Creates the schema and applies the migrations, in one `BEGIN IMMEDIATE` transaction. */
function migrate(db: DatabaseSync): void {
  // Schema creation takes the write lock, so two processes opening a new file at once do not race.
  db.exec('BEGIN IMMEDIATE');
  db.exec(SCHEMA);
  const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      'store_error',
      `the database schema (version ${version}) is newer than this @threadline/relay understands (${SCHEMA_VERSION})`,
    );
  }
  // Schema 4: run leases. A file from before it gets the two columns (empty: its runs have no lease).
  const runColumns = db.prepare('PRAGMA table_info(runs)').all() as { name: string }[];
  if (!runColumns.some((c) => c.name === 'lease_owner')) {
    db.exec('ALTER TABLE runs ADD COLUMN lease_owner TEXT');
    db.exec('ALTER TABLE runs ADD COLUMN lease_expires INTEGER');
  }
  db.exec("CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (lease_expires) WHERE status = 'running'");
  // The tail is counted at every open (a few ms at most: it holds about tailTargetRows rows): a file from
  // before schema 3 gets its count, and one a relay of an older version wrote to meanwhile gets it right.
  db.exec(
    'INSERT INTO tail_state (id, rows) VALUES (1, (SELECT count(*) FROM event_tail)) ON CONFLICT (id) DO UPDATE SET rows = excluded.rows',
  );
  db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  db.exec('COMMIT');
}

/** A running background checkpointer and a promise of its exit. */
export interface Checkpointer {
  worker: Worker;
  exited: Promise<void>;
}

/** Starts the background checkpointer on its own connection (unref'd: it never keeps the process alive). */
export function startCheckpointer(settings: NonNullable<OpenedDatabase['checkpointer']>): Checkpointer {
  const worker = new Worker(CHECKPOINTER, { eval: true, workerData: settings });
  worker.on('error', () => {}); // the writer's autocheckpoint covers for it
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.unref();
  return { worker, exited };
}

/** Asks the checkpointer to close its connection and waits for it to exit (terminated after 1 s). */
export async function stopCheckpointer({ worker, exited }: Checkpointer): Promise<void> {
  worker.postMessage('close');
  const timer = setTimeout(() => void worker.terminate(), 1_000);
  await exited;
  clearTimeout(timer);
}
