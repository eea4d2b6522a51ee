import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { StoredEvent } from '../store.js';
import { notFoundThread, withSeq, type PreparedEvent } from '../store-input.js';
import {
  BATCH_ROWS,
  INSERT_CHUNK,
  batchSql,
  insertEventsSql,
  type BatchKind,
  type SqliteStatements,
} from './statements.js';

/**
 * Writes of new events into the hot tail (`event_tail`) and the moves of whole threads from it into `events`
 * (see `DEFAULT_TAIL_TARGET_ROWS` in schema.ts for why). Every method runs inside the store's write
 * transaction; {@link EventTail.begin} starts the count of rows one transaction adds.
 */
export class EventTail {
  readonly #db: DatabaseSync;
  readonly #stmt: SqliteStatements;
  readonly #insertChunk: StatementSync;
  readonly #target: number;
  readonly #batch = new Map<string, StatementSync>();
  /** Rows this write transaction has added to the tail so far (booked by settle). */
  #added = 0;

  constructor(db: DatabaseSync, stmt: SqliteStatements, target: number) {
    this.#db = db;
    this.#stmt = stmt;
    this.#target = target;
    this.#insertChunk = db.prepare(insertEventsSql(INSERT_CHUNK));
  }

  /** A write transaction starts: nothing added yet. */
  begin(): void {
    this.#added = 0;
  }

  /**
   * Books the rows this transaction added to the tail and, when `move` and the tail is above its target, moves
   * whole threads' rows (oldest first) into `events` until as many rows moved as were added: the tail stays
   * near its target and each write moves about what it added (one thread every few writes while few threads
   * stream), never the whole tail at once. Inside the write transaction.
   */
  settle(move: boolean): void {
    const added = this.#added;
    this.#added = 0;
    if (added === 0) return;
    const row = this.#stmt.tailRows.get() as { rows: number } | undefined;
    let rows = (row?.rows ?? 0) + added;
    if (move && rows > this.#target) {
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
  insertEvents(threadId: string, last: number, prepared: readonly PreparedEvent[]): StoredEvent[] {
    const stored: StoredEvent[] = new Array<StoredEvent>(prepared.length);
    for (let i = 0; i < prepared.length; i++) {
      const seq = last + i + 1;
      stored[i] = { seq, json: withSeq(prepared[i]!.body, seq) };
    }
    this.#added += stored.length;
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
  lastSeqs(threadIds: readonly string[]): Map<string, number> {
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
  insertRows(flat: readonly (string | number)[]): void {
    this.#added += flat.length / 3;
    for (let i = 0; i < flat.length; i += BATCH_ROWS * 3) {
      const part = flat.slice(i, i + BATCH_ROWS * 3);
      this.#batchStatement('insertTail', part.length / 3).run(...part);
    }
  }

  /** Sets the counters of `threadIds` to their values in `lastOf`, 64 threads per statement. Inside a write transaction. */
  bumpThreads(threadIds: readonly string[], lastOf: ReadonlyMap<string, number>, now: number): void {
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
    let statement = this.#batch.get(key);
    if (!statement) {
      statement = this.#db.prepare(batchSql(kind, rows));
      if (kind === 'lastSeqs') statement.setReturnArrays(true);
      this.#batch.set(key, statement);
    }
    return statement;
  }
}
