import { describe, expect, it } from 'vitest';
import {
  AgentEventSchema,
  ContractError,
  LIMITS,
  SequencedAgentEventSchema,
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  createStateChangedEvent,
  createHistoryWindowedEvent,
  createTextMessageChunkEvent,
  createToolCallResultEvent,
  createToolCallStartedEvent,
  createUserMessageEvent,
  isTerminalEvent,
  parseEvent,
  parseEventLenient,
  parseSequencedEvent,
  safeParse,
  safeParseJson,
} from '../src/index.js';

const ids = { threadId: 'thread_1', runId: 'run_1', ts: 1_700_000_000_000 };

/** One documented example per event type. */
export const examples = [
  { type: 'RUN_STARTED', ...ids },
  { type: 'RUN_STARTED', ...ids, parentRunId: 'run_0' },
  {
    type: 'TOOL_CALL_STARTED',
    ...ids,
    toolCallId: 'call_1',
    toolName: 'profile.patch',
    label: 'Updating profile',
  },
  { type: 'TOOL_CALL_RESULT', ...ids, toolCallId: 'call_1', toolName: 'profile.patch', ok: true },
  {
    type: 'TOOL_CALL_RESULT',
    ...ids,
    toolCallId: 'call_1',
    toolName: 'profile.patch',
    ok: false,
    error: 'invalid input',
  },
  { type: 'TEXT_MESSAGE_CHUNK', ...ids, messageId: 'msg_1', delta: 'Hello' },
  { type: 'RUN_ERROR', ...ids, message: 'The model failed', code: 'model_error' },
  {
    type: 'RUN_FINISHED',
    ...ids,
    traceId: 'trace_0123456789abcdef0123456789abcdef',
    usage: { inputTokens: 10, outputTokens: 5, totalTokens: 15, requests: 2 },
  },
  { type: 'USER_MESSAGE', ...ids, messageId: 'umsg_1', clientMessageId: 'c-1', userId: 'u1', text: 'hi' },
  { type: 'STATE_CHANGED', ...ids, scope: 'profile', value: { displayName: 'Ada' } },
  { type: 'HISTORY_WINDOWED', ...ids, windowItems: 200 },
  {
    type: 'TOOL_APPROVAL_REQUESTED',
    ...ids,
    toolCallId: 'call_3',
    toolName: 'profile.clear',
    label: 'Clear your profile',
    args: '{}',
    expiresAt: '2026-12-03T07:40:00.000Z',
  },
  {
    type: 'TOOL_APPROVAL_RESOLVED',
    ...ids,
    toolCallId: 'call_3',
    approved: false,
    decidedBy: 'u1',
    reason: 'not now',
  },
  {
    type: 'TOOL_CALL_STARTED',
    ...ids,
    toolCallId: 'call_2',
    toolName: 'profile.patch',
    args: '{"displayName":"Ada"}',
  },
  { type: 'RUN_STARTED', ...ids, regenerates: 'run_0' },
] as const;

describe('event schemas', () => {
  it.each(examples)('accepts the documented example $type', (example) => {
    expect(parseEvent(example)).toEqual(example);
    expect(parseSequencedEvent({ ...example, seq: 7 })).toEqual({ ...example, seq: 7 });
  });

  it.each(examples)('rejects $type without threadId or runId', (example) => {
    for (const key of ['threadId', 'runId', 'ts'] as const) {
      const copy: Record<string, unknown> = { ...example };
      delete copy[key];
      const r = safeParse(AgentEventSchema, copy);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.issues.map((i) => i.path)).toContain(key);
    }
  });

  it.each(examples)('rejects $type with an unknown extra field', (example) => {
    const r = safeParse(AgentEventSchema, { ...example, extra: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.issues[0]?.message).toMatch(/unknown key/);
  });

  it('requires seq on sequenced events and a positive integer', () => {
    const base = examples[0];
    expect(safeParse(SequencedAgentEventSchema, base).ok).toBe(false);
    for (const seq of [0, -1, 1.5, '1', Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(safeParse(SequencedAgentEventSchema, { ...base, seq }).ok).toBe(false);
    }
  });

  it('rejects wrong types', () => {
    const cases: Record<string, unknown>[] = [
      { ...examples[0], threadId: 42 },
      { ...examples[0], ts: '2024-01-01' },
      { ...examples[3], ok: 'yes' },
      { ...examples[5], delta: 5 },
      { ...examples[0], type: 'run_started' },
      { ...examples[0], type: 'NOPE' },
    ];
    for (const c of cases) expect(safeParse(AgentEventSchema, c).ok).toBe(false);
  });

  it('rejects empty ids, ids with bad characters and oversize ids', () => {
    for (const threadId of ['', 'a b', 'a/b', '<script>', 'x'.repeat(LIMITS.maxIdLength + 1)]) {
      expect(safeParse(AgentEventSchema, { ...examples[0], threadId }).ok).toBe(false);
    }
    expect(safeParse(AgentEventSchema, { ...examples[0], threadId: 'x'.repeat(LIMITS.maxIdLength) }).ok).toBe(
      true,
    );
  });

  it('rejects oversize strings', () => {
    expect(
      safeParse(AgentEventSchema, { ...examples[5], delta: 'x'.repeat(LIMITS.maxDeltaLength + 1) }).ok,
    ).toBe(false);
    expect(
      safeParse(AgentEventSchema, { ...examples[8], text: 'x'.repeat(LIMITS.maxMessageLength + 1) }).ok,
    ).toBe(false);
    expect(
      safeParse(AgentEventSchema, { ...examples[6], message: 'x'.repeat(LIMITS.maxErrorMessageLength + 1) })
        .ok,
    ).toBe(false);
    expect(
      safeParse(AgentEventSchema, { ...examples[2], toolName: 'x'.repeat(LIMITS.maxToolNameLength + 1) }).ok,
    ).toBe(false);
  });

  it('bounds TOOL_CALL_STARTED args at LIMITS.maxDeltaLength and takes only a string', () => {
    const call = examples[2];
    expect(safeParse(AgentEventSchema, { ...call, args: '' }).ok).toBe(true);
    expect(safeParse(AgentEventSchema, { ...call, args: 'x'.repeat(LIMITS.maxDeltaLength) }).ok).toBe(true);
    expect(safeParse(AgentEventSchema, { ...call, args: 'x'.repeat(LIMITS.maxDeltaLength + 1) }).ok).toBe(
      false,
    );
    expect(safeParse(AgentEventSchema, { ...call, args: { displayName: 'Ada' } }).ok).toBe(false);
  });

  it('rejects non-JSON values anywhere', () => {
    const bad: unknown[] = [
      () => 1,
      undefined,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      10n,
      Symbol('s'),
      new Date(0),
    ];
    for (const value of bad) {
      expect(safeParse(AgentEventSchema, { ...examples[0], ts: value }).ok).toBe(false);
      expect(safeParse(AgentEventSchema, { ...examples[9], value }).ok).toBe(false);
      expect(safeParse(AgentEventSchema, { ...examples[9], value: { nested: [value] } }).ok).toBe(false);
    }
    expect(safeParse(AgentEventSchema, undefined).ok).toBe(false);
    expect(safeParse(AgentEventSchema, null).ok).toBe(false);
  });

  it('rejects prototype-pollution keys in payloads', () => {
    for (const text of [
      '{"type":"STATE_CHANGED","threadId":"t","runId":"r","ts":1,"scope":"profile","value":{"__proto__":{"admin":true}}}',
      '{"type":"STATE_CHANGED","threadId":"t","runId":"r","ts":1,"scope":"profile","value":{"a":{"constructor":{"prototype":1}}}}',
      '{"type":"RUN_STARTED","threadId":"t","runId":"r","ts":1,"__proto__":{"admin":true}}',
    ]) {
      const r = safeParseJson(AgentEventSchema, text);
      expect(r.ok).toBe(false);
    }
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('rejects state nested deeper than the limit', () => {
    let value: unknown = 1;
    for (let i = 0; i < LIMITS.maxJsonDepth + 2; i++) value = [value];
    expect(safeParse(AgentEventSchema, { ...examples[9], value }).ok).toBe(false);
  });

  it('reports typed issues with paths, not zod internals', () => {
    const r = safeParse(AgentEventSchema, {
      type: 'TOOL_CALL_RESULT',
      threadId: '',
      runId: 'r',
      ts: 1,
      toolCallId: 'c',
      toolName: 'x',
      ok: 1,
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBeInstanceOf(ContractError);
    expect(r.error.code).toBe('invalid_payload');
    expect(r.error.name).toBe('ContractError');
    expect(r.error.issues).toEqual(
      expect.arrayContaining([
        { path: 'threadId', message: 'must not be empty' },
        { path: 'ok', message: 'expected boolean' },
      ]),
    );
  });

  it('reports bad JSON text with its own code', () => {
    const r = safeParseJson(AgentEventSchema, '{"type":');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('invalid_json');
  });

  it('knows which events are terminal', () => {
    expect(examples.filter(isTerminalEvent).map((e) => e.type)).toEqual(['RUN_ERROR', 'RUN_FINISHED']);
  });
});

describe('factories', () => {
  it('build validated events with ts defaulting to now', () => {
    const before = Date.now();
    const e = createRunStartedEvent({ threadId: 't1', runId: 'r1' });
    expect(e.type).toBe('RUN_STARTED');
    expect(e.ts).toBeGreaterThanOrEqual(before);
    expect(
      createTextMessageChunkEvent({ threadId: 't', runId: 'r', messageId: 'm', delta: 'x', ts: 5 }),
    ).toEqual({
      type: 'TEXT_MESSAGE_CHUNK',
      threadId: 't',
      runId: 'r',
      messageId: 'm',
      delta: 'x',
      ts: 5,
    });
    expect(
      createToolCallStartedEvent({ threadId: 't', runId: 'r', toolCallId: 'c', toolName: 'a.b' }).type,
    ).toBe('TOOL_CALL_STARTED');
    expect(
      createToolCallResultEvent({ threadId: 't', runId: 'r', toolCallId: 'c', toolName: 'a.b', ok: true }).ok,
    ).toBe(true);
    expect(createRunErrorEvent({ threadId: 't', runId: 'r', message: 'x', code: 'aborted' }).code).toBe(
      'aborted',
    );
    expect(createRunFinishedEvent({ threadId: 't', runId: 'r' }).type).toBe('RUN_FINISHED');
    expect(
      createUserMessageEvent({
        threadId: 't',
        runId: 'r',
        messageId: 'm',
        clientMessageId: 'c',
        userId: 'u',
        text: 'hi',
      }).text,
    ).toBe('hi');
    expect(
      createStateChangedEvent({ threadId: 't', runId: 'r', scope: 'profile', value: { a: 1 } }).scope,
    ).toBe('profile');
    expect(createHistoryWindowedEvent({ threadId: 't', runId: 'r', windowItems: 200 }).windowItems).toBe(200);
    expect(() => createHistoryWindowedEvent({ threadId: 't', runId: 'r', windowItems: -1 })).toThrow(
      ContractError,
    );
  });

  it('throw ContractError on bad input', () => {
    expect(() => createRunStartedEvent({ threadId: '', runId: 'r1' })).toThrow(ContractError);
    expect(() => createRunErrorEvent({ threadId: 't', runId: 'r', message: '', code: 'Bad Code' })).toThrow(
      /invalid RUN_ERROR event/,
    );
  });
});

describe('parseEventLenient', () => {
  it('keeps unknown event types from newer servers as opaque', () => {
    const raw = { type: 'REASONING_CHUNK', threadId: 't', runId: 'r', ts: 1, seq: 3, text: 'hmm' };
    const r = parseEventLenient(raw, { sequenced: true });
    expect(r).toEqual({ kind: 'unknown', type: 'REASONING_CHUNK', threadId: 't', seq: 3, raw });
    const unsequenced = parseEventLenient({ type: 'REASONING_CHUNK', threadId: 't', runId: 'r', ts: 1 });
    expect(unsequenced).toMatchObject({ kind: 'unknown', threadId: 't' });
    expect(unsequenced).not.toHaveProperty('seq');
  });

  it('still checks the envelope of an unknown type: a thread always, a seq when sequenced', () => {
    const raw = { type: 'REASONING_CHUNK', threadId: 't', runId: 'r', ts: 1, text: 'hmm' };
    // Without a seq a consumer could not resume past it; without a thread it could not file it.
    expect(() => parseEventLenient(raw, { sequenced: true })).toThrow(ContractError);
    expect(() => parseEventLenient({ ...raw, seq: 0 }, { sequenced: true })).toThrow(ContractError);
    expect(() => parseEventLenient({ ...raw, threadId: 'a b', seq: 1 }, { sequenced: true })).toThrow(
      /threadId/,
    );
    const { threadId: _omit, ...noThread } = raw;
    expect(() => parseEventLenient(noThread)).toThrow(ContractError);
  });

  it('still rejects known types that are malformed, and junk', () => {
    expect(() => parseEventLenient({ type: 'RUN_STARTED', threadId: 't' })).toThrow(ContractError);
    expect(() => parseEventLenient({ type: 'lower case' })).toThrow(ContractError);
    expect(() => parseEventLenient('RUN_STARTED')).toThrow(ContractError);
  });

  it('parses known events', () => {
    const r = parseEventLenient({ ...examples[0], seq: 1 }, { sequenced: true });
    expect(r.kind).toBe('known');
  });
});
