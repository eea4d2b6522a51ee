import type { RunRecord, StartRunInput, StartRunResult } from '../store.js';
import { newRun, notFoundThread, withSeq } from '../store-input.js';
import { StoreError } from '../../errors.js';
import type { PgQuery, PgRunner } from './driver.js';
import {
  NOW_MS,
  POSTGRES_SCHEMA_VERSION,
  RUN_COLUMNS,
  schemaSql,
  THREAD_MISSING,
  toRun,
  UNIQUE_VIOLATION,
  type RunRow,
} from './sql.js';

// The PostgreSQL store's multi-statement transactions: the schema migration and the (grouped) run start.

/**
 * Creates the tables, or migrates them to {@link POSTGRES_SCHEMA_VERSION}, in one transaction under an
 * advisory lock (instances opening at once wait for each other). Refuses a database of a newer version.
 */
export async function migrateSchema(runner: PgRunner, p: string): Promise<void> {
  await runner.transaction('creating the schema', async (client) => {
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

/**
 * One transaction: lock the threads' counter rows (in id order), read the runs that decide each input
 * (same clientMessageId, running, same runId), decide in order as `startRun` would, write every start with
 * one statement. Any refusal rolls the whole call back. `p` is the table prefix, `sql` the statements of
 * `startWriteSql` and `startFastSql`; the common case (every input starts) is the one statement of the latter.
 */
export async function startRunsIn(
  runner: PgRunner,
  p: string,
  sql: { startWrite: string; startFast: PgQuery },
  inputs: readonly StartRunInput[],
  bodies: readonly string[],
): Promise<StartRunResult[]> {
  const threadIds = [...new Set(inputs.map((i) => i.threadId))];
  // One round trip when every input starts (one input per thread); otherwise the transaction below decides.
  if (threadIds.length === inputs.length) {
    const started = await startFast(runner, sql.startFast, inputs, bodies);
    if (started) return started;
  }
  const startWrite = sql.startWrite;
  return runner.transaction('starting a run', async (client) => {
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
        await client.query(startWrite, [
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
 * constraint refused the statement, or a thread is missing, so nothing was written) and the full transaction
 * must decide.
 */
async function startFast(
  runner: PgRunner,
  statement: PgQuery,
  inputs: readonly StartRunInput[],
  bodies: readonly string[],
): Promise<StartRunResult[] | null> {
  const now = Date.now();
  const result = await runner.queryUnless<[string, string]>(
    'starting a run',
    statement,
    [
      inputs.map((i) => i.runId),
      inputs.map((i) => i.threadId),
      inputs.map((i) => i.userId),
      inputs.map((i) => i.clientMessageId),
      bodies,
      inputs.map((i) => i.lease?.owner ?? null),
      inputs.map((i) => i.lease?.ttlMs ?? null),
      now,
    ],
    [UNIQUE_VIOLATION, THREAD_MISSING],
  );
  if (!result) return null;
  const { rows } = result;
  return inputs.map((input, i): StartRunResult => {
    const seq = Number(rows[i]![0]);
    return {
      status: 'started',
      run: newRun(input, now, Number(rows[i]![1])),
      userMessage: { seq, json: withSeq(bodies[i]!, seq) },
    };
  });
}
