import { RunContext } from '@openai/agents';
import type { FunctionTool } from '@openai/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createToolClient, defineTool } from '../src/index.js';
import type { ToolManifest } from '@threadline/contracts';
import { toAgentTools, type AgentToolResultInfo } from '../src/agents.js';
import { makeSetup, serveExpress } from './helpers.js';

let writes = 0;
const book = defineTool({
  name: 'calendar.book',
  description: 'Book a slot.',
  input: z.strictObject({ slot: z.string().min(1).max(20), note: z.string().max(100).optional() }),
  output: z.strictObject({ booked: z.string(), writes: z.number() }),
  handler({ slot }) {
    writes++;
    return { booked: slot, writes };
  },
});
const tags = defineTool({
  name: 'tags.set',
  description: 'Set free-form tags.',
  input: z.strictObject({ tags: z.record(z.string(), z.string()) }),
  output: z.strictObject({ count: z.number() }),
  handler({ tags: t }) {
    return { count: Object.keys(t).length };
  },
});
const hang = defineTool({
  name: 'slow.hang',
  description: 'Never answers until aborted.',
  input: z.strictObject({}),
  output: z.strictObject({}),
  handler: (_i, ctx) =>
    new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
});

const setup = makeSetup({ tools: [book, tags, hang] });
let server: { url: string; close(): Promise<void> };
let manifest: ToolManifest;
const results: AgentToolResultInfo[] = [];
let agentTools: FunctionTool[];
const runContext = new RunContext({});
const byName = (name: string) => {
  const t = agentTools.find((x) => x.name === name);
  if (!t) throw new Error(`no agent tool ${name}`);
  return t;
};
const details = (callId: string, signal?: AbortSignal) =>
  ({
    toolCall: { type: 'function_call', callId, name: 'x', arguments: '{}' },
    ...(signal ? { signal } : {}),
  }) as never;

beforeAll(async () => {
  server = await serveExpress(setup.router);
  const client = createToolClient({ baseUrl: server.url, token: await setup.mint(), threadId: 't1' });
  const m = await client.manifest();
  if (!m.ok) throw new Error('manifest failed');
  manifest = m.data;
  agentTools = toAgentTools(client, manifest, { onResult: (info) => results.push(info) });
});
afterAll(() => server.close());

describe('toAgentTools against a real router', () => {
  it('offers only model-facing tools, with SDK-safe names and strict JSON Schema parameters', () => {
    expect(agentTools.map((t) => t.name).sort()).toEqual([
      'calendar_book',
      'profile_patch',
      'slow_hang',
      'state_get',
      'tags_set',
    ]);
    const patch = byName('profile_patch');
    expect(patch.strict).toBe(true);
    expect(patch.parameters).toMatchObject({
      type: 'object',
      additionalProperties: false,
      required: ['displayName', 'locale', 'timezone', 'unset'],
    });
    expect(byName('calendar_book').strict).toBe(true);
    // A free-form record cannot be expressed in strict mode; it falls back to non-strict rather than failing.
    expect(byName('tags_set').strict).toBe(false);
  });

  it('invokes the host tool, accepting the nulls strict mode makes the model send for omitted fields', async () => {
    results.length = 0;
    const out = await byName('profile_patch').invoke(
      runContext,
      JSON.stringify({ displayName: 'Ada', locale: null, timezone: null, unset: null }),
      details('call_p1'),
    );
    expect(JSON.parse(String(out))).toEqual({ profile: { displayName: 'Ada' } });
    expect(await setup.store.getProfile('u1')).toEqual({ displayName: 'Ada' });
    expect(results).toEqual([
      {
        callId: 'call_p1',
        name: 'profile.patch',
        result: { ok: true, data: { profile: { displayName: 'Ada' } } },
      },
    ]);
    expect(setup.sink.events.at(-1)).toMatchObject({ type: 'STATE_CHANGED', scope: 'profile' });
    const tagsOut = await byName('tags_set').invoke(
      runContext,
      JSON.stringify({ tags: { a: 'b' } }),
      details('call_t1'),
    );
    expect(JSON.parse(String(tagsOut))).toEqual({ count: 1 });
  });

  it('returns a failed call to the model as error text and reports it through onResult', async () => {
    results.length = 0;
    const out = await byName('profile_patch').invoke(
      runContext,
      JSON.stringify({ displayName: null, locale: 'not a tag!', timezone: null, unset: null }),
      details('call_p2'),
    );
    expect(String(out)).toMatch(/^Error \(invalid_input\)/);
    expect(String(out)).toContain('locale');
    expect(results[0]).toMatchObject({
      callId: 'call_p2',
      name: 'profile.patch',
      result: { ok: false, error: { code: 'invalid_input' } },
    });

    results.length = 0;
    const garbage = await byName('calendar_book').invoke(runContext, '{not json', details('call_bad'));
    expect(String(garbage)).toMatch(/^Error \(invalid_input\)/);
    expect(results[0]).toMatchObject({
      callId: 'call_bad',
      result: { ok: false, error: { code: 'invalid_input' } },
    });
  });

  it('uses the call id as idempotency key: a replayed call writes once', async () => {
    const first = JSON.parse(
      String(
        await byName('calendar_book').invoke(
          runContext,
          JSON.stringify({ slot: 'mon-9', note: null }),
          details('call_b1'),
        ),
      ),
    );
    const again = JSON.parse(
      String(
        await byName('calendar_book').invoke(
          runContext,
          JSON.stringify({ slot: 'mon-9', note: null }),
          details('call_b1'),
        ),
      ),
    );
    expect(again).toEqual(first);
    const other = JSON.parse(
      String(
        await byName('calendar_book').invoke(
          runContext,
          JSON.stringify({ slot: 'mon-9', note: null }),
          details('call_b2'),
        ),
      ),
    );
    expect(other.writes).toBe(first.writes + 1);
  });

  it('honours the SDK abort signal and the client timeout', async () => {
    results.length = 0;
    const controller = new AbortController();
    const pending = byName('slow_hang').invoke(runContext, '{}', details('call_h1', controller.signal));
    setTimeout(() => controller.abort(), 50);
    expect(String(await pending)).toMatch(/^Error \(aborted\)/);
    expect(results[0]).toMatchObject({ result: { ok: false, error: { code: 'aborted' } } });

    const fastClient = createToolClient({
      baseUrl: server.url,
      token: await setup.mint(),
      threadId: 't1',
      timeoutMs: 100,
    });
    const [hangTool] = toAgentTools(fastClient, {
      tools: manifest.tools.filter((t) => t.name === 'slow.hang'),
    });
    expect(String(await hangTool?.invoke(runContext, '{}', details('call_h2')))).toMatch(
      /^Error \(timeout\)/,
    );
  });

  it('refuses two host tools that collapse to one model name', () => {
    const entry = manifest.tools.find((t) => t.name === 'state.get');
    if (!entry) throw new Error('missing');
    const client = createToolClient({ baseUrl: server.url, token: 'x', threadId: 't1' });
    expect(() => toAgentTools(client, { tools: [entry, { ...entry, name: 'state_get' }] })).toThrow(
      /both become state_get/,
    );
  });
});
