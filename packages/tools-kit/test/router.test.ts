import { ToolManifestSchema, ToolResultSchema } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BUILTIN_TOOLS, ToolCallError, ToolFailure, ToolsKitError, defineTool } from '../src/index.js';
import { makeSetup } from './helpers.js';

const BASE = 'http://api.test';

async function call(
  router: (r: Request) => Promise<Response>,
  token: string,
  name: string,
  input: unknown,
  threadId = 't1',
  headers: Record<string, string> = {},
) {
  const res = await router(
    new Request(`${BASE}/tools/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ threadId, input }),
    }),
  );
  const body = ToolResultSchema.parse(await res.json());
  return { status: res.status, body, headers: res.headers };
}

describe('createToolRouter: built-in tools', () => {
  it('profile.patch writes, emits STATE_CHANGED, and GET /state reads it back', async () => {
    const { router, mint, sink, store } = makeSetup();
    const token = await mint();
    const r = await call(router, token, 'profile.patch', { displayName: '  Ada  ', locale: 'en-GB' });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ ok: true, data: { profile: { displayName: 'Ada', locale: 'en-GB' } } });
    expect(await store.getProfile('u1')).toEqual({ displayName: 'Ada', locale: 'en-GB' });
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]).toMatchObject({
      type: 'STATE_CHANGED',
      threadId: 't1',
      runId: 'r1',
      scope: 'profile',
      value: { displayName: 'Ada', locale: 'en-GB' },
    });

    const unset = await call(router, token, 'profile.patch', { unset: ['locale'] });
    expect(unset.body).toEqual({ ok: true, data: { profile: { displayName: 'Ada' } } });

    const state = await router(
      new Request(`${BASE}/state?threadId=t1`, { headers: { authorization: `Bearer ${token}` } }),
    );
    expect(state.status).toBe(200);
    expect(await state.json()).toEqual({ ok: true, data: { profile: { displayName: 'Ada' } } });
  });

  it('session.add/get/pop/clear keep the thread history in order', async () => {
    const { router, mint } = makeSetup();
    const token = await mint();
    expect(
      (await call(router, token, 'session.add', { items: [{ role: 'user', content: 'hi' }, 'two', 3] })).body,
    ).toEqual({ ok: true, data: { count: 3 } });
    expect((await call(router, token, 'session.get', {})).body).toEqual({
      ok: true,
      data: { items: [{ role: 'user', content: 'hi' }, 'two', 3], more: false },
    });
    expect((await call(router, token, 'session.get', { limit: 2 })).body).toEqual({
      ok: true,
      data: { items: ['two', 3], more: true },
    });
    expect((await call(router, token, 'session.get', { limit: 3 })).body).toEqual({
      ok: true,
      data: { items: [{ role: 'user', content: 'hi' }, 'two', 3], more: false },
    });
    expect((await call(router, token, 'session.pop', {})).body).toEqual({ ok: true, data: { item: 3 } });
    expect((await call(router, token, 'session.clear', {})).body).toEqual({ ok: true, data: {} });
    expect((await call(router, token, 'session.pop', {})).body).toEqual({ ok: true, data: { item: null } });
  });

  it('events.append fills thread, run and ts from the token and refuses other threads, runs and lifecycle types', async () => {
    const { router, mint, sink } = makeSetup();
    const token = await mint();
    const ok = await call(router, token, 'events.append', {
      event: { type: 'STATE_CHANGED', scope: 'cart', value: { items: 2 } },
    });
    expect(ok.body).toEqual({ ok: true, data: {} });
    expect(sink.events[0]).toMatchObject({
      type: 'STATE_CHANGED',
      threadId: 't1',
      runId: 'r1',
      scope: 'cart',
    });
    expect(typeof sink.events[0]?.ts).toBe('number');

    const other = await call(router, token, 'events.append', {
      event: { type: 'STATE_CHANGED', threadId: 't2', scope: 'x', value: 1 },
    });
    expect([other.status, !other.body.ok && other.body.error.code]).toEqual([403, 'thread_mismatch']);
    const otherRun = await call(router, token, 'events.append', {
      event: { type: 'STATE_CHANGED', runId: 'r9', scope: 'x', value: 1 },
    });
    expect([otherRun.status, !otherRun.body.ok && otherRun.body.error.code]).toEqual([403, 'forbidden']);
    const finish = await call(router, token, 'events.append', { event: { type: 'RUN_FINISHED' } });
    expect([finish.status, !finish.body.ok && finish.body.error.code]).toEqual([403, 'forbidden']);
    const bad = await call(router, token, 'events.append', {
      event: { type: 'STATE_CHANGED', scope: 'bad scope!', value: 1 },
    });
    expect(bad.status).toBe(400);
    expect(!bad.body.ok && bad.body.error.issues?.[0]?.path).toBe('event.scope');
    expect(sink.events).toHaveLength(1);
  });

  it('GET /tools lists only what the token allows and flags internal tools', async () => {
    const { router, mint } = makeSetup();
    const all = await router(
      new Request(`${BASE}/tools`, { headers: { authorization: `Bearer ${await mint()}` } }),
    );
    const manifest = ToolManifestSchema.parse(((await all.json()) as { data: unknown }).data);
    expect(manifest.tools.map((t) => t.name).sort()).toEqual([...Object.values(BUILTIN_TOOLS)].sort());
    expect(manifest.tools.find((t) => t.name === 'session.add')?.internal).toBe(true);
    expect(manifest.tools.find((t) => t.name === 'profile.patch')?.internal).toBeUndefined();
    expect(manifest.tools.find((t) => t.name === 'profile.patch')?.inputSchema).toMatchObject({
      type: 'object',
      additionalProperties: false,
    });

    const some = await router(
      new Request(`${BASE}/tools`, {
        headers: { authorization: `Bearer ${await mint({ tools: ['state.get'] })}` },
      }),
    );
    const limited = ToolManifestSchema.parse(((await some.json()) as { data: unknown }).data);
    expect(limited.tools.map((t) => t.name)).toEqual(['state.get']);
  });

  it('GET /tools answers an ETag per tool set and 304 for If-None-Match; a tag of another set gets the body', async () => {
    const { router, mint } = makeSetup();
    const get = async (token: string, ifNoneMatch?: string) =>
      router(
        new Request(`${BASE}/tools`, {
          headers: {
            authorization: `Bearer ${token}`,
            ...(ifNoneMatch !== undefined ? { 'if-none-match': ifNoneMatch } : {}),
          },
        }),
      );
    const wide = await mint();
    const narrow = await mint({ tools: ['state.get'] });
    const first = await get(wide);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(first.headers.get('cache-control')).toBe('private, no-cache');

    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const again = await get(wide, header);
      expect(again.status).toBe(304);
      expect(again.headers.get('etag')).toBe(etag);
      expect(await again.text()).toBe('');
    }
    // Another user's token with the same tool set would get the same manifest: same tag.
    expect((await get(await mint({ userId: 'someone-else' }), etag)).status).toBe(304);

    // The narrow token sends the wide token's tag: it gets its own manifest, not a 304 for the wide one.
    const other = await get(narrow, etag);
    expect(other.status).toBe(200);
    expect(other.headers.get('etag')).not.toBe(etag);
    const limited = ToolManifestSchema.parse(((await other.json()) as { data: unknown }).data);
    expect(limited.tools.map((t) => t.name)).toEqual(['state.get']);
    // A bad token never gets a 304.
    expect((await get('not-a-token', etag)).status).toBe(401);
  });
});

describe('createToolRouter: custom tools', () => {
  const counter = { n: 0 };
  const bump = defineTool({
    name: 'counter.bump',
    description: 'Add to a counter.',
    input: z.strictObject({ by: z.number().int().min(1).max(10) }),
    output: z.strictObject({ value: z.number() }),
    handler({ by }) {
      counter.n += by;
      return { value: counter.n };
    },
  });

  it('validates input strictly before the handler runs', async () => {
    counter.n = 0;
    const { router, mint } = makeSetup({ tools: [bump] });
    const token = await mint();
    const unknownKey = await call(router, token, 'counter.bump', { by: 1, extra: true });
    expect(unknownKey.status).toBe(400);
    expect(unknownKey.body).toMatchObject({
      ok: false,
      error: { code: 'invalid_input', issues: [{ path: '', message: 'unknown key: extra' }] },
    });
    const wrongType = await call(router, token, 'counter.bump', { by: 'x' });
    expect(wrongType.body).toMatchObject({
      ok: false,
      error: { code: 'invalid_input', issues: [{ path: 'by' }] },
    });
    expect(counter.n).toBe(0);
    expect((await call(router, token, 'counter.bump', { by: 2 })).body).toEqual({
      ok: true,
      data: { value: 2 },
    });
  });

  it('ToolCallError, the deprecated name, is the same class: thrown, it answers the same; instanceof holds both ways', async () => {
    expect(ToolCallError).toBe(ToolFailure);
    const old = new ToolCallError('not_found', 'no such slot', {
      issues: [{ path: 'slot', message: 'unknown' }],
    });
    expect(old).toBeInstanceOf(ToolFailure);
    expect(new ToolFailure('conflict', 'x')).toBeInstanceOf(ToolCallError);
    expect(old).toBeInstanceOf(ToolsKitError);
    expect([old.name, old.code, old.errorCode]).toEqual(['ToolFailure', 'tool_call_failed', 'not_found']);
    const missing = defineTool({
      name: 'x.missing',
      description: 'Throws the deprecated name.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler() {
        throw old;
      },
    });
    const { router, mint } = makeSetup({ tools: [missing] });
    const r = await call(router, await mint(), 'x.missing', {});
    expect([r.status, r.body]).toEqual([
      404,
      {
        ok: false,
        error: { code: 'not_found', message: 'no such slot', issues: [{ path: 'slot', message: 'unknown' }] },
      },
    ]);
  });

  it('a ToolFailure becomes its code and status; a throw becomes a generic 500 with a reference', async () => {
    const conflict = defineTool({
      name: 'x.conflict',
      description: 'Always conflicts.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler() {
        throw new ToolFailure('conflict', 'slot already booked');
      },
    });
    const boom = defineTool({
      name: 'x.boom',
      description: 'Always throws.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler() {
        throw new Error('database password is hunter2');
      },
    });
    const { router, mint, log } = makeSetup({ tools: [conflict, boom] });
    const token = await mint();
    const c = await call(router, token, 'x.conflict', {});
    expect([c.status, c.body]).toEqual([
      409,
      { ok: false, error: { code: 'conflict', message: 'slot already booked' } },
    ]);
    const b = await call(router, token, 'x.boom', {});
    expect(b.status).toBe(500);
    expect(b.body.ok).toBe(false);
    const error = !b.body.ok ? b.body.error : undefined;
    expect(error?.code).toBe('internal_error');
    expect(error?.ref).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(b.body)).not.toContain('hunter2');
    expect(log.errors).toHaveLength(1);
    expect(String(log.errors[0]?.[0])).toContain(error?.ref ?? 'missing');
    expect((log.errors[0]?.[1] as Error).message).toContain('hunter2');
  });

  it('rejects duplicate and invalid tool definitions at startup', () => {
    expect(() => makeSetup({ tools: [bump, bump] })).toThrow(/already registered/);
    expect(() =>
      defineTool({
        name: '9bad',
        description: 'x',
        input: z.strictObject({}),
        output: z.strictObject({}),
        handler: () => ({}),
      }),
    ).toThrow(/invalid/);
    expect(() =>
      defineTool({
        name: 'ok',
        description: 'x',
        input: z.string() as never,
        output: z.strictObject({}),
        handler: () => ({}),
      }),
    ).toThrow(/zod object/);
    const shadow = defineTool({
      name: 'profile.patch',
      description: 'x',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler: () => ({}),
    });
    expect(() => makeSetup({ tools: [shadow] })).toThrow(/already registered/);
  });
});

describe('createToolRouter: isRunActive', () => {
  it("refuses every route with 403 run_not_active when the token's run has ended, before any handler runs", async () => {
    const asked: unknown[] = [];
    let active = true;
    const { router, mint, store, sink } = makeSetup({
      isRunActive: (run) => {
        asked.push(run);
        return active;
      },
    });
    const token = await mint();
    expect((await call(router, token, 'profile.patch', { displayName: 'Ada' })).status).toBe(200);
    expect(asked).toEqual([{ runId: 'r1', threadId: 't1', userId: 'u1' }]);

    active = false;
    const headers = { authorization: `Bearer ${token}` };
    const answers = [
      await call(router, token, 'profile.patch', { displayName: 'Mallory' }),
      await call(router, token, 'events.append', {
        event: { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm1', delta: 'injected' },
      }),
      await call(router, token, 'session.add', { items: ['injected'] }),
    ];
    for (const r of answers)
      expect([r.status, !r.body.ok && r.body.error.code]).toEqual([403, 'run_not_active']);
    for (const path of ['/state?threadId=t1', '/tools']) {
      const r = await router(new Request(`${BASE}${path}`, { headers }));
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('run_not_active');
    }
    expect(await store.getProfile('u1')).toEqual({ displayName: 'Ada' });
    expect(await store.getSessionItems('t1')).toEqual([]);
    expect(sink.events).toHaveLength(1); // the STATE_CHANGED of the call made while the run was active
  });

  it('answers 503 unavailable when the check itself fails, and refuses a non-function option', async () => {
    const { router, mint, store, log } = makeSetup({
      isRunActive: async () => {
        throw new Error('database down');
      },
    });
    const r = await call(router, await mint(), 'profile.patch', { displayName: 'Ada' });
    expect([r.status, !r.body.ok && r.body.error.code]).toEqual([503, 'unavailable']);
    expect(await store.getProfile('u1')).toEqual({});
    expect(log.warns).toHaveLength(1);
    expect(() => makeSetup({ isRunActive: true as never })).toThrow(/isRunActive must be a function/);
  });

  it('does not check anything without the option (the token alone decides)', async () => {
    const { router, mint } = makeSetup();
    expect(
      (await call(router, await mint({ runId: 'gone' }), 'profile.patch', { displayName: 'A' })).status,
    ).toBe(200);
  });
});
