import { SequencedAgentEventSchema } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { MAX_FRAME_LENGTH, readServerFrame } from '../src/guard.js';

const base = { threadId: 't1', runId: 'r1', ts: 1_700_000_000_000, seq: 3 };
const frame = (event: object): string => JSON.stringify({ type: 'event', event });

const valid = [
  { ...base, type: 'RUN_STARTED' },
  { ...base, type: 'RUN_STARTED', parentRunId: 'r0' },
  { ...base, type: 'TOOL_CALL_STARTED', toolCallId: 'c1', toolName: 'profile.patch', label: 'Saving' },
  {
    ...base,
    type: 'TOOL_CALL_RESULT',
    toolCallId: 'c1',
    toolName: 'profile.patch',
    ok: false,
    error: 'nope',
  },
  { ...base, type: 'TEXT_MESSAGE_CHUNK', messageId: 'm1', delta: '' },
  { ...base, type: 'RUN_ERROR', message: 'boom', code: 'model_error' },
  { ...base, type: 'RUN_FINISHED', traceId: 'trace_1' },
  { ...base, type: 'USER_MESSAGE', messageId: 'm0', clientMessageId: 'c-1', userId: 'u1', text: 'hi' },
  { ...base, type: 'STATE_CHANGED', scope: 'profile', value: { a: 1 } },
  { ...base, type: 'HISTORY_WINDOWED', windowItems: 200 },
  { ...base, type: 'RUN_STARTED', regenerates: 'r0' },
  {
    ...base,
    type: 'TOOL_APPROVAL_REQUESTED',
    toolCallId: 'c9',
    toolName: 'profile.clear',
    args: '{}',
    expiresAt: '2026-12-03T00:00:00.000Z',
  },
  { ...base, type: 'TOOL_APPROVAL_RESOLVED', toolCallId: 'c9', approved: false, decidedBy: 'u1' },
];

const invalid: Array<[string, object]> = [
  ['seq 0', { ...base, seq: 0, type: 'RUN_STARTED' }],
  ['fractional seq', { ...base, seq: 1.5, type: 'RUN_STARTED' }],
  ['bad thread id', { ...base, threadId: 'a b', type: 'RUN_STARTED' }],
  ['long id', { ...base, runId: 'x'.repeat(129), type: 'RUN_STARTED' }],
  ['bad regenerates', { ...base, type: 'RUN_STARTED', regenerates: 'a b' }],
  ['delta not a string', { ...base, type: 'TEXT_MESSAGE_CHUNK', messageId: 'm1', delta: 5 }],
  ['delta too long', { ...base, type: 'TEXT_MESSAGE_CHUNK', messageId: 'm1', delta: 'x'.repeat(32_769) }],
  ['ok missing', { ...base, type: 'TOOL_CALL_RESULT', toolCallId: 'c1', toolName: 'x' }],
  ['empty run error', { ...base, type: 'RUN_ERROR', message: '' }],
  ['window negative', { ...base, type: 'HISTORY_WINDOWED', windowItems: -1 }],
  ['window missing', { ...base, type: 'HISTORY_WINDOWED' }],
  ['approval args missing', { ...base, type: 'TOOL_APPROVAL_REQUESTED', toolCallId: 'c9', toolName: 'x' }],
  [
    'approval args too long',
    { ...base, type: 'TOOL_APPROVAL_REQUESTED', toolCallId: 'c9', toolName: 'x', args: 'x'.repeat(32_769) },
  ],
  ['decision not a boolean', { ...base, type: 'TOOL_APPROVAL_RESOLVED', toolCallId: 'c9', approved: 'yes' }],
  ['bad error code', { ...base, type: 'RUN_ERROR', message: 'x', code: 'Not-Snake' }],
  [
    'user text empty',
    { ...base, type: 'USER_MESSAGE', messageId: 'm0', clientMessageId: 'c', userId: 'u', text: '' },
  ],
];

describe('readServerFrame', () => {
  it('accepts every valid contract event, as the zod schema does', () => {
    for (const e of valid) {
      expect(SequencedAgentEventSchema.safeParse(e).success, e.type).toBe(true);
      expect(readServerFrame(frame(e)), e.type).toEqual({ kind: 'event', event: e });
    }
  });

  it('rejects malformed known events that the zod schema also rejects', () => {
    for (const [what, e] of invalid) {
      expect(SequencedAgentEventSchema.safeParse(e).success, what).toBe(false);
      expect(readServerFrame(frame(e)).kind, what).toBe('invalid');
    }
  });

  it('counts every length limit in UTF-16 code units, as the contract does', () => {
    const EMOJI = '\u{1F600}'; // two UTF-16 units, one code point
    const text = (units: number) => EMOJI.repeat(Math.floor(units / 2)) + (units % 2 ? 'a' : '');
    const fields: [string, number, (s: string) => object][] = [
      ['USER_MESSAGE.text', 32_000, (s) => ({ ...valid[7], text: s })],
      ['TEXT_MESSAGE_CHUNK.delta', 32_768, (s) => ({ ...valid[4], delta: s })],
      ['TOOL_CALL_STARTED.label', 200, (s) => ({ ...valid[2], label: s })],
      ['TOOL_CALL_RESULT.error', 4_096, (s) => ({ ...valid[3], error: s })],
      ['RUN_ERROR.message', 4_096, (s) => ({ ...valid[5], message: s })],
      ['RUN_FINISHED.traceId', 128, (s) => ({ ...valid[6], traceId: s })],
    ];
    for (const [what, limit, make] of fields) {
      for (const [units, ok] of [
        [limit, true],
        [limit + 1, false],
        [limit + 2, false],
      ] as const) {
        const e = make(text(units));
        const label = `${what} at ${units} units`;
        expect(SequencedAgentEventSchema.safeParse(e).success, label).toBe(ok);
        expect(readServerFrame(frame(e)).kind, label).toBe(ok ? 'event' : 'invalid');
      }
    }
  });

  it('skips unknown event types but keeps their seq (forward compatibility)', () => {
    expect(readServerFrame(frame({ ...base, type: 'NEW_THING', extra: 1 }))).toEqual({
      kind: 'unknown_event',
      type: 'NEW_THING',
      seq: 3,
      threadId: 't1',
    });
    expect(readServerFrame(frame({ ...base, type: 'lower' })).kind).toBe('invalid');
  });

  it('reads acks and errors, and refuses garbage with a reason', () => {
    expect(readServerFrame('{"type":"ack","clientMessageId":"c1","runId":"r1"}').kind).toBe('ack');
    expect(readServerFrame('{"type":"error","code":"slow_consumer","message":"behind"}').kind).toBe('error');
    expect(readServerFrame('{"type":"error","code":"x","message":""}').kind).toBe('invalid');
    const refusal = '{"type":"error","code":"rate_limited","message":"wait","retryAfterMs":';
    expect(readServerFrame(`${refusal}1500}`).kind).toBe('error');
    for (const bad of ['-1', '1.5', '"9"', '86400001'])
      expect(readServerFrame(`${refusal}${bad}}`).kind, bad).toBe('invalid');
    for (const bad of [
      '',
      'nope',
      '[]',
      'null',
      '{"type":"event"}',
      '{"type":"other"}',
      '{"type":"ack","runId":"r"}',
    ]) {
      const r = readServerFrame(bad);
      expect(r.kind, bad).toBe('invalid');
      expect(r.kind === 'invalid' && r.reason.length > 0).toBe(true);
    }
  });

  it('refuses frames over the size bound before parsing them', () => {
    const big = frame({ ...base, type: 'RUN_ERROR', message: 'x'.repeat(MAX_FRAME_LENGTH) });
    expect(readServerFrame(big)).toEqual({
      kind: 'invalid',
      reason: `frame longer than ${MAX_FRAME_LENGTH}`,
    });
  });
});
