import { EventSchemas } from '@ag-ui/core/schemas';
import { describe, expect, it } from 'vitest';
import { type AgentEvent, type AgUiEvent, toAgUiEvents } from '../src/index.js';

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
  { type: 'TOOL_CALL_STARTED', ...ids, ...at(), toolCallId: 'call1', toolName: 'profile.patch' },
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
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'TOOL_CALL_START',
      'TOOL_CALL_END',
      'CUSTOM',
      'TOOL_CALL_RESULT',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_FINISHED',
    ]);
    checkAgUiRules(out);
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
