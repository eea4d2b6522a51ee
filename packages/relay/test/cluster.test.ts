// Two relay instances on one PostgreSQL with Redis pub/sub (both real servers, started by the test): live
// fan-out across instances, cancel and one-run-per-thread across instances, and failover when the instance
// streaming a run is SIGKILLed (a real child process).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseSequencedEvent } from '@threadline/contracts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRelay, type Relay, type RelayLimits, type RelayTuning } from '../src/index.js';
import { openPostgresStore, type PostgresStore } from '../src/stores/postgres.js';
import { openRedisPubSub, type RedisPubSub } from '../src/cluster/redis.js';
import type { EventStore, StoredEvent } from '../src/stores/store.js';
import type { Subscription } from '../src/core/subscription.js';
import { ControlledAgent, tokens } from './helpers.js';
import { startPostgres, startRedis, type TestPostgres, type TestRedis } from './servers.js';

let pg: TestPostgres;
let redis: TestRedis;
beforeAll(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
}, 60_000);
afterAll(async () => {
  await Promise.all([pg?.destroy(), redis?.destroy()]);
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet = { error() {}, warn() {} };
const user = { id: 'user-a' };
let n = 0;
const uid = (prefix: string) => `${prefix}-${process.pid}-${++n}`;

interface Instance {
  relay: Relay;
  store: PostgresStore;
  pubsub: RedisPubSub;
  agent: ControlledAgent;
}

/** One relay instance: its own pool, its own Redis connections, its own agent. */
async function instance(
  instanceId: string,
  limits: Partial<RelayLimits & RelayTuning> = {},
): Promise<Instance> {
  const store = await openPostgresStore({ connectionString: pg.url, maxConnections: 4 });
  const pubsub = await openRedisPubSub({ url: redis.url, store, logger: quiet });
  const agent = new ControlledAgent();
  const relay = createRelay({
    store,
    pubsub,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    instanceId,
    limits,
    logger: quiet,
  });
  cleanups.push(async () => {
    await relay.close();
    await pubsub.close();
    await store.close();
  });
  return { relay, store, pubsub, agent };
}

async function newThread(store: EventStore): Promise<string> {
  const threadId = uid('t');
  await store.createThread({ threadId, ownerId: user.id });
  return threadId;
}

/** Reads a subscription until `done` says stop (or fails after `timeoutMs`). */
async function readUntil(
  sub: Subscription,
  done: (events: StoredEvent[]) => boolean,
  timeoutMs = 10_000,
): Promise<StoredEvent[]> {
  const got: StoredEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!done(got)) {
    const batch = await Promise.race([
      sub.nextBatch(),
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(0, deadline - Date.now()))),
    ]);
    if (batch === 'timeout') throw new Error(`timed out; got seqs ${got.map((e) => e.seq).join(',')}`);
    if (batch === null) break;
    got.push(...batch);
  }
  return got;
}

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const typeOf = (e: StoredEvent) => parseSequencedEvent(JSON.parse(e.json)).type;
const terminal = (events: StoredEvent[]) =>
  events.some((e) => typeOf(e) === 'RUN_FINISHED' || typeOf(e) === 'RUN_ERROR');
const log = (store: EventStore, threadId: string) => store.read(threadId, { afterSeq: 0, limit: 100_000 });

describe('two relay instances on one PostgreSQL with Redis pub/sub', () => {
  it('a subscriber on B follows a run streaming through A exactly: same seqs, same text, no gap, no duplicate', async () => {
    const a = await instance(uid('a'));
    const b = await instance(uid('b'));
    const threadId = await newThread(a.store);
    const onB = await b.relay.subscribe({ user, threadId, afterSeq: 0 });
    const onA = await a.relay.subscribe({ user, threadId, afterSeq: 0 });
    const { runId } = await a.relay.send({ user, threadId, text: 'hi', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    run.push(run.started());
    for (let i = 0; i < 40; i++) {
      run.push(run.chunk(`w${i} `));
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    run.push(run.finished());
    const [seenB, seenA] = await Promise.all([readUntil(onB, terminal), readUntil(onA, terminal)]);
    const stored = await log(a.store, threadId);
    expect(seenB).toEqual(stored);
    expect(seenA).toEqual(stored);
    expect(seenB.map((e) => e.seq)).toEqual(stored.map((_, i) => i + 1));
    expect(
      seenB
        .map((e) => parseSequencedEvent(JSON.parse(e.json)))
        .flatMap((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? [e.delta] : []))
        .join(''),
    ).toBe(Array.from({ length: 40 }, (_, i) => `w${i} `).join(''));
    expect((await b.store.getRun(runId))?.status).toBe('finished');
    expect(b.agent.runs).toHaveLength(0);
  });

  it("a cancel on B stops A's run: A's agent call is aborted and one RUN_ERROR cancelled is stored", async () => {
    const a = await instance(uid('a'));
    const b = await instance(uid('b'));
    const threadId = await newThread(a.store);
    const { runId } = await a.relay.send({ user, threadId, text: 'hi', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    run.push(run.started(), run.chunk('partial'));
    const record = await b.store.getRun(runId);
    expect(record?.lease?.owner).toBe(a.relay.instanceId);
    await b.relay.cancel({ user, runId });
    expect(run.signal.aborted).toBe(true);
    expect(a.agent.cancelled).toContain(runId);
    const events = (await log(b.store, threadId)).map((e) => parseSequencedEvent(JSON.parse(e.json)));
    const terminals = events.filter((e) => e.type === 'RUN_ERROR' || e.type === 'RUN_FINISHED');
    expect(terminals).toEqual([expect.objectContaining({ type: 'RUN_ERROR', runId, code: 'cancelled' })]);
    expect(a.relay.activeRuns).toBe(0);
    // Someone else's run can't be cancelled from B either.
    await expect(b.relay.cancel({ user: { id: 'intruder' }, runId })).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it("a send on B while A's run is active gets run_active; a retried send on B returns A's runId and starts nothing", async () => {
    const a = await instance(uid('a'));
    const b = await instance(uid('b'));
    const threadId = await newThread(a.store);
    const { runId } = await a.relay.send({ user, threadId, text: 'hi', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    run.push(run.started());
    await expect(
      b.relay.send({ user, threadId, text: 'another', clientMessageId: 'c2' }),
    ).rejects.toMatchObject({ code: 'run_active' });
    // The browser resends its message through the other instance after a reconnect.
    expect(await b.relay.send({ user, threadId, text: 'hi', clientMessageId: 'c1' })).toEqual({ runId });
    expect(b.agent.runs).toHaveLength(0);
    run.push(run.finished());
    await until(async () => (await b.store.getRun(runId))?.status === 'finished');
    const events = (await log(a.store, threadId)).map((e) => parseSequencedEvent(JSON.parse(e.json)));
    expect(events.filter((e) => e.type === 'USER_MESSAGE')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR')).toHaveLength(1);
    // Once it ended, the thread takes the next message on B.
    const next = await b.relay.send({ user, threadId, text: 'next', clientMessageId: 'c3' });
    expect(next.runId).not.toBe(runId);
    expect((await b.agent.nextRun(0)).request.runId).toBe(next.runId);
  });

  it('renews the leases of all its runs in one store call per interval, however many events they stream', async () => {
    const a = await instance(uid('a'), { leaseTtlMs: 2_000, leaseRenewMs: 200, leaseSweepMs: 1_000 });
    const calls: number[] = [];
    const renew = a.store.renewLeases.bind(a.store);
    a.store.renewLeases = async (owner, runIds, ttlMs) => {
      calls.push(runIds.length);
      return renew(owner, runIds, ttlMs);
    };
    const threads = await Promise.all(Array.from({ length: 4 }, () => newThread(a.store)));
    await Promise.all(
      threads.map((threadId, i) => a.relay.send({ user, threadId, text: 'x', clientMessageId: `c${i}` })),
    );
    const runs = await Promise.all(threads.map((_, i) => a.agent.nextRun(i)));
    for (const run of runs) run.push(run.started());
    const until = Date.now() + 1_100;
    let events = 0;
    while (Date.now() < until) {
      for (const run of runs) run.push(run.chunk('x'));
      events += runs.length;
      await new Promise((r) => setTimeout(r, 2));
    }
    for (const run of runs) run.push(run.finished());
    // About one call per 200 ms (not one per event, nor one per run), each with all four runs.
    expect(events).toBeGreaterThan(100);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    expect(calls.length).toBeLessThanOrEqual(8);
    expect(calls.every((count) => count === 4)).toBe(true);
  });
});

describe('failover: the instance streaming a run is SIGKILLed', () => {
  function child(args: string[]): { proc: ChildProcess; lines: AsyncIterator<string> } {
    const proc = spawn(
      process.execPath,
      [
        '--conditions=@threadline/source',
        '--import',
        fileURLToPath(new URL('./fixtures/ts-hooks.mjs', import.meta.url)),
        fileURLToPath(new URL('./fixtures/cluster-child.ts', import.meta.url)),
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    return { proc, lines: createInterface({ input: proc.stdout! })[Symbol.asyncIterator]() };
  }
  async function kill(proc: ChildProcess): Promise<void> {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }

  it('ends the run with exactly one RUN_ERROR owner_lost within the default bound, the next message runs, and a restarted A fails nothing B owns', async () => {
    const b = await instance(uid('b')); // default lease settings: 10 s lease, renewed every 3 s, swept every 2 s
    const threadId = await newThread(b.store);
    const onB = await b.relay.subscribe({ user, threadId, afterSeq: 0 });
    const aId = uid('a');
    const a = child(['stream', pg.url, redis.url, aId, threadId]);
    const line = (await a.lines.next()).value as string;
    const runId = /^streaming (\S+)$/.exec(line)?.[1];
    expect(runId).toBeDefined();
    expect((await b.store.getRun(runId!))?.lease?.owner).toBe(aId);
    const killedAt = Date.now();
    await kill(a.proc);

    const events = await readUntil(onB, terminal, 20_000);
    const lostAfterMs = Date.now() - killedAt;
    const end = parseSequencedEvent(JSON.parse(events.at(-1)!.json));
    expect(end).toMatchObject({ type: 'RUN_ERROR', runId, code: 'owner_lost' });
    // The documented default bound: lease (10 s) + sweep interval (2 s), well under 15 s.
    expect(lostAfterMs).toBeLessThan(15_000);
    console.log(`owner_lost ${lostAfterMs} ms after the SIGKILL (default lease settings)`);
    const stored = await log(b.store, threadId);
    expect(events).toEqual(stored);
    expect(stored.filter((e) => typeOf(e) === 'RUN_ERROR' || typeOf(e) === 'RUN_FINISHED')).toHaveLength(1);
    expect((await b.store.getRun(runId!))?.status).toBe('failed');

    // The next message runs (on B).
    const next = await b.relay.send({ user, threadId, text: 'again', clientMessageId: 'c2' });
    const run = await b.agent.nextRun(0);
    expect(run.request.runId).toBe(next.runId);
    run.push(run.started(), run.chunk('still here'));

    // A comes back with the same instance id while B's run streams: it fails nothing of B's.
    const again = child(['recover', pg.url, redis.url, aId]);
    expect((await again.lines.next()).value).toBe('recovered 0');
    expect(run.signal.aborted).toBe(false);
    expect((await b.store.getRun(next.runId))?.status).toBe('running');
    run.push(run.finished());
    await readUntil(onB, (got) => got.some((e) => e.json.includes(next.runId) && terminal([e])));
    const after = await log(b.store, threadId);
    expect(after.filter((e) => typeOf(e) === 'RUN_ERROR')).toHaveLength(1);
    expect(after.filter((e) => typeOf(e) === 'RUN_FINISHED')).toHaveLength(1);
    expect(after.map((e) => e.seq)).toEqual(after.map((_, i) => i + 1));
  }, 60_000);

  it('a restarted instance with the same id ends its own runs at once (relay_restarted), not after the lease', async () => {
    const b = await instance(uid('b'));
    const threadId = await newThread(b.store);
    const aId = uid('a');
    const a = child(['stream', pg.url, redis.url, aId, threadId]);
    const runId = /^streaming (\S+)$/.exec((await a.lines.next()).value as string)?.[1];
    await kill(a.proc);
    const again = child(['recover', pg.url, redis.url, aId]);
    expect((await again.lines.next()).value).toBe('recovered 1');
    const stored = (await log(b.store, threadId)).map((e) => parseSequencedEvent(JSON.parse(e.json)));
    expect(stored.filter((e) => e.type === 'RUN_ERROR')).toEqual([
      expect.objectContaining({ runId, code: 'relay_restarted' }),
    ]);
  }, 60_000);
});
