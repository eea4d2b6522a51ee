import { HttpAgent } from '@ag-ui/client';
import { EventSchemas, MessageSchema } from '@ag-ui/core/schemas';
import { describe, expect, it } from 'vitest';
import {
  type AgentEvent,
  type AgUiEvent,
  createAgUiMessageBuilder,
  toAgUiEvents,
  toAgUiMessages,
} from '../src/index.js';

const ids = { threadId: 't1', runId: 'r1' };
let ts = 1;
const at = () => ({ ts: ts++ });

const run: AgentEvent[] = [
  {
    type: 'USER_MESSAGE',
    ...ids,
    ...at(),
    messageId: 'u1',
    clientMessageId: 'c1',
    userId: 'user',
    text: 'hi',
  },
  { type: 'RUN_STARTED', ...ids, ...at() },
  { type: 'HISTORY_WINDOWED', ...ids, ...at(), windowItems: 200 },
  { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm1', delta: 'Let me ' },
  { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm1', delta: '' },
  { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm1', delta: 'check.' },
  {
    type: 'TOOL_CALL_STARTED',
    ...ids,
    ...at(),
    toolCallId: 'call1',
    toolName: 'profile.patch',
    args: '{"displayName":"Ada"}',
  },
  { type: 'STATE_CHANGED', ...ids, ...at(), scope: 'profile', value: { displayName: 'Ada' } },
  { type: 'TOOL_CALL_RESULT', ...ids, ...at(), toolCallId: 'call1', toolName: 'profile.patch', ok: true },
  { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm2', delta: 'Done, Ada.' },
  { type: 'RUN_FINISHED', ...ids, ...at(), traceId: 'trace_1' },
];

/** AG-UI's ordering rules, checked over an output stream. */
function checkAgUiRules(events: AgUiEvent[]) {
  let inRun = false;
  const openMessages = new Set<string>();
  const openCalls = new Set<string>();
  for (const e of events) {
    if (e.type === 'RUN_STARTED') {
      expect(inRun, 'RUN_STARTED inside a run').toBe(false);
      inRun = true;
      continue;
    }
    expect(inRun, `${e.type} outside a run`).toBe(true);
    if (e.type === 'TEXT_MESSAGE_START') openMessages.add(e.messageId);
    if (e.type === 'TEXT_MESSAGE_CONTENT') {
      expect(openMessages.has(e.messageId)).toBe(true);
      expect(e.delta.length).toBeGreaterThan(0);
    }
    if (e.type === 'TEXT_MESSAGE_END') expect(openMessages.delete(e.messageId)).toBe(true);
    if (e.type === 'TOOL_CALL_START') openCalls.add(e.toolCallId);
    if (e.type === 'TOOL_CALL_END') expect(openCalls.delete(e.toolCallId)).toBe(true);
    if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') {
      expect(openMessages.size).toBe(0);
      expect(openCalls.size).toBe(0);
      inRun = false;
    }
  }
  expect(inRun).toBe(false);
}

describe('AG-UI bridge', () => {
  it('maps a tool approval to CUSTOM events inside the open run, and usage into the result', () => {
    const paused: AgentEvent[] = [
      { type: 'RUN_STARTED', ...ids, ts: 1 },
      { type: 'TEXT_MESSAGE_CHUNK', ...ids, ts: 2, messageId: 'm1', delta: 'Sure.' },
      {
        type: 'TOOL_APPROVAL_REQUESTED',
        ...ids,
        ts: 3,
        toolCallId: 'call9',
        toolName: 'profile.clear',
        args: '{}',
        expiresAt: '2026-12-03T00:00:00.000Z',
      },
      { type: 'TOOL_APPROVAL_RESOLVED', ...ids, ts: 4, toolCallId: 'call9', approved: true, decidedBy: 'u' },
      {
        type: 'RUN_FINISHED',
        ...ids,
        ts: 5,
        usage: { inputTokens: 3, outputTokens: 2, totalTokens: 5 },
      },
    ];
    const out = toAgUiEvents(paused);
    for (const e of out) expect(EventSchemas.safeParse(e).success, JSON.stringify(e)).toBe(true);
    checkAgUiRules(out);
    expect(out.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'CUSTOM',
      'CUSTOM',
      'RUN_FINISHED',
    ]);
    expect(out[4]).toMatchObject({
      name: 'threadline.tool_approval_requested',
      value: { toolCallId: 'call9', toolName: 'profile.clear', args: '{}' },
    });
    expect(out[5]).toMatchObject({
      name: 'threadline.tool_approval_resolved',
      value: { toolCallId: 'call9', approved: true, decidedBy: 'u' },
    });
    expect(out[6]).toMatchObject({ result: { usage: { totalTokens: 5 } } });
  });

  it('maps a run with text and a tool call to valid AG-UI events in order', () => {
    const out = toAgUiEvents(run);
    for (const e of out) {
      const r = EventSchemas.safeParse(e);
      expect(r.success, JSON.stringify(e)).toBe(true);
    }
    expect(out.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'TOOL_CALL_START',
      'TOOL_CALL_ARGS',
      'TOOL_CALL_END',
      'CUSTOM',
      'TOOL_CALL_RESULT',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_FINISHED',
    ]);
    checkAgUiRules(out);
    // The user's own message, under the id its sender chose, right after its run's RUN_STARTED.
    expect(out.slice(1, 4)).toEqual([
      { type: 'TEXT_MESSAGE_START', messageId: 'c1', role: 'user', timestamp: 1 },
      { type: 'TEXT_MESSAGE_CONTENT', messageId: 'c1', delta: 'hi', timestamp: 1 },
      { type: 'TEXT_MESSAGE_END', messageId: 'c1', timestamp: 1 },
    ]);
    expect(out.find((e) => e.type === 'TOOL_CALL_ARGS')).toMatchObject({
      toolCallId: 'call1',
      delta: '{"displayName":"Ada"}',
    });
  });

  it('closes an open message before RUN_ERROR and emits nothing of the run after it', () => {
    const out = toAgUiEvents([
      { type: 'RUN_STARTED', ...ids, ...at() },
      { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm1', delta: 'Hel' },
      { type: 'RUN_ERROR', ...ids, ...at(), message: 'boom', code: 'model_error' },
      { type: 'TEXT_MESSAGE_CHUNK', ...ids, ...at(), messageId: 'm1', delta: 'lo' },
      { type: 'RUN_FINISHED', ...ids, ...at() },
    ]);
    expect(out.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_ERROR',
    ]);
    for (const e of out) expect(EventSchemas.safeParse(e).success).toBe(true);
    checkAgUiRules(out);
  });

  it('handles consecutive runs of a thread and ignores events of other runs', () => {
    const out = toAgUiEvents([
      ...run,
      { type: 'RUN_STARTED', threadId: 't1', runId: 'r2', ...at() },
      { type: 'TEXT_MESSAGE_CHUNK', threadId: 't1', runId: 'stray', ...at(), messageId: 'x', delta: 'no' },
      { type: 'TEXT_MESSAGE_CHUNK', threadId: 't1', runId: 'r2', ...at(), messageId: 'm3', delta: 'again' },
      { type: 'RUN_FINISHED', threadId: 't1', runId: 'r2', ...at() },
    ]);
    checkAgUiRules(out);
    expect(out.filter((e) => e.type === 'RUN_STARTED')).toHaveLength(2);
    expect(JSON.stringify(out)).not.toContain('"no"');
  });
});

/** A thread's log with what the bridge has to get right: several runs, tool calls, failures, a cancel. */
function threadLog(): AgentEvent[] {
  let t = 100;
  const e = (runId: string, rest: { type: AgentEvent['type'] } & Record<string, unknown>) =>
    ({ threadId: 't1', ts: t++, runId, ...rest }) as AgentEvent;
  const user = (runId: string, id: string, text: string) =>
    e(runId, { type: 'USER_MESSAGE', messageId: `m_${id}`, clientMessageId: id, userId: 'u', text });
  return [
    user('r1', 'c1', 'call me Ada'),
    e('r1', { type: 'RUN_STARTED' }),
    e('r1', {
      type: 'TOOL_CALL_STARTED',
      toolCallId: 'call_a',
      toolName: 'profile.patch',
      args: '{"displayName":"Ada"}',
    }),
    e('r1', { type: 'STATE_CHANGED', scope: 'profile', value: { displayName: 'Ada' } }),
    e('r1', { type: 'TOOL_CALL_RESULT', toolCallId: 'call_a', toolName: 'profile.patch', ok: true }),
    e('r1', { type: 'TEXT_MESSAGE_CHUNK', messageId: 'a1', delta: 'Done, ' }),
    e('r1', { type: 'TEXT_MESSAGE_CHUNK', messageId: 'a1', delta: 'Ada.' }),
    e('r1', { type: 'RUN_FINISHED', traceId: 'trace_1' }),
    // Failed before the agent answered: no RUN_STARTED in the log.
    user('r2', 'c2', 'are you there?'),
    e('r2', { type: 'RUN_ERROR', code: 'agent_unreachable', message: 'the agent did not answer' }),
    // Two calls in parallel, one failing, then text; then cancelled mid-text.
    user('r3', 'c3', 'look both up'),
    e('r3', { type: 'RUN_STARTED' }),
    e('r3', { type: 'TEXT_MESSAGE_CHUNK', messageId: 'a2', delta: 'Looking.' }),
    e('r3', { type: 'TOOL_CALL_STARTED', toolCallId: 'call_b', toolName: 'weather.lookup', args: '{}' }),
    e('r3', { type: 'TOOL_CALL_STARTED', toolCallId: 'call_c', toolName: 'weather.lookup' }),
    e('r3', {
      type: 'TOOL_CALL_RESULT',
      toolCallId: 'call_c',
      toolName: 'weather.lookup',
      ok: false,
      error: 'x',
    }),
    e('r3', { type: 'TOOL_CALL_RESULT', toolCallId: 'call_b', toolName: 'weather.lookup', ok: true }),
    e('r3', { type: 'TEXT_MESSAGE_CHUNK', messageId: 'a3', delta: 'Half' }),
    e('r3', { type: 'RUN_ERROR', code: 'cancelled', message: 'the run was cancelled' }),
    user('r4', 'c4', 'thanks'),
    e('r4', { type: 'RUN_STARTED' }),
    e('r4', { type: 'TEXT_MESSAGE_CHUNK', messageId: 'a4', delta: 'You are welcome.' }),
    e('r4', { type: 'RUN_FINISHED' }),
  ];
}

/** Runs the real @ag-ui/client HttpAgent (with its event checks) over a canned SSE body. */
async function applyWithHttpAgent(events: AgUiEvent[]) {
  const body = events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('');
  const agent = new HttpAgent({
    url: 'http://agui.invalid/run',
    threadId: 't1',
    fetch: async () => new Response(body, { headers: { 'content-type': 'text/event-stream' } }),
  });
  await agent.runAgent({ runId: 'r1' });
  return agent.messages;
}

describe('AG-UI messages', () => {
  it('are what the real HttpAgent holds after applying the mapped events of the same log', async () => {
    const log = threadLog();
    const out = toAgUiEvents(log);
    checkAgUiRules(out);
    for (const e of out) expect(EventSchemas.safeParse(e).success, JSON.stringify(e)).toBe(true);
    const messages = toAgUiMessages(log);
    for (const m of messages) expect(MessageSchema.safeParse(m).success, JSON.stringify(m)).toBe(true);
    expect(await applyWithHttpAgent(out)).toEqual(messages);
    expect(messages.map((m) => `${m.role}:${m.id}`)).toEqual([
      'user:c1',
      'assistant:call_a',
      'tool:call_a:result',
      'assistant:a1',
      'user:c2',
      'user:c3',
      'assistant:a2',
      'assistant:call_b',
      'tool:call_b:result',
      'assistant:call_c',
      'tool:call_c:result',
      'assistant:a3',
      'user:c4',
      'assistant:a4',
    ]);
    expect(messages[1]).toEqual({
      id: 'call_a',
      role: 'assistant',
      toolCalls: [
        {
          id: 'call_a',
          type: 'function',
          function: { name: 'profile.patch', arguments: '{"displayName":"Ada"}' },
        },
      ],
    });
  });

  it('map a run that failed before it started to RUN_STARTED, its user message, RUN_ERROR', () => {
    const out = toAgUiEvents(threadLog().slice(8, 10));
    expect(out.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_ERROR',
    ]);
    expect(out[0]).toMatchObject({ threadId: 't1', runId: 'r2' });
  });

  it('map a cancelled run to RUN_FINISHED with outcome cancelled', () => {
    const out = toAgUiEvents(threadLog().slice(10, 19));
    expect(out.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId: 'r3', outcome: { type: 'cancelled' } });
    expect(EventSchemas.safeParse(out.at(-1)).success).toBe(true);
  });

  it('keep only the newest maxMessages, and refuse a bound that is not a positive integer', () => {
    const builder = createAgUiMessageBuilder({ maxMessages: 3 });
    for (let i = 0; i < 10; i++) {
      builder.push({
        type: 'TEXT_MESSAGE_CHUNK',
        threadId: 't1',
        runId: 'r1',
        ts: i,
        messageId: `a${i}`,
        delta: 'x',
      });
    }
    expect(builder.messages().map((m) => m.id)).toEqual(['a7', 'a8', 'a9']);
    expect(() => createAgUiMessageBuilder({ maxMessages: 0 })).toThrow(RangeError);
  });
});
