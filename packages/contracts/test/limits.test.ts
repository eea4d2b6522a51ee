import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  ActAsClaimsSchema,
  ClientMessageSchema,
  LIMITS,
  RunRequestSchema,
  SequencedAgentEventSchema,
  ServerMessageSchema,
  ToolManifestSchema,
  ToolResultSchema,
  safeParse,
} from '../src/index.js';

// Every length limit counts UTF-16 code units (`string.length`), whichever zod version runs: a string of
// astral characters (two units each) at exactly the limit passes, one unit more is refused.
const EMOJI = '\u{1F600}'; // one code point, two UTF-16 units

/** `units` UTF-16 code units, as many of them astral as possible. */
function astral(units: number): string {
  return EMOJI.repeat(Math.floor(units / 2)) + (units % 2 ? 'a' : '');
}

const ids = { threadId: 't1', runId: 'r1', ts: 1, seq: 1 };
const claims = {
  iss: 'host',
  aud: 'threadline-tools',
  sub: 'u1',
  thread: 't1',
  run: 'r1',
  tools: [],
  iat: 1,
  exp: 2,
  jti: 'j1',
};
const runRequest = {
  threadId: 't1',
  runId: 'r1',
  user: { id: 'u1' },
  text: 'hi',
  tools: { baseUrl: 'http://127.0.0.1:3000/tools', token: 'tok' },
};

// [what, schema, the limit, a valid value with the limited string set to `s`]
const cases: [string, z.ZodType, number, (s: string) => unknown][] = [
  [
    'USER_MESSAGE.text',
    SequencedAgentEventSchema,
    LIMITS.maxMessageLength,
    (text) => ({
      type: 'USER_MESSAGE',
      ...ids,
      messageId: 'm1',
      clientMessageId: 'c1',
      userId: 'u1',
      text,
    }),
  ],
  [
    'send.text',
    ClientMessageSchema,
    LIMITS.maxMessageLength,
    (text) => ({ type: 'send', threadId: 't1', clientMessageId: 'c1', text }),
  ],
  ['RunRequest.text', RunRequestSchema, LIMITS.maxMessageLength, (text) => ({ ...runRequest, text })],
  [
    'RunRequest.message (deprecated name of text)',
    RunRequestSchema,
    LIMITS.maxMessageLength,
    (message) => {
      const { text: _text, ...rest } = runRequest;
      return { ...rest, message };
    },
  ],
  [
    'RunRequest.tools.token',
    RunRequestSchema,
    LIMITS.maxTokenLength,
    (token) => ({ ...runRequest, tools: { ...runRequest.tools, token } }),
  ],
  [
    'TEXT_MESSAGE_CHUNK.delta',
    SequencedAgentEventSchema,
    LIMITS.maxDeltaLength,
    (delta) => ({ type: 'TEXT_MESSAGE_CHUNK', ...ids, messageId: 'm1', delta }),
  ],
  [
    'TOOL_CALL_STARTED.label',
    SequencedAgentEventSchema,
    LIMITS.maxLabelLength,
    (label) => ({ type: 'TOOL_CALL_STARTED', ...ids, toolCallId: 'c1', toolName: 'a', label }),
  ],
  [
    'TOOL_CALL_RESULT.error',
    SequencedAgentEventSchema,
    LIMITS.maxErrorMessageLength,
    (error) => ({ type: 'TOOL_CALL_RESULT', ...ids, toolCallId: 'c1', toolName: 'a', ok: false, error }),
  ],
  [
    'RUN_ERROR.message',
    SequencedAgentEventSchema,
    LIMITS.maxErrorMessageLength,
    (message) => ({ type: 'RUN_ERROR', ...ids, message }),
  ],
  [
    'RUN_FINISHED.traceId',
    SequencedAgentEventSchema,
    LIMITS.maxIdLength,
    (traceId) => ({ type: 'RUN_FINISHED', ...ids, traceId }),
  ],
  [
    'error.message',
    ServerMessageSchema,
    LIMITS.maxErrorMessageLength,
    (message) => ({ type: 'error', code: 'queue_full', message }),
  ],
  [
    'tool error message',
    ToolResultSchema,
    LIMITS.maxErrorMessageLength,
    (message) => ({ ok: false, error: { code: 'invalid_input', message } }),
  ],
  [
    'tool issue message',
    ToolResultSchema,
    LIMITS.maxErrorMessageLength,
    (message) => ({ ok: false, error: { code: 'x', message: 'm', issues: [{ path: 'a', message }] } }),
  ],
  [
    'tool issue path',
    ToolResultSchema,
    1024,
    (path) => ({ ok: false, error: { code: 'x', message: 'm', issues: [{ path, message: 'm' }] } }),
  ],
  [
    'tool error ref',
    ToolResultSchema,
    LIMITS.maxIdLength,
    (ref) => ({ ok: false, error: { code: 'x', message: 'm', ref } }),
  ],
  ['act-as iss', ActAsClaimsSchema, 256, (iss) => ({ ...claims, iss })],
  ['act-as jti', ActAsClaimsSchema, LIMITS.maxIdLength, (jti) => ({ ...claims, jti })],
  [
    'tool manifest description',
    ToolManifestSchema,
    4096,
    (description) => ({ tools: [{ name: 'a', description, inputSchema: {}, outputSchema: {} }] }),
  ],
];

describe('length limits count UTF-16 code units', () => {
  it.each(cases)(
    '%s: astral text at the limit passes, one unit over is refused',
    (_, schema, limit, make) => {
      expect(safeParse(schema, make(astral(limit))).ok).toBe(true);
      expect(safeParse(schema, make(astral(limit + 1))).ok).toBe(false);
      // Two units over in astral characters only: still fewer code points than the limit.
      expect(safeParse(schema, make(EMOJI.repeat(limit / 2 + 1))).ok).toBe(false);
      expect(safeParse(schema, make('a'.repeat(limit))).ok).toBe(true);
      expect(safeParse(schema, make('a'.repeat(limit + 1))).ok).toBe(false);
    },
  );

  it('says which limit and in what unit', () => {
    const r = safeParse(ClientMessageSchema, {
      type: 'send',
      threadId: 't1',
      clientMessageId: 'c1',
      text: astral(LIMITS.maxMessageLength + 2),
    });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.error.issues).toEqual([
        { path: 'text', message: 'must be at most 32000 characters (UTF-16 code units)' },
      ]);
  });

  it('still refuses empty required text with one issue', () => {
    const r = safeParse(ClientMessageSchema, {
      type: 'send',
      threadId: 't1',
      clientMessageId: 'c1',
      text: '',
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.issues).toEqual([{ path: 'text', message: 'must not be empty' }]);
  });
});
