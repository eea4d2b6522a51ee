import {
  LIMITS,
  parseSequencedEvent,
  type AgentEvent,
  type RunErrorEvent,
  type RunFinishedEvent,
  type TextMessageChunkEvent,
  type UserMessageEvent,
} from '@threadline/contracts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ToolStore } from '@threadline/tools-kit';
import type { EventStore, StoredEvent } from './store.js';

/** What a conformance factory returns: a fresh (or freshly namespaced) store and how to dispose of it. */
export interface ConformanceStore {
  store: EventStore;
  /** Called after each test, after `store.close()`: delete files, drop databases. */
  cleanup?(): Promise<void>;
  /**
   * Opens another handle on the same data, as a second relay instance would (its own connection pool or file
   * handle); closed by the suite. Without it the lease tests use `store` for both instances.
   */
  openSecond?(): Promise<EventStore>;
}

let counter = 0;
/** Ids unique per test, so a factory may hand out stores that share one database. */
function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

const TS = 1_700_000_000_000;

function chunk(threadId: string, runId: string, delta: string, messageId = 'msg-1'): TextMessageChunkEvent {
  return { type: 'TEXT_MESSAGE_CHUNK', threadId, runId, ts: TS, messageId, delta };
}
function finished(threadId: string, runId: string): RunFinishedEvent {
  return { type: 'RUN_FINISHED', threadId, runId, ts: TS };
}
function failed(threadId: string, runId: string): RunErrorEvent {
  return { type: 'RUN_ERROR', threadId, runId, ts: TS, message: 'boom', code: 'model_error' };
}
function userMessage(
  threadId: string,
  runId: string,
  clientMessageId: string,
  userId: string,
): UserMessageEvent {
  return {
    type: 'USER_MESSAGE',
    threadId,
    runId,
    ts: TS,
    messageId: `m-${clientMessageId}`,
    clientMessageId,
    userId,
    text: 'hello',
  };
}
function startInput(threadId: string, runId: string, clientMessageId: string, userId = 'user-1') {
  return {
    threadId,
    runId,
    userId,
    clientMessageId,
    userMessage: userMessage(threadId, runId, clientMessageId, userId),
  };
}

/** Asserts a rejection with a relay StoreError of `code` (by name and code, so copies of the class across bundles match). */
async function expectStoreError(promise: Promise<unknown>, code: string): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a StoreError with code "${code}"`).toBeInstanceOf(Error);
  expect((caught as Error).name).toBe('StoreError');
  expect((caught as { code?: unknown }).code).toBe(code);
  return caught as Error;
}

/**
 * The store's tools-kit {@link ToolStore} part when it implements that port too (the SQLite, PostgreSQL and
 * MongoDB stores do, the memory store does not): then deleting or pruning a thread must remove its session.
 */
function toolPart(store: EventStore): ToolStore | null {
  const tools = store as Partial<ToolStore>;
  return typeof tools.addSessionItems === 'function' &&
    typeof tools.getSessionItems === 'function' &&
    typeof tools.patchProfile === 'function' &&
    typeof tools.getProfile === 'function'
    ? (store as EventStore & ToolStore)
    : null;
}

/** Waits until `Date.now()` has moved on, so "most recently updated" is decidable without a fake clock. */
async function nextMillisecond(): Promise<void> {
  const start = Date.now();
  while (Date.now() <= start) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Runs the EventStore conformance suite (vitest `describe`/`it`) against an adapter. Every adapter shipped
 * with `@threadline/relay` passes it; run it on your own adapter to know the relay can rely on it.
 *
 * `makeStore` is called before each test. Tests use ids unique to the test, so it may return stores that
 * share one database; `cleanup` runs after `store.close()`.
 *
 * @example
 * import { runStoreConformance } from '@threadline/relay/testing';
 * runStoreConformance('my store', async () => ({ store: await openMyStore(), cleanup: dropDatabase }));
 */
export function runStoreConformance(name: string, makeStore: () => Promise<ConformanceStore>): void {
  describe(`EventStore conformance: ${name}`, () => {
    let current: ConformanceStore | undefined;
    let store: EventStore;

    beforeEach(async () => {
      current = await makeStore();
      store = current.store;
    });
    afterEach(async () => {
      const done = current;
      current = undefined;
      if (!done) return;
      await done.store.close();
      await done.cleanup?.();
    });

    async function newThread(ownerId = 'user-1'): Promise<string> {
      const threadId = uid('t');
      await store.createThread({ threadId, ownerId });
      return threadId;
    }

    describe('threads', () => {
      it('creates a thread and gets it back; an unknown id is null', async () => {
        const threadId = uid('t');
        const created = await store.createThread({ threadId, ownerId: 'owner-a', title: 'Trip' });
        expect(created).toMatchObject({ threadId, ownerId: 'owner-a', title: 'Trip' });
        expect(created.createdAt).toBeGreaterThan(0);
        expect(created.updatedAt).toBe(created.createdAt);
        expect(await store.getThread(threadId)).toEqual(created);
        expect(await store.getThread(uid('missing'))).toBeNull();
        expect(await store.lastSeq(threadId)).toBe(0);
      });

      it('refuses a second thread with the same id (conflict) and keeps the first', async () => {
        const threadId = uid('t');
        const first = await store.createThread({ threadId, ownerId: 'owner-a' });
        await expectStoreError(store.createThread({ threadId, ownerId: 'owner-b' }), 'conflict');
        expect(await store.getThread(threadId)).toEqual(first);
      });

      it('refuses invalid ids and titles with invalid_message', async () => {
        await expectStoreError(store.createThread({ threadId: '', ownerId: 'u' }), 'invalid_message');
        await expectStoreError(store.createThread({ threadId: 'a b', ownerId: 'u' }), 'invalid_message');
        await expectStoreError(
          store.createThread({ threadId: uid('t'), ownerId: 'x'.repeat(129) }),
          'invalid_message',
        );
        await expectStoreError(
          store.createThread({ threadId: uid('t'), ownerId: 'u', title: 'x'.repeat(201) }),
          'invalid_message',
        );
      });

      it("lists only the owner's threads, most recently updated first, up to the limit", async () => {
        const owner = uid('owner');
        const a = uid('t');
        const b = uid('t');
        const c = uid('t');
        await store.createThread({ threadId: a, ownerId: owner });
        await nextMillisecond();
        await store.createThread({ threadId: b, ownerId: owner });
        await nextMillisecond();
        await store.createThread({ threadId: c, ownerId: uid('someone-else') });
        await nextMillisecond();
        await store.append(a, [chunk(a, 'r1', 'x')]);
        const listed = await store.listThreads(owner);
        expect(listed.map((t) => t.threadId)).toEqual([a, b]);
        expect(listed[0]!.updatedAt).toBeGreaterThan(listed[0]!.createdAt);
        expect((await store.listThreads(owner, { limit: 1 })).map((t) => t.threadId)).toEqual([a]);
        expect(await store.listThreads(uid('nobody'))).toEqual([]);
        await expectStoreError(store.listThreads(owner, { limit: 0 }), 'invalid_message');
      });

      it('caps one page of threads at 1000 whatever limit is asked', async () => {
        const owner = uid('owner');
        for (let i = 0; i < 1001; i++) await store.createThread({ threadId: uid('t'), ownerId: owner });
        expect(await store.listThreads(owner)).toHaveLength(100);
        expect(await store.listThreads(owner, { limit: 5000 })).toHaveLength(1000);
      });
    });

    describe('append and read', () => {
      it('assigns consecutive seqs from 1 across batches and stores the sequenced JSON', async () => {
        const t = await newThread();
        const first = await store.append(t, [chunk(t, 'r1', 'a'), chunk(t, 'r1', 'b')]);
        const second = await store.append(t, [chunk(t, 'r1', 'c')]);
        expect([...first, ...second].map((e) => e.seq)).toEqual([1, 2, 3]);
        expect(await store.lastSeq(t)).toBe(3);
        for (const stored of [...first, ...second]) {
          const parsed = parseSequencedEvent(JSON.parse(stored.json));
          expect(parsed.seq).toBe(stored.seq);
          expect(parsed.threadId).toBe(t);
        }
        expect(JSON.parse(second[0]!.json)).toEqual({ ...chunk(t, 'r1', 'c'), seq: 3 });
        expect(await store.read(t, { afterSeq: 0, limit: 10 })).toEqual([...first, ...second]);
      });

      it('returns [] for an empty batch and writes nothing', async () => {
        const t = await newThread();
        expect(await store.append(t, [])).toEqual([]);
        expect(await store.lastSeq(t)).toBe(0);
      });

      it('stores nothing when any event of the batch is invalid (invalid_message carrying the ContractError)', async () => {
        const t = await newThread();
        await store.append(t, [chunk(t, 'r1', 'before')]);
        const bad = { ...chunk(t, 'r1', 'x'), delta: 42 } as unknown as AgentEvent;
        const error = await expectStoreError(
          store.append(t, [chunk(t, 'r1', 'ok'), chunk(t, 'r1', 'ok'), bad]),
          'invalid_message',
        );
        expect((error.cause as Error | undefined)?.name).toBe('ContractError');
        const unknownType = { type: 'NOPE', threadId: t, runId: 'r1', ts: TS } as unknown as AgentEvent;
        await expectStoreError(store.append(t, [chunk(t, 'r1', 'ok'), unknownType]), 'invalid_message');
        const extraKey = { ...chunk(t, 'r1', 'x'), seq: 99 } as unknown as AgentEvent;
        await expectStoreError(store.append(t, [extraKey]), 'invalid_message');
        expect(await store.lastSeq(t)).toBe(1);
        expect((await store.read(t, { afterSeq: 0, limit: 10 })).map((e) => e.seq)).toEqual([1]);
      });

      it('refuses every text chunk the contract refuses, even right after valid ones (no shortcut waves one through)', async () => {
        const t = await newThread();
        const ok = chunk(t, 'r1', 'ok');
        const bad: [string, unknown][] = [
          ['an empty runId', { ...ok, runId: '' }],
          ['a runId with a space', { ...ok, runId: 'r 1' }],
          ['a runId over the length bound', { ...ok, runId: 'r'.repeat(LIMITS.maxIdLength + 1) }],
          ['a numeric runId', { ...ok, runId: 7 }],
          ['a messageId with a space', { ...ok, messageId: 'm 1' }],
          ['a missing messageId', { ...ok, messageId: undefined }],
          ['a fractional ts', { ...ok, ts: 1.5 }],
          ['a negative ts', { ...ok, ts: -1 }],
          ['an unsafe integer ts', { ...ok, ts: 2 ** 53 }],
          ['a delta over the bound', { ...ok, delta: 'x'.repeat(LIMITS.maxDeltaLength + 1) }],
          ['a numeric delta', { ...ok, delta: 5 }],
          ['an extra key', { ...ok, extra: 1 }],
          ['an empty messageId', { ...ok, messageId: '' }],
          ['a missing threadId', { ...ok, threadId: undefined }],
          ['a missing runId', { ...ok, runId: undefined }],
        ];
        for (const [name, value] of bad) {
          const error = await expectStoreError(
            store.append(t, [ok, chunk(t, 'r2', 'ok', 'msg-2'), value as AgentEvent]),
            'invalid_message',
          );
          expect(error.message, name).toContain('event [2]');
          // And as the first event of a batch, before any id has been seen.
          await expectStoreError(store.append(t, [value as AgentEvent]), 'invalid_message');
        }
        expect(await store.lastSeq(t)).toBe(0);
        // What it accepts it stores exactly: the event as given, plus its seq.
        await store.append(t, [ok, chunk(t, 'r2', 'next', 'msg-2')]);
        const stored = await store.read(t, { afterSeq: 0, limit: 10 });
        expect(stored.map((e) => JSON.parse(e.json) as unknown)).toEqual([
          { ...ok, seq: 1 },
          { ...chunk(t, 'r2', 'next', 'msg-2'), seq: 2 },
        ]);
      });

      it("refuses an event of another thread in the batch and stores nothing (a writer can't cross threads)", async () => {
        const t = await newThread();
        const other = await newThread();
        await expectStoreError(
          store.append(t, [chunk(t, 'r1', 'a'), chunk(other, 'r1', 'b')]),
          'invalid_message',
        );
        expect(await store.lastSeq(t)).toBe(0);
        expect(await store.lastSeq(other)).toBe(0);
      });

      it('refuses to append to a thread that does not exist (not_found)', async () => {
        const ghost = uid('ghost');
        await expectStoreError(store.append(ghost, [chunk(ghost, 'r1', 'a')]), 'not_found');
        expect(await store.lastSeq(ghost)).toBe(0);
        expect(await store.getThread(ghost)).toBeNull();
      });

      it('reads after a seq with a limit, in pages, ascending', async () => {
        const t = await newThread();
        const events = Array.from({ length: 25 }, (_, i) => chunk(t, 'r1', `d${i}`));
        const stored = await store.append(t, events);
        expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
        const page1 = await store.read(t, { afterSeq: 0, limit: 10 });
        const page2 = await store.read(t, { afterSeq: 10, limit: 10 });
        const page3 = await store.read(t, { afterSeq: 20, limit: 10 });
        expect(page1.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(page2[0]!.seq).toBe(11);
        expect(page3.map((e) => e.seq)).toEqual([21, 22, 23, 24, 25]);
        expect([...page1, ...page2, ...page3]).toEqual(stored);
        expect(await store.read(t, { afterSeq: 25, limit: 10 })).toEqual([]);
        expect(await store.read(t, { afterSeq: 1000, limit: 10 })).toEqual([]);
        expect(await store.read(uid('missing'), { afterSeq: 0, limit: 10 })).toEqual([]);
        const delta = (e: { json: string }) => (JSON.parse(e.json) as { delta: string }).delta;
        expect(page2.map(delta)).toEqual(events.slice(10, 20).map((e) => e.delta));
      });

      it('refuses a bad read cursor or limit with invalid_message', async () => {
        const t = await newThread();
        await expectStoreError(store.read(t, { afterSeq: -1, limit: 10 }), 'invalid_message');
        await expectStoreError(store.read(t, { afterSeq: 0, limit: 0 }), 'invalid_message');
        await expectStoreError(store.read(t, { afterSeq: 0.5, limit: 10 }), 'invalid_message');
      });

      it('keeps a large batch whole and in order', async () => {
        const t = await newThread();
        const n = 2000;
        const stored = await store.append(
          t,
          Array.from({ length: n }, (_, i) => chunk(t, 'r1', String(i))),
        );
        expect(stored).toHaveLength(n);
        const back = await store.read(t, { afterSeq: 0, limit: n });
        expect(back).toEqual(stored);
        expect(
          back.every(
            (e, i) => e.seq === i + 1 && (JSON.parse(e.json) as { delta: string }).delta === String(i),
          ),
        ).toBe(true);
      });

      it('never hands out a seq twice or leaves a hole under many parallel appends', async () => {
        const t = await newThread();
        const calls = Array.from({ length: 40 }, (_, i) =>
          store.append(
            t,
            Array.from({ length: (i % 5) + 1 }, (_, j) => chunk(t, 'r1', `${i}.${j}`)),
          ),
        );
        const results = await Promise.all(calls);
        const total = results.reduce((n, r) => n + r.length, 0);
        for (const r of results) {
          // One call's events are consecutive: a batch is never interleaved with another writer's.
          for (let k = 1; k < r.length; k++) expect(r[k]!.seq).toBe(r[k - 1]!.seq + 1);
        }
        const seqs = results
          .flat()
          .map((e) => e.seq)
          .sort((a, b) => a - b);
        expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i + 1));
        expect(await store.lastSeq(t)).toBe(total);
        const back = await store.read(t, { afterSeq: 0, limit: total + 10 });
        expect(back.map((e) => e.seq)).toEqual(seqs);
      });
    });

    describe('appendMany (optional group commit)', () => {
      /** The adapter's appendMany, or a skip: the method is optional on the port. */
      function appendManyOf(ctx: { skip(note?: string): never }): NonNullable<EventStore['appendMany']> {
        if (!store.appendMany) ctx.skip(`${name} does not offer appendMany (the relay appends per thread)`);
        return store.appendMany!.bind(store);
      }

      it('appends several threads in one call: per-thread consecutive seqs, sequenced JSON, results in order', async (ctx) => {
        const appendMany = appendManyOf(ctx);
        const a = await newThread();
        const b = await newThread();
        await store.append(a, [chunk(a, 'r1', 'earlier')]);
        const result = await appendMany([
          { threadId: a, events: [chunk(a, 'r1', 'a1'), chunk(a, 'r1', 'a2')] },
          { threadId: b, events: [chunk(b, 'r1', 'b1')] },
          { threadId: a, events: [chunk(a, 'r1', 'a3')] },
          { threadId: b, events: [] },
        ]);
        expect(result.map((r) => r.map((e) => e.seq))).toEqual([[2, 3], [1], [4], []]);
        expect(JSON.parse(result[0]![1]!.json)).toEqual({ ...chunk(a, 'r1', 'a2'), seq: 3 });
        expect(JSON.parse(result[1]![0]!.json)).toEqual({ ...chunk(b, 'r1', 'b1'), seq: 1 });
        expect(await store.read(a, { afterSeq: 1, limit: 10 })).toEqual([...result[0]!, ...result[2]!]);
        expect(await store.read(b, { afterSeq: 0, limit: 10 })).toEqual(result[1]);
        expect(await store.lastSeq(a)).toBe(4);
        expect(await store.lastSeq(b)).toBe(1);
        expect(await appendMany([])).toEqual([]);
      });

      it('ends runs on terminal events, each in its own thread only', async (ctx) => {
        const appendMany = appendManyOf(ctx);
        const a = await newThread();
        const b = await newThread();
        const runA = uid('run');
        const runB = uid('run');
        await store.startRun(startInput(a, runA, 'cm-a'));
        await store.startRun(startInput(b, runB, 'cm-b'));
        await appendMany([
          { threadId: a, events: [chunk(a, runA, 'x'), finished(a, runA)] },
          // A terminal event naming run A inside thread B's batch must not end run A (nor B).
          { threadId: b, events: [finished(b, runA), chunk(b, runB, 'y')] },
        ]);
        expect((await store.getRun(runA))?.status).toBe('finished');
        expect((await store.getRun(runB))?.status).toBe('running');
        await appendMany([{ threadId: b, events: [failed(b, runB)] }]);
        expect((await store.getRun(runB))?.status).toBe('failed');
      });

      it('rejects the whole call when one batch is invalid, naming it, and stores nothing for any thread', async (ctx) => {
        const appendMany = appendManyOf(ctx);
        const a = await newThread();
        const b = await newThread();
        const runA = uid('run');
        await store.startRun(startInput(a, runA, 'cm-a'));
        const bad = { ...chunk(b, 'r1', 'x'), delta: 42 } as unknown as AgentEvent;
        const error = await expectStoreError(
          appendMany([
            { threadId: a, events: [chunk(a, runA, 'ok'), finished(a, runA)] },
            { threadId: b, events: [chunk(b, 'r1', 'ok'), bad] },
          ]),
          'invalid_message',
        );
        expect(error.message).toContain('batch [1]');
        // An event of another thread inside a batch is refused the same way.
        await expectStoreError(
          appendMany([
            { threadId: a, events: [chunk(a, runA, 'ok')] },
            { threadId: b, events: [chunk(a, runA, 'smuggled')] },
          ]),
          'invalid_message',
        );
        await expectStoreError(
          appendMany([{ threadId: 'bad id!', events: [] }] as unknown as Parameters<typeof appendMany>[0]),
          'invalid_message',
        );
        expect(await store.lastSeq(a)).toBe(1);
        expect(await store.lastSeq(b)).toBe(0);
        expect((await store.getRun(runA))?.status).toBe('running');
      });

      it('rejects the whole call with not_found when one thread does not exist, storing nothing', async (ctx) => {
        const appendMany = appendManyOf(ctx);
        const a = await newThread();
        const runA = uid('run');
        await store.startRun(startInput(a, runA, 'cm-a'));
        const ghost = uid('ghost');
        await expectStoreError(
          appendMany([
            { threadId: a, events: [chunk(a, runA, 'ok'), finished(a, runA)] },
            { threadId: ghost, events: [chunk(ghost, 'r1', 'x')] },
          ]),
          'not_found',
        );
        expect(await store.lastSeq(a)).toBe(1);
        expect((await store.getRun(runA))?.status).toBe('running');
        expect(await store.getThread(ghost)).toBeNull();
      });

      it('never hands out a seq twice or leaves a hole when appendMany and append race on the same threads', async (ctx) => {
        const appendMany = appendManyOf(ctx);
        const threads = [await newThread(), await newThread(), await newThread()];
        const calls: Promise<StoredEvent[][]>[] = [];
        for (let i = 0; i < 30; i++) {
          if (i % 3 === 0) {
            const t = threads[i % threads.length]!;
            calls.push(store.append(t, [chunk(t, 'r1', `s${i}`)]).then((r) => [r]));
          } else {
            calls.push(
              appendMany(
                threads.map((t, k) => ({
                  threadId: t,
                  events: Array.from({ length: ((i + k) % 3) + 1 }, (_, j) => chunk(t, 'r1', `${i}.${j}`)),
                })),
              ),
            );
          }
        }
        await Promise.all(calls);
        for (const t of threads) {
          const last = await store.lastSeq(t);
          const back = await store.read(t, { afterSeq: 0, limit: last + 10 });
          expect(back.map((e) => e.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
        }
      });
    });

    describe('startRuns (optional grouped run start)', () => {
      /** The adapter's startRuns, or a skip: the method is optional on the port. */
      function startRunsOf(ctx: { skip(note?: string): never }): NonNullable<EventStore['startRuns']> {
        if (!store.startRuns) ctx.skip(`${name} does not offer startRuns (the relay starts runs one by one)`);
        return store.startRuns!.bind(store);
      }

      it("starts several threads' runs in one call, each answered as startRun would, in order", async (ctx) => {
        const startRuns = startRunsOf(ctx);
        const a = await newThread();
        const b = await newThread();
        const busy = await newThread();
        const done = await newThread();
        await store.append(a, [chunk(a, 'r0', 'earlier')]);
        const busyRun = uid('run');
        await store.startRun(startInput(busy, busyRun, 'cm-busy'));
        const doneRun = uid('run');
        await store.startRun(startInput(done, doneRun, 'cm-done'));
        await store.append(done, [finished(done, doneRun)]);
        const [runA, runB, runA2, runB2, runBusy, runDone] = Array.from({ length: 6 }, () => uid('run'));
        const results = await startRuns([
          startInput(a, runA!, 'cm-1'),
          startInput(b, runB!, 'cm-1'),
          startInput(a, runA2!, 'cm-2'), // a's run from this very call is running
          startInput(b, runB2!, 'cm-1'), // same message as this call's earlier input
          startInput(busy, runBusy!, 'cm-new'),
          startInput(done, runDone!, 'cm-done'), // seen before, its run already ended
        ]);
        expect(results.map((r) => r.status)).toEqual([
          'started',
          'started',
          'run_active',
          'duplicate',
          'run_active',
          'duplicate',
        ]);
        const [ra, rb, ra2, rb2, rbusy, rdone] = results;
        if (ra?.status !== 'started' || rb?.status !== 'started') throw new Error('expected started');
        expect(ra.run).toMatchObject({
          runId: runA,
          threadId: a,
          status: 'running',
          clientMessageId: 'cm-1',
        });
        expect(ra.userMessage.seq).toBe(2);
        expect(JSON.parse(ra.userMessage.json)).toEqual({
          ...userMessage(a, runA!, 'cm-1', 'user-1'),
          seq: 2,
        });
        expect(rb.userMessage.seq).toBe(1);
        if (ra2?.status === 'run_active') expect(ra2.activeRun.runId).toBe(runA);
        if (rb2?.status === 'duplicate') expect(rb2.run.runId).toBe(runB);
        if (rbusy?.status === 'run_active') expect(rbusy.activeRun.runId).toBe(busyRun);
        if (rdone?.status === 'duplicate')
          expect(rdone.run).toMatchObject({ runId: doneRun, status: 'finished' });
        expect(await store.read(a, { afterSeq: 1, limit: 10 })).toEqual([ra.userMessage]);
        expect(await store.read(b, { afterSeq: 0, limit: 10 })).toEqual([rb.userMessage]);
        expect(await store.lastSeq(busy)).toBe(1);
        expect(await store.lastSeq(done)).toBe(2);
        expect(await store.activeRun(a)).toEqual(ra.run);
        expect(await store.getRun(runA2!)).toBeNull();
        expect(await store.getRun(runB2!)).toBeNull();
        expect(await startRuns([])).toEqual([]);
      });

      it('is all or nothing: an invalid input, an unknown thread or a taken run id stores nothing for anyone', async (ctx) => {
        const startRuns = startRunsOf(ctx);
        const a = await newThread();
        const b = await newThread();
        const taken = uid('run');
        const other = await newThread();
        await store.startRun(startInput(other, taken, 'cm-x'));
        const good = () => [startInput(a, uid('run'), 'cm-1'), startInput(b, uid('run'), 'cm-1')];
        const mismatched = { ...startInput(b, uid('run'), 'cm-2'), clientMessageId: 'cm-other' };
        await expectStoreError(startRuns([...good(), mismatched]), 'invalid_message');
        await expectStoreError(
          startRuns([...good(), startInput(uid('ghost'), uid('run'), 'cm-1')]),
          'not_found',
        );
        const c = await newThread();
        await expectStoreError(startRuns([...good(), startInput(c, taken, 'cm-9')]), 'conflict');
        const twice = uid('run');
        await expectStoreError(
          startRuns([startInput(a, twice, 'cm-1'), startInput(b, twice, 'cm-1')]),
          'conflict',
        );
        await expectStoreError(
          startRuns('nope' as unknown as Parameters<typeof startRuns>[0]),
          'invalid_message',
        );
        for (const t of [a, b, c]) {
          expect(await store.lastSeq(t)).toBe(0);
          expect(await store.activeRun(t)).toBeNull();
        }
        // Nothing was half-written: the same messages start normally afterwards.
        const after = await startRuns(good());
        expect(after.map((r) => r.status)).toEqual(['started', 'started']);
      });

      it('never starts two runs of one thread when startRuns and startRun race', async (ctx) => {
        const startRuns = startRunsOf(ctx);
        const t = await newThread();
        const results = await Promise.all([
          startRuns(Array.from({ length: 5 }, (_, i) => startInput(t, uid('run'), `cm-a${i}`))),
          store.startRun(startInput(t, uid('run'), 'cm-b')),
          startRuns([startInput(t, uid('run'), 'cm-c')]),
        ]);
        const statuses = [...results[0], results[1], ...results[2]].map((r) => r.status);
        expect(statuses.filter((s) => s === 'started')).toHaveLength(1);
        expect(await store.lastSeq(t)).toBe(1);
      });
    });

    describe('runs', () => {
      it('starts a run: USER_MESSAGE appended with the next seq, run recorded as running', async () => {
        const t = await newThread();
        await store.append(t, [chunk(t, 'r0', 'earlier')]);
        const runId = uid('run');
        const result = await store.startRun(startInput(t, runId, 'cm-1'));
        if (result.status !== 'started') throw new Error(`expected started, got ${result.status}`);
        expect(result.run).toMatchObject({
          runId,
          threadId: t,
          userId: 'user-1',
          clientMessageId: 'cm-1',
          status: 'running',
        });
        expect(result.run.endedAt).toBeUndefined();
        expect(result.userMessage.seq).toBe(2);
        expect(JSON.parse(result.userMessage.json)).toEqual({
          ...userMessage(t, runId, 'cm-1', 'user-1'),
          seq: 2,
        });
        expect(await store.read(t, { afterSeq: 1, limit: 10 })).toEqual([result.userMessage]);
        expect(await store.getRun(runId)).toEqual(result.run);
        expect(await store.activeRun(t)).toEqual(result.run);
        expect((await store.listRunningRuns()).map((r) => r.runId)).toContain(runId);
        expect(await store.getRun(uid('nope'))).toBeNull();
      });

      it('is idempotent on clientMessageId: a retry returns the first run and writes nothing, even after it ended', async () => {
        const t = await newThread();
        const runId = uid('run');
        await store.startRun(startInput(t, runId, 'cm-1'));
        const retry = await store.startRun(startInput(t, uid('run'), 'cm-1'));
        expect(retry.status).toBe('duplicate');
        if (retry.status === 'duplicate') expect(retry.run.runId).toBe(runId);
        expect(await store.lastSeq(t)).toBe(1);
        await store.append(t, [finished(t, runId)]);
        const late = await store.startRun(startInput(t, uid('run'), 'cm-1'));
        expect(late.status).toBe('duplicate');
        if (late.status === 'duplicate') expect(late.run).toMatchObject({ runId, status: 'finished' });
        expect(await store.lastSeq(t)).toBe(2);
      });

      it('refuses a second run while one is running (run_active), writing nothing', async () => {
        const t = await newThread();
        const runId = uid('run');
        await store.startRun(startInput(t, runId, 'cm-1'));
        const second = await store.startRun(startInput(t, uid('run'), 'cm-2'));
        expect(second.status).toBe('run_active');
        if (second.status === 'run_active') expect(second.activeRun.runId).toBe(runId);
        expect(await store.lastSeq(t)).toBe(1);
        // Another thread is not blocked by this one.
        const other = await newThread();
        expect((await store.startRun(startInput(other, uid('run'), 'cm-2'))).status).toBe('started');
      });

      it('ends the run in the same append as RUN_FINISHED, then allows the next run', async () => {
        const t = await newThread();
        const runId = uid('run');
        await store.startRun(startInput(t, runId, 'cm-1'));
        const stored = await store.append(t, [chunk(t, runId, 'hi'), finished(t, runId)]);
        expect(stored.map((e) => e.seq)).toEqual([2, 3]);
        const run = await store.getRun(runId);
        expect(run?.status).toBe('finished');
        expect(run?.endedAt).toBeGreaterThan(0);
        expect(await store.activeRun(t)).toBeNull();
        expect((await store.listRunningRuns()).map((r) => r.runId)).not.toContain(runId);
        const next = await store.startRun(startInput(t, uid('run'), 'cm-2'));
        expect(next.status).toBe('started');
        if (next.status === 'started') expect(next.userMessage.seq).toBe(4);
      });

      it('marks the run failed on RUN_ERROR', async () => {
        const t = await newThread();
        const runId = uid('run');
        await store.startRun(startInput(t, runId, 'cm-1'));
        await store.append(t, [failed(t, runId)]);
        expect((await store.getRun(runId))?.status).toBe('failed');
        expect(await store.activeRun(t)).toBeNull();
      });

      it("does not end a run from another thread's log, nor from an invalid batch", async () => {
        const a = await newThread();
        const b = await newThread();
        const runA = uid('run');
        await store.startRun(startInput(a, runA, 'cm-1'));
        // A terminal event naming run A, written into thread B: run A must stay running.
        await store.append(b, [finished(b, runA)]);
        expect((await store.getRun(runA))?.status).toBe('running');
        const bad = { ...chunk(a, runA, 'x'), messageId: '' } as AgentEvent;
        await expectStoreError(store.append(a, [finished(a, runA), bad]), 'invalid_message');
        expect((await store.getRun(runA))?.status).toBe('running');
        expect(await store.lastSeq(a)).toBe(1);
      });

      it('lists every running run across threads and drops ended ones', async () => {
        const a = await newThread();
        const b = await newThread();
        const runA = uid('run');
        const runB = uid('run');
        await store.startRun(startInput(a, runA, 'cm-1'));
        await store.startRun(startInput(b, runB, 'cm-1'));
        let running = (await store.listRunningRuns()).map((r) => r.runId);
        expect(running).toEqual(expect.arrayContaining([runA, runB]));
        await store.append(a, [failed(a, runA)]);
        running = (await store.listRunningRuns()).map((r) => r.runId);
        expect(running).toContain(runB);
        expect(running).not.toContain(runA);
      });

      it('starts a regenerate with its RUN_STARTED (regenerates) as the first event: no USER_MESSAGE, same rules', async () => {
        const t = await newThread();
        const first = uid('run');
        await store.startRun(startInput(t, first, 'cm-1'));
        await store.append(t, [finished(t, first)]);
        const runId = uid('run');
        const started = {
          type: 'RUN_STARTED' as const,
          threadId: t,
          runId,
          ts: TS,
          regenerates: first,
        };
        const input = {
          threadId: t,
          runId,
          userId: 'user-1',
          clientMessageId: 'cm-regen',
          userMessage: started,
        };
        const result = await store.startRun(input);
        if (result.status !== 'started') throw new Error(`expected started, got ${result.status}`);
        expect(result.run).toMatchObject({ runId, clientMessageId: 'cm-regen', status: 'running' });
        expect(JSON.parse(result.userMessage.json)).toEqual({ ...started, seq: 3 });
        // The same key again: the first run, nothing written; another key while it runs: run_active.
        const again = uid('run');
        const retry = await store.startRun({
          ...input,
          runId: again,
          userMessage: { ...started, runId: again },
        });
        expect(retry.status).toBe('duplicate');
        if (retry.status === 'duplicate') expect(retry.run.runId).toBe(runId);
        const other = uid('run');
        const busy = await store.startRun({
          ...input,
          runId: other,
          clientMessageId: 'cm-regen-2',
          userMessage: { ...started, runId: other },
        });
        expect(busy.status).toBe('run_active');
        expect(await store.lastSeq(t)).toBe(3);
        // A RUN_STARTED without `regenerates`, or of another run, is refused.
        const { regenerates: _dropped, ...bare } = started;
        const plain = { ...input, clientMessageId: 'cm-x', userMessage: bare };
        await expectStoreError(store.startRun(plain), 'invalid_message');
        const wrongRun = {
          ...input,
          clientMessageId: 'cm-y',
          userMessage: { ...started, runId: uid('run') },
        };
        await expectStoreError(store.startRun(wrongRun), 'invalid_message');
        expect(await store.lastSeq(t)).toBe(3);
      });

      it('refuses inconsistent startRun input and unknown threads', async () => {
        const t = await newThread();
        const runId = uid('run');
        const mismatched = {
          ...startInput(t, runId, 'cm-1'),
          userMessage: userMessage(t, runId, 'cm-other', 'user-1'),
        };
        await expectStoreError(store.startRun(mismatched), 'invalid_message');
        const notUser = { ...startInput(t, runId, 'cm-1'), userMessage: chunk(t, runId, 'x') };
        await expectStoreError(store.startRun(notUser), 'invalid_message');
        const ghost = uid('ghost');
        await expectStoreError(store.startRun(startInput(ghost, runId, 'cm-1')), 'not_found');
        expect(await store.lastSeq(t)).toBe(0);
        expect(await store.getRun(runId)).toBeNull();
      });

      it('refuses a runId already used (conflict)', async () => {
        const a = await newThread();
        const b = await newThread();
        const runId = uid('run');
        await store.startRun(startInput(a, runId, 'cm-1'));
        await expectStoreError(store.startRun(startInput(b, runId, 'cm-1')), 'conflict');
        expect(await store.lastSeq(b)).toBe(0);
      });

      it('starts exactly one run when the same send races, and one when different sends race', async () => {
        const t = await newThread();
        const same = await Promise.all(
          Array.from({ length: 10 }, () => store.startRun(startInput(t, uid('run'), 'cm-same'))),
        );
        expect(same.filter((r) => r.status === 'started')).toHaveLength(1);
        expect(same.filter((r) => r.status === 'duplicate')).toHaveLength(9);
        const runIds = new Set(
          same.map((r) => (r.status === 'run_active' ? r.activeRun.runId : r.run.runId)),
        );
        expect(runIds.size).toBe(1);
        const u = await newThread();
        const different = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.startRun(startInput(u, uid('run'), `cm-${i}`))),
        );
        expect(different.filter((r) => r.status === 'started')).toHaveLength(1);
        expect(different.filter((r) => r.status === 'run_active')).toHaveLength(9);
        expect(await store.lastSeq(t)).toBe(1);
        expect(await store.lastSeq(u)).toBe(1);
      });
    });

    describe('run leases (optional: renewLeases, claimRuns)', () => {
      /** The second instance's handle on the same data (closed after the test). */
      let second: EventStore | undefined;
      afterEach(async () => {
        await second?.close();
        second = undefined;
      });
      async function other(): Promise<EventStore> {
        second ??= current?.openSecond ? await current.openSecond() : store;
        return second;
      }
      function skipUnlessLeases(ctx: { skip(note?: string): void }) {
        if (!store.renewLeases || !store.claimRuns) ctx.skip('the store has no run leases');
      }
      const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      /** A run started on a new thread with a lease of `owner` for `ttlMs`. */
      async function leased(owner: string, ttlMs: number): Promise<{ threadId: string; runId: string }> {
        const threadId = await newThread();
        const runId = uid('run');
        const r = await store.startRun({ ...startInput(threadId, runId, 'cm-1'), lease: { owner, ttlMs } });
        expect(r.status).toBe('started');
        return { threadId, runId };
      }
      /** Claims as `owner` until a call returns nothing, and keeps only `runIds` (the database may be shared). */
      async function claimAll(
        s: EventStore,
        input: { owner: string; ttlMs: number; orphans?: boolean },
        runIds: readonly string[],
      ) {
        const out = [];
        for (;;) {
          const batch = await s.claimRuns!({ ...input, limit: 1000 });
          out.push(...batch.filter((r) => runIds.includes(r.runId)));
          if (batch.length < 1000) return out;
        }
      }

      it('records the lease with the run, the same for a second instance; none without one', async (ctx) => {
        skipUnlessLeases(ctx);
        const before = Date.now();
        const { threadId, runId } = await leased('inst-a', 60_000);
        const run = await (await other()).getRun(runId);
        expect(run?.lease?.owner).toBe('inst-a');
        // The store's clock may be another machine's: allow it a minute of skew either way.
        expect(run!.lease!.expiresAt).toBeGreaterThan(before);
        expect(run!.lease!.expiresAt).toBeLessThan(before + 180_000);
        expect(await store.getRun(runId)).toEqual(run);
        expect(await store.activeRun(threadId)).toEqual(run);
        const t = await newThread();
        const plain = uid('run');
        await store.startRun(startInput(t, plain, 'cm-1'));
        expect((await store.getRun(plain))?.lease).toBeUndefined();
      });

      it('renews in one call exactly the running runs the owner holds, seen by the other instance', async (ctx) => {
        skipUnlessLeases(ctx);
        const a1 = await leased('inst-a', 50);
        const a2 = await leased('inst-a', 50);
        const ended = await leased('inst-a', 50);
        const b1 = await leased('inst-b', 50);
        await store.append(ended.threadId, [finished(ended.threadId, ended.runId)]);
        const was = (await store.getRun(a1.runId))!.lease!.expiresAt;
        const renewed = await (
          await other()
        ).renewLeases!('inst-a', [a1.runId, a2.runId, ended.runId, b1.runId, uid('unknown-run')], 60_000);
        expect([...renewed].sort()).toEqual([a1.runId, a2.runId].sort());
        const now = (await store.getRun(a1.runId))!.lease!;
        expect(now.owner).toBe('inst-a');
        expect(now.expiresAt).toBeGreaterThan(was);
        expect((await store.getRun(b1.runId))!.lease!.owner).toBe('inst-b');
        expect(await store.renewLeases!('inst-a', [], 1000)).toEqual([]);
        // Renewed leases are not expired: nobody can claim them.
        await sleep(80);
        const claimed = await claimAll(store, { owner: 'inst-c', ttlMs: 60_000 }, [a1.runId, a2.runId]);
        expect(claimed).toEqual([]);
      });

      it('claims only expired leases, atomically hands them to the claimer, and the old owner can no longer renew them', async (ctx) => {
        skipUnlessLeases(ctx);
        const expired = await leased('inst-a', 1);
        const live = await leased('inst-a', 60_000);
        const plain = uid('run');
        await store.startRun(startInput(await newThread(), plain, 'cm-1'));
        await sleep(30);
        const b = await other();
        const claimed = await claimAll(b, { owner: 'inst-b', ttlMs: 60_000 }, [
          expired.runId,
          live.runId,
          plain,
        ]);
        expect(claimed.map((r) => r.runId)).toEqual([expired.runId]);
        expect(claimed[0]).toMatchObject({ status: 'running', lease: { owner: 'inst-b' } });
        expect((await store.getRun(expired.runId))?.lease).toEqual(claimed[0]!.lease);
        expect(await store.renewLeases!('inst-a', [expired.runId, live.runId], 60_000)).toEqual([live.runId]);
        expect(await b.renewLeases!('inst-b', [expired.runId], 60_000)).toEqual([expired.runId]);
        // Claimed once: a second sweep finds nothing more.
        expect(await claimAll(store, { owner: 'inst-c', ttlMs: 60_000 }, [expired.runId])).toEqual([]);
      });

      it('never claims ended runs, and claims orphans (no lease, or held by the claimer itself) only when asked', async (ctx) => {
        skipUnlessLeases(ctx);
        const ended = await leased('inst-a', 1);
        await store.append(ended.threadId, [failed(ended.threadId, ended.runId)]);
        const mine = await leased('inst-o', 60_000);
        const plain = uid('run');
        await store.startRun(startInput(await newThread(), plain, 'cm-1'));
        const theirs = await leased('inst-p', 60_000);
        await sleep(30);
        const ids = [ended.runId, mine.runId, plain, theirs.runId];
        expect(await claimAll(store, { owner: 'inst-o', ttlMs: 60_000 }, ids)).toEqual([]);
        const orphans = await claimAll(await other(), { owner: 'inst-o', ttlMs: 60_000, orphans: true }, ids);
        expect(orphans.map((r) => r.runId).sort()).toEqual([mine.runId, plain].sort());
        expect((await store.getRun(plain))?.lease?.owner).toBe('inst-o');
        expect((await store.getRun(theirs.runId))?.lease?.owner).toBe('inst-p');
        expect((await store.getRun(ended.runId))?.status).toBe('failed');
      });

      it('never hands one run to two instances claiming at once', async (ctx) => {
        skipUnlessLeases(ctx);
        const runs = await Promise.all(Array.from({ length: 12 }, () => leased('inst-dead', 1)));
        const ids = runs.map((r) => r.runId);
        await sleep(30);
        const b = await other();
        const claims = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 ? store : b).claimRuns!({ owner: `inst-${i}`, ttlMs: 60_000, limit: 3 }),
          ),
        );
        // Anything left over (every call took at most 3) goes to one more sweep.
        const rest = await claimAll(store, { owner: 'inst-last', ttlMs: 60_000 }, ids);
        const got = [...claims.flat().filter((r) => ids.includes(r.runId)), ...rest].map((r) => r.runId);
        expect([...got].sort()).toEqual([...ids].sort());
        for (const claim of claims) expect(claim.length).toBeLessThanOrEqual(3);
      });

      it('refuses bad lease input with invalid_message', async (ctx) => {
        skipUnlessLeases(ctx);
        const t = await newThread();
        await expectStoreError(
          store.startRun({ ...startInput(t, uid('run'), 'cm-1'), lease: { owner: 'a b', ttlMs: 10 } }),
          'invalid_message',
        );
        await expectStoreError(
          store.startRun({ ...startInput(t, uid('run'), 'cm-1'), lease: { owner: 'a', ttlMs: 0 } }),
          'invalid_message',
        );
        expect(await store.lastSeq(t)).toBe(0);
        await expectStoreError(store.renewLeases!('a', 'nope' as never, 10), 'invalid_message');
        await expectStoreError(store.renewLeases!('a', ['r 1'], 10), 'invalid_message');
        await expectStoreError(store.renewLeases!('a', ['r1'], 1.5), 'invalid_message');
        await expectStoreError(store.claimRuns!({ owner: '', ttlMs: 10, limit: 1 }), 'invalid_message');
        await expectStoreError(store.claimRuns!({ owner: 'a', ttlMs: 10, limit: 0 }), 'invalid_message');
      });
    });

    describe('rename and delete a thread', () => {
      it('renames: the new title, updatedAt kept; null for an unknown thread; bad titles refused', async () => {
        const threadId = uid('t');
        const created = await store.createThread({ threadId, ownerId: 'owner-a', title: 'Trip' });
        await nextMillisecond();
        const renamed = await store.renameThread(threadId, 'Trip to Lisbon');
        expect(renamed).toEqual({ ...created, title: 'Trip to Lisbon' });
        expect(await store.getThread(threadId)).toEqual(renamed);
        expect(await store.renameThread(uid('missing'), 'x')).toBeNull();
        await expectStoreError(store.renameThread(threadId, 'x'.repeat(201)), 'invalid_message');
        await expectStoreError(store.renameThread(threadId, 42 as unknown as string), 'invalid_message');
        expect((await store.getThread(threadId))!.title).toBe('Trip to Lisbon');
      });

      it('with onlyIfUntitled sets a title once: never over a title the thread has', async () => {
        const threadId = await newThread();
        expect((await store.getThread(threadId))!.title).toBe('');
        const first = await store.renameThread(threadId, 'From the first message', { onlyIfUntitled: true });
        expect(first!.title).toBe('From the first message');
        const second = await store.renameThread(threadId, 'From another message', { onlyIfUntitled: true });
        expect(second!.title).toBe('From the first message');
        await store.renameThread(threadId, 'Renamed');
        expect((await store.renameThread(threadId, 'Auto', { onlyIfUntitled: true }))!.title).toBe('Renamed');
      });

      it('gives one title to an untitled thread when several are set at once', async () => {
        const threadId = await newThread();
        const titles = Array.from({ length: 8 }, (_, i) => `title ${i}`);
        const results = await Promise.all(
          titles.map((t) => store.renameThread(threadId, t, { onlyIfUntitled: true })),
        );
        const stored = (await store.getThread(threadId))!.title;
        expect(titles).toContain(stored);
        for (const r of results) expect(r!.title).toBe(stored);
      });

      it("deletes the thread with its events, runs and session items, and nothing of another thread's", async () => {
        const tools = toolPart(store);
        const owner = uid('owner');
        const gone = uid('t');
        const kept = uid('t');
        await store.createThread({ threadId: gone, ownerId: owner, title: 'Gone' });
        await store.createThread({ threadId: kept, ownerId: owner, title: 'Kept' });
        for (const t of [gone, kept]) {
          await store.startRun(startInput(t, `${t}-r1`, 'c1', owner));
          await store.append(t, [chunk(t, `${t}-r1`, 'hi'), finished(t, `${t}-r1`)]);
          await tools?.addSessionItems(t, [{ role: 'user', content: 'hello' }]);
        }
        await tools?.patchProfile(owner, { name: 'Ada' });
        expect(await store.deleteThread(gone)).toBe('deleted');

        expect(await store.getThread(gone)).toBeNull();
        expect(await store.read(gone, { afterSeq: 0, limit: 100 })).toEqual([]);
        expect(await store.lastSeq(gone)).toBe(0);
        expect(await store.getRun(`${gone}-r1`)).toBeNull();
        if (tools) expect(await tools.getSessionItems(gone)).toEqual([]);
        expect((await store.listThreads(owner)).map((t) => t.threadId)).toEqual([kept]);
        await expectStoreError(store.append(gone, [chunk(gone, 'r2', 'x')]), 'not_found');
        expect(await store.deleteThread(gone)).toBe('not_found');
        expect(await store.deleteThread(uid('missing'))).toBe('not_found');

        expect(await store.read(kept, { afterSeq: 0, limit: 100 })).toHaveLength(3);
        expect((await store.getRun(`${kept}-r1`))!.status).toBe('finished');
        if (tools) {
          expect(await tools.getSessionItems(kept)).toEqual([{ role: 'user', content: 'hello' }]);
          expect(await tools.getProfile(owner)).toEqual({ name: 'Ada' });
        }

        // The id can be used again: a new thread with nothing of the old one (the old clientMessageId is new).
        await store.createThread({ threadId: gone, ownerId: owner });
        const again = await store.startRun(startInput(gone, `${gone}-r2`, 'c1', owner));
        expect(again.status).toBe('started');
        if (again.status === 'started') expect(again.userMessage.seq).toBe(1);
        if (tools) expect(await tools.getSessionItems(gone)).toEqual([]);
      });

      it('refuses to delete while a run is running (run_active), removing nothing', async () => {
        const t = await newThread();
        await store.startRun(startInput(t, `${t}-r1`, 'c1'));
        expect(await store.deleteThread(t)).toBe('run_active');
        expect(await store.getThread(t)).not.toBeNull();
        expect(await store.read(t, { afterSeq: 0, limit: 10 })).toHaveLength(1);
        expect((await store.activeRun(t))!.runId).toBe(`${t}-r1`);
        await store.append(t, [failed(t, `${t}-r1`)]);
        expect(await store.deleteThread(t)).toBe('deleted');
      });

      it('never both deletes a thread and starts a run in it when the two race', async () => {
        for (let i = 0; i < 5; i++) {
          const t = await newThread();
          const [started, deleted] = await Promise.allSettled([
            store.startRun(startInput(t, `${t}-r1`, 'c1')),
            store.deleteThread(t),
          ]);
          expect(deleted.status).toBe('fulfilled');
          const outcome = (deleted as PromiseFulfilledResult<string>).value;
          if (outcome === 'deleted') {
            // The delete went first: the start finds no thread.
            expect(started.status).toBe('rejected');
            expect(((started as PromiseRejectedResult).reason as { code?: string }).code).toBe('not_found');
            expect(await store.getRun(`${t}-r1`)).toBeNull();
          } else {
            expect(outcome).toBe('run_active');
            expect(started.status).toBe('fulfilled');
            expect((await store.getThread(t))!.threadId).toBe(t);
          }
        }
      });
    });

    describe('retention (pruneOlderThan)', () => {
      /** Session items a pruned thread loses: `n` in a store that is a ToolStore too, else none. */
      const sessionCount = (n: number): number => (toolPart(store) ? n : 0);
      /** Removes every idle thread the shared database holds from earlier tests, so counts below are exact. */
      async function pruneEverythingIdle(): Promise<void> {
        await nextMillisecond();
        const cutoff = Date.now() + 1;
        while ((await store.pruneOlderThan(cutoff, { limit: 1000 })).more);
      }
      /** A thread with `runs` finished runs (user message + chunk + RUN_FINISHED each) and `items` session items. */
      async function idleThread(
        runs: number,
        items: number,
      ): Promise<{ threadId: string; runIds: string[] }> {
        const threadId = await newThread('retention-owner');
        const runIds: string[] = [];
        for (let i = 0; i < runs; i++) {
          const runId = uid('r');
          runIds.push(runId);
          await store.startRun(startInput(threadId, runId, uid('c')));
          await store.append(threadId, [chunk(threadId, runId, 'hi'), finished(threadId, runId)]);
        }
        if (items > 0)
          await toolPart(store)?.addSessionItems(
            threadId,
            Array.from({ length: items }, (_, i) => ({ i })),
          );
        return { threadId, runIds };
      }
      /** Waits a few ms on either side of the cutoff it returns: what was written before is older than it. */
      async function cutoffNow(): Promise<number> {
        await new Promise((resolve) => setTimeout(resolve, 5));
        const cutoff = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 5));
        return cutoff;
      }

      it('removes exactly the threads idle since before the cutoff, with their events, runs and session items; never one with a running run', async () => {
        await pruneEverythingIdle();
        const old = await idleThread(2, 3);
        const busy = await idleThread(1, 2);
        const busyRun = uid('r');
        await store.startRun(startInput(busy.threadId, busyRun, uid('c')));
        const cutoff = await cutoffNow();
        const recent = await idleThread(1, 1);

        const result = await store.pruneOlderThan(cutoff);
        // old: 2 × (user message, chunk, finished) = 6 events, 2 runs, 3 items.
        expect(result).toEqual({
          threads: 1,
          events: 6,
          runs: 2,
          sessionItems: sessionCount(3),
          more: false,
        });
        expect(await store.getThread(old.threadId)).toBeNull();
        expect(await store.read(old.threadId, { afterSeq: 0, limit: 100 })).toEqual([]);
        expect(await store.lastSeq(old.threadId)).toBe(0);
        expect((await toolPart(store)?.getSessionItems(old.threadId)) ?? []).toEqual([]);
        for (const runId of old.runIds) expect(await store.getRun(runId)).toBeNull();
        expect(await store.listThreads('retention-owner')).toHaveLength(2);

        // The thread with a run in progress is untouched, although it is older than the cutoff.
        expect(await store.getThread(busy.threadId)).not.toBeNull();
        expect(await store.read(busy.threadId, { afterSeq: 0, limit: 100 })).toHaveLength(4);
        expect((await toolPart(store)?.getSessionItems(busy.threadId)) ?? []).toHaveLength(sessionCount(2));
        expect((await store.activeRun(busy.threadId))?.runId).toBe(busyRun);
        expect((await store.getRun(busy.runIds[0]!))?.status).toBe('finished');
        // So is the recent one.
        expect(await store.read(recent.threadId, { afterSeq: 0, limit: 100 })).toHaveLength(3);
        expect((await toolPart(store)?.getSessionItems(recent.threadId)) ?? []).toHaveLength(sessionCount(1));

        // Nothing left to remove before that cutoff; the thread ended its run after it, so it is recent now.
        await store.append(busy.threadId, [finished(busy.threadId, busyRun)]);
        expect(await store.pruneOlderThan(cutoff)).toEqual({
          threads: 0,
          events: 0,
          runs: 0,
          sessionItems: 0,
          more: false,
        });
        // A removed thread's id can be used again, from seq 1.
        await store.createThread({ threadId: old.threadId, ownerId: 'retention-owner' });
        expect((await store.append(old.threadId, [chunk(old.threadId, 'r-new', 'x')]))[0]?.seq).toBe(1);
      });

      it('removes at most limit threads per call, oldest first, and says when there may be more', async () => {
        await pruneEverythingIdle();
        const first = await idleThread(1, 0);
        await nextMillisecond();
        const second = await idleThread(1, 0);
        await nextMillisecond();
        const third = await idleThread(0, 1);
        const cutoff = await cutoffNow();
        expect(await store.pruneOlderThan(cutoff, { limit: 2 })).toMatchObject({ threads: 2, more: true });
        expect(await store.getThread(first.threadId)).toBeNull();
        expect(await store.getThread(second.threadId)).toBeNull();
        expect(await store.getThread(third.threadId)).not.toBeNull();
        expect(await store.pruneOlderThan(cutoff, { limit: 2 })).toEqual({
          threads: 1,
          events: 0,
          runs: 0,
          sessionItems: sessionCount(1),
          more: false,
        });
      });

      it('refuses a bad cutoff or limit with invalid_message and removes nothing', async () => {
        const t = await idleThread(1, 1);
        const cutoff = await cutoffNow();
        for (const bad of [Number.NaN, -1, 1.5, '1' as unknown as number])
          await expectStoreError(store.pruneOlderThan(bad), 'invalid_message');
        for (const limit of [0, 1001, 2.5])
          await expectStoreError(store.pruneOlderThan(cutoff, { limit }), 'invalid_message');
        expect(await store.getThread(t.threadId)).not.toBeNull();
      });
    });

    describe('close', () => {
      it('rejects calls after close with code closed, and close is idempotent', async () => {
        const t = await newThread();
        await store.close();
        await store.close();
        await expectStoreError(store.getThread(t), 'closed');
        await expectStoreError(store.append(t, [chunk(t, 'r1', 'a')]), 'closed');
      });
    });
  });
}
