// Per-user shares of runs and of the agent service's capacity, tested from the attacker's side: a real ws
// client, a real HTTP agent service with a run cap (429 beyond it), SQLite.
import { afterEach, describe, expect, it } from 'vitest';
import { httpAgentTransport } from '../src/index.js';
import { CappedHttpAgent, TestClient, makeWsHarness, readAll, relayThrough, until } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const isTerminal = (m: Record<string, unknown>) => {
  const type = (m.event as { type?: string } | undefined)?.type;
  return m.type === 'event' && (type === 'RUN_FINISHED' || type === 'RUN_ERROR');
};
const answerTo = (id: string) => (m: Record<string, unknown>) =>
  (m.type === 'ack' && m.clientMessageId === id) || (m.type === 'error' && m.ref === id);

describe('fair shares of runs', () => {
  it("one user's 40 runs get codes beyond their share, and another user's run still starts and finishes", async () => {
    const agent = await new CappedHttpAgent(2).start(cleanups);
    const h = await makeWsHarness(
      'sqlite',
      { agent: httpAgentTransport({ url: agent.url, credential: 'agent-secret' }) },
      // The attack is on runs, not on the socket's own bounds.
      { limits: { maxPendingRequests: 64 } },
    );
    cleanups.push(() => h.cleanup());
    for (let i = 0; i < 40; i++) await h.store.createThread({ threadId: `a${i}`, ownerId: 'user-a' });
    await h.store.createThread({ threadId: 'b0', ownerId: 'user-b' });

    const a = await TestClient.connect(h.url, 'user-a');
    cleanups.push(() => void a.close());
    for (let i = 0; i < 40; i++)
      a.send({ type: 'send', threadId: `a${i}`, text: 'go', clientMessageId: `c${i}` });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => a.waitFor(answerTo(`c${i}`))));
    const acked = answers.filter((m) => m.type === 'ack');
    const refused = answers.filter((m) => m.type === 'error');
    expect(acked).toHaveLength(4); // the default share: 4 runs at once per user
    expect(new Set(refused.map((m) => m.code))).toEqual(new Set(['too_many_runs']));
    // A refused send stored nothing.
    for (let i = 0; i < 40; i++) {
      const acknowledged = answers[i]!.type === 'ack';
      expect(await h.store.lastSeq(`a${i}`), `a${i}`).toBe(acknowledged ? 1 : 0);
    }
    // The agent took two of them and refused the others as at capacity: they wait, they did not fail.
    await agent.until(() => agent.taken.length === 2 && agent.refused >= 2);
    expect(a.messages.filter(isTerminal)).toHaveLength(0);

    const b = await TestClient.connect(h.url, 'user-b');
    cleanups.push(() => void b.close());
    b.send({ type: 'subscribe', threadId: 'b0', afterSeq: 0 });
    b.send({ type: 'send', threadId: 'b0', text: 'hello', clientMessageId: 'b1' });
    expect((await b.waitFor(answerTo('b1'))).type).toBe('ack');

    // One of A's runs ends: the place it frees goes to B (fewest runs at the agent), not to A's waiting runs.
    agent.taken[0]!.finish();
    const bRun = await agent.runOf('b0');
    expect(agent.taken.map((r) => r.request.threadId).slice(2)).toEqual(['b0']);
    bRun.finish();
    const end = await b.waitFor(isTerminal);
    expect(end.event).toMatchObject({ type: 'RUN_FINISHED', threadId: 'b0' });
    expect((await readAll(h.store, 'b0')).map((e) => e.event.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'RUN_FINISHED',
    ]);
  });

  it('bounds the wait for the agent in length and time: then RUN_ERROR agent_busy, one terminal each', async () => {
    const agent = await new CappedHttpAgent(1).start(cleanups);
    const { relay, store } = await relayThrough(
      httpAgentTransport({ url: agent.url, credential: 'agent-secret' }),
      cleanups,
      { maxAgentQueue: 1, agentQueueTimeoutMs: 300 },
    );
    await store.createThread({ threadId: 't2', ownerId: 'u' });
    await store.createThread({ threadId: 't3', ownerId: 'u' });
    const user = { id: 'u' };
    await relay.send({ user, threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const first = await agent.runOf('t1');
    await relay.send({ user, threadId: 't2', text: 'go', clientMessageId: 'c2' });
    await agent.until(() => agent.refused >= 1); // t2 waits for a place
    await relay.send({ user, threadId: 't3', text: 'go', clientMessageId: 'c3' });
    const ended = async (threadId: string) => {
      await until(async () => (await store.activeRun(threadId)) === null, 5_000);
      return (await readAll(store, threadId)).map((e) => e.event);
    };
    // t3 finds the queue full and ends at once; t2 ends when its wait is over.
    const [t3, t2] = [await ended('t3'), await ended('t2')];
    for (const log of [t2, t3]) {
      expect(log.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_ERROR']);
      expect(log[1]).toMatchObject({ code: 'agent_busy' });
    }
    expect(String(t3[1]!.message)).toMatch(/already wait/);
    expect(String(t2[1]!.message)).toMatch(/stayed at capacity/);
    // The run at the agent was not disturbed, and the threads that waited take a new message.
    first.finish();
    await until(async () => (await store.activeRun('t1')) === null);
    expect((await readAll(store, 't1')).at(-1)?.event.type).toBe('RUN_FINISHED');
    await relay.send({ user, threadId: 't2', text: 'again', clientMessageId: 'c4' });
    (await agent.runOf('t2')).finish();
    await until(async () => (await store.activeRun('t2')) === null);
    expect((await readAll(store, 't2')).at(-1)?.event.type).toBe('RUN_FINISHED');
  });

  it('bounds the runs one user starts per window, with a retry-after hint, and leaves other users alone', async () => {
    const h = await makeWsHarness('memory', { limits: { maxRunStartsPerUser: 2, runStartWindowMs: 60_000 } });
    cleanups.push(() => h.cleanup());
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    await h.store.createThread({ threadId: 't2', ownerId: 'user-b' });
    const a = await TestClient.connect(h.url, 'user-a');
    cleanups.push(() => void a.close());
    a.send({ type: 'subscribe', threadId: 't1', afterSeq: 0 });
    for (let i = 0; i < 2; i++) {
      a.send({ type: 'send', threadId: 't1', text: 'go', clientMessageId: `c${i}` });
      expect((await a.waitFor(answerTo(`c${i}`))).type).toBe('ack');
      const run = await h.agent.nextRun(i);
      run.push(run.started(), run.finished());
      await until(() => a.messages.filter(isTerminal).length === i + 1);
    }
    a.send({ type: 'send', threadId: 't1', text: 'go', clientMessageId: 'c2' });
    const refusal = await a.waitFor(answerTo('c2'));
    expect(refusal).toMatchObject({ type: 'error', code: 'rate_limited' });
    expect(refusal.retryAfterMs).toBeGreaterThan(0);
    expect(refusal.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(await h.store.lastSeq('t1')).toBe(6); // two runs of three events; nothing for the refused send

    const b = await TestClient.connect(h.url, 'user-b');
    cleanups.push(() => void b.close());
    b.send({ type: 'send', threadId: 't2', text: 'go', clientMessageId: 'b1' });
    expect((await b.waitFor(answerTo('b1'))).type).toBe('ack');
  });

  it('gives a run back to the user when it ends, whatever the way', async () => {
    const h = await makeWsHarness('memory', { limits: { maxRunsPerUser: 1 } });
    cleanups.push(() => h.cleanup());
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    await h.store.createThread({ threadId: 't2', ownerId: 'user-a' });
    const a = await TestClient.connect(h.url, 'user-a');
    cleanups.push(() => void a.close());
    a.send({ type: 'send', threadId: 't1', text: 'go', clientMessageId: 'c1' });
    expect((await a.waitFor(answerTo('c1'))).type).toBe('ack');
    a.send({ type: 'send', threadId: 't2', text: 'go', clientMessageId: 'c2' });
    expect(await a.waitFor(answerTo('c2'))).toMatchObject({ type: 'error', code: 'too_many_runs' });
    // A retry of the send whose run is going (after a reconnect) still gets its ack: it starts nothing.
    const from = a.messages.length;
    a.send({ type: 'send', threadId: 't1', text: 'go', clientMessageId: 'c1' });
    const again = await a.waitFor((m) => answerTo('c1')(m), from);
    expect(again).toMatchObject({ type: 'ack', runId: (await h.agent.nextRun(0)).request.runId });
    expect(h.agent.runs).toHaveLength(1);
    (await h.agent.nextRun(0)).fail(new Error('agent crashed'));
    await until(async () => (await h.store.activeRun('t1')) === null);
    a.send({ type: 'send', threadId: 't2', text: 'go', clientMessageId: 'c3' });
    expect((await a.waitFor(answerTo('c3'))).type).toBe('ack');
  });
});
