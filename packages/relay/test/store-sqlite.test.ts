import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseSequencedEvent, type AgentEvent } from '@threadline/contracts';
import { runToolStoreConformance } from '@threadline/tools-kit/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { SqliteStore } from '../src/stores/sqlite.js';
import { openSqliteStore } from '../src/stores/sqlite.js';
import { runStoreConformance } from '../src/testing.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'threadline-sqlite-'));
  dirs.push(dir);
  return dir;
}
/** A new database file in a temp dir holding thread `shared`, closed again: for the multi-process cases. */
async function sharedDb(name: string): Promise<string> {
  const path = join(tempDir(), name);
  const setup = openSqliteStore({ path });
  await setup.createThread({ threadId: 'shared', ownerId: 'u1' });
  await setup.close();
  return path;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

runStoreConformance('sqlite (file, WAL)', async () => {
  const dir = tempDir();
  return {
    store: openSqliteStore({ path: join(dir, 'store.db') }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    // A second connection to the file, as a second relay process would open it.
    openSecond: async () => openSqliteStore({ path: join(dir, 'store.db') }),
  };
});

// A two-row tail: every write past the first moves rows, so every conformance case reads across both tables.
runStoreConformance('sqlite (file, tiny tail)', async () => {
  const dir = tempDir();
  return {
    store: openSqliteStore({ path: join(dir, 'store.db'), tailTargetRows: 2 }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

runStoreConformance('sqlite (:memory:)', async () => ({ store: openSqliteStore({ path: ':memory:' }) }));

// The same store is tools-kit's ToolStore: the same three setups pass that port's suite.
const refused = { name: 'StoreError', code: 'invalid_message' };
runToolStoreConformance(
  'sqlite (file, WAL)',
  async () => {
    const dir = tempDir();
    const store = openSqliteStore({ path: join(dir, 'store.db') });
    return { store, cleanup: () => store.close() };
  },
  { invalidInput: refused },
);
runToolStoreConformance(
  'sqlite (file, tiny tail)',
  async () => {
    const dir = tempDir();
    const store = openSqliteStore({ path: join(dir, 'store.db'), tailTargetRows: 2 });
    return { store, cleanup: () => store.close() };
  },
  { invalidInput: refused },
);
runToolStoreConformance(
  'sqlite (:memory:)',
  async () => {
    const store = openSqliteStore({ path: ':memory:' });
    return { store, cleanup: () => store.close() };
  },
  { invalidInput: refused },
);

const ts = 1_700_000_000_000;
function chunk(threadId: string, delta: string): AgentEvent {
  return { type: 'TEXT_MESSAGE_CHUNK', threadId, runId: 'r1', ts, messageId: 'm1', delta };
}

describe('SqliteStore', () => {
  const open: SqliteStore[] = [];
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  function openStore(path: string, busyTimeoutMs?: number): SqliteStore {
    const store = openSqliteStore(busyTimeoutMs === undefined ? { path } : { path, busyTimeoutMs });
    open.push(store);
    return store;
  }

  it('uses WAL mode and keeps everything across a close and reopen', async () => {
    const path = join(tempDir(), 'restart.db');
    const first = openStore(path);
    await first.createThread({ threadId: 't1', ownerId: 'u1', title: 'kept' });
    await first.startRun({
      threadId: 't1',
      runId: 'r1',
      userId: 'u1',
      clientMessageId: 'c1',
      userMessage: {
        type: 'USER_MESSAGE',
        threadId: 't1',
        runId: 'r1',
        ts,
        messageId: 'm0',
        clientMessageId: 'c1',
        userId: 'u1',
        text: 'hi',
      },
    });
    const appended = await first.append('t1', [chunk('t1', 'a'), chunk('t1', 'b')]);
    await first.addSessionItems('t1', [{ role: 'user' }]);
    await first.patchProfile('u1', { displayName: 'Ada' });
    await first.putIdempotent('k1', { n: 1 });
    await first.close();

    const raw = new DatabaseSync(path);
    expect((raw.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
    raw.close();

    const second = openStore(path);
    expect((await second.getThread('t1'))?.title).toBe('kept');
    expect(await second.lastSeq('t1')).toBe(3);
    expect(await second.read('t1', { afterSeq: 1, limit: 10 })).toEqual(appended);
    // The seq counter survives: the next append continues, it does not restart at 1.
    expect((await second.append('t1', [chunk('t1', 'c')]))[0]!.seq).toBe(4);
    // A run left running by the previous process is still visible, so the relay can fail it on start.
    expect((await second.listRunningRuns()).map((r) => r.runId)).toEqual(['r1']);
    expect(await second.getSessionItems('t1')).toEqual([{ role: 'user' }]);
    expect(await second.getProfile('u1')).toEqual({ displayName: 'Ada' });
    expect(await second.putIdempotent('k1', { n: 2 })).toEqual({ n: 1 });
  });

  it('stores the sequenced JSON text once and replays it byte for byte', async () => {
    const store = openStore(join(tempDir(), 'json.db'));
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    const delta = 'üñí "quoted" \\ \n \u2028 😀';
    const [stored] = await store.append('t1', [chunk('t1', delta)]);
    const [read] = await store.read('t1', { afterSeq: 0, limit: 1 });
    expect(read!.json).toBe(stored!.json);
    expect(parseSequencedEvent(JSON.parse(read!.json))).toMatchObject({ seq: 1, delta });
  });

  it('refuses a duplicate (thread, seq) in the database itself, whatever the counter says', async () => {
    const path = join(tempDir(), 'unique.db');
    const store = openStore(path);
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    await store.append('t1', [chunk('t1', 'a')]);
    // Corrupt the counter behind the store's back, as a buggy second writer might: the key still holds.
    const raw = new DatabaseSync(path);
    raw.exec("UPDATE threads SET last_seq = 0 WHERE thread_id = 't1'");
    raw.close();
    const error = await store.append('t1', [chunk('t1', 'b')]).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
    expect((await store.read('t1', { afterSeq: 0, limit: 10 })).map((e) => JSON.parse(e.json).delta)).toEqual(
      ['a'],
    );
  });

  it('gives up after busyTimeoutMs when another connection holds the write lock, writing nothing', async () => {
    const path = join(tempDir(), 'busy.db');
    const store = openStore(path, 50);
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    const holder = new DatabaseSync(path);
    holder.exec('BEGIN IMMEDIATE');
    try {
      const started = performance.now();
      const error = await store.append('t1', [chunk('t1', 'a')]).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
      expect(performance.now() - started).toBeGreaterThanOrEqual(40);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(await store.lastSeq('t1')).toBe(0);
    expect((await store.append('t1', [chunk('t1', 'b')]))[0]!.seq).toBe(1);
  });

  it('holds the tail near tailTargetRows by moving whole threads, and reads across both tables in order', async () => {
    const path = join(tempDir(), 'tail.db');
    const store = openSqliteStore({ path, tailTargetRows: 8 });
    open.push(store);
    const threads = ['t1', 't2', 't3'];
    for (const threadId of threads) await store.createThread({ threadId, ownerId: 'u1' });
    for (let round = 0; round < 20; round++) {
      await store.appendMany(
        threads.map((threadId) => ({ threadId, events: [chunk(threadId, `${round}`)] })),
      );
    }
    const raw = new DatabaseSync(path);
    try {
      const tail = raw.prepare('SELECT count(*) AS n FROM event_tail').get() as { n: number };
      const moved = raw.prepare('SELECT count(*) AS n FROM events').get() as { n: number };
      // Bounded: above the target a write moves at least as many rows as it added (whole threads at a time).
      expect(tail.n).toBeLessThanOrEqual(8 + 20);
      expect(moved.n + tail.n).toBe(60);
      expect(moved.n).toBeGreaterThan(0);
    } finally {
      raw.close();
    }
    for (const threadId of threads) {
      // Small pages so a page boundary falls inside each table and across the two.
      const seen: number[] = [];
      let after = 0;
      for (;;) {
        const page = await store.read(threadId, { afterSeq: after, limit: 3 });
        if (page.length === 0) break;
        for (const e of page) {
          seen.push(e.seq);
          expect(parseSequencedEvent(JSON.parse(e.json))).toMatchObject({
            threadId,
            delta: String(e.seq - 1),
          });
        }
        after = page[page.length - 1]!.seq;
      }
      expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    }
    expect(() => openSqliteStore({ path: ':memory:', walAutocheckpointPages: 0 })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    expect(() => openSqliteStore({ path: ':memory:', tailTargetRows: 0 })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
  });

  it('checkpoints the WAL once it holds walAutocheckpointPages pages', async () => {
    const path = join(tempDir(), 'checkpoint.db');
    const store = openSqliteStore({ path, walAutocheckpointPages: 2 });
    open.push(store);
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    for (let i = 0; i < 30; i++) await store.append('t1', [chunk('t1', 'x'.repeat(2_000))]);
    // A checkpoint ran (and restarted the log): the WAL holds far fewer frames than the 30+ commits wrote.
    const { statSync } = await import('node:fs');
    expect(statSync(`${path}-wal`).size).toBeLessThan(30 * 4096);
  });

  it('checkpoints in a background worker, so no write has to (checkpoint: background)', async () => {
    const { statSync } = await import('node:fs');
    // Inline checkpoints are pushed out of reach: only the background worker can restart the log.
    const walBytes = async (checkpoint: 'background' | 'inline') => {
      const path = join(tempDir(), `${checkpoint}.db`);
      const store = openSqliteStore({
        path,
        checkpoint,
        checkpointIntervalMs: 5,
        walAutocheckpointPages: 1_000_000,
      });
      open.push(store);
      await store.createThread({ threadId: 't1', ownerId: 'u1' });
      // Eight rounds: a busy machine may starve the worker through a pause or two, which lets the log grow by
      // one more round each time; it never reaches the half of all eight rounds that inline holds.
      for (let round = 0; round < 8; round++) {
        for (let i = 0; i < 10; i++) await store.append('t1', [chunk('t1', 'x'.repeat(2_000))]);
        await new Promise((r) => setTimeout(r, 200)); // many intervals: the worker catches up
      }
      const size = statSync(`${path}-wal`).size;
      await store.close();
      return size;
    };
    const inline = await walBytes('inline');
    const background = await walBytes('background');
    // Inline (never reached): the log holds all 80 commits. Background: it restarts after (nearly) every round.
    expect(background).toBeLessThan(inline / 2);
  });

  it('refuses bad checkpoint options', () => {
    expect(() =>
      openSqliteStore({ path: ':memory:', checkpoint: 'sometimes' as unknown as 'inline' }),
    ).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    for (const checkpointIntervalMs of [0, 4, 60_001, 1.5]) {
      expect(() => openSqliteStore({ path: ':memory:', checkpointIntervalMs })).toThrow(
        expect.objectContaining({ code: 'invalid_options' }),
      );
    }
  });

  it('close() stops the background checkpointer and releases the file', async () => {
    const path = join(tempDir(), 'close.db');
    const store = openSqliteStore({ path, checkpointIntervalMs: 5 });
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    await store.append('t1', [chunk('t1', 'x')]);
    await store.close();
    // With every connection closed, SQLite removes the WAL and shared-memory files.
    const { existsSync } = await import('node:fs');
    expect(existsSync(`${path}-wal`)).toBe(false);
    expect(existsSync(`${path}-shm`)).toBe(false);
  });

  it('moves about as many rows as each write adds once the tail is past its target, never the whole tail at once', async () => {
    const path = join(tempDir(), 'smooth.db');
    const store = openSqliteStore({ path, tailTargetRows: 40 });
    open.push(store);
    const threads = ['t1', 't2', 't3', 't4'];
    for (const threadId of threads) await store.createThread({ threadId, ownerId: 'u1' });
    const raw = new DatabaseSync(path);
    const count = (table: string) =>
      (raw.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    try {
      const tailSizes: number[] = [];
      let firstMove = -1;
      for (let round = 0; round < 60; round++) {
        await store.appendMany(
          threads.map((threadId) => ({ threadId, events: [chunk(threadId, `${round}`)] })),
        );
        tailSizes.push(count('event_tail'));
        if (firstMove < 0 && count('events') > 0) firstMove = round;
        // The booked count is the real one after every write.
        expect((raw.prepare('SELECT rows FROM tail_state').get() as { rows: number }).rows).toBe(
          tailSizes.at(-1),
        );
      }
      // 4 rows per write: the tail passes 40 rows at the 11th write, which moves the first thread.
      expect(firstMove).toBe(10);
      // From then on a write adding 4 rows moves one thread (a quarter of the tail) every few writes, so the
      // tail stays between half its target and target + 4. (Moving by the span of ids, it was drained to 6 rows
      // every 11 writes: every thread moved in turn, one per write, a burst of moves.)
      for (const n of tailSizes.slice(firstMove)) {
        expect(n).toBeGreaterThanOrEqual(40 / 2);
        expect(n).toBeLessThanOrEqual(40 + 4);
      }
      expect(count('events') + count('event_tail')).toBe(240);
    } finally {
      raw.close();
    }
  });

  it('opens a schema-3 file: adds the lease columns; its running runs have no lease and are orphans', async () => {
    const path = join(tempDir(), 'v3.db');
    const first = openSqliteStore({ path });
    await first.createThread({ threadId: 't1', ownerId: 'u1' });
    const userMessage = {
      type: 'USER_MESSAGE',
      threadId: 't1',
      runId: 'r1',
      ts,
      messageId: 'm1',
      clientMessageId: 'c1',
      userId: 'u1',
      text: 'hi',
    } as AgentEvent;
    await first.startRun({ threadId: 't1', runId: 'r1', userId: 'u1', clientMessageId: 'c1', userMessage });
    await first.close();
    // What a schema-3 relay left behind: runs without the lease columns, user_version 3.
    const raw = new DatabaseSync(path);
    raw.exec(
      'DROP INDEX runs_by_lease; ALTER TABLE runs DROP COLUMN lease_owner; ALTER TABLE runs DROP COLUMN lease_expires; PRAGMA user_version = 3',
    );
    raw.close();
    const store = openSqliteStore({ path });
    open.push(store);
    const check = new DatabaseSync(path);
    try {
      expect(check.prepare('PRAGMA user_version').get()).toEqual({ user_version: 4 });
    } finally {
      check.close();
    }
    expect(await store.getRun('r1')).toMatchObject({ status: 'running' });
    expect((await store.getRun('r1'))?.lease).toBeUndefined();
    expect(await store.claimRuns({ owner: 'i1', ttlMs: 1000, limit: 10 })).toEqual([]);
    const claimed = await store.claimRuns({ owner: 'i1', ttlMs: 1000, limit: 10, orphans: true });
    expect(claimed).toMatchObject([{ runId: 'r1', lease: { owner: 'i1' } }]);
  });

  it('opens a schema-2 file: counts its tail once, keeps every event readable', async () => {
    const path = join(tempDir(), 'v2.db');
    const first = openSqliteStore({ path });
    await first.createThread({ threadId: 't1', ownerId: 'u1' });
    await first.append('t1', [chunk('t1', 'a'), chunk('t1', 'b'), chunk('t1', 'c')]);
    await first.close();
    // What a schema-2 relay left behind: no tail_state table, user_version 2.
    const raw = new DatabaseSync(path);
    raw.exec('DROP TABLE tail_state; PRAGMA user_version = 2');
    raw.close();
    const store = openSqliteStore({ path, tailTargetRows: 4 });
    open.push(store);
    const check = new DatabaseSync(path);
    try {
      expect(check.prepare('PRAGMA user_version').get()).toEqual({ user_version: 4 });
      expect(check.prepare('SELECT rows FROM tail_state').get()).toEqual({ rows: 3 });
      await store.append('t1', [chunk('t1', 'd'), chunk('t1', 'e')]);
      // 5 rows > 4: the write moved t1's rows into events.
      expect(check.prepare('SELECT rows FROM tail_state').get()).toEqual({ rows: 0 });
      expect(check.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 5 });
    } finally {
      check.close();
    }
    const events = await store.read('t1', { afterSeq: 0, limit: 10 });
    expect(events.map((e) => (JSON.parse(e.json) as { delta: string }).delta)).toEqual([
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
  });

  it('recounts the tail when opened, so a count that drifted (an older relay wrote meanwhile) is set right', async () => {
    const path = join(tempDir(), 'drift.db');
    const first = openSqliteStore({ path });
    await first.createThread({ threadId: 't1', ownerId: 'u1' });
    await first.append('t1', [chunk('t1', 'a'), chunk('t1', 'b')]);
    await first.close();
    const raw = new DatabaseSync(path);
    raw.exec('UPDATE tail_state SET rows = 100000');
    raw.close();
    const store = openSqliteStore({ path });
    open.push(store);
    const check = new DatabaseSync(path);
    try {
      expect(check.prepare('SELECT rows FROM tail_state').get()).toEqual({ rows: 2 });
    } finally {
      check.close();
    }
  });

  it('refuses a database written by a newer schema version', () => {
    const path = join(tempDir(), 'future.db');
    const raw = new DatabaseSync(path);
    raw.exec('PRAGMA user_version = 99');
    raw.close();
    expect(() => openSqliteStore({ path })).toThrow(
      expect.objectContaining({ name: 'StoreError', code: 'store_error' }),
    );
  });

  it('refuses bad options with invalid_options and an unopenable path with store_error', () => {
    expect(() => openSqliteStore({ path: '' })).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    expect(() => openSqliteStore({ path: ':memory:', busyTimeoutMs: -1 })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    expect(() => openSqliteStore({ path: join(tempDir(), 'no', 'such', 'dir', 'x.db') })).toThrow(
      expect.objectContaining({ name: 'StoreError', code: 'store_error' }),
    );
  });
});

describe('SqliteStore shared by two processes', () => {
  const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });

  /** Starts a worker running the real SqliteStore from source; resolves once it has opened the store. */
  async function worker(args: string[]): Promise<{ go(): void; result: Promise<Record<string, unknown>> }> {
    const child = spawn(
      process.execPath,
      [
        '--conditions=@threadline/source',
        '--import',
        join(fixtures, 'ts-hooks.mjs'),
        join(fixtures, 'sqlite-worker.ts'),
        ...args,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: child.stdout! });
    const it = lines[Symbol.asyncIterator]();
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${stderr}`))),
    );
    const first = await Promise.race([it.next(), exited]);
    expect(first.value).toBe('ready');
    const result = Promise.race([it.next(), exited]).then(
      (r) => JSON.parse(String(r.value)) as Record<string, unknown>,
    );
    return { go: () => child.stdin!.write('go\n'), result };
  }

  it('never duplicates or skips a seq when two processes append to one thread at once', async () => {
    const path = await sharedDb('shared.db');

    const perWorker = 150;
    const a = await worker(['append', path, 'shared', 'A', String(perWorker)]);
    const b = await worker(['append', path, 'shared', 'B', String(perWorker)]);
    a.go();
    b.go();
    const results = (await Promise.all([a.result, b.result])) as { batches: number[][]; sawOther: boolean }[];

    const all: number[] = [];
    // At least one process saw the other's events land between two of its own: the appends really raced.
    // (Requiring both is timing-dependent: SQLite's busy handler can keep one writer waiting while the other
    // commits many times in a row, so that writer never sees an interleaving itself.)
    expect(results.some((r) => r.sawOther)).toBe(true);
    for (const { batches } of results) {
      expect(batches.length).toBeGreaterThanOrEqual(perWorker);
      for (const seqs of batches) {
        for (let k = 1; k < seqs.length; k++) expect(seqs[k]).toBe(seqs[k - 1]! + 1);
        all.push(...seqs);
      }
    }
    const total = results.reduce((n, r) => n + r.batches.flat().length, 0);
    all.sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: total }, (_, i) => i + 1));

    const store = openSqliteStore({ path });
    try {
      const log = await store.read('shared', { afterSeq: 0, limit: total + 10 });
      expect(log.map((e) => e.seq)).toEqual(all);
      expect(await store.lastSeq('shared')).toBe(total);
    } finally {
      await store.close();
    }
  });

  it('leaves only whole batches when a writer process is SIGKILLed mid-stream', async () => {
    const path = await sharedDb('killed.db');

    const batch = 50;
    const child = spawn(
      process.execPath,
      [
        '--conditions=@threadline/source',
        '--import',
        join(fixtures, 'ts-hooks.mjs'),
        join(fixtures, 'sqlite-worker.ts'),
        'flood',
        path,
        'shared',
        'K',
        String(batch),
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.push(child);
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_code, signal) => resolve(signal)),
    );
    let acknowledged = 0;
    const lines = createInterface({ input: child.stdout! });
    for await (const line of lines) {
      if (line === 'ready') child.stdin!.write('go\n');
      else acknowledged = Number(line);
      if (acknowledged >= 20 * batch) break;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const store = openSqliteStore({ path });
    try {
      const last = await store.lastSeq('shared');
      // Everything acknowledged is there, and nothing of a half-written batch is.
      expect(last).toBeGreaterThanOrEqual(acknowledged);
      expect(last % batch).toBe(0);
      const log = await store.read('shared', { afterSeq: 0, limit: last + batch });
      expect(log.map((e) => e.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      log.forEach((e, i) =>
        expect((JSON.parse(e.json) as { delta: string }).delta).toBe(`${Math.floor(i / batch)}:${i % batch}`),
      );
      // The file is healthy: the next append continues the sequence.
      const [next] = await store.append('shared', [chunk('shared', 'after')]);
      expect(next!.seq).toBe(last + 1);
    } finally {
      await store.close();
    }
  });

  it('lets only one run be active per thread across two processes', async () => {
    const path = await sharedDb('runs.db');

    const a = await worker(['start', path, 'shared', 'A', '60']);
    const b = await worker(['start', path, 'shared', 'B', '60']);
    a.go();
    b.go();
    const results = (await Promise.all([a.result, b.result])) as { started: string[]; refused: string[] }[];
    const started = results.flatMap((r) => r.started);
    expect(started.length).toBeGreaterThan(0);
    for (const r of results) expect(r.refused.every((s) => s === 'run_active')).toBe(true);

    const store = openSqliteStore({ path });
    try {
      const log = (await store.read('shared', { afterSeq: 0, limit: 1000 })).map(
        (e) => JSON.parse(e.json) as { type: string; runId: string; seq: number },
      );
      expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
      // Every run opens with its USER_MESSAGE and closes with RUN_FINISHED before the next one opens.
      let open: string | null = null;
      for (const event of log) {
        if (event.type === 'USER_MESSAGE') {
          expect(open).toBeNull();
          open = event.runId;
        } else {
          expect(event).toMatchObject({ type: 'RUN_FINISHED', runId: open });
          open = null;
        }
      }
      expect(
        log
          .filter((e) => e.type === 'USER_MESSAGE')
          .map((e) => e.runId)
          .sort(),
      ).toEqual([...started].sort());
      expect(await store.listRunningRuns()).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
