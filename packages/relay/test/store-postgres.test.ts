import type { AgentEvent } from '@threadline/contracts';
import pg from 'pg';
import { runToolStoreConformance } from '@threadline/tools-kit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresStore, POSTGRES_SCHEMA_VERSION, type PostgresStore } from '../src/stores/postgres.js';
import { runStoreConformance } from '../src/testing.js';
import { freePort, startPostgres, type TestPostgres } from './servers.js';

let server: TestPostgres;
let shared: pg.Pool;
beforeAll(async () => {
  server = await startPostgres();
  shared = new pg.Pool({ connectionString: server.url, max: 10 });
});
afterAll(async () => {
  await shared?.end();
  await server?.destroy();
});

// Every conformance test uses ids of its own, so all stores share one database (and one pool: opening a store
// runs the schema migration, which is the slow part).
runStoreConformance('postgres', async () => ({
  store: await openPostgresStore({ pool: shared }),
  // The second instance has a pool of its own, as another process would.
  openSecond: () => openPostgresStore({ connectionString: server.url, maxConnections: 2 }),
}));
// Once with the store's own pool (open, close and the pool's end included).
describe('own pool', () => {
  runStoreConformance('postgres (own pool of 2)', async () => ({
    store: await openPostgresStore({ connectionString: server.url, maxConnections: 2 }),
  }));
});

// The same store is tools-kit's ToolStore: both setups pass that port's suite.
const refused = { name: 'StoreError', code: 'invalid_message' };
runToolStoreConformance(
  'postgres',
  async () => {
    const store = await openPostgresStore({ pool: shared });
    return { store, cleanup: () => store.close() };
  },
  { invalidInput: refused },
);
describe('own pool', () => {
  runToolStoreConformance(
    'postgres (own pool of 2)',
    async () => {
      const store = await openPostgresStore({ connectionString: server.url, maxConnections: 2 });
      return { store, cleanup: () => store.close() };
    },
    { invalidInput: refused },
  );
});

const TS = 1_700_000_000_000;
let n = 0;
function id(prefix: string): string {
  n += 1;
  return `${prefix}-${process.pid}-${n}`;
}
function chunk(threadId: string, delta: string): AgentEvent {
  return { type: 'TEXT_MESSAGE_CHUNK', threadId, runId: 'r1', ts: TS, messageId: 'm1', delta };
}
function start(threadId: string, runId: string, clientMessageId: string) {
  return {
    threadId,
    runId,
    userId: 'u1',
    clientMessageId,
    userMessage: {
      type: 'USER_MESSAGE',
      threadId,
      runId,
      ts: TS,
      messageId: `m-${clientMessageId}`,
      clientMessageId,
      userId: 'u1',
      text: 'hi',
    } as AgentEvent,
  };
}
async function seqsOf(store: PostgresStore, threadId: string): Promise<number[]> {
  return (await store.read(threadId, { afterSeq: 0, limit: 100_000 })).map((e) => e.seq);
}
const range = (count: number) => Array.from({ length: count }, (_, i) => i + 1);

describe('PostgresStore with two instances on one database', () => {
  it('never duplicates or skips a seq when two pools append and group-commit to one thread at once', async () => {
    const a = await openPostgresStore({ connectionString: server.url });
    const b = await openPostgresStore({ connectionString: server.url });
    try {
      const t = id('shared');
      const u = id('shared');
      await a.createThread({ threadId: t, ownerId: 'u1' });
      await a.createThread({ threadId: u, ownerId: 'u1' });
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        const store = i % 2 === 0 ? a : b;
        calls.push(
          i % 4 < 2
            ? store.append(t, [chunk(t, `x${i}`), chunk(t, `y${i}`)])
            : // Threads in opposite orders from the two instances: the lock order must not deadlock.
              store.appendMany(
                i % 8 < 4
                  ? [
                      { threadId: t, events: [chunk(t, `m${i}`)] },
                      { threadId: u, events: [chunk(u, `m${i}`)] },
                    ]
                  : [
                      { threadId: u, events: [chunk(u, `m${i}`)] },
                      { threadId: t, events: [chunk(t, `m${i}`)] },
                    ],
              ),
        );
      }
      await Promise.all(calls);
      expect(await seqsOf(a, t)).toEqual(range(60));
      expect(await seqsOf(b, u)).toEqual(range(20));
      expect(await b.lastSeq(t)).toBe(60);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('starts exactly one run of a thread when two instances race the same and different sends', async () => {
    const a = await openPostgresStore({ connectionString: server.url });
    const b = await openPostgresStore({ connectionString: server.url });
    try {
      const t = id('race');
      await a.createThread({ threadId: t, ownerId: 'u1' });
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 ? a : b).startRun(start(t, id('run'), i % 3 === 0 ? 'same' : `cm-${i}`)),
        ),
      );
      expect(results.filter((r) => r.status === 'started')).toHaveLength(1);
      expect(await seqsOf(a, t)).toEqual([1]);
      // An idempotent retry on the other instance returns the first run and starts nothing.
      const first = results.find((r) => r.status === 'started')!;
      const retry = await (first.run.clientMessageId === 'same' ? a : b).startRun(
        start(t, id('run'), first.run.clientMessageId),
      );
      expect(retry).toMatchObject({ status: 'duplicate', run: { runId: first.run.runId } });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('PostgresStore storage details', () => {
  it('prepares its hot writes once per connection, or not at all with preparedStatements: false', async () => {
    for (const preparedStatements of [undefined, false]) {
      // One connection: the session whose prepared statements are listed is the one that wrote.
      const pool = new pg.Pool({ connectionString: server.url, max: 1 });
      const store = await openPostgresStore({
        pool,
        ...(preparedStatements === undefined ? {} : { preparedStatements }),
      });
      try {
        const t = id('prep');
        await store.createThread({ threadId: t, ownerId: 'u1' });
        for (let i = 0; i < 3; i++) {
          const r = await store.startRun(start(t, id('run'), `c${i}`));
          if (r.status !== 'started') throw new Error(r.status);
          await store.append(t, [{ type: 'RUN_FINISHED', threadId: t, runId: r.run.runId, ts: TS }]);
        }
        expect(await seqsOf(store, t)).toEqual(range(6));
        const { rows } = await pool.query<{ name: string }>(
          'SELECT name FROM pg_prepared_statements ORDER BY name',
        );
        expect(rows.map((r) => r.name)).toEqual(
          preparedStatements === false ? [] : ['threadline_append_v1', 'threadline_start_v1'],
        );
      } finally {
        await store.close();
        await pool.end();
      }
    }
    await expect(
      openPostgresStore({ connectionString: server.url, preparedStatements: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({ code: 'invalid_options' });
  });

  it('starts runs in one round trip when every input starts, and lets the transaction decide the rest', async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    const store = await openPostgresStore({ pool });
    let trips = 0;
    let transactions = 0;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: unknown }).query = (...args: unknown[]) => (trips++, query(...args));
    // A transaction is the BEGIN its pooled client sends (pool.query itself checks a client out too).
    pool.on('acquire', (client) => {
      const marked = client as unknown as { counted?: boolean; query: (...a: unknown[]) => unknown };
      if (marked.counted) return;
      marked.counted = true;
      const clientQuery = marked.query.bind(client);
      marked.query = (...args: unknown[]) => {
        if (args[0] === 'BEGIN') transactions++;
        return clientQuery(...args);
      };
    });
    try {
      const t = id('fast');
      const u = id('fast');
      await store.createThread({ threadId: t, ownerId: 'u1' });
      await store.createThread({ threadId: u, ownerId: 'u1' });
      await store.append(t, [chunk(t, 'a')]);
      [trips, transactions] = [0, 0];
      const lease = { owner: 'inst-1', ttlMs: 60_000 };
      const before = Date.now();
      const [first, other] = await store.startRuns([
        { ...start(t, id('run'), 'c1'), lease },
        start(u, id('run'), 'c1'),
      ]);
      expect([trips, transactions]).toEqual([1, 0]);
      expect(first).toMatchObject({
        status: 'started',
        userMessage: { seq: 2 },
        run: { lease: { owner: 'inst-1' } },
      });
      expect(other).toMatchObject({ status: 'started', userMessage: { seq: 1 } });
      if (first?.status !== 'started') throw new Error('not started');
      expect(first.run.lease!.expiresAt).toBeGreaterThanOrEqual(before + 60_000 - 5_000);
      // What the statement stored is what it answered.
      const stored = await store.read(t, { afterSeq: 1, limit: 10 });
      expect(stored).toEqual([first.userMessage]);
      expect(await store.getRun(first.run.runId)).toEqual(first.run);
      expect(await store.lastSeq(t)).toBe(2);
      // A retry (duplicate) and a second send (run_active): the one statement is refused, the transaction answers.
      [trips, transactions] = [0, 0];
      const retry = await store.startRun(start(t, id('run'), 'c1'));
      expect(retry).toMatchObject({ status: 'duplicate', run: { runId: first.run.runId } });
      const busy = await store.startRun(start(t, id('run'), 'c2'));
      expect(busy).toMatchObject({ status: 'run_active', activeRun: { runId: first.run.runId } });
      expect([trips, transactions]).toEqual([2, 2]);
      expect(await store.lastSeq(t)).toBe(2);
      await expect(store.startRun(start(id('missing'), id('run'), 'c1'))).rejects.toMatchObject({
        code: 'not_found',
      });
    } finally {
      await store.close();
      await pool.end();
    }
  });

  it('round-trips titles and idempotency keys PostgreSQL text could not hold (NUL, lone surrogates, long keys)', async () => {
    const store = await openPostgresStore({ pool: shared });
    try {
      const t = id('odd');
      const title = 'a\u0000b\ud800c';
      await store.createThread({ threadId: t, ownerId: 'u1', title });
      expect((await store.getThread(t))?.title).toBe(title);
      expect(await store.getThread('nul\u0000id')).toBeNull();
      expect(await store.read('nul\u0000id', { afterSeq: 0, limit: 5 })).toEqual([]);
      // 1024 characters of 3 UTF-8 bytes: too long for a btree entry as text, fine as a hash.
      const long = '€'.repeat(1024);
      expect(await store.putIdempotent(long, 1)).toBe(1);
      expect(await store.putIdempotent('k\u0000', 2)).toBe(2);
      expect(await store.putIdempotent('k\u0000', 3)).toBe(2);
      expect(await store.getIdempotent('k')).toBeNull();
      // Two lone surrogates that a UTF-8 encoder would both turn into U+FFFD stay two keys.
      expect(await store.putIdempotent('\ud800', 'a')).toBe('a');
      expect(await store.putIdempotent('\ud801', 'b')).toBe('b');
    } finally {
      await store.close();
    }
  });

  it('creates its schema once, opens again without change, and refuses a database of a newer version', async () => {
    const prefix = `v${process.pid}_`;
    const first = await openPostgresStore({ connectionString: server.url, tablePrefix: prefix });
    const t = id('keep');
    await first.createThread({ threadId: t, ownerId: 'u1' });
    await first.close();
    // Instances opening together wait for each other's migration (an advisory lock), none fails.
    const again = await Promise.all(
      [1, 2, 3].map(() => openPostgresStore({ connectionString: server.url, tablePrefix: prefix })),
    );
    expect(await again[0]!.getThread(t)).not.toBeNull();
    await Promise.all(again.map((s) => s.close()));
    // Event JSON is compressed with lz4 (this server has it).
    const compression = await shared.query<{ attcompression: string }>(
      `SELECT attcompression FROM pg_attribute WHERE attrelid = '${prefix}events'::regclass AND attname = 'json'`,
    );
    expect(compression.rows[0]?.attcompression).toBe('l');
    await shared.query(`UPDATE ${prefix}schema_version SET version = $1`, [POSTGRES_SCHEMA_VERSION + 1]);
    const error = await openPostgresStore({ connectionString: server.url, tablePrefix: prefix }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
    expect((error as Error).message).toContain('newer');
  });

  it('migrates a version-1 database: adds the lease columns, keeps its runs (without a lease)', async () => {
    const prefix = `m${process.pid}_`;
    const first = await openPostgresStore({ connectionString: server.url, tablePrefix: prefix });
    const t = id('old');
    await first.createThread({ threadId: t, ownerId: 'u1' });
    await first.startRun(start(t, 'r-old', 'c1'));
    await first.close();
    // What version 1 left behind.
    await shared.query(
      `DROP INDEX ${prefix}runs_by_lease; ALTER TABLE ${prefix}runs DROP COLUMN lease_owner, DROP COLUMN lease_expires; UPDATE ${prefix}schema_version SET version = 1`,
    );
    const store = await openPostgresStore({ connectionString: server.url, tablePrefix: prefix });
    try {
      const { rows } = await shared.query<{ version: number }>(`SELECT version FROM ${prefix}schema_version`);
      expect(rows[0]?.version).toBe(2);
      expect(await store.getRun('r-old')).toMatchObject({ status: 'running' });
      expect((await store.getRun('r-old'))?.lease).toBeUndefined();
      const claimed = await store.claimRuns({ owner: 'i1', ttlMs: 1000, limit: 10, orphans: true });
      expect(claimed).toMatchObject([{ runId: 'r-old', lease: { owner: 'i1' } }]);
    } finally {
      await store.close();
    }
  });

  it('refuses bad options with invalid_options before connecting', async () => {
    const bad = [
      {},
      { connectionString: server.url, pool: shared },
      { connectionString: server.url, tablePrefix: 'Bad-Prefix' },
      { connectionString: server.url, maxConnections: 0 },
      { connectionString: server.url, connectionTimeoutMs: 1.5 },
      { connectionString: server.url, statementTimeoutMs: -1 },
    ];
    for (const options of bad) {
      const error = await openPostgresStore(options as Parameters<typeof openPostgresStore>[0]).catch(
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ name: 'StoreError', code: 'invalid_options' });
    }
  });

  it('bounds its pool: at most maxConnections to the server, and a call waiting longer than connectionTimeoutMs fails', async () => {
    const appName = `bound-${process.pid}`;
    const store = await openPostgresStore({
      connectionString: `${server.url}?application_name=${appName}`,
      maxConnections: 2,
      connectionTimeoutMs: 300,
    });
    const blocker = new pg.Client({ connectionString: server.url });
    await blocker.connect();
    try {
      const t = id('bound');
      await store.createThread({ threadId: t, ownerId: 'u1' });
      // Hold the thread's counter row: both appends wait on it, each holding one of the two connections.
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM threadline_threads WHERE thread_id = $1 FOR UPDATE', [t]);
      const held = [store.append(t, [chunk(t, 'a')]), store.append(t, [chunk(t, 'b')])];
      await new Promise((resolve) => setTimeout(resolve, 200));
      const error = await store.getThread(t).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
      expect((error as Error).message).toContain('PostgreSQL is unavailable');
      const { rows } = await blocker.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'bound-%'",
      );
      expect(Number(rows[0]!.n)).toBe(2);
      await blocker.query('COMMIT');
      await Promise.all(held);
      expect(await seqsOf(store, t)).toEqual([1, 2]);
    } finally {
      await blocker.end();
      await store.close();
    }
  });

  it('fails with a clear store_error when nothing listens, within connectionTimeoutMs', async () => {
    const port = await freePort();
    const started = Date.now();
    const error = await openPostgresStore({
      connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
      connectionTimeoutMs: 500,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
    expect((error as Error).message).toContain('PostgreSQL is unavailable');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('PostgresStore when the server goes away', () => {
  it('fails calls with store_error while it is down, works again when it is back, and its log has no hole', async () => {
    // A server of its own: this test stops it.
    const own = await startPostgres();
    const store = await openPostgresStore({ connectionString: own.url, connectionTimeoutMs: 1_000 });
    try {
      const t = id('down');
      await store.createThread({ threadId: t, ownerId: 'u1' });
      const acked: { seq: number; json: string }[] = [];
      let failures = 0;
      let stopping: Promise<void> | undefined;
      for (let i = 0; i < 60; i++) {
        if (i === 20) stopping = own.stop('immediate'); // a crash, mid-stream
        try {
          acked.push(
            ...(
              await store.appendMany([{ threadId: t, events: [chunk(t, `a${i}`), chunk(t, `b${i}`)] }])
            )[0]!,
          );
        } catch (error) {
          expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
          failures += 1;
        }
      }
      await stopping;
      const down = await store.lastSeq(t).catch((e: unknown) => e);
      expect(down).toMatchObject({ name: 'StoreError', code: 'store_error' });
      expect((down as Error).message).toContain('PostgreSQL is unavailable');
      expect(failures).toBeGreaterThan(0);
      await own.start();
      // The pool reconnects by itself; the first call after the restart may still meet a dead connection.
      let after: { seq: number }[] | undefined;
      for (let i = 0; i < 20 && !after; i++) {
        after = await store.append(t, [chunk(t, 'after')]).catch(() => undefined);
        if (!after) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(after).toBeDefined();
      const log = await store.read(t, { afterSeq: 0, limit: 1_000 });
      expect(log.map((e) => e.seq)).toEqual(range(log.length));
      // Everything acknowledged is stored, exactly as acknowledged.
      const bySeq = new Map(log.map((e) => [e.seq, e.json]));
      for (const e of acked) expect(bySeq.get(e.seq)).toBe(e.json);
      expect(after![0]!.seq).toBe(log.length);
    } finally {
      await store.close();
      await own.destroy();
    }
  });
});
