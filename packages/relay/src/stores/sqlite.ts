import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import type { AgentEvent, JsonValue } from '@threadline/contracts';
import type { ToolStore } from '@threadline/tools-kit';
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
  type PreparedEvent,
  withSeq,
  checkRunState,
} from './store-input.js';

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
/** Rows per multi-row INSERT: fewer statement executions for big batches, well under SQLite's 32766 parameters. */
const INSERT_CHUNK = 64;
/** Threads (or rows) per statement of appendMany's batched statements. */
const BATCH_ROWS = 64;
const SCHEMA_VERSION = 4;
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

interface ThreadRow {
  thread_id: string;
  owner_id: string;
  title: string;
  created_at: number;
  updated_at: number;
}
interface RunRow {
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

function toThread(row: ThreadRow): ThreadRecord {
  return {
    threadId: row.thread_id,
    ownerId: row.owner_id,
    title: row.title,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toRun(row: RunRow): RunRecord {
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
export class SqliteStore implements EventStore, ToolStore {
  readonly #db: DatabaseSync;
  readonly #stmt: ReturnType<typeof prepareStatements>;
  readonly #insertChunk: StatementSync;
  readonly #tailTarget: number;
  readonly #batchStatements = new Map<string, StatementSync>();
  #checkpointer: Worker | undefined;
  #checkpointerExited: Promise<void> = Promise.resolve();
  #closed = false;
  /** Statements of pruneOlderThan, prepared at its first call. */
  #pruneStatements: ReturnType<typeof preparePrune> | undefined;
  /** Rows this write transaction has added to the tail so far (booked by #settleTail). */
  #tailAdded = 0;

  constructor(options: SqliteStoreOptions) {
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
    this.#tailTarget = tailTarget;
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
      this.#stmt = prepareStatements(db);
      this.#insertChunk = db.prepare(insertEventsSql(INSERT_CHUNK));
    } catch (error) {
      if (db?.isOpen) {
        if (db.isTransaction) db.exec('ROLLBACK');
        db.close();
      }
      throw toStoreError(error, `opening the SQLite database at ${options.path}`);
    }
    this.#db = db;
    if (checkpoint === 'background' && options.path !== ':memory:' && !options.path.startsWith('file:')) {
      this.#checkpointer = new Worker(CHECKPOINTER, {
        eval: true,
        workerData: { path: options.path, synchronous: synchronous.toUpperCase(), intervalMs },
      });
      this.#checkpointer.on('error', () => {}); // the writer's autocheckpoint covers for it
      const worker = this.#checkpointer;
      this.#checkpointerExited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      this.#checkpointer.unref();
    }
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
      this.#settleTail(true);
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
      const lastOf = this.#lastSeqs(threadIds);
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
      this.#insertRows(rows);
      this.#bumpThreads(threadIds, lastOf, now);
      this.#settleTail(true);
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
      this.#settleTail(false);
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
      this.#settleTail(false);
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
    const [userMessage] = this.#insertEvents(input.threadId, last, [prepared]);
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

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#open();
    return this.#do('reading a profile', () => {
      const row = this.#stmt.getProfile.get(userId) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as Record<string, JsonValue>) : {};
    });
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    return this.#write('patching a profile', () => {
      const row = this.#stmt.getProfile.get(userId) as { json: string } | undefined;
      const current = row ? (JSON.parse(row.json) as Record<string, JsonValue>) : {};
      const text = JSON.stringify(mergeProfile(current, patch));
      this.#stmt.putProfile.run(userId, text);
      return JSON.parse(text) as Record<string, JsonValue>;
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#open();
    // -1 is SQLite's "no limit".
    const n = limit === undefined ? -1 : checkLimit('limit', limit);
    return this.#do('reading session items', () =>
      (this.#stmt.lastSessionItems.all(threadId, n) as unknown as { json: string }[]).map(
        (row) => JSON.parse(row.json) as JsonValue,
      ),
    );
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    this.#write('adding session items', () => {
      for (const text of texts) this.#stmt.addSessionItem.run(threadId, text);
    });
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#open();
    return this.#do('popping a session item', () => {
      // One statement, so it is atomic without an explicit transaction.
      const row = this.#stmt.popSessionItem.get(threadId) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as JsonValue) : null;
    });
  }

  async clearSession(threadId: string): Promise<void> {
    this.#open();
    this.#do('clearing a session', () => {
      this.#stmt.clearSession.run(threadId);
    });
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#open();
    checkIdempotencyKey(key);
    return this.#do('reading an idempotency key', () => {
      const row = this.#stmt.getIdempotent.get(key) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as JsonValue) : null;
    });
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#open();
    checkIdempotencyKey(key);
    const text = JSON.stringify(checkJson('idempotent value', value));
    return this.#write('storing an idempotency key', () => {
      this.#stmt.putIdempotent.run(key, text);
      const row = this.#stmt.getIdempotent.get(key) as { json: string };
      return JSON.parse(row.json) as JsonValue;
    });
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#open();
    checkRunState(threadId, runId);
    return this.#do('reading a run state', () => {
      const row = this.#stmt.getRunState.get(threadId, runId) as { state: string } | undefined;
      return row ? row.state : null;
    });
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#open();
    const text = checkRunState(threadId, runId, state);
    this.#write('storing a run state', () => {
      this.#stmt.putRunState.run(threadId, runId, text);
    });
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#open();
    checkRunState(threadId, runId);
    this.#write('deleting a run state', () => {
      this.#stmt.deleteRunState.run(threadId, runId);
    });
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
    const worker = this.#checkpointer;
    if (worker) {
      // Ask it to close its connection, then wait for it to exit (bounded: terminate after 1 s).
      worker.postMessage('close');
      const timer = setTimeout(() => void worker.terminate(), 1_000);
      await this.#checkpointerExited;
      clearTimeout(timer);
    }
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
    const stored = this.#insertEvents(threadId, last, prepared);
    for (const p of prepared) {
      if (p.ends) this.#stmt.endRun.run(p.ends, now, p.event.runId, threadId);
    }
    this.#stmt.bumpThread.run(last + prepared.length, now, threadId);
    return stored;
  }

  /**
   * Books the rows this transaction added to the tail and, when `move` and the tail is above its target, moves
   * whole threads' rows (oldest first) into `events` until as many rows moved as were added: the tail stays
   * near its target and each write moves about what it added (one thread every few writes while few threads
   * stream), never the whole tail at once. Inside the write transaction.
   */
  #settleTail(move: boolean): void {
    const added = this.#tailAdded;
    this.#tailAdded = 0;
    if (added === 0) return;
    const row = this.#stmt.tailRows.get() as { rows: number } | undefined;
    let rows = (row?.rows ?? 0) + added;
    if (move && rows > this.#tailTarget) {
      let moved = 0;
      while (moved < added) {
        const oldest = this.#stmt.oldestTailThread.get() as { thread_id: string } | undefined;
        if (!oldest) {
          rows = moved = 0; // the tail is empty: whatever the count said, it is 0 now
          break;
        }
        this.#stmt.moveTailRows.run(oldest.thread_id);
        moved += Number(this.#stmt.dropTailRows.run(oldest.thread_id).changes);
      }
      rows -= moved;
    }
    this.#stmt.setTailRows.run(Math.max(0, rows));
  }

  /** Inserts events with seqs `last + 1 …` into the tail, 64 rows per statement. Inside a write transaction. */
  #insertEvents(threadId: string, last: number, prepared: readonly PreparedEvent[]): StoredEvent[] {
    const stored: StoredEvent[] = new Array<StoredEvent>(prepared.length);
    for (let i = 0; i < prepared.length; i++) {
      const seq = last + i + 1;
      stored[i] = { seq, json: withSeq(prepared[i]!.body, seq) };
    }
    this.#tailAdded += stored.length;
    let i = 0;
    const params: (string | number)[] = new Array<string | number>(INSERT_CHUNK * 3);
    for (; i + INSERT_CHUNK <= stored.length; i += INSERT_CHUNK) {
      for (let k = 0; k < INSERT_CHUNK; k++) {
        const e = stored[i + k]!;
        params[k * 3] = threadId;
        params[k * 3 + 1] = e.seq;
        params[k * 3 + 2] = e.json;
      }
      this.#insertChunk.run(...params);
    }
    for (; i < stored.length; i++) {
      const e = stored[i]!;
      this.#stmt.insertEvent.run(threadId, e.seq, e.json);
    }
    return stored;
  }

  /**
   * The counters of `threadIds` (distinct), read 64 per statement; a thread that does not exist is
   * `not_found`. Inside a write transaction.
   */
  #lastSeqs(threadIds: readonly string[]): Map<string, number> {
    const out = new Map<string, number>();
    for (let i = 0; i < threadIds.length; i += BATCH_ROWS) {
      const part = threadIds.slice(i, i + BATCH_ROWS);
      const rows = this.#batchStatement('lastSeqs', part.length).all(...part) as unknown as [
        string,
        number,
      ][];
      for (const [threadId, last] of rows) out.set(threadId, last);
    }
    for (const threadId of threadIds) if (!out.has(threadId)) throw notFoundThread(threadId);
    return out;
  }

  /** Inserts tail rows given flat as (threadId, seq, json) triples, 64 rows per statement. Inside a write transaction. */
  #insertRows(flat: readonly (string | number)[]): void {
    this.#tailAdded += flat.length / 3;
    for (let i = 0; i < flat.length; i += BATCH_ROWS * 3) {
      const part = flat.slice(i, i + BATCH_ROWS * 3);
      this.#batchStatement('insertTail', part.length / 3).run(...part);
    }
  }

  /** Sets the counters of `threadIds` to their values in `lastOf`, 64 threads per statement. Inside a write transaction. */
  #bumpThreads(threadIds: readonly string[], lastOf: ReadonlyMap<string, number>, now: number): void {
    for (let i = 0; i < threadIds.length; i += BATCH_ROWS) {
      const part = threadIds.slice(i, i + BATCH_ROWS);
      const params: (string | number)[] = [now];
      for (const threadId of part) params.push(threadId, lastOf.get(threadId)!);
      this.#batchStatement('bumpThreads', part.length).run(...params);
    }
  }

  /** A prepared statement of `kind` for `rows` rows, made once per size (at most 64 of each kind). */
  #batchStatement(kind: BatchKind, rows: number): StatementSync {
    const key = `${kind}:${rows}`;
    let statement = this.#batchStatements.get(key);
    if (!statement) {
      statement = this.#db.prepare(batchSql(kind, rows));
      if (kind === 'lastSeqs') statement.setReturnArrays(true);
      this.#batchStatements.set(key, statement);
    }
    return statement;
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
      this.#tailAdded = 0;
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

type BatchKind = 'lastSeqs' | 'insertTail' | 'bumpThreads';

function batchSql(kind: BatchKind, rows: number): string {
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

function insertEventsSql(rows: number): string {
  return `INSERT INTO event_tail (thread_id, seq, json) VALUES ${Array.from({ length: rows }, () => '(?, ?, ?)').join(', ')}`;
}

function prepareStatements(db: DatabaseSync) {
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

/**
 * Statements of pruneOlderThan. The pick scans `threads` (no index on updated_at: it changes on every append, and
 * retention runs rarely) and skips threads with a running run.
 */
function preparePrune(db: DatabaseSync) {
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
