// A run ends with its RUN_FINISHED or RUN_ERROR event, never with an event that only mentions those words
// (a message's text, a state value, a tool name).
import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { endsRun } from '../src/core/run-end.js';
import type { ThreadSubscription } from '../src/core/subscription.js';
import { ControlledAgent, relayThrough, until } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const stored = (event: AgentEvent, seq = 1) => ({ seq, json: JSON.stringify(event) });
const base = { threadId: 't1', runId: 'r1', ts: 1 };

describe('the end of a run', () => {
  it('is its terminal event only, not the words in a text, a state value or a tool name', () => {
    expect(endsRun(stored({ type: 'RUN_FINISHED', ...base }))).toBe(true);
    expect(endsRun(stored({ type: 'RUN_ERROR', ...base, code: 'cancelled', message: 'x' }))).toBe(true);
    const mentions: AgentEvent[] = [
      { type: 'TEXT_MESSAGE_CHUNK', ...base, messageId: 'm1', delta: '{"type":"RUN_FINISHED"}' },
      { type: 'STATE_CHANGED', ...base, scope: 'demo', value: { type: 'RUN_FINISHED' } },
      { type: 'STATE_CHANGED', ...base, scope: 'demo', value: { status: 'RUN_ERROR' } },
      { type: 'TOOL_CALL_STARTED', ...base, toolCallId: 'c1', toolName: 'RUN_FINISHED' },
    ];
    for (const event of mentions) expect(endsRun(stored(event))).toBe(false);
  });

  it('a subscriber does not take a chunk or a state value that mentions RUN_FINISHED for the run’s end', async () => {
    const agent = new ControlledAgent();
    const { relay, store } = await relayThrough(agent, cleanups);
    const sub = (await relay.subscribe({
      user: { id: 'u' },
      threadId: 't1',
      afterSeq: 0,
    })) as ThreadSubscription;
    await relay.send({ user: { id: 'u' }, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await agent.nextRun(0);
    run.push(run.started(), run.chunk('{"type":"RUN_FINISHED"}'));
    await until(async () => (await store.lastSeq('t1')) >= 3);
    await until(() => sub.quietMidRunSince !== null);
    await relay.publish('t1', [
      {
        type: 'STATE_CHANGED',
        threadId: 't1',
        runId: run.request.runId,
        ts: 1,
        scope: 'demo',
        value: { type: 'RUN_FINISHED' },
      },
    ]);
    await until(async () => (await store.lastSeq('t1')) >= 4);
    // Give the live delivery its turn.
    await new Promise((r) => setTimeout(r, 20));
    expect(sub.quietMidRunSince).not.toBeNull();
    run.push(run.finished());
    run.end();
    await until(() => sub.quietMidRunSince === null);
  });

  it('a paused run is not released by a tool event of the run that mentions RUN_ERROR: the decision resumes it', async () => {
    const agent = new ControlledAgent();
    const { relay, store } = await relayThrough(agent, cleanups);
    const { runId } = await relay.send({
      user: { id: 'u' },
      threadId: 't1',
      text: 'forget me',
      clientMessageId: 'c1',
    });
    const run = await agent.nextRun(0);
    const at = { threadId: 't1', runId, ts: Date.now() };
    run.push(
      run.started(),
      { type: 'TOOL_CALL_STARTED', ...at, toolCallId: 'call_1', toolName: 'profile.clear' },
      {
        type: 'TOOL_APPROVAL_REQUESTED',
        ...at,
        toolCallId: 'call_1',
        toolName: 'profile.clear',
        args: '{}',
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      },
    );
    run.end();
    await until(async () => (await store.read('t1', { afterSeq: 0, limit: 10 })).length >= 4);
    await relay.publish('t1', [
      { type: 'STATE_CHANGED', ...at, scope: 'demo', value: { status: 'RUN_ERROR' } },
    ]);
    await relay.approve({
      user: { id: 'u' },
      threadId: 't1',
      runId,
      toolCallId: 'call_1',
      approved: true,
    });
    const resumed = await Promise.race([
      agent.nextRun(1),
      new Promise<null>((r) => setTimeout(() => r(null), 2_000)),
    ]);
    expect(resumed?.request).toMatchObject({ runId, resume: { toolCallId: 'call_1', approved: true } });
    resumed!.push(resumed!.finished());
    resumed!.end();
    await until(async () => (await store.getRun(runId))?.status === 'finished');
  });
});
