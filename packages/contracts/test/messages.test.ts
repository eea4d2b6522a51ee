import { describe, expect, it } from 'vitest';
import {
  ActAsClaimsSchema,
  LIMITS,
  ClientMessageSchema,
  RunRequestSchema,
  ServerMessageSchema,
  TOOL_ERROR_CODES,
  TOOL_ERROR_STATUS,
  ToolManifestSchema,
  ToolResultSchema,
  safeParse,
} from '../src/index.js';

const runRequest = {
  threadId: 't1',
  runId: 'r1',
  user: { id: 'u1' },
  text: 'Hello',
  tools: { baseUrl: 'http://127.0.0.1:3000', token: 'eyJ.x.y' },
};

describe('run request', () => {
  it('accepts the documented shape, with and without parentRunId', () => {
    expect(safeParse(RunRequestSchema, runRequest).ok).toBe(true);
    expect(safeParse(RunRequestSchema, { ...runRequest, parentRunId: 'r0' }).ok).toBe(true);
  });
  it('carries an optional regenerates run id, which must be an id', () => {
    expect(safeParse(RunRequestSchema, { ...runRequest, regenerates: 'r0' }).ok).toBe(true);
    for (const bad of ['', 'has space', 7, null])
      expect(safeParse(RunRequestSchema, { ...runRequest, regenerates: bad }).ok).toBe(false);
  });
  it('rejects missing fields, extra fields, bad urls and empty messages', () => {
    const { threadId: _t, ...noThread } = runRequest;
    for (const bad of [
      noThread,
      { ...runRequest, extra: true },
      { ...runRequest, user: { id: 'u1', role: 'admin' } },
      { ...runRequest, tools: { ...runRequest.tools, baseUrl: 'javascript:alert(1)' } },
      { ...runRequest, tools: { ...runRequest.tools, baseUrl: 'file:///etc/passwd' } },
      { ...runRequest, tools: { ...runRequest.tools, token: '' } },
      { ...runRequest, text: '' },
    ]) {
      expect(safeParse(RunRequestSchema, bad).ok).toBe(false);
    }
  });
  it('parses the user text as text', () => {
    const parsed = safeParse(RunRequestSchema, runRequest);
    expect(parsed.ok && parsed.value).toEqual(runRequest);
  });
  it('still accepts the deprecated message field and gives it back as text', () => {
    const { text, ...rest } = runRequest;
    const parsed = safeParse(RunRequestSchema, { ...rest, message: text });
    expect(parsed.ok && parsed.value).toEqual(runRequest);
    if (!parsed.ok) return;
    // Still readable for one release, but never listed or serialised, so a parsed request sent on is valid.
    expect(parsed.value.message).toBe(text);
    expect(Object.keys(parsed.value)).not.toContain('message');
    expect(JSON.parse(JSON.stringify(parsed.value))).toEqual(runRequest);
    expect(safeParse(RunRequestSchema, JSON.parse(JSON.stringify(parsed.value))).ok).toBe(true);
    expect({ ...parsed.value }).toEqual(runRequest);
    expect(safeParse(RunRequestSchema, { ...rest, message: '' }).ok).toBe(false);
    expect(
      safeParse(RunRequestSchema, { ...rest, message: 'x'.repeat(LIMITS.maxMessageLength + 1) }).ok,
    ).toBe(false);
  });
  it('refuses a request with both text and message, or with neither, saying so at text', () => {
    const { text: _text, ...neither } = runRequest;
    for (const [bad, said] of [
      [{ ...runRequest, message: 'Hello' }, /not both/],
      [neither, /required/],
    ] as const) {
      const parsed = safeParse(RunRequestSchema, bad);
      expect(parsed.ok).toBe(false);
      if (parsed.ok) continue;
      expect(parsed.error.code).toBe('invalid_payload');
      expect(parsed.error.issues).toEqual([{ path: 'text', message: expect.stringMatching(said) }]);
    }
  });
});

describe('browser protocol', () => {
  it('accepts every client message', () => {
    for (const m of [
      { type: 'send', threadId: 't', text: 'hi', clientMessageId: 'c1' },
      { type: 'subscribe', threadId: 't', afterSeq: 0 },
      { type: 'cancel', runId: 'r' },
      { type: 'regenerate', threadId: 't', clientMessageId: 'c2' },
    ]) {
      expect(safeParse(ClientMessageSchema, m).ok).toBe(true);
    }
  });
  it('rejects malformed client messages', () => {
    for (const m of [
      { type: 'send', threadId: 't', text: '', clientMessageId: 'c1' },
      { type: 'send', threadId: 't', text: 'hi' },
      { type: 'subscribe', threadId: 't', afterSeq: -1 },
      { type: 'subscribe', threadId: 't', afterSeq: 1.5 },
      { type: 'subscribe', threadId: 't' },
      { type: 'cancel', runId: 'r', threadId: 't' },
      { type: 'regenerate', threadId: 't' },
      { type: 'regenerate', clientMessageId: 'c2' },
      { type: 'regenerate', threadId: 't', clientMessageId: 'c2', text: 'again' },
      { type: 'regenerate', threadId: 't', clientMessageId: 'bad id' },
      { type: 'event', event: {} },
      [],
      'send',
    ]) {
      expect(safeParse(ClientMessageSchema, m).ok).toBe(false);
    }
  });
  it('accepts every server message and rejects bad ones', () => {
    const event = { type: 'RUN_STARTED', threadId: 't', runId: 'r', ts: 1, seq: 1 };
    expect(safeParse(ServerMessageSchema, { type: 'event', event }).ok).toBe(true);
    expect(safeParse(ServerMessageSchema, { type: 'ack', clientMessageId: 'c', runId: 'r' }).ok).toBe(true);
    expect(
      safeParse(ServerMessageSchema, { type: 'error', code: 'run_active', message: 'busy', ref: 't' }).ok,
    ).toBe(true);
    expect(safeParse(ServerMessageSchema, { type: 'event', event: { ...event, seq: undefined } }).ok).toBe(
      false,
    );
    expect(safeParse(ServerMessageSchema, { type: 'error', code: 'Run Active', message: 'x' }).ok).toBe(
      false,
    );
  });
  it('carries a bounded retryAfterMs hint on error messages', () => {
    const refusal = { type: 'error', code: 'rate_limited', message: 'slow down', ref: 'c1' };
    expect(safeParse(ServerMessageSchema, { ...refusal, retryAfterMs: 1_500 }).ok).toBe(true);
    for (const retryAfterMs of [-1, 1.5, '10', LIMITS.maxRetryAfterMs + 1])
      expect(safeParse(ServerMessageSchema, { ...refusal, retryAfterMs }).ok, String(retryAfterMs)).toBe(
        false,
      );
  });
});

describe('tool envelope and token claims', () => {
  it('accepts both sides of the envelope', () => {
    expect(safeParse(ToolResultSchema, { ok: true, data: { a: 1 } }).ok).toBe(true);
    expect(
      safeParse(ToolResultSchema, {
        ok: false,
        error: { code: 'invalid_input', message: 'bad', issues: [{ path: 'a', message: 'expected string' }] },
      }).ok,
    ).toBe(true);
    expect(safeParse(ToolResultSchema, { ok: false, data: 1 }).ok).toBe(false);
    expect(safeParse(ToolResultSchema, { ok: false, error: { code: 'x' } }).ok).toBe(false);
  });
  it('maps every error code to a client or server status, and bad input never to 500', () => {
    for (const code of TOOL_ERROR_CODES) expect(TOOL_ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
    for (const code of ['invalid_input', 'invalid_json', 'payload_too_large', 'token_invalid'] as const) {
      expect(TOOL_ERROR_STATUS[code]).toBeLessThan(500);
    }
  });
  it('validates act-as claims', () => {
    const claims = {
      iss: 'api',
      aud: 'threadline-tools',
      sub: 'u1',
      thread: 't1',
      run: 'r1',
      tools: ['profile.patch'],
      iat: 1,
      exp: 301,
      jti: 'j1',
    };
    expect(safeParse(ActAsClaimsSchema, claims).ok).toBe(true);
    expect(safeParse(ActAsClaimsSchema, { ...claims, aud: 'other' }).ok).toBe(false);
    expect(safeParse(ActAsClaimsSchema, { ...claims, tools: ['bad name'] }).ok).toBe(false);
    expect(safeParse(ActAsClaimsSchema, { ...claims, thread: '' }).ok).toBe(false);
  });
  it('validates the tool manifest', () => {
    const entry = {
      name: 'profile.patch',
      description: 'd',
      inputSchema: { type: 'object' },
      outputSchema: {},
    };
    expect(
      safeParse(ToolManifestSchema, { tools: [entry, { ...entry, name: 'session.get', internal: true }] }).ok,
    ).toBe(true);
    expect(safeParse(ToolManifestSchema, { tools: [{ ...entry, name: '1bad' }] }).ok).toBe(false);
  });
});
