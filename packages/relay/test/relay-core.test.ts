import { afterEach, describe, expect, it } from 'vitest';
import { RelayError } from '../src/index.js';
import type { EventStore, Subscription } from '../src/index.js';
import { MemoryStore } from '../src/stores/memory.js';
import { makeRelay, readAll, tokens } from './helpers.js';
import type { Harness, StoreKind } from './helpers.js';

const A = { id: 'user-a' };
const B = { id: 'user-b' };
let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

/** Collects a subscription's events until `stop` says so. */
async function collect(
  sub: Subscription,
  stop: (e: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const stored of sub) {
    const e = JSON.parse(stored.json) as Record<string, unknown>;
    expect(e.seq).toBe(stored.seq);
    out.push(e);
    if (stop(e)) break;
  }
  return out;
}
const terminal = (e: Record<string, unknown>) => e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR';

async function expectCode(p: Promise<unknown>, code: string): Promise<RelayError> {
  const error = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RelayError);
  expect((error as RelayError).code).toBe(code);
  return error as RelayError;
}

describe.each<StoreKind>(['memory', 'sqlite'])('relay core on %s', (kind) => {
  it('stores the message, mints a scoped token, streams the run in order and ends it', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'hello', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    expect(run.request).toEqual({
      threadId: 't1',
      runId,
      user: { id: A.id },
      text: 'hello',
      tools: { baseUrl: 'http://127.0.0.1:9/api', token: `test-token.${runId}` },
    });
    expect(tokens.issued.at(-1)).toEqual({ userId: A.id, threadId: 't1', runId, tools: ['profile.patch'] });
    // No RUN_STARTED from this agent: the relay opens the run itself.
    run.push(run.chunk('Hel'), run.chunk('lo'), run.finished());
    const seen = await collect(sub, terminal);
    expect(seen.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(seen[0]).toMatchObject({ text: 'hello', clientMessageId: 'c1', userId: A.id, runId });
    expect(seen[2]).toMatchObject({ delta: 'Hello' });
    expect((await h.store.getRun(runId))?.status).toBe('finished');
    expect(sub.lastSeq).toBe(4);
  });

  it('is idempotent on clientMessageId and refuses a second run while one is active', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const first = await h.relay.send({ user: A, threadId: 't1', text: 'one', clientMessageId: 'c1' });
    const again = await h.relay.send({ user: A, threadId: 't1', text: 'one', clientMessageId: 'c1' });
    expect(again.runId).toBe(first.runId);
    await expectCode(
      h.relay.send({ user: A, threadId: 't1', text: 'two', clientMessageId: 'c2' }),
      'run_active',
    );
    const run = await h.agent.nextRun(0);
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    run.push(run.started(), run.finished());
    await collect(sub, terminal);
    const second = await h.relay.send({ user: A, threadId: 't1', text: 'two', clientMessageId: 'c2' });
    expect(second.runId).not.toBe(first.runId);
    expect((await h.agent.nextRun(1)).request.runId).toBe(second.runId);
    expect(h.agent.runs).toHaveLength(2);
    const log = await readAll(h.store, 't1');
    expect(log.filter((e) => e.event.type === 'USER_MESSAGE')).toHaveLength(2);
  });

  it('queues sends when asked, bounded by maxQueuedSends and queueTimeoutMs', async () => {
    h = await makeRelay(kind, {
      whenRunActive: 'queue',
      limits: { maxQueuedSends: 1, queueTimeoutMs: 5_000 },
    });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.relay.send({ user: A, threadId: 't1', text: 'one', clientMessageId: 'c1' });
    const queued = h.relay.send({ user: A, threadId: 't1', text: 'two', clientMessageId: 'c2' });
    await expectCode(
      h.relay.send({ user: A, threadId: 't1', text: 'three', clientMessageId: 'c3' }),
      'queue_full',
    );
    const run = await h.agent.nextRun(0);
    run.push(run.started(), run.finished());
    const { runId } = await queued;
    expect((await h.agent.nextRun(1)).request.runId).toBe(runId);

    await h.cleanup();
    h = await makeRelay(kind, { whenRunActive: 'queue', limits: { queueTimeoutMs: 50 } });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.relay.send({ user: A, threadId: 't1', text: 'one', clientMessageId: 'c1' });
    await expectCode(
      h.relay.send({ user: A, threadId: 't1', text: 'two', clientMessageId: 'c2' }),
      'run_active',
    );
  });

  it('coalesces text chunks for storage without changing the text, within the delta bound', async () => {
    h = await makeRelay(kind, { limits: { coalesceWindowMs: 20, maxCoalescedDeltaLength: 50 } });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    await h.relay.send({ user: A, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    const parts = Array.from({ length: 200 }, (_, i) => `w${i} `);
    run.push(run.started(), ...parts.slice(0, 100).map((p) => run.chunk(p)));
    run.push({
      type: 'TOOL_CALL_STARTED',
      threadId: 't1',
      runId: run.request.runId,
      ts: 1,
      toolCallId: 'tc1',
      toolName: 'x',
    });
    run.push(...parts.slice(100).map((p) => run.chunk(p)), run.finished());
    const seen = await collect(sub, terminal);
    const chunks = seen.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK');
    expect(chunks.length).toBeLessThan(60);
    for (const c of chunks) expect((c.delta as string).length).toBeLessThanOrEqual(50);
    expect(chunks.map((c) => c.delta).join('')).toBe(parts.join(''));
    // The tool call stays between the two halves of the text.
    const toolAt = seen.findIndex((e) => e.type === 'TOOL_CALL_STARTED');
    expect(
      seen
        .slice(0, toolAt)
        .filter((e) => e.type === 'TEXT_MESSAGE_CHUNK')
        .map((c) => c.delta)
        .join(''),
    ).toBe(parts.slice(0, 100).join(''));
    expect(seen.map((e) => e.seq)).toEqual(seen.map((_, i) => i + 1));
  });

  it('resumes from afterSeq with no gap and no duplicate while events keep arriving', async () => {
    h = await makeRelay(kind, { limits: { replayPageSize: 7 } });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.relay.send({ user: A, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    run.push(run.started());
    let i = 0;
    const feed = setInterval(() => {
      for (let k = 0; k < 5; k++) run.push(run.chunk(`${i++},`, `m${i % 3}`));
      if (i >= 400) {
        clearInterval(feed);
        run.push(run.finished());
      }
    }, 1);
    const subs: Promise<Record<string, unknown>[]>[] = [];
    for (const after of [0, 3, 10, 25]) {
      await new Promise((r) => setTimeout(r, 3));
      subs.push(
        h.relay.subscribe({ user: A, threadId: 't1', afterSeq: after }).then((s) => collect(s, terminal)),
      );
    }
    const results = await Promise.all(subs);
    const log = await readAll(h.store, 't1');
    for (const [k, after] of [0, 3, 10, 25].entries()) {
      expect(results[k]!.map((e) => e.seq)).toEqual(log.filter((e) => e.seq > after).map((e) => e.seq));
      expect(results[k]).toEqual(log.filter((e) => e.seq > after).map((e) => e.event));
    }
  });

  it('fails the run with a distinct code when the agent misbehaves', async () => {
    h = await makeRelay(kind, { limits: { agentIdleTimeoutMs: 150 } });
    const cases: [string, (run: Awaited<ReturnType<Harness['agent']['nextRun']>>) => void][] = [
      ['agent_stream_ended', (run) => (run.push(run.started(), run.chunk('x')), run.end())],
      ['agent_idle_timeout', (run) => run.push(run.started(), run.chunk('x'))],
      [
        'agent_stream_invalid',
        (run) => run.push(run.started(), { ...run.chunk('x'), runId: 'someone-else' }),
      ],
      ['agent_stream_invalid', (run) => run.push({ ...run.chunk('x'), threadId: 'other-thread' })],
      ['agent_stream_invalid', (run) => run.push({ ...run.chunk('x'), delta: 42 } as never)],
      // As the run's first chunk, before the relay has seen any messageId.
      ['agent_stream_invalid', (run) => run.push({ ...run.chunk('x'), messageId: '' })],
      ['agent_stream_invalid', (run) => run.push({ ...run.chunk('x'), messageId: undefined } as never)],
      ['agent_stream_invalid', (run) => run.push(run.started(), run.started())],
      [
        'agent_stream_invalid',
        (run) =>
          run.push({
            type: 'USER_MESSAGE',
            threadId: run.request.threadId,
            runId: run.request.runId,
            ts: 1,
            messageId: 'm',
            clientMessageId: 'c',
            userId: 'u',
            text: 'forged',
          }),
      ],
      ['internal_error', (run) => run.fail(new Error('runner blew up'))],
    ];
    for (const [index, [code, misbehave]] of cases.entries()) {
      const threadId = `t${index}`;
      await h.store.createThread({ threadId, ownerId: A.id });
      const sub = await h.relay.subscribe({ user: A, threadId, afterSeq: 0 });
      const { runId } = await h.relay.send({ user: A, threadId, text: 'go', clientMessageId: 'c1' });
      const run = await h.agent.nextRun(index);
      misbehave(run);
      const seen = await collect(sub, terminal);
      expect(seen.at(-1), `case ${index}`).toMatchObject({ type: 'RUN_ERROR', code, runId, threadId });
      expect(seen.filter((e) => e.runId !== runId)).toEqual([]);
      expect((await h.store.getRun(runId))?.status).toBe('failed');
      expect(run.signal.aborted || code === 'agent_stream_ended' || code === 'internal_error').toBe(true);
    }
    // Invalid streams and idle agents are also told to stop on their side.
    expect(h.agent.cancelled.length).toBeGreaterThanOrEqual(6);
  });

  it('cancels a run for its user only', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    run.push(run.started(), run.chunk('partial'));
    await expectCode(h.relay.cancel({ user: B, runId }), 'not_found');
    await expectCode(h.relay.cancel({ user: A, runId: 'no-such-run' }), 'not_found');
    await expectCode(h.relay.cancel({ user: A, runId: 'bad id!' }), 'invalid_message');
    expect(run.signal.aborted).toBe(false);
    await h.relay.cancel({ user: A, runId });
    expect(run.signal.aborted).toBe(true);
    const seen = await collect(sub, terminal);
    expect(seen.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'cancelled', runId });
    expect(h.agent.cancelled).toContain(runId);
    await h.relay.cancel({ user: A, runId }); // already ended: nothing happens
    expect((await readAll(h.store, 't1')).filter((e) => e.event.type === 'RUN_ERROR')).toHaveLength(1);
  });

  it('keeps threads apart: another user can neither send, subscribe nor publish into a thread by id', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await expectCode(
      h.relay.send({ user: B, threadId: 't1', text: 'x', clientMessageId: 'c1' }),
      'not_found',
    );
    await expectCode(h.relay.subscribe({ user: B, threadId: 't1', afterSeq: 0 }), 'not_found');
    await expectCode(
      h.relay.send({ user: A, threadId: 'missing', text: 'x', clientMessageId: 'c1' }),
      'not_found',
    );
    await expectCode(
      h.relay.send({ user: A, threadId: 't1', text: '', clientMessageId: 'c1' }),
      'invalid_message',
    );
    await expectCode(h.relay.subscribe({ user: A, threadId: 't1', afterSeq: -1 }), 'invalid_message');
    expect(await h.store.lastSeq('t1')).toBe(0);
    expect(h.agent.runs).toHaveLength(0);
  });

  it('publishes tool events in order with the run, and refuses the relay-only ones', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    run.push(run.started());
    await collect(sub, (e) => e.type === 'RUN_STARTED');
    const stored = await h.relay.publish('t1', [
      {
        type: 'STATE_CHANGED',
        threadId: 't1',
        runId,
        ts: 1,
        scope: 'profile',
        value: { displayName: 'Ada' },
      },
    ]);
    expect(stored).toHaveLength(1);
    expect(JSON.parse(stored[0]!.json)).toMatchObject({ type: 'STATE_CHANGED', seq: stored[0]!.seq });
    await expectCode(
      h.relay.publish('t1', [{ type: 'RUN_FINISHED', threadId: 't1', runId, ts: 1 }]),
      'invalid_message',
    );
    await expectCode(
      h.relay.publish('t1', [{ type: 'STATE_CHANGED', threadId: 't2', runId, ts: 1, scope: 'x', value: 1 }]),
      'invalid_message',
    );
    await expectCode(
      h.relay.publish('nope', [
        { type: 'STATE_CHANGED', threadId: 'nope', runId, ts: 1, scope: 'x', value: 1 },
      ]),
      'not_found',
    );
    run.push(run.finished());
    const rest = await collect(await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 }), terminal);
    expect(rest.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'STATE_CHANGED', 'RUN_FINISHED']);
  });

  it('fails runs a previous process left running', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.store.startRun({
      threadId: 't1',
      runId: 'r-old',
      userId: A.id,
      clientMessageId: 'c0',
      userMessage: {
        type: 'USER_MESSAGE',
        threadId: 't1',
        runId: 'r-old',
        ts: 1,
        messageId: 'm0',
        clientMessageId: 'c0',
        userId: A.id,
        text: 'before the crash',
      },
    });
    expect(await h.relay.recover()).toBe(1);
    expect((await h.store.getRun('r-old'))?.status).toBe('failed');
    const log = await readAll(h.store, 't1');
    expect(log.map((e) => e.event.type)).toEqual(['USER_MESSAGE', 'RUN_ERROR']);
    expect(log[1]!.event).toMatchObject({ code: 'relay_restarted', runId: 'r-old' });
    expect(await h.relay.recover()).toBe(0);
    await h.relay.send({ user: A, threadId: 't1', text: 'again', clientMessageId: 'c1' });
  });

  it('ends slow subscribers and bounds subscribers per thread and per process', async () => {
    h = await makeRelay(kind, {
      limits: { maxBufferedEvents: 20, maxSubscribersPerThread: 2, maxSubscribers: 3 },
    });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.store.createThread({ threadId: 't2', ownerId: A.id });
    const slow = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const second = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    await expectCode(h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 }), 'too_many_subscribers');
    const third = await h.relay.subscribe({ user: A, threadId: 't2', afterSeq: 0 });
    await expectCode(h.relay.subscribe({ user: A, threadId: 't2', afterSeq: 0 }), 'too_many_subscribers');
    expect(h.relay.subscribers).toBe(3);
    third.close();
    second.close();
    await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    run.push(run.started());
    for (let i = 0; i < 30; i++) run.push({ ...run.chunk(`${i}`), messageId: `m${i}` });
    run.push(run.finished());
    const error = await expectCode(
      (async () => {
        for (;;) {
          await new Promise((r) => setTimeout(r, 20)); // a consumer that does not keep up
          if ((await h!.store.lastSeq('t1')) >= 33) return slow.nextBatch().then(() => slow.nextBatch());
        }
      })(),
      'slow_consumer',
    );
    expect(error.message).toMatch(/resubscribe/);
    expect(h.relay.subscribers).toBe(0);
    // It can resume from where it was and gets the rest.
    const resumed = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: slow.lastSeq });
    const rest = await collect(resumed, terminal);
    expect(rest[0]!.seq).toBe(slow.lastSeq + 1);
  });

  it('bounds runs in progress', async () => {
    h = await makeRelay(kind, { limits: { maxActiveRuns: 1 } });
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    await h.store.createThread({ threadId: 't2', ownerId: A.id });
    await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    await expectCode(
      h.relay.send({ user: A, threadId: 't2', text: 'go', clientMessageId: 'c1' }),
      'agent_unavailable',
    );
    expect(await h.store.lastSeq('t2')).toBe(0);
  });

  it('stops runs with RUN_ERROR shutdown and ends subscriptions on close', async () => {
    h = await makeRelay(kind);
    await h.store.createThread({ threadId: 't1', ownerId: A.id });
    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    (await h.agent.nextRun(0)).push();
    await h.relay.close();
    expect((await h.store.getRun(runId))?.status).toBe('failed');
    expect((await readAll(h.store, 't1')).at(-1)?.event).toMatchObject({
      type: 'RUN_ERROR',
      code: 'shutdown',
    });
    await expectCode(
      (async () => {
        for (;;) await sub.nextBatch();
      })(),
      'closed',
    );
    await expectCode(h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c2' }), 'closed');
  });
});

describe('relay core with a failing store', () => {
  /** The real memory store with a switch that makes appends fail (the store is the seam here). */
  function flaky(store: EventStore) {
    const state = { failAppends: 0, failStartRun: false };
    const wrapped = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'append') {
          return async (...args: Parameters<EventStore['append']>) => {
            if (state.failAppends > 0) {
              state.failAppends--;
              throw new Error('disk full');
            }
            return target.append(...args);
          };
        }
        if (prop === 'startRun') {
          return async (...args: Parameters<EventStore['startRun']>) => {
            if (state.failStartRun) throw new Error('disk full');
            return target.startRun(...args);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    return { wrapped, state };
  }

  it('never acknowledges a message it could not store, and fails the run with store_unavailable', async () => {
    const { wrapped, state } = flaky(new MemoryStore());
    h = await makeRelay('memory', { store: wrapped });
    await wrapped.createThread({ threadId: 't1', ownerId: A.id });
    state.failStartRun = true;
    await expectCode(
      h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' }),
      'store_error',
    );
    expect(h.agent.runs).toHaveLength(0);
    expect(await wrapped.lastSeq('t1')).toBe(0);
    state.failStartRun = false;

    const sub = await h.relay.subscribe({ user: A, threadId: 't1', afterSeq: 0 });
    const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const run = await h.agent.nextRun(0);
    state.failAppends = 1;
    run.push(run.started(), run.chunk('lost'));
    const seen = await collect(sub, terminal);
    expect(seen.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_ERROR']);
    expect(seen[1]).toMatchObject({ code: 'store_unavailable', runId });
    expect(run.signal.aborted).toBe(true);
    expect((await readAll(wrapped, 't1')).map((e) => e.event.type)).toEqual(['USER_MESSAGE', 'RUN_ERROR']);
  });
});

it("a cancel that arrives while the run's RUN_FINISHED is being stored leaves that one terminal event", async () => {
  const inner = new MemoryStore();
  let writing!: () => void;
  let release!: () => void;
  const finishing = new Promise<void>((resolve) => (writing = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  // The store takes its time over the batch that holds RUN_FINISHED.
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop !== 'append' && prop !== 'appendMany') return value.bind(target);
      return async (...args: unknown[]) => {
        if (JSON.stringify(args).includes('"RUN_FINISHED"')) {
          writing();
          await gate;
        }
        return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
  h = await makeRelay('memory', { store });
  await inner.createThread({ threadId: 't1', ownerId: A.id });
  const { runId } = await h.relay.send({ user: A, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
  const run = await h.agent.nextRun(0);
  run.push(run.chunk('done'), run.finished());
  await finishing;
  const cancelled = h.relay.cancel({ user: A, runId });
  release();
  await cancelled;
  const types = (await readAll(inner, 't1')).map((e) => e.event.type);
  expect(types).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
  expect((await inner.getRun(runId))?.status).toBe('finished');
});
