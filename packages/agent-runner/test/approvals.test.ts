import { z } from 'zod';
import { MemoryToolStore, defineTool } from '@threadline/tools-kit';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, fakeOpenAIRunner } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

let fake: FakeOpenAIServer;
let tools: ToolsServer;
const store = new MemoryToolStore();
let wipes = 0;

const wipe = defineTool({
  name: 'profile.wipe',
  description: 'Empty the profile',
  input: z.strictObject({ why: z.string() }),
  output: z.strictObject({ wiped: z.boolean() }),
  needsApproval: true,
  handler: () => {
    wipes++;
    return { wiped: true };
  },
});

beforeAll(async () => {
  fake = await createFakeOpenAIServer();
  tools = await startToolsServer({ tools: [wipe], store });
});
afterAll(async () => {
  await fake.close();
  await tools.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  wipes = 0;
});

const makeRunner = () => fakeOpenAIRunner(fake.baseURL);

let n = 0;
async function request(): Promise<RunRequest> {
  n++;
  const threadId = `athread-${n}`;
  const runId = `arun-${n}`;
  return {
    threadId,
    runId,
    user: { id: 'user-1' },
    text: 'Wipe it',
    tools: await tools.toolsRef({ userId: 'user-1', threadId, runId }),
  };
}

/** Starts a run whose model calls profile.wipe; returns the request and the paused stream's events. */
async function pause(usage = { input: 5, output: 3 }) {
  fake.enqueue({
    type: 'tool_call',
    calls: [{ name: 'profile_wipe', arguments: { why: 'asked' }, callId: 'call_wipe1' }],
    usage,
  });
  const req = await request();
  const events = await collect(makeRunner().run(req));
  return { req, events };
}

const types = (events: AgentEvent[]) => events.map((e) => e.type);

describe('tool approvals in the runner', () => {
  it('pauses: TOOL_APPROVAL_REQUESTED, no terminal event, the state saved behind the API, the tool not run', async () => {
    const { req, events } = await pause();
    expect(types(events)).toEqual(['RUN_STARTED', 'TOOL_CALL_STARTED', 'TOOL_APPROVAL_REQUESTED']);
    expect(events[2]).toMatchObject({
      toolCallId: 'call_wipe1',
      toolName: 'profile.wipe',
      args: '{"why":"asked"}',
    });
    const expiresAt = Date.parse((events[2] as { expiresAt: string }).expiresAt);
    expect(expiresAt).toBeGreaterThan(Date.now() + 23 * 3600_000);
    expect(await store.getRunState(req.threadId, req.runId)).toMatch(/call_wipe1/);
    expect(wipes).toBe(0);
  });

  it('approve: a new runner (as after a restart) runs the tool, streams the answer and RUN_FINISHED with usage of both halves', async () => {
    const { req } = await pause({ input: 5, output: 3 });
    fake.enqueue({ type: 'text', text: 'Wiped.', usage: { input: 7, output: 2 } });
    tools.decide({ threadId: req.threadId, runId: req.runId, toolCallId: 'call_wipe1', approved: true });
    const events = await collect(
      makeRunner().run({ ...req, resume: { toolCallId: 'call_wipe1', approved: true } }),
    );
    // No second RUN_STARTED: the same run goes on.
    expect(types(events)).toEqual(['TOOL_CALL_RESULT', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
    expect(events[0]).toMatchObject({ toolCallId: 'call_wipe1', ok: true });
    expect(wipes).toBe(1);
    expect(events.at(-1)).toMatchObject({
      usage: { inputTokens: 12, outputTokens: 5, totalTokens: 17, requests: 2 },
    });
    // The saved state is gone once the run is over; the model got the tool's output.
    expect(await store.getRunState(req.threadId, req.runId)).toBeNull();
    const last = JSON.stringify(fake.requests.at(-1)?.body);
    expect(last).toContain('function_call_output');
    expect(last).toContain('wiped');
    // History: one user message, even though the run went through the SDK twice.
    const history = await store.getSessionItems(req.threadId);
    expect(history.filter((i) => (i as { role?: string }).role === 'user')).toHaveLength(1);
  });

  it('reject: the tool never runs and the model is told, with the reason', async () => {
    const { req } = await pause();
    fake.enqueue({ type: 'text', text: 'Understood, I left it.' });
    tools.decide({ threadId: req.threadId, runId: req.runId, toolCallId: 'call_wipe1', approved: false });
    const events = await collect(
      makeRunner().run({
        ...req,
        resume: { toolCallId: 'call_wipe1', approved: false, reason: 'keep my data' },
      }),
    );
    expect(events[0]).toMatchObject({
      type: 'TOOL_CALL_RESULT',
      toolCallId: 'call_wipe1',
      ok: false,
      error: expect.stringMatching(/rejected/),
    });
    expect(wipes).toBe(0);
    const last = JSON.stringify(fake.requests.at(-1)?.body);
    expect(last).toContain('function_call_output');
    expect(last).toContain('keep my data');
  });

  it('a resume naming another tool call, or with no saved state, ends with a RUN_ERROR', async () => {
    const { req } = await pause();
    const wrong = await collect(
      makeRunner().run({ ...req, resume: { toolCallId: 'call_other', approved: true } }),
    );
    expect(types(wrong)).toEqual(['RUN_ERROR']);
    expect(wrong[0]).toMatchObject({ code: 'tool_client_error' });
    const fresh = await request();
    const none = await collect(
      makeRunner().run({ ...fresh, resume: { toolCallId: 'call_wipe1', approved: true } }),
    );
    expect(none[0]).toMatchObject({ type: 'RUN_ERROR', code: 'tool_client_error' });
    expect(wipes).toBe(0);
  });
});
