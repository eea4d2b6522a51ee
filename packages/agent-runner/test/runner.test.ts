import { OpenAIProvider } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { defineTool } from '@threadline/tools-kit';
import { LIMITS } from '@threadline/contracts';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRunner, localTool, type AgentRunnerOptions } from '../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, silent, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

let fake: FakeOpenAIServer;
let tools: ToolsServer;
let toolStarted: (() => void) | undefined;

const lookup = defineTool({
  name: 'weather.lookup',
  description: 'Weather for a city',
  input: z.strictObject({ city: z.string() }),
  output: z.strictObject({ forecast: z.string() }),
  handler: ({ city }) => {
    if (city === 'Atlantis') throw new Error('no such city');
    return { forecast: `sunny in ${city}` };
  },
});
const slow = defineTool({
  name: 'slow.task',
  description: 'Takes a long time',
  input: z.strictObject({}),
  output: z.strictObject({ done: z.boolean() }),
  handler: async (_input, ctx) => {
    toolStarted?.();
    await new Promise((resolve, reject) => {
      const t = setTimeout(resolve, 20_000);
      ctx.signal.addEventListener('abort', () => (clearTimeout(t), reject(new Error('aborted'))));
    });
    return { done: true };
  },
});

beforeAll(async () => {
  fake = await createFakeOpenAIServer();
  tools = await startToolsServer({ tools: [lookup, slow] });
});
afterAll(async () => {
  await fake.close();
  await tools.close();
});
beforeEach(() => {
  fake.requests.length = 0;
});

function makeRunner(options: Partial<AgentRunnerOptions> & { api?: 'responses' | 'chat' } = {}) {
  const client = new OpenAI({ apiKey: 'sk-test', baseURL: fake.baseURL, maxRetries: 0 });
  return createRunner({
    modelProvider: new OpenAIProvider({ openAIClient: client, useResponses: options.api !== 'chat' }),
    model: 'fake-model',
    tracing: false,
    logger: silent,
    ...options,
  });
}

let n = 0;
async function request(overrides: Partial<RunRequest> = {}): Promise<RunRequest> {
  n++;
  const threadId = overrides.threadId ?? `thread-${n}`;
  const runId = overrides.runId ?? `run-${n}`;
  return {
    threadId,
    runId,
    user: { id: 'user-1' },
    message: 'Hello',
    tools: await tools.toolsRef({ userId: 'user-1', threadId, runId }),
    ...overrides,
  };
}

const texts = (events: AgentEvent[]) =>
  events
    .filter((e) => e.type === 'TEXT_MESSAGE_CHUNK')
    .map((e) => (e as { delta: string }).delta)
    .join('');

describe('runner against the real SDK and the fake OpenAI server', () => {
  for (const api of ['responses', 'chat'] as const) {
    it(`streams a text turn (${api})`, async () => {
      fake.enqueue({ type: 'text', text: 'Hello from the model', chunkSize: 4 });
      const req = await request();
      const events = await collect(makeRunner({ api }).run(req));
      expect(events[0]).toMatchObject({ type: 'RUN_STARTED', threadId: req.threadId, runId: req.runId });
      const chunks = events.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK');
      expect(chunks.map((c) => (c as { delta: string }).delta)).toEqual([
        'Hell',
        'o fr',
        'om t',
        'he m',
        'odel',
      ]);
      expect(new Set(chunks.map((c) => (c as { messageId: string }).messageId)).size).toBe(1);
      expect(terminalOf(events)).toMatchObject({ type: 'RUN_FINISHED' });
      expect((terminalOf(events) as { traceId?: string }).traceId).toBeUndefined(); // tracing off: no trace id
    });
  }

  it('passes parentRunId through on RUN_STARTED', async () => {
    fake.enqueue({ type: 'text', text: 'ok' });
    const events = await collect(makeRunner().run(await request({ parentRunId: 'parent-1' })));
    expect(events[0]).toMatchObject({ type: 'RUN_STARTED', parentRunId: 'parent-1' });
  });

  it('runs a tool turn over real HTTP: TOOL_CALL_STARTED then TOOL_CALL_RESULT ok, then the answer', async () => {
    fake.enqueue({
      type: 'tool_call',
      calls: [{ name: 'weather_lookup', arguments: { city: 'Paris' }, callId: 'call_w1' }],
    });
    fake.enqueue({ type: 'text', text: 'It is sunny.' });
    const runner = makeRunner();
    const events = await collect(runner.run(await request()));
    const started = events.find((e) => e.type === 'TOOL_CALL_STARTED');
    const result = events.find((e) => e.type === 'TOOL_CALL_RESULT');
    expect(started).toMatchObject({ toolCallId: 'call_w1', toolName: 'weather.lookup' });
    expect(JSON.parse((started as { args: string }).args)).toEqual({ city: 'Paris' });
    expect(result).toMatchObject({ toolCallId: 'call_w1', toolName: 'weather.lookup', ok: true });
    expect(events.indexOf(started!)).toBeLessThan(events.indexOf(result!));
    expect(texts(events)).toBe('It is sunny.');
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    // The model saw the real tool output in the follow-up request.
    const followUp = JSON.stringify(fake.requests.at(-1)!.body.input);
    expect(followUp).toContain('sunny in Paris');
  });

  it('leaves args out of TOOL_CALL_STARTED when the arguments are longer than the contract allows', async () => {
    // The tool refuses the unknown key, so the run's history stays small enough for the session tools.
    const note = 'x'.repeat(LIMITS.maxDeltaLength);
    fake.enqueue({
      type: 'tool_call',
      calls: [{ name: 'weather_lookup', arguments: { city: 'Paris', note }, callId: 'call_long' }],
    });
    fake.enqueue({ type: 'text', text: 'Done.' });
    const events = await collect(makeRunner().run(await request()));
    const started = events.find((e) => e.type === 'TOOL_CALL_STARTED');
    expect(started).toMatchObject({ toolCallId: 'call_long', toolName: 'weather.lookup' });
    expect(started).not.toHaveProperty('args');
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_FINISHED' });
  });

  for (const api of ['responses', 'chat'] as const) {
    it(`gives each assistant message its own messageId (${api})`, async () => {
      fake.enqueue({
        type: 'tool_call',
        text: 'Let me check.',
        calls: [{ name: 'weather_lookup', arguments: { city: 'Oslo' } }],
      });
      fake.enqueue({ type: 'text', text: 'Cold.' });
      const events = await collect(makeRunner({ api }).run(await request()));
      const chunks = events.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK') as {
        messageId: string;
        delta: string;
      }[];
      const ids = [...new Set(chunks.map((c) => c.messageId))];
      expect(ids).toHaveLength(2);
      expect(
        chunks
          .filter((c) => c.messageId === ids[0])
          .map((c) => c.delta)
          .join(''),
      ).toBe('Let me check.');
      expect(
        chunks
          .filter((c) => c.messageId === ids[1])
          .map((c) => c.delta)
          .join(''),
      ).toBe('Cold.');
      expect(events.map((e) => e.type)).toEqual([
        'RUN_STARTED',
        'TEXT_MESSAGE_CHUNK',
        'TEXT_MESSAGE_CHUNK',
        'TOOL_CALL_STARTED',
        'TOOL_CALL_RESULT',
        'TEXT_MESSAGE_CHUNK',
        'RUN_FINISHED',
      ]);
    });
  }

  it('reports a failing tool as ok:false with the error, and the run still finishes', async () => {
    fake.enqueue({
      type: 'tool_call',
      calls: [{ name: 'weather_lookup', arguments: { city: 'Atlantis' }, callId: 'call_f1' }],
    });
    fake.enqueue({ type: 'text', text: 'Sorry.' });
    const events = await collect(makeRunner().run(await request()));
    const result = events.find((e) => e.type === 'TOOL_CALL_RESULT');
    expect(result).toMatchObject({ ok: false, toolName: 'weather.lookup' });
    expect((result as { error?: string }).error).toMatch(/internal_error/);
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
  });

  it('runs local tools in the agent service; a throwing localTool is ok:false', async () => {
    const local = [
      localTool({ name: 'local_ok', description: 'ok', parameters: z.object({}), execute: () => 'fine' }),
      localTool({
        name: 'local_fail',
        description: 'fails',
        parameters: z.object({}),
        execute: () => {
          throw new Error('disk on fire');
        },
      }),
    ];
    fake.enqueue({
      type: 'tool_call',
      calls: [
        { name: 'local_ok', arguments: {}, callId: 'call_l1' },
        { name: 'local_fail', arguments: {}, callId: 'call_l2' },
      ],
    });
    fake.enqueue({ type: 'text', text: 'ok' });
    const events = await collect(makeRunner({ localTools: local }).run(await request()));
    const results = events.filter((e) => e.type === 'TOOL_CALL_RESULT');
    expect(results.find((e) => e.toolCallId === 'call_l1')).toMatchObject({ ok: true, toolName: 'local_ok' });
    expect(results.find((e) => e.toolCallId === 'call_l2')).toMatchObject({
      ok: false,
      error: 'disk on fire',
    });
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
  });

  it('reports invalid tool input from the model as ok:false (router validation)', async () => {
    fake.enqueue({
      type: 'tool_call',
      calls: [{ name: 'weather_lookup', arguments: { town: 'Paris' }, callId: 'call_bad' }],
    });
    fake.enqueue({ type: 'text', text: 'Oops.' });
    const events = await collect(makeRunner().run(await request()));
    expect(events.find((e) => e.type === 'TOOL_CALL_RESULT')).toMatchObject({ ok: false });
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
  });

  it('ends with RUN_ERROR model_error on a model HTTP 500', async () => {
    fake.enqueue({ type: 'http_error', status: 500, message: 'upstream exploded' });
    const events = await collect(makeRunner().run(await request()));
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'model_error' });
    expect((terminalOf(events) as { message: string }).message).toMatch(/upstream exploded|500/);
  });

  it('ends with RUN_ERROR model_error on response.failed, after the partial text', async () => {
    fake.enqueue({ type: 'response_failed', message: 'the model gave up', textBefore: 'Partial' });
    const events = await collect(makeRunner().run(await request()));
    expect(texts(events)).toBe('Partial');
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'model_error' });
  });

  // `tuning.maxTurns`, and the deprecated top-level `maxTurns` that still works for one release.
  it.each([
    ['tuning.maxTurns', { tuning: { maxTurns: 2 } }],
    ['maxTurns (deprecated)', { maxTurns: 2 }],
  ])(
    'ends with RUN_ERROR max_turns_exceeded when the model keeps calling tools (%s)',
    async (_name, limit) => {
      for (let i = 0; i < 3; i++)
        fake.enqueue({ type: 'tool_call', calls: [{ name: 'weather_lookup', arguments: { city: 'Rome' } }] });
      const events = await collect(makeRunner(limit).run(await request()));
      expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'max_turns_exceeded' });
      expect(events.filter((e) => e.type === 'TOOL_CALL_RESULT')).toHaveLength(2);
    },
  );

  it('ends with RUN_ERROR tool_client_error when the tool endpoint rejects the token', async () => {
    const req = await request();
    const events = await collect(makeRunner().run({ ...req, tools: { ...req.tools, token: 'forged' } }));
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'tool_client_error' });
    expect((terminalOf(events) as { message: string }).message).toMatch(/token/);
    expect(fake.requests).toHaveLength(0);
  });

  it('ends with RUN_ERROR tool_client_error when the tool endpoint is unreachable', async () => {
    const events = await collect(
      makeRunner({ tuning: { toolTimeoutMs: 2000 } }).run(
        await request({ tools: { baseUrl: 'http://127.0.0.1:9', token: 't' } }),
      ),
    );
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'tool_client_error' });
  });

  it('aborts mid-stream: RUN_ERROR aborted, and the model stream is closed', async () => {
    fake.enqueue({ type: 'text', text: 'a'.repeat(400), chunkSize: 1, delayMs: 5 });
    const controller = new AbortController();
    const events: AgentEvent[] = [];
    for await (const e of makeRunner().run(await request(), { signal: controller.signal })) {
      events.push(e);
      if (events.filter((x) => x.type === 'TEXT_MESSAGE_CHUNK').length === 3) controller.abort();
    }
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'aborted' });
    expect(events.filter((x) => x.type === 'TEXT_MESSAGE_CHUNK').length).toBeLessThan(50);
    await expect.poll(() => fake.openStreams()).toBe(0);
  });

  it('aborts mid-tool: the tool call is cancelled and the run ends with RUN_ERROR aborted', async () => {
    fake.enqueue({ type: 'tool_call', calls: [{ name: 'slow_task', arguments: {}, callId: 'call_slow' }] });
    const controller = new AbortController();
    toolStarted = () => controller.abort();
    const t0 = Date.now();
    const events = await collect(makeRunner().run(await request(), { signal: controller.signal }));
    toolStarted = undefined;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(events.find((e) => e.type === 'TOOL_CALL_STARTED')).toMatchObject({ toolName: 'slow.task' });
    expect(terminalOf(events)).toMatchObject({ type: 'RUN_ERROR', code: 'aborted' });
  });

  it('a second turn sees the first turn through the session tools, even from a restarted runner', async () => {
    const threadId = 'thread-history';
    fake.enqueue({ type: 'text', text: 'Nice to meet you, Ada.' });
    await collect(makeRunner().run(await request({ threadId, message: 'My name is Ada' })));
    // A fresh runner stands for a restarted agent service: it holds no memory of the first turn.
    const restarted = makeRunner();
    fake.enqueue({ type: 'text', text: 'You are Ada.' });
    const events = await collect(restarted.run(await request({ threadId, message: 'What is my name?' })));
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    const input = JSON.stringify(fake.requests.at(-1)!.body.input);
    expect(input).toContain('My name is Ada');
    expect(input).toContain('Nice to meet you, Ada.');
    expect(input).toContain('What is my name?');
    // History lives in the API's store, not in the agent.
    const stored = await tools.store.getSessionItems(threadId);
    expect(stored.length).toBe(4);
  });

  it('a regenerate drops the old answer from the history: the model gets the user message once and not the old answer', async () => {
    const threadId = 'thread-regenerate';
    const count = (text: string, part: string) => text.split(part).length - 1;
    fake.enqueue({ type: 'text', text: 'Hello Ada.' });
    await collect(makeRunner().run(await request({ threadId, message: 'My name is Ada' })));
    fake.enqueue({ type: 'text', text: 'Old answer: red.' });
    const first = await request({ threadId, message: 'Pick a colour' });
    await collect(makeRunner().run(first));
    fake.enqueue({ type: 'text', text: 'New answer: blue.' });
    const again = await request({ threadId, message: 'Pick a colour', regenerates: first.runId });
    const events = await collect(makeRunner().run(again));
    expect(events[0]).toMatchObject({ type: 'RUN_STARTED', regenerates: first.runId });
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    const input = JSON.stringify(fake.requests.at(-1)!.body.input);
    expect(count(input, 'Pick a colour')).toBe(1);
    expect(input).not.toContain('Old answer');
    expect(input).toContain('My name is Ada');
    expect(input).toContain('Hello Ada.');
    // The stored history is the thread as the user now sees it.
    const stored = JSON.stringify(await tools.store.getSessionItems(threadId));
    expect(count(stored, 'Pick a colour')).toBe(1);
    expect(stored).not.toContain('Old answer');
    expect(stored).toContain('New answer: blue.');
  });

  it('a regenerate after a failed answer keeps the message once; one whose run never reached the history removes nothing', async () => {
    const threadId = 'thread-regenerate-failed';
    const count = (text: string, part: string) => text.split(part).length - 1;
    fake.enqueue({ type: 'text', text: 'Hello Ada.' });
    await collect(makeRunner().run(await request({ threadId, message: 'My name is Ada' })));
    fake.enqueue({ type: 'response_failed', message: 'the model gave up', textBefore: 'Partial old' });
    const failed = await request({ threadId, message: 'Tell a story' });
    expect(terminalOf(await collect(makeRunner().run(failed))).type).toBe('RUN_ERROR');
    fake.enqueue({ type: 'text', text: 'Once upon a time.' });
    await collect(
      makeRunner().run(await request({ threadId, message: 'Tell a story', regenerates: failed.runId })),
    );
    let input = JSON.stringify(fake.requests.at(-1)!.body.input);
    expect(count(input, 'Tell a story')).toBe(1);
    expect(input).not.toContain('Partial old');
    expect(input).toContain('Hello Ada.');
    // The run being replaced left nothing in the history (it failed before the agent service saw it): the
    // newest user message there is another one, and it stays with its answer.
    fake.enqueue({ type: 'text', text: 'Sure.' });
    await collect(
      makeRunner().run(
        await request({ threadId, message: 'A message the history lacks', regenerates: 'run-x' }),
      ),
    );
    input = JSON.stringify(fake.requests.at(-1)!.body.input);
    expect(input).toContain('Tell a story');
    expect(input).toContain('Once upon a time.');
    expect(count(input, 'A message the history lacks')).toBe(1);
  });

  it('a consumer that stops early aborts the SDK run', async () => {
    fake.enqueue({ type: 'text', text: 'b'.repeat(300), chunkSize: 1, delayMs: 5 });
    for await (const e of makeRunner().run(await request())) {
      if (e.type === 'TEXT_MESSAGE_CHUNK') break;
    }
    await expect.poll(() => fake.openStreams()).toBe(0);
  });
});
