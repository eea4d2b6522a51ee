// Thread titles, rename and delete through the relay: owner only (another user is answered as for a missing
// thread and changes nothing), delete refused while a run is going, and a deleted thread's subscriptions end
// with `thread_deleted`, in this process, over the ws transport, and on another instance (Redis pub/sub).
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AUTO_TITLE_MAX_LENGTH,
  createRelay,
  InProcessPubSub,
  RelayError,
  titleFromMessage,
  type Relay,
  type ThreadPubSub,
} from '../src/index.js';
import { MemoryStore } from '../src/stores/memory.js';
import { openRedisPubSub } from '../src/cluster/redis.js';
import { openSqliteStore } from '../src/stores/sqlite.js';
import type { Subscription } from '../src/core/subscription.js';
import { ControlledAgent, makeRelay, makeWsHarness, tempDir, TestClient, tokens, until } from './helpers.js';
import type { Harness } from './helpers.js';
import { startRedis, type TestRedis } from './servers.js';

const A = { id: 'user-a' };
const B = { id: 'user-b' };
const quiet = { error() {}, warn() {} };
let h: Harness | undefined;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof RelayError ? e.code : `not a RelayError: ${String(e)}`),
  );
}

/** Reads a subscription until it ends; resolves with the code it ended with (null: closed cleanly). */
async function endOf(sub: Subscription): Promise<string | null> {
  for (;;) {
    try {
      if ((await sub.nextBatch()) === null) return null;
    } catch (error) {
      return error instanceof RelayError ? error.code : String(error);
    }
  }
}

describe('titleFromMessage', () => {
  it('collapses whitespace and keeps a short message whole', () => {
    expect(titleFromMessage('  Plan a   trip to Lisbon\n\nin May ')).toBe('Plan a trip to Lisbon in May');
    expect(titleFromMessage(' \n\t ')).toBe('');
  });

  it('cuts a long message at a word boundary, with an ellipsis, within the bound', () => {
    const text =
      'Could you help me write a polite email to my landlord about the heating that has been broken since Monday';
    const title = titleFromMessage(text);
    expect(Array.from(title).length).toBeLessThanOrEqual(AUTO_TITLE_MAX_LENGTH);
    expect(title.endsWith('…')).toBe(true);
    const words = title.slice(0, -1);
    expect(text.startsWith(words)).toBe(true);
    expect(text[words.length]).toBe(' '); // ends where a word ends
  });

  it('cuts inside one very long word, never splitting a surrogate pair', () => {
    const title = titleFromMessage('😀'.repeat(100));
    expect(Array.from(title)).toHaveLength(AUTO_TITLE_MAX_LENGTH);
    expect(title).toBe(`${'😀'.repeat(AUTO_TITLE_MAX_LENGTH - 1)}…`);
  });
});

describe('titles from the first message', () => {
  it('stores a title from the first message once; later messages and a rename are kept', async () => {
    h = await makeRelay('sqlite');
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.relay.send({
      user: A,
      threadId: 't1',
      text: '  What is   the capital of Portugal? ',
      clientMessageId: 'c1',
    });
    expect((await h.store.getThread('t1'))!.title).toBe('What is the capital of Portugal?');
    const run = await h.agent.nextRun(0);
    run.push(run.finished());
    await until(async () => (await h!.store.activeRun('t1')) === null);
    await h.relay.send({ user: A, threadId: 't1', text: 'And of Spain?', clientMessageId: 'c2' });
    expect((await h.store.getThread('t1'))!.title).toBe('What is the capital of Portugal?');
  });

  it('leaves a thread created with a title as it is, and with autoTitle false makes none', async () => {
    h = await makeRelay('memory', { autoTitle: false });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.store.createThread({ threadId: 't2', ownerId: A.id, title: 'Mine' });
    await h.relay.send({ user: A, threadId: 't1', text: 'hello', clientMessageId: 'c1' });
    await h.relay.send({ user: A, threadId: 't2', text: 'hello', clientMessageId: 'c1' });
    expect((await h.store.getThread('t1'))!.title).toBe('');
    expect((await h.store.getThread('t2'))!.title).toBe('Mine');
  });
});

describe.each(['memory', 'sqlite'] as const)('rename and delete on %s', (kind) => {
  it('renames for the owner only; another user gets not_found and nothing changes', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id, title: 'Before' });
    const renamed = await h.relay.renameThread({ user: A, threadId: 't1', title: '  After  ' });
    expect(renamed.title).toBe('After');
    expect(await codeOf(h.relay.renameThread({ user: B, threadId: 't1', title: 'Pwned' }))).toBe('not_found');
    expect(await codeOf(h.relay.renameThread({ user: B, threadId: 'nope', title: 'x' }))).toBe('not_found');
    expect(await codeOf(h.relay.renameThread({ user: A, threadId: 't1', title: '   ' }))).toBe(
      'invalid_message',
    );
    expect(await codeOf(h.relay.renameThread({ user: A, threadId: 't1', title: 'x'.repeat(201) }))).toBe(
      'invalid_message',
    );
    expect((await h.store.getThread('t1'))!.title).toBe('After');
  });

  it("refuses another user's delete as not_found, deleting nothing and ending no subscription", async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.relay.send({ user: A, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    run.push(run.finished());
    await until(async () => (await h!.store.activeRun('t1')) === null);
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    expect(await codeOf(h.relay.deleteThread({ user: B, threadId: 't1' }))).toBe('not_found');
    expect(await h.store.getThread('t1')).not.toBeNull();
    expect(await h.store.lastSeq('t1')).toBe(3);
    expect(sub.ended).toBe(false);
    sub.close();
  });

  it('refuses to delete while a run is going (run_active); after it ends deletes it all and ends subscriptions', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const ended = endOf(sub);
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    expect(await codeOf(h.relay.deleteThread({ user: A, threadId: 't1' }))).toBe('run_active');
    expect(await h.store.getThread('t1')).not.toBeNull();
    run.push(run.chunk('hello'), run.finished());
    await until(async () => (await h!.store.activeRun('t1')) === null);
    await h.store.addSessionItems('t1', [{ role: 'user', content: 'hi' }]);

    await h.relay.deleteThread({ user: A, threadId: 't1' });
    expect(await ended).toBe('thread_deleted');
    expect(h.relay.subscribers).toBe(0);
    expect(await h.store.getThread('t1')).toBeNull();
    expect(await h.store.read('t1', { afterSeq: 0, limit: 100 })).toEqual([]);
    expect(await h.store.getRun(runId)).toBeNull();
    expect(await h.store.getSessionItems('t1')).toEqual([]);
    expect(await codeOf(h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 }))).toBe('not_found');
    expect(await codeOf(h.relay.deleteThread({ user: A, threadId: 't1' }))).toBe('not_found');
  });
});

describe('deleted threads over the ws transport', () => {
  it('tells a subscribed browser thread_deleted (ref: the thread) and keeps its other threads', async () => {
    const ws = await makeWsHarness('memory');
    h = ws;
    await ws.store.createThread({ threadId: 't1', ownerId: A.id });
    await ws.store.createThread({ threadId: 't2', ownerId: A.id });
    const client = await TestClient.connect(ws.url, A.id);
    cleanups.push(async () => {
      await client.close();
    });
    client.send({ type: 'subscribe', threadId: 't1', afterSeq: 0 });
    client.send({ type: 'subscribe', threadId: 't2', afterSeq: 0 });
    await until(() => ws.relay.subscribers === 2);
    await ws.relay.deleteThread({ user: A, threadId: 't1' });
    const frame = await client.waitFor((m) => m.type === 'error');
    expect(frame).toMatchObject({ type: 'error', code: 'thread_deleted', ref: 't1' });
    await until(() => ws.relay.subscribers === 1);
    // The other thread still streams on the same socket.
    client.send({ type: 'send', threadId: 't2', text: 'still here', clientMessageId: 'c1' });
    await client.waitFor((m) => m.type === 'event' && (m.event as { threadId?: string }).threadId === 't2');
  });
});

function instance(store: MemoryStore, pubsub: ThreadPubSub): Relay {
  const relay = createRelay({
    store,
    pubsub,
    agent: new ControlledAgent(),
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: quiet,
  });
  cleanups.push(() => relay.close());
  return relay;
}

describe('deleted threads across instances', () => {
  it('ends the subscriptions of another relay sharing the pub/sub (its control channel)', async () => {
    const store = new MemoryStore();
    const pubsub = new InProcessPubSub();
    const one = instance(store, pubsub);
    const two = instance(store, pubsub);
    await store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await two.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    await one.deleteThread({ user: A, threadId: 't1' });
    expect(await endOf(sub)).toBe('thread_deleted');
    expect(two.subscribers).toBe(0);
  });

  describe('with Redis pub/sub (a real server)', () => {
    let redis: TestRedis | undefined;
    beforeAll(async () => {
      redis = await startRedis();
    }, 60_000);
    afterAll(async () => {
      await redis?.destroy();
    });

    it('ends the subscriptions on the other instance', async () => {
      const store = new MemoryStore();
      const p1 = await openRedisPubSub({ url: redis!.url, store, logger: quiet });
      const p2 = await openRedisPubSub({ url: redis!.url, store, logger: quiet });
      cleanups.push(
        () => p1.close(),
        () => p2.close(),
      );
      const one = instance(store, p1);
      const two = instance(store, p2);
      await store.createThread({ threadId: 't1', ownerId: A.id });
      const sub = await two.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
      await one.deleteThread({ user: A, threadId: 't1' });
      expect(await endOf(sub)).toBe('thread_deleted');
    });
  });
});

describe('SQLite delete and the event tail', () => {
  it("keeps the tail's row count equal to its rows after deleting threads from both tables", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const path = join(dir.path, 'tail.db');
    const store = openSqliteStore({ path, tailTargetRows: 8 });
    cleanups.push(() => store.close());
    const threads = ['t1', 't2', 't3', 't4'];
    for (const threadId of threads) await store.createThread({ threadId, ownerId: 'u1' });
    for (let round = 0; round < 10; round++) {
      for (const threadId of threads) {
        await store.append(threadId, [
          { type: 'TEXT_MESSAGE_CHUNK', threadId, runId: 'r1', ts: 1, messageId: 'm1', delta: `${round}` },
        ]);
      }
    }
    const counts = () => {
      const raw = new DatabaseSync(path, { readOnly: true });
      try {
        const n = (sql: string) => (raw.prepare(sql).get() as { n: number }).n;
        return {
          tail: n('SELECT count(*) AS n FROM event_tail'),
          booked: n('SELECT rows AS n FROM tail_state WHERE id = 1'),
          moved: n('SELECT count(*) AS n FROM events'),
        };
      } finally {
        raw.close();
      }
    };
    const before = counts();
    expect(before.tail).toBeGreaterThan(0);
    expect(before.moved).toBeGreaterThan(0);
    expect(before.booked).toBe(before.tail);
    for (const threadId of ['t1', 't4']) expect(await store.deleteThread(threadId)).toBe('deleted');
    const after = counts();
    expect(after.booked).toBe(after.tail);
    expect(after.tail + after.moved).toBe(20);
    expect(await store.lastSeq('t2')).toBe(10);
  });
});
