import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as core from '../src/core.js';
import {
  AGENT_HTTP_ERROR_CODES,
  AGENT_HTTP_ERROR_STATUS,
  AGENT_HTTP_PATHS,
  AgentHttpErrorBodySchema,
  SSE_HEARTBEAT,
  agentHttpErrorBody,
  agentRunPath,
  matchAgentRunPath,
  safeParse,
  sseEventFrame,
} from '../src/index.js';

describe('agent service HTTP protocol', () => {
  it('is in the zod-free core subpath, the same values as the main entry', () => {
    expect(readFileSync(new URL('../src/agent-http.ts', import.meta.url), 'utf8')).not.toMatch(/from 'zod'/);
    expect(core.AGENT_HTTP_PATHS).toBe(AGENT_HTTP_PATHS);
    expect(core.AGENT_HTTP_ERROR_STATUS).toBe(AGENT_HTTP_ERROR_STATUS);
    expect(core.agentRunPath).toBe(agentRunPath);
  });

  it('a run path round-trips through agentRunPath and matchAgentRunPath, odd run ids included', () => {
    for (const runId of ['r1', 'run:1.a_b-c', 'a/b', 'ü %', '..'])
      expect(matchAgentRunPath(agentRunPath(runId))).toEqual({ runId });
    expect(agentRunPath('a/b')).toBe('/runs/a%2Fb');
  });

  it('matchAgentRunPath: null for other paths, no run id for malformed percent-encoding', () => {
    for (const path of ['/runs', '/runs/', '/runs/a/b', '/run/a', '/healthz', '/xruns/a', '/runs//'])
      expect(matchAgentRunPath(path), path).toBeNull();
    expect(matchAgentRunPath('/runs/%E0%A4%A')).toEqual({ runId: undefined });
  });

  it('frames an event as one data line and a blank line; the heartbeat is a comment', () => {
    expect(sseEventFrame('{"a":1}')).toBe('data: {"a":1}\n\n');
    expect(SSE_HEARTBEAT.startsWith(':')).toBe(true);
    expect(SSE_HEARTBEAT.endsWith('\n\n')).toBe(true);
  });

  it('every error code has a 4xx or 5xx status, and the code list is the status table', () => {
    expect(AGENT_HTTP_ERROR_CODES).toEqual(Object.keys(AGENT_HTTP_ERROR_STATUS));
    for (const code of AGENT_HTTP_ERROR_CODES) {
      expect(AGENT_HTTP_ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
      expect(AGENT_HTTP_ERROR_STATUS[code]).toBeLessThan(600);
    }
  });

  it('an error body built here parses with the schema; unknown codes and shapes are refused', () => {
    const issues = [{ path: 'text', message: 'required' }];
    const body = JSON.parse(agentHttpErrorBody('invalid_request', 'bad run request', issues)) as unknown;
    expect(body).toEqual({ error: { code: 'invalid_request', message: 'bad run request', issues } });
    expect(safeParse(AgentHttpErrorBodySchema, body).ok).toBe(true);
    expect(JSON.parse(agentHttpErrorBody('too_many_runs', 'busy'))).toEqual({
      error: { code: 'too_many_runs', message: 'busy' },
    });
    for (const bad of [
      { error: { code: 'teapot', message: 'x' } },
      { error: { code: 'not_found' } },
      { error: { code: 'not_found', message: '' } },
      { code: 'not_found', message: 'x' },
      'not_found',
    ])
      expect(safeParse(AgentHttpErrorBodySchema, bad).ok, JSON.stringify(bad)).toBe(false);
  });
});
