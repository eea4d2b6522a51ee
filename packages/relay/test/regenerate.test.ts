// `regenerate`: a new answer to the thread's last user message, over a real ws socket and real stores.
import { ServerMessageSchema } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelay } from '../src/index.js';
import { ControlledAgent, makeStore, makeWsHarness, readAll, TestClient, tokens } from './helpers.js';

type WsHarness = Awaited<ReturnType<typeof makeWsHarness>>;
let h: WsHarness | undefined;
const clients: TestClient[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await h?.cleanup();
  h = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});
async function connect(user: string): Promise<TestClient> {
  const c = await TestClient.connect(h!.url, user);
  clients.push(c);
  return c;
}
const types = (log: { event: Record<string, unknown> }[]) => log.map((e) => e.event.type);
const reply = (c: TestClient, ref: string, from = 0) =>
  c.waitFor((m) => (m.type === 'ack' || m.type === 'error') && (m.clientMessageId ?? m.ref) === ref, from);

/** A thread `t1` of user-a with one finished run answering "hello"; returns the socket and that run's id. */
async function answered(overrides: Parameters<typeof makeWsHarness>[1] = {}) {
  h = await makeWsHarness('sqlite', overrides);
  await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
  const a = await connect('user-a');
  a.send({ type: 'subscribe', threadId: 't1', afterSeq: 0 });
  a.send({ type: 'send', threadId: 't1', text: 'hello', clientMessageId: 'c1' });
  await reply(a, 'c1');
  const run = await h.agent.nextRun(0);
  run.push(run.started(), run.chunk('first answer'), run.finished());
  await a.waitFor((m) => m.type === 'event' && (m.event as { type: string }).type === 'RUN_FINISHED');
  return { a, firstRunId: run.request.runId };
}

describe('regenerate', () => {
  it('starts a new run from the last user message: RUN_STARTED regenerates the old run, no USER_MESSAGE written', async () => {
    const { a, firstRunId } = await answered();
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    const ack = await reply(a, 'r1');
    const run = await h!.agent.nextRun(1);
    expect(ack).toEqual({ type: 'ack', clientMessageId: 'r1', runId: run.request.runId });
    expect(ServerMessageSchema.safeParse(ack).success).toBe(true);
    // The agent gets the same user message, and the run it replaces.
    expect(run.request).toMatchObject({ threadId: 't1', message: 'hello', regenerates: firstRunId });
    // The agent's own RUN_STARTED is dropped: the relay stored the run's RUN_STARTED when it started it.
    run.push(run.started(), run.chunk('second answer'), run.finished());
    const end = (m: Record<string, unknown>) =>
      m.type === 'event' &&
      (m.event as { type: string; runId: string }).type === 'RUN_FINISHED' &&
      (m.event as { runId: string }).runId === run.request.runId;
    await a.waitFor(end);
    const log = await readAll(h!.store, 't1');
    expect(types(log)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(log[4]!.event).toMatchObject({ runId: run.request.runId, regenerates: firstRunId });
    expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // The subscriber saw the same events, live, in order.
    expect(a.events().map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    for (const m of a.messages) expect(ServerMessageSchema.safeParse(m).success).toBe(true);
  });

  it('is idempotent on clientMessageId: a retried frame is acked with the first run and starts nothing', async () => {
    const { a } = await answered();
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    const first = await reply(a, 'r1');
    const run = await h!.agent.nextRun(1);
    // While the run streams...
    let from = a.messages.length;
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    expect(await reply(a, 'r1', from)).toEqual(first);
    // ...and after it ended.
    run.push(run.chunk('again'), run.finished());
    await a.waitFor((m) => m.type === 'event' && (m.event as { type: string }).type === 'RUN_FINISHED', from);
    const seq = await h!.store.lastSeq('t1');
    from = a.messages.length;
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    expect(await reply(a, 'r1', from)).toEqual(first);
    expect(h!.agent.runs).toHaveLength(2);
    expect(await h!.store.lastSeq('t1')).toBe(seq);
  });

  it('is refused with run_active while a run is in progress (even in queue mode), writing nothing', async () => {
    const { a } = await answered({ whenRunActive: 'queue' });
    a.send({ type: 'send', threadId: 't1', text: 'second question', clientMessageId: 'c2' });
    await reply(a, 'c2');
    await h!.agent.nextRun(1);
    const seq = await h!.store.lastSeq('t1');
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    expect(await reply(a, 'r1')).toMatchObject({ type: 'error', code: 'run_active', ref: 'r1' });
    expect(await h!.store.lastSeq('t1')).toBe(seq);
    expect(h!.agent.runs).toHaveLength(2);
  });

  it("is refused for another user's thread as for a missing one, writing nothing", async () => {
    await answered();
    const b = await connect('user-b');
    const seq = await h!.store.lastSeq('t1');
    b.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'rb' });
    expect(await reply(b, 'rb')).toMatchObject({ type: 'error', code: 'not_found', ref: 'rb' });
    b.send({ type: 'regenerate', threadId: 'no-such-thread', clientMessageId: 'rc' });
    expect(await reply(b, 'rc')).toMatchObject({ type: 'error', code: 'not_found', ref: 'rc' });
    expect(await h!.store.lastSeq('t1')).toBe(seq);
    expect(h!.agent.runs).toHaveLength(1);
  });

  it('is refused with nothing_to_regenerate on a thread without a user message; bad frames are invalid_message', async () => {
    h = await makeWsHarness('sqlite');
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const a = await connect('user-a');
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    expect(await reply(a, 'r1')).toMatchObject({ type: 'error', code: 'nothing_to_regenerate', ref: 'r1' });
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r 2' });
    expect(await a.waitFor((m) => m.type === 'error' && m.code === 'invalid_message')).toBeTruthy();
    expect(await h.store.lastSeq('t1')).toBe(0);
    expect(h.agent.runs).toHaveLength(0);
  });

  it('after Stop, and again on its own answer: each new run regenerates the newest one, from the same message', async () => {
    h = await makeWsHarness('sqlite');
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const a = await connect('user-a');
    a.send({ type: 'send', threadId: 't1', text: 'tell me a story', clientMessageId: 'c1' });
    await reply(a, 'c1');
    const first = await h.agent.nextRun(0);
    first.push(first.started(), first.chunk('Once upon'));
    a.send({ type: 'cancel', runId: first.request.runId });
    await new Promise<void>((resolve) => {
      const check = async () => ((await h!.store.activeRun('t1')) ? setTimeout(check, 10) : resolve());
      void check();
    });
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    await reply(a, 'r1');
    const second = await h.agent.nextRun(1);
    expect(second.request).toMatchObject({ message: 'tell me a story', regenerates: first.request.runId });
    second.push(second.chunk('A long time ago'), second.finished());
    await new Promise<void>((resolve) => {
      const check = async () =>
        (await h!.store.getRun(second.request.runId))?.status === 'finished'
          ? resolve()
          : setTimeout(check, 10);
      void check();
    });
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r2' });
    await reply(a, 'r2');
    const third = await h.agent.nextRun(2);
    expect(third.request).toMatchObject({ message: 'tell me a story', regenerates: second.request.runId });
    const log = await readAll(h.store, 't1');
    expect(log.filter((e) => e.event.type === 'USER_MESSAGE')).toHaveLength(1);
    expect(log.filter((e) => e.event.type === 'RUN_STARTED').map((e) => e.event.regenerates)).toEqual([
      undefined,
      first.request.runId,
      second.request.runId,
    ]);
  });

  it("a regenerated run's log opens with one RUN_STARTED whether the agent sends its own or not; a second one is refused", async () => {
    const { a, firstRunId } = await answered();
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    await reply(a, 'r1');
    const quiet = await h!.agent.nextRun(1);
    quiet.push(quiet.chunk('no start of its own'), quiet.finished());
    while (await h!.store.activeRun('t1')) await new Promise((r) => setTimeout(r, 10));
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r2' });
    await reply(a, 'r2');
    const twice = await h!.agent.nextRun(2);
    twice.push(twice.started(), twice.started());
    while (await h!.store.activeRun('t1')) await new Promise((r) => setTimeout(r, 10));
    const log = await readAll(h!.store, 't1');
    const of = (runId: string) => log.filter((e) => e.event.runId === runId).map((e) => e.event.type);
    expect(of(quiet.request.runId)).toEqual(['RUN_STARTED', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
    expect(of(twice.request.runId)).toEqual(['RUN_STARTED', 'RUN_ERROR']);
    expect(log.find((e) => e.event.type === 'RUN_ERROR')!.event).toMatchObject({
      code: 'agent_stream_invalid',
    });
    expect(twice.request.regenerates).toBe(quiet.request.runId);
    expect(quiet.request.regenerates).toBe(firstRunId);
  });

  it('looks back a bounded number of log pages for the user message', async () => {
    h = await makeWsHarness('memory', { limits: { replayPageSize: 2 } });
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const a = await connect('user-a');
    a.send({ type: 'send', threadId: 't1', text: 'hello', clientMessageId: 'c1' });
    await reply(a, 'c1');
    const run = await h.agent.nextRun(0);
    run.push(run.started(), run.finished());
    while (await h.store.activeRun('t1')) await new Promise((r) => setTimeout(r, 10));
    const state = (i: number) => ({
      type: 'STATE_CHANGED' as const,
      threadId: 't1',
      runId: run.request.runId,
      ts: Date.now(),
      scope: 'profile',
      value: i,
    });
    // 16 pages of 2 events: the USER_MESSAGE at seq 1 is within reach with 29 events after it...
    await h.relay.publish(
      't1',
      Array.from({ length: 28 }, (_, i) => state(i)),
    );
    expect(await h.store.lastSeq('t1')).toBe(31);
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r1' });
    expect(await reply(a, 'r1')).toMatchObject({ type: 'ack' });
    const second = await h.agent.nextRun(1);
    second.push(second.finished());
    while (await h.store.activeRun('t1')) await new Promise((r) => setTimeout(r, 10));
    // ...and out of reach once the log holds more than 32 events after the newest user message.
    await h.relay.publish('t1', [state(0), state(1)]);
    expect(await h.store.lastSeq('t1')).toBe(35);
    a.send({ type: 'regenerate', threadId: 't1', clientMessageId: 'r2' });
    expect(await reply(a, 'r2')).toMatchObject({ type: 'error', code: 'nothing_to_regenerate' });
    expect(h.agent.runs).toHaveLength(2);
  });

  it('holds across relay instances sharing a store: one run per thread, one run per clientMessageId', async () => {
    const { store, cleanup } = makeStore('sqlite');
    cleanups.push(cleanup);
    const make = () => {
      const agent = new ControlledAgent();
      const relay = createRelay({
        store,
        agent,
        tokens,
        toolsBaseUrl: 'http://127.0.0.1:9/api',
        tools: [],
        logger: { error() {}, warn() {} },
      });
      cleanups.push(() => relay.close());
      return { agent, relay };
    };
    const one = make();
    const two = make();
    const user = { id: 'user-a' };
    await store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const sent = await one.relay.send({ user, threadId: 't1', text: 'hello', clientMessageId: 'c1' });
    const run = await one.agent.nextRun(0);
    run.push(run.finished());
    while (await store.activeRun('t1')) await new Promise((r) => setTimeout(r, 10));
    const regen = await one.relay.regenerate({ user, threadId: 't1', clientMessageId: 'r1' });
    // The same request reaching the other instance gets the same run and starts nothing there.
    expect(await two.relay.regenerate({ user, threadId: 't1', clientMessageId: 'r1' })).toEqual(regen);
    // A different one is refused while the first instance's run is going.
    await expect(two.relay.regenerate({ user, threadId: 't1', clientMessageId: 'r2' })).rejects.toMatchObject(
      {
        code: 'run_active',
      },
    );
    expect(two.agent.runs).toHaveLength(0);
    const again = await one.agent.nextRun(1);
    expect(again.request).toMatchObject({ message: 'hello', regenerates: sent.runId });
  });
});
