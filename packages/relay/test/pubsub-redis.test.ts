import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRelay, type Relay, type Subscription } from '../src/index.js';
import { MemoryStore } from '../src/stores/memory.js';
import { openPostgresStore, type PostgresStore } from '../src/stores/postgres.js';
import { openRedisPubSub, type RedisPubSub } from '../src/cluster/redis.js';
import type { StoredEvent } from '../src/stores/store.js';
import { ControlledAgent, tokens, until } from './helpers.js';
import { freePort, startPostgres, startRedis, type TestPostgres, type TestRedis } from './servers.js';

let pgServer: TestPostgres;
let redis: TestRedis;
beforeAll(async () => {
  [pgServer, redis] = await Promise.all([startPostgres(), startRedis()]);
});
afterAll(async () => {
  await Promise.all([pgServer?.destroy(), redis?.destroy()]);
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const USER = { id: 'user-1' };
let n = 0;
const uid = (prefix: string) => `${prefix}-${process.pid}-${++n}`;

/** A log line collector standing in for console. */
function lines() {
  const warned: string[] = [];
  return { warned, logger: { warn: (line: string) => warned.push(line) } };
}

interface Instance {
  store: PostgresStore;
  pubsub: RedisPubSub;
  agent: ControlledAgent;
  relay: Relay;
  warned: string[];
}

/** One relay instance: its own PostgreSQL pool on the shared database, its own Redis connections. */
async function instance(): Promise<Instance> {
  const store = await openPostgresStore({ connectionString: pgServer.url });
  const { warned, logger } = lines();
  const pubsub = await openRedisPubSub({ url: redis.url, store, logger, maxReconnectDelayMs: 200 });
  const agent = new ControlledAgent();
  const relay = createRelay({
    store,
    pubsub,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9/api',
    tools: [],
    logger: { error() {}, warn() {} },
  });
  cleanups.push(async () => {
    await relay.close();
    await pubsub.close();
    await store.close();
  });
  return { store, pubsub, agent, relay, warned };
}

/** Everything a subscription hands over until a terminal event, checking each JSON carries its seq. */
async function collect(sub: Subscription): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const stored of sub) {
    const e = JSON.parse(stored.json) as { seq: number; type: string };
    expect(e.seq).toBe(stored.seq);
    out.push(stored);
    if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') break;
  }
  return out;
}

/** `promise`, or a clear failure after `ms` (instead of the test's timeout). */
async function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what()}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function wholeLog(store: PostgresStore, threadId: string): Promise<StoredEvent[]> {
  return store.read(threadId, { afterSeq: 0, limit: 100_000 });
}

describe('two relays on one PostgreSQL store, each with its own Redis pub/sub', () => {
  it('a subscriber on relay B sees every event of a run streaming through relay A, exactly once, in order', async () => {
    const a = await instance();
    const b = await instance();
    const threadId = uid('t');
    await a.store.createThread({ threadId, ownerId: USER.id });
    const sub = await b.relay.subscribe({ user: USER, threadId, afterSeq: 0 });
    const seen = collect(sub);
    await a.relay.send({ user: USER, threadId, text: 'hello', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    for (let i = 0; i < 40; i++) {
      run.push(run.chunk(`a${i}.`), run.chunk(`b${i}.`));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    run.push(run.finished());
    const got = await within(seen, 10_000, () => 'the subscriber on B did not see the run end');
    const log = await wholeLog(a.store, threadId);
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));
    expect(got).toEqual(log);
    // Live through Redis: B heard the run while it streamed (its store reads alone would have stopped at seq 1).
    expect(b.agent.runs).toHaveLength(0);
  });

  it('restart Redis mid-run (the run even ends while it is down): the subscriber on B misses nothing', async () => {
    const a = await instance();
    const b = await instance();
    const threadId = uid('t');
    await a.store.createThread({ threadId, ownerId: USER.id });
    const sub = await b.relay.subscribe({ user: USER, threadId, afterSeq: 0 });
    const got: StoredEvent[] = [];
    const done = (async () => {
      for await (const stored of sub) {
        got.push(stored);
        if (stored.json.includes('"RUN_FINISHED"')) return;
      }
    })();
    await a.relay.send({ user: USER, threadId, text: 'hello', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    run.push(run.chunk('before-1'), run.chunk('before-2'));
    await until(() => got.length >= 3);

    await redis.stop();
    await until(() => !a.pubsub.connected && !b.pubsub.connected);
    for (let i = 0; i < 10; i++) run.push(run.chunk(`during-${i}`));
    run.push(run.finished());
    await until(async () => (await a.store.getRun(run.request.runId))?.status === 'finished');
    expect(got.length).toBeLessThan(4); // nothing could reach B live
    await redis.start();

    await within(done, 10_000, () => `the subscriber on B got ${got.length} events and no RUN_FINISHED`);
    const log = await wholeLog(a.store, threadId);
    expect(got).toEqual(log);
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));
    // One line when Redis went away and one when it came back, not one per reconnect attempt.
    await until(() => a.pubsub.connected && b.pubsub.connected);
    for (const w of [a.warned, b.warned]) {
      expect(w.filter((l) => l.includes('lost Redis'))).toHaveLength(1);
      expect(w.filter((l) => l.includes('is back;'))).toHaveLength(1);
    }
  });

  it('a subscriber that joins while Redis is down hears the run live once Redis is back', async () => {
    const a = await instance();
    const b = await instance();
    const threadId = uid('t');
    await a.store.createThread({ threadId, ownerId: USER.id });
    await redis.stop();
    await until(() => !b.pubsub.connected);
    const sub = await b.relay.subscribe({ user: USER, threadId, afterSeq: 0 });
    const seen = collect(sub);
    await redis.start();
    await until(() => a.pubsub.connected && b.pubsub.connected);
    await a.relay.send({ user: USER, threadId, text: 'hello', clientMessageId: 'c1' });
    const run = await a.agent.nextRun(0);
    for (let i = 0; i < 5; i++) {
      run.push(run.chunk(`x${i}`));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    run.push(run.finished());
    expect(await within(seen, 10_000, () => 'the subscriber on B did not see the run end')).toEqual(
      await wholeLog(a.store, threadId),
    );
  });
});

/** Two adapters on one Redis sharing a memory store (two instances in one process), with B's raw deliveries. */
async function pair(options: { maxMessageBytes?: number; maxPendingPublishes?: number } = {}) {
  const store = new MemoryStore();
  const a = await openRedisPubSub({ url: redis.url, store, logger: lines().logger, ...options });
  const b = await openRedisPubSub({ url: redis.url, store, logger: lines().logger });
  cleanups.push(async () => {
    await a.close();
    await b.close();
    await store.close();
  });
  const threadId = uid('t');
  await store.createThread({ threadId, ownerId: USER.id });
  const heard: StoredEvent[][] = [];
  b.subscribe(threadId, (events) => heard.push([...events]));
  // B's channel is live once its probe of the (empty) thread ran; give Redis the SUBSCRIBE first.
  const raw = createClient({ url: redis.url });
  await raw.connect();
  await until(
    async () =>
      Number((await raw.pubSubNumSub(`threadline:thread:${threadId}`))[`threadline:thread:${threadId}`]) ===
      1,
  );
  cleanups.push(() => raw.close());
  /** Appends and publishes through A, as a relay would. */
  const write = async (count: number, size = 10) => {
    const stored = await store.append(
      threadId,
      Array.from({ length: count }, (_, i) => ({
        type: 'TEXT_MESSAGE_CHUNK' as const,
        threadId,
        runId: 'r1',
        ts: 1,
        messageId: 'm1',
        delta: `${i}`.padEnd(size, '.'),
      })),
    );
    a.publish(threadId, stored);
    return stored;
  };
  return { a, b, store, threadId, heard, raw, write };
}

describe('RedisPubSub bounds', () => {
  it('publishes a batch larger than maxMessageBytes as its last event alone (the rest comes from the store)', async () => {
    const { heard, write } = await pair({ maxMessageBytes: 2_048 });
    const small = await write(3);
    await until(() => heard.length === 1);
    expect(heard[0]).toEqual(small);
    const big = await write(50, 100); // about 10 KiB of JSON
    await until(() => heard.length === 2);
    expect(heard[1]).toEqual([big[big.length - 1]]);
  });

  it('keeps at most maxPendingPublishes unanswered; dropped publishes become one resync that probes the store', async () => {
    const { heard, write } = await pair({ maxPendingPublishes: 1 });
    let last: StoredEvent[] = [];
    for (let i = 0; i < 30; i++) last = await write(1);
    // One publish went out; the other 29 were dropped and replaced by a resync, which makes B read the newest event.
    await until(() => heard.flat().some((e) => e.seq === last[0]!.seq));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(heard.length).toBeLessThanOrEqual(3);
    expect(heard.flat().map((e) => e.seq)).toContain(30);
  });

  it('survives garbage on a thread channel: no crash, the thread is probed from the store instead', async () => {
    const { heard, raw, threadId, store } = await pair();
    const [stored] = await store.append(threadId, [
      { type: 'TEXT_MESSAGE_CHUNK', threadId, runId: 'r1', ts: 1, messageId: 'm1', delta: 'x' },
    ]);
    for (const garbage of ['not json', '[]', '["x", "1", "{}"]', '{"a":1}', '["x", 1]'])
      await raw.publish(`threadline:thread:${threadId}`, garbage);
    await until(() => heard.length > 0);
    expect(heard.every((batch) => batch.length === 1 && batch[0]!.seq === stored!.seq)).toBe(true);
  });
});

describe('openRedisPubSub', () => {
  it('refuses bad options with invalid_options', async () => {
    const store = new MemoryStore();
    const bad = [
      { store },
      { url: 'http://127.0.0.1:1', store },
      { url: redis.url },
      { url: redis.url, store, maxPendingPublishes: 0 },
      { url: redis.url, store, maxMessageBytes: 10 },
    ];
    for (const options of bad) {
      const error = await openRedisPubSub(options as Parameters<typeof openRedisPubSub>[0]).catch(
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ name: 'RelayError', code: 'invalid_options' });
    }
  });

  it('fails with pubsub_unavailable within connectTimeoutMs when nothing listens', async () => {
    const port = await freePort();
    const started = Date.now();
    const error = await openRedisPubSub({
      url: `redis://127.0.0.1:${port}`,
      store: new MemoryStore(),
      connectTimeoutMs: 300,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'RelayError', code: 'pubsub_unavailable' });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
