import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool } from '@threadline/tools-kit';
import type { AgentEvent } from '@threadline/contracts';
import { createDemoModelProvider, createRunner, serveAgent, type ServedAgent } from '../src/index.js';
import { SECRET, collectSse, readSse, silent, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

let tools: ToolsServer;
let served: ServedAgent;

beforeAll(async () => {
  // The host's `profile.clear`, as the reference host defines it: it needs the user's approval.
  const clear = defineTool({
    name: 'profile.clear',
    description: 'Clear the profile',
    input: z.strictObject({}),
    output: z.strictObject({ cleared: z.boolean() }),
    needsApproval: true,
    async handler(_input, ctx) {
      await tools.store.patchProfile(ctx.userId, { displayName: null });
      return { cleared: true };
    },
  });
  tools = await startToolsServer({ tools: [clear] });
  const runner = createRunner({
    modelProvider: createDemoModelProvider({ delayMs: 2 }),
    logger: silent,
    tracing: false,
  });
  served = await serveAgent(runner, { auth: { sharedSecret: SECRET }, logger: silent, doctor: false });
});
afterAll(async () => {
  await served.close({ deadlineMs: 1000 });
  await tools.close();
});

async function post(
  threadId: string,
  runId: string,
  message: string,
  signal?: AbortSignal,
  extra: { regenerates?: string } = {},
) {
  return fetch(`${served.url}/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      threadId,
      runId,
      user: { id: 'u1' },
      message,
      ...extra,
      tools: await tools.toolsRef({ userId: 'u1', threadId, runId }),
    }),
    ...(signal ? { signal } : {}),
  });
}
const text = (events: AgentEvent[]) =>
  events.flatMap((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? [e.delta] : [])).join('');

describe('offline demo model end to end over POST /runs', () => {
  it('streams a deterministic answer in small deltas', async () => {
    const a = await collectSse(await post('t-demo-1', 'r1', 'hello there'));
    const b = await collectSse(await post('t-demo-2', 'r2', 'hello there'));
    expect(terminalOf(a.events).type).toBe('RUN_FINISHED');
    expect(text(a.events)).toBe(text(b.events));
    expect(text(a.events)).toContain('hello there');
    const deltas = a.events.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK');
    expect(deltas.length).toBeGreaterThan(10);
    expect(deltas.every((e) => e.type === 'TEXT_MESSAGE_CHUNK' && e.delta.length <= 4)).toBe(true);
  });

  it('"call me Ada" calls profile.patch on the host, which changes stored state, then remembers it', async () => {
    const { events } = await collectSse(await post('t-ada', 'r-ada-1', 'Please call me Ada'));
    expect(events.find((e) => e.type === 'TOOL_CALL_STARTED')).toMatchObject({
      toolName: 'profile.patch',
      args: JSON.stringify({ displayName: 'Ada' }),
    });
    expect(events.find((e) => e.type === 'TOOL_CALL_RESULT')).toMatchObject({
      toolName: 'profile.patch',
      ok: true,
    });
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    expect(await tools.store.getProfile('u1')).toMatchObject({ displayName: 'Ada' });
    expect(tools.emitted.find((e) => e.type === 'STATE_CHANGED')).toMatchObject({
      scope: 'profile',
      value: { displayName: 'Ada' },
    });
    const second = await collectSse(await post('t-ada', 'r-ada-2', "What's my name?"));
    expect(text(second.events)).toContain('Ada');
  });

  it('a run request with regenerates replaces the last turn in the stored history over POST /runs', async () => {
    const first = await collectSse(await post('t-regen', 'r-regen-1', 'hello again'));
    expect(terminalOf(first.events).type).toBe('RUN_FINISHED');
    const before = await tools.store.getSessionItems('t-regen');
    const { events } = await collectSse(
      await post('t-regen', 'r-regen-2', 'hello again', undefined, { regenerates: 'r-regen-1' }),
    );
    expect(events[0]).toMatchObject({ type: 'RUN_STARTED', runId: 'r-regen-2', regenerates: 'r-regen-1' });
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    const after = await tools.store.getSessionItems('t-regen');
    // The same turn again, not a second one: the message once and one answer.
    expect(after).toHaveLength(before.length);
    expect(JSON.stringify(after).split('hello again').length - 1).toBe(
      JSON.stringify(before).split('hello again').length - 1,
    );
  });

  it('"forget me" calls profile.clear, which waits for approval; approving clears the profile and answers', async () => {
    await tools.store.patchProfile('u1', { displayName: 'Ada' });
    const paused = await collectSse(await post('t-forget', 'r-forget', 'Please forget me'));
    expect(paused.events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TOOL_CALL_STARTED',
      'TOOL_APPROVAL_REQUESTED',
    ]);
    expect(paused.events[2]).toMatchObject({ toolName: 'profile.clear', args: '{}' });
    expect(await tools.store.getProfile('u1')).toMatchObject({ displayName: 'Ada' });
    const toolCallId = (paused.events[2] as { toolCallId: string }).toolCallId;
    tools.decide({ threadId: 't-forget', runId: 'r-forget', toolCallId, approved: true });
    const res = await fetch(`${served.url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        threadId: 't-forget',
        runId: 'r-forget',
        user: { id: 'u1' },
        message: 'resume',
        tools: await tools.toolsRef({ userId: 'u1', threadId: 't-forget', runId: 'r-forget' }),
        resume: { toolCallId, approved: true },
      }),
    });
    const { events } = await collectSse(res);
    expect(events.at(-1)?.type).toBe('RUN_FINISHED');
    expect(text(events)).toBe('Done: I have cleared your profile.');
    expect(await tools.store.getProfile('u1')).toEqual({});
    // The demo model reports no usage.
    expect(events.at(-1)).not.toHaveProperty('usage');
  });

  it('cancels a real run when the HTTP client disconnects', async () => {
    const controller = new AbortController();
    const res = await post('t-cancel', 'r-cancel', 'a long message '.repeat(20), controller.signal);
    for await (const item of readSse(res)) {
      if (item.event?.type === 'TEXT_MESSAGE_CHUNK') break;
    }
    controller.abort();
    await expect.poll(() => served.activeRuns()).toBe(0);
    // The user's message is still kept in the thread's history behind the API; the cut-off answer is not.
    await expect
      .poll(async () => JSON.stringify(await tools.store.getSessionItems('t-cancel')))
      .toContain('a long message');
    expect(JSON.stringify(await tools.store.getSessionItems('t-cancel'))).not.toContain('Demo model here');
  });

  it('a real run still streaming at the shutdown deadline ends with RUN_ERROR shutdown', async () => {
    const slowRunner = createRunner({
      modelProvider: createDemoModelProvider({ delayMs: 50 }),
      logger: silent,
      tracing: false,
    });
    const slowServed = await serveAgent(slowRunner, {
      auth: { sharedSecret: SECRET },
      logger: silent,
      doctor: false,
    });
    const threadId = 't-shutdown';
    const res = await fetch(`${slowServed.url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        threadId,
        runId: 'r-sd',
        user: { id: 'u1' },
        message: 'hi',
        tools: await tools.toolsRef({ userId: 'u1', threadId, runId: 'r-sd' }),
      }),
    });
    const events: AgentEvent[] = [];
    let closing: Promise<void> | undefined;
    for await (const item of readSse(res)) {
      if (!item.event) continue;
      events.push(item.event);
      if (item.event.type === 'TEXT_MESSAGE_CHUNK' && !closing)
        closing = slowServed.close({ deadlineMs: 60 });
    }
    await closing;
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'shutdown' });
    expect(slowServed.activeRuns()).toBe(0);
  });
});
