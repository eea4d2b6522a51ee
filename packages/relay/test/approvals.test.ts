import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { InProcessPubSub, createRelay, type Relay } from '../src/index.js';
import { MemoryStore } from '../src/stores/memory.js';
import {
  ControlledAgent,
  MemoryStoreWithTools,
  readAll,
  tokens,
  until,
  type ControlledRun,
} from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet = { error() {}, warn() {} };
const fastLeases = { leaseTtlMs: 300, leaseRenewMs: 100, leaseSweepMs: 100 };

function relayOn(
  store: MemoryStore,
  agent: ControlledAgent,
  extra: Partial<Parameters<typeof createRelay>[0]> = {},
): Relay {
  const relay = createRelay({
    store,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: quiet,
    ...extra,
  });
  cleanups.push(() => relay.close());
  return relay;
}

/** The agent's side of a pause: RUN_STARTED, TOOL_CALL_STARTED, TOOL_APPROVAL_REQUESTED, end of stream. */
function pause(run: ControlledRun, toolCallId = 'call_1'): void {
  const base = { threadId: run.request.threadId, runId: run.request.runId, ts: Date.now() };
  const events: AgentEvent[] = [
    run.started(),
    { type: 'TOOL_CALL_STARTED', ...base, toolCallId, toolName: 'profile.clear' },
    {
      type: 'TOOL_APPROVAL_REQUESTED',
      ...base,
      toolCallId,
      toolName: 'profile.clear',
      args: '{}',
      expiresAt: new Date(Date.now() + 1000).toISOString(),
    },
  ];
  run.push(...events);
  run.end();
}

const types = async (store: MemoryStore, threadId: string) =>
  (await readAll(store, threadId)).map((e) => e.event.type);

describe('tool approvals in the relay', () => {
  it('holds a paused run: the relay sets expiresAt from approvalTtlMs, sends get run_awaiting_approval, the run resumes with the decision', async () => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const agent = new ControlledAgent();
    const relay = relayOn(store, agent, { limits: { approvalTtlMs: 60_000 } });
    const { runId } = await relay.send({
      user: { id: 'alice' },
      threadId: 't1',
      text: 'forget me',
      clientMessageId: 'c1',
    });
    pause(await agent.nextRun(0));
    await until(async () => (await types(store, 't1')).includes('TOOL_APPROVAL_REQUESTED'));
    const request = (await readAll(store, 't1')).find((e) => e.event.type === 'TOOL_APPROVAL_REQUESTED')!;
    const ttl = Date.parse(request.event.expiresAt as string) - Date.now();
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await expect(
      relay.send({ user: { id: 'alice' }, threadId: 't1', text: 'more', clientMessageId: 'c2' }),
    ).rejects.toMatchObject({ code: 'run_awaiting_approval' });
    expect(relay.activeRuns).toBe(0); // no place at the agent while it waits

    await relay.approve({
      user: { id: 'alice' },
      threadId: 't1',
      runId,
      toolCallId: 'call_1',
      approved: false,
      reason: 'no',
    });
    const resumed = await agent.nextRun(1);
    expect(resumed.request).toMatchObject({
      runId,
      resume: { toolCallId: 'call_1', approved: false, reason: 'no' },
    });
    resumed.push(resumed.chunk('Kept.'), resumed.finished());
    resumed.end();
    await until(async () => (await store.getRun(runId))?.status === 'finished');
    expect(await types(store, 't1')).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TOOL_CALL_STARTED',
      'TOOL_APPROVAL_REQUESTED',
      'TOOL_APPROVAL_RESOLVED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
  });

  it('ends a paused run with approval_expired and drops its saved state; refuses approvalTtlMs over 7 days', async () => {
    const store = new MemoryStoreWithTools();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const agent = new ControlledAgent();
    const relay = relayOn(store, agent, { limits: { approvalTtlMs: 150 } });
    const { runId } = await relay.send({
      user: { id: 'alice' },
      threadId: 't1',
      text: 'x',
      clientMessageId: 'c1',
    });
    await store.putRunState('t1', runId, '{"saved":true}');
    pause(await agent.nextRun(0));
    await until(async () => (await store.getRun(runId))?.status === 'failed');
    const last = (await readAll(store, 't1')).at(-1)!.event;
    expect(last).toMatchObject({ type: 'RUN_ERROR', code: 'approval_expired' });
    await until(async () => (await store.getRunState('t1', runId)) === null);
    expect(() => relayOn(store, agent, { limits: { approvalTtlMs: 7 * 24 * 3600_000 + 1 } })).toThrow(
      /approvalTtlMs/,
    );
  });

  it('with two instances: a decision stored on either one resumes the run on the instance that holds it', async () => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const pubsub = new InProcessPubSub();
    const agentA = new ControlledAgent();
    const agentB = new ControlledAgent();
    const a = relayOn(store, agentA, { pubsub, instanceId: 'a', limits: fastLeases });
    const b = relayOn(store, agentB, { pubsub, instanceId: 'b', limits: fastLeases });
    const { runId } = await a.send({
      user: { id: 'alice' },
      threadId: 't1',
      text: 'x',
      clientMessageId: 'c1',
    });
    pause(await agentA.nextRun(0));
    await until(async () => (await types(store, 't1')).includes('TOOL_APPROVAL_REQUESTED'));
    // Longer than a lease: the holder keeps renewing it, nobody fails the run.
    await new Promise((r) => setTimeout(r, 700));
    expect((await store.getRun(runId))?.status).toBe('running');
    await expect(
      b.send({ user: { id: 'alice' }, threadId: 't1', text: 'y', clientMessageId: 'c2' }),
    ).rejects.toMatchObject({ code: 'run_awaiting_approval' });

    await b.approve({ user: { id: 'alice' }, threadId: 't1', runId, toolCallId: 'call_1', approved: true });
    const resumed = await agentA.nextRun(1);
    expect(resumed.request.resume).toEqual({ toolCallId: 'call_1', approved: true });
    expect(agentB.runs).toHaveLength(0);
    resumed.push(resumed.finished());
    resumed.end();
    await until(async () => (await store.getRun(runId))?.status === 'finished');
    // The same decision again on the other instance: answered, nothing written.
    const before = await readAll(store, 't1');
    await a.approve({ user: { id: 'alice' }, threadId: 't1', runId, toolCallId: 'call_1', approved: true });
    expect(await readAll(store, 't1')).toEqual(before);
  });

  it('when the instance holding a paused run is gone, the one that claims its lease holds it and resumes it', async () => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const pubsub = new InProcessPubSub();
    const agentA = new ControlledAgent();
    const agentB = new ControlledAgent();
    const a = relayOn(store, agentA, { pubsub, instanceId: 'a', limits: fastLeases });
    const b = relayOn(store, agentB, { pubsub, instanceId: 'b', limits: fastLeases });
    const { runId } = await a.send({
      user: { id: 'alice' },
      threadId: 't1',
      text: 'x',
      clientMessageId: 'c1',
    });
    pause(await agentA.nextRun(0));
    await until(async () => (await types(store, 't1')).includes('TOOL_APPROVAL_REQUESTED'));
    await a.close(); // stops renewing; the run stays paused in the store
    await until(async () => (await store.getRun(runId))?.lease?.owner === 'b');
    expect((await store.getRun(runId))?.status).toBe('running');
    expect(await types(store, 't1')).not.toContain('RUN_ERROR');

    await b.approve({ user: { id: 'alice' }, threadId: 't1', runId, toolCallId: 'call_1', approved: true });
    const resumed = await agentB.nextRun(0);
    expect(resumed.request).toMatchObject({ runId, resume: { toolCallId: 'call_1', approved: true } });
    resumed.push(resumed.finished());
    resumed.end();
    await until(async () => (await store.getRun(runId))?.status === 'finished');
    const log = await readAll(store, 't1');
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    expect(log.filter((e) => e.event.type === 'RUN_FINISHED' || e.event.type === 'RUN_ERROR')).toHaveLength(
      1,
    );
  });

  it("counts a resumed run in its user's runs in progress: approving many paused runs at once resumes no more than maxRunsPerUser", async () => {
    // The attack: let runs pause one by one (a paused run holds no share), then approve them all at once.
    const store = new MemoryStore();
    const agent = new ControlledAgent();
    const relay = relayOn(store, agent, { limits: { maxRunsPerUser: 2, approvalTtlMs: 60_000 } });
    const user = { id: 'mallory' };
    const runIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      await store.createThread({ threadId: `t${i}`, ownerId: user.id });
      const { runId } = await relay.send({ user, threadId: `t${i}`, text: 'x', clientMessageId: `c${i}` });
      runIds.push(runId);
      pause(await agent.nextRun(i));
      await until(async () => relay.activeRuns === 0 && (await types(store, `t${i}`)).length === 4);
    }
    const decide = (i: number) =>
      relay.approve({ user, threadId: `t${i}`, runId: runIds[i]!, toolCallId: 'call_1', approved: true });
    const outcomes = await Promise.allSettled([0, 1, 2].map(decide));
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    const refused = outcomes.findIndex((o) => o.status === 'rejected');
    expect((outcomes[refused] as PromiseRejectedResult).reason).toMatchObject({ code: 'too_many_runs' });
    // The refused decision was not stored: that run still waits, and a send there is still refused.
    expect(await types(store, `t${refused}`)).not.toContain('TOOL_APPROVAL_RESOLVED');
    await until(() => agent.runs.length === 5);
    await new Promise((r) => setTimeout(r, 50));
    expect(agent.runs).toHaveLength(5); // three first halves, two resumes
    expect(relay.activeRuns).toBe(2);

    // Once a resumed run ends, the share is free again and the last decision goes through.
    const first = agent.runs[3]!;
    first.push(first.finished());
    first.end();
    await until(() => relay.activeRuns === 1);
    await decide(refused);
    const last = await agent.nextRun(5);
    expect(last.request).toMatchObject({ runId: runIds[refused], resume: { approved: true } });
  });

  it('refuses an agent that writes its own decision', async () => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const agent = new ControlledAgent();
    const relay = relayOn(store, agent);
    const { runId } = await relay.send({
      user: { id: 'alice' },
      threadId: 't1',
      text: 'x',
      clientMessageId: 'c1',
    });
    const run = await agent.nextRun(0);
    run.push(run.started(), {
      type: 'TOOL_APPROVAL_RESOLVED',
      threadId: 't1',
      runId,
      ts: Date.now(),
      toolCallId: 'call_1',
      approved: true,
      decidedBy: 'alice',
    });
    await until(async () => (await store.getRun(runId))?.status === 'failed');
    expect((await readAll(store, 't1')).at(-1)?.event).toMatchObject({ code: 'agent_stream_invalid' });
    await expect(
      relay.publish('t1', [
        {
          type: 'TOOL_APPROVAL_RESOLVED',
          threadId: 't1',
          runId,
          ts: 1,
          toolCallId: 'c',
          approved: true,
          decidedBy: 'x',
        },
      ]),
    ).rejects.toMatchObject({ code: 'invalid_message' });
  });
});
