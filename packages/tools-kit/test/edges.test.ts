import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { ToolResultSchema } from '@threadline/contracts';
import type { JsonValue } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryToolStore, ToolsKitError, defineTool } from '../src/index.js';
import type { ToolStore } from '../src/index.js';
import { toolRouterMiddleware } from '../src/express.js';
import { makeSetup, post, serveExpress } from './helpers.js';

const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
async function serve(router: Parameters<typeof serveExpress>[0], mount = '/') {
  const s = await serveExpress(router, mount);
  servers.push(s);
  return s;
}
async function envelope(res: Response) {
  return { status: res.status, body: ToolResultSchema.parse(await res.json()), headers: res.headers };
}
const code = (r: { body: { ok: boolean; error?: { code: string } } }) =>
  r.body.ok ? 'ok' : r.body.error?.code;

/** Sends a raw body with chosen headers, including chunked uploads without Content-Length. */
function rawPost(
  url: string,
  headers: Record<string, string>,
  chunks: Buffer[],
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('request bodies at the edges (over HTTP)', () => {
  it('answers 413 for a body over the limit, declared or chunked, and writes nothing', async () => {
    const { router, mint, store } = makeSetup({ maxBodyBytes: 1024 });
    const { url } = await serve(router);
    const token = await mint();
    const before = store.snapshot();
    const big = await envelope(
      await post(`${url}/tools/session.add`, token, { threadId: 't1', input: { items: ['x'.repeat(2000)] } }),
    );
    expect([big.status, code(big)]).toEqual([413, 'payload_too_large']);

    const chunk = Buffer.from(`{"threadId":"t1","input":{"items":["${'y'.repeat(600)}`);
    const chunked = await rawPost(
      `${url}/tools/session.add`,
      {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'transfer-encoding': 'chunked',
      },
      [chunk, chunk, Buffer.from('"]}}')],
    );
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ ok: false, error: { code: 'payload_too_large' } });
    expect(store.snapshot()).toEqual(before);
    // A body exactly at the limit is still accepted.
    const items = ['z'.repeat(1024 - JSON.stringify({ threadId: 't1', input: { items: [''] } }).length)];
    const exact = await envelope(
      await post(`${url}/tools/session.add`, token, { threadId: 't1', input: { items } }),
    );
    expect(code(exact)).toBe('ok');
  });

  it('answers 400 for non-JSON, non-UTF-8, empty, non-object and over-deep bodies; 415 for other media types', async () => {
    const { router, mint, store } = makeSetup();
    const { url } = await serve(router);
    const token = await mint();
    const before = store.snapshot();
    const cases: [string | Buffer, string, number][] = [
      ['{not json', 'invalid_json', 400],
      ['', 'invalid_json', 400],
      [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'invalid_json', 400],
      ['[1,2,3]', 'invalid_input', 400],
      ['"just a string"', 'invalid_input', 400],
      [
        JSON.stringify({ threadId: 't1', input: { items: [JSON.parse('['.repeat(60) + ']'.repeat(60))] } }),
        'invalid_input',
        400,
      ],
      [JSON.stringify({ threadId: 't1' }) + 'trailing', 'invalid_json', 400],
    ];
    for (const [body, expected, status] of cases) {
      const res = await rawPost(
        `${url}/tools/session.add`,
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        [Buffer.from(body)],
      );
      expect([String(body).slice(0, 20), res.status, JSON.parse(res.body).error.code]).toEqual([
        String(body).slice(0, 20),
        status,
        expected,
      ]);
    }
    const text = await rawPost(
      `${url}/tools/session.add`,
      { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      [Buffer.from('a=1')],
    );
    expect([text.status, JSON.parse(text.body).error.code]).toEqual([415, 'unsupported_media_type']);
    expect(store.snapshot()).toEqual(before);
  });

  it('answers 404 for unknown tools, 405 for wrong methods, and lets Express handle other paths', async () => {
    const { router, mint } = makeSetup();
    const { url } = await serve(router);
    const token = await mint({ tools: [...makeSetup().router.toolNames, 'no.such'] });
    expect(
      code(await envelope(await post(`${url}/tools/no.such`, token, { threadId: 't1', input: {} }))),
    ).toBe('not_found');
    expect(code(await envelope(await post(`${url}/tools/%E0%A4%A`, token, { threadId: 't1' })))).toBe(
      'not_found',
    );
    const get = await fetch(`${url}/tools/state.get`, { headers: { authorization: `Bearer ${token}` } });
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    const postState = await post(`${url}/state?threadId=t1`, token, {});
    expect(postState.status).toBe(405);
    const other = await fetch(`${url}/health`);
    expect(await other.json()).toEqual({ fallthrough: true });
  });

  it('reuses a body that express.json() already parsed', async () => {
    const { router, mint } = makeSetup();
    const app = express();
    app.use(express.json({ limit: '10kb' }));
    app.use(toolRouterMiddleware(router));
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    servers.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const res = await envelope(
      await post(`${url}/tools/profile.patch`, await mint(), {
        threadId: 't1',
        input: { displayName: 'Pre' },
      }),
    );
    expect(res.body).toEqual({ ok: true, data: { profile: { displayName: 'Pre' } } });
  });

  it('serves under a mount point and a basePath', async () => {
    const { router, mint } = makeSetup({ basePath: '/v1' });
    const { url } = await serve(router, '/api');
    const token = await mint();
    expect(
      code(await envelope(await post(`${url}/v1/tools/state.get`, token, { threadId: 't1', input: {} }))),
    ).toBe('ok');
    expect(await (await fetch(`${url}/tools`)).json()).toEqual({ fallthrough: true });
  });

  it('checks the state query string strictly', async () => {
    const { router, mint } = makeSetup();
    const { url } = await serve(router);
    const auth = { authorization: `Bearer ${await mint()}` };
    for (const [query, status, c] of [
      ['', 400, 'invalid_input'],
      ['?threadId=t1&threadId=t1', 400, 'invalid_input'],
      ['?threadId=', 400, 'invalid_input'],
      ['?threadId=t%20', 400, 'invalid_input'],
      ['?threadId=t2', 403, 'thread_mismatch'],
      ['?threadId=t1&extra=1', 200, 'ok'],
    ] as const) {
      const r = await envelope(await fetch(`${url}/state${query}`, { headers: auth }));
      expect([query, r.status, code(r)]).toEqual([query, status, c]);
    }
  });
});

describe('idempotency', () => {
  let runs = 0;
  const add = defineTool({
    name: 'ledger.add',
    description: 'Add an amount.',
    input: z.strictObject({ amount: z.number().int() }),
    output: z.strictObject({ total: z.number() }),
    async handler({ amount }) {
      runs += amount;
      await new Promise((r) => setImmediate(r));
      return { total: runs };
    },
  });

  it('replays the first result for the same key without writing twice; a different input is a conflict', async () => {
    runs = 0;
    const { router, mint, store } = makeSetup({ tools: [add] });
    const { url } = await serve(router);
    const token = await mint();
    const first = await envelope(
      await post(
        `${url}/tools/ledger.add`,
        token,
        { threadId: 't1', input: { amount: 5 } },
        { 'idempotency-key': 'k1' },
      ),
    );
    const second = await envelope(
      await post(
        `${url}/tools/ledger.add`,
        token,
        { threadId: 't1', input: { amount: 5 } },
        { 'idempotency-key': 'k1' },
      ),
    );
    expect(first.body).toEqual({ ok: true, data: { total: 5 } });
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(runs).toBe(5);
    const differs = await envelope(
      await post(
        `${url}/tools/ledger.add`,
        token,
        { threadId: 't1', input: { amount: 7 } },
        { 'idempotency-key': 'k1' },
      ),
    );
    expect([differs.status, code(differs)]).toEqual([409, 'conflict']);
    // The body form of the key works too, and the same key in another thread is another call.
    const other = await envelope(
      await post(`${url}/tools/ledger.add`, await mint({ threadId: 't2' }), {
        threadId: 't2',
        input: { amount: 5 },
        idempotencyKey: 'k1',
      }),
    );
    expect(other.body).toEqual({ ok: true, data: { total: 10 } });
    const bad = await envelope(
      await post(
        `${url}/tools/ledger.add`,
        token,
        { threadId: 't1', input: { amount: 1 } },
        { 'idempotency-key': 'has space' },
      ),
    );
    expect(code(bad)).toBe('invalid_input');
    expect(Object.keys(store.snapshot().idempotent)).toHaveLength(2);
  });

  it('runs concurrent duplicates once', async () => {
    runs = 0;
    const { router, mint } = makeSetup({ tools: [add] });
    const token = await mint();
    const send = () =>
      router(
        new Request('http://x/tools/ledger.add', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'idempotency-key': 'same' },
          body: JSON.stringify({ threadId: 't1', input: { amount: 1 } }),
        }),
      ).then((r) => r.json());
    const answers = await Promise.all(Array.from({ length: 10 }, send));
    expect(runs).toBe(1);
    for (const a of answers) expect(a).toEqual({ ok: true, data: { total: 1 } });
  });

  it('does not keep failures: a retry after a failed call runs again', async () => {
    let attempt = 0;
    const flaky = defineTool({
      name: 'flaky.op',
      description: 'Fails once.',
      input: z.strictObject({}),
      output: z.strictObject({ attempt: z.number() }),
      handler() {
        attempt++;
        if (attempt === 1) throw new Error('transient');
        return { attempt };
      },
    });
    const { router, mint } = makeSetup({ tools: [flaky] });
    const token = await mint();
    const send = () =>
      router(
        new Request('http://x/tools/flaky.op', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'idempotency-key': 'r' },
          body: '{"threadId":"t1"}',
        }),
      );
    expect((await send()).status).toBe(500);
    expect(await (await send()).json()).toEqual({ ok: true, data: { attempt: 2 } });
    expect(await (await send()).json()).toEqual({ ok: true, data: { attempt: 2 } });
  });
});

describe('all or nothing', () => {
  it('a session.add with one bad item writes none of them', async () => {
    const { router, mint, store } = makeSetup();
    const token = await mint();
    await store.addSessionItems('t1', ['keep']);
    const before = store.snapshot();
    const res = await router(
      new Request('http://x/tools/session.add', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: `{"threadId":"t1","input":{"items":["ok1","ok2",{"__proto__":{"admin":true}}]}}`,
      }),
    );
    expect(res.status).toBe(400);
    expect(store.snapshot()).toEqual(before);
  });

  it('a store write that fails answers 500, emits nothing, and leaves the profile as it was', async () => {
    const inner = new MemoryToolStore();
    await inner.patchProfile('u1', { displayName: 'Before' });
    const failing: ToolStore = Object.assign(Object.create(inner) as ToolStore, {
      getProfile: (u: string) => inner.getProfile(u),
      patchProfile: async () => {
        throw new Error('disk full');
      },
    });
    const { router, mint, sink, log } = makeSetup({ store: failing });
    const res = await envelope(
      await router(
        new Request('http://x/tools/profile.patch', {
          method: 'POST',
          headers: { authorization: `Bearer ${await mint()}` },
          body: '{"threadId":"t1","input":{"displayName":"After"}}',
        }),
      ),
    );
    expect([res.status, code(res)]).toEqual([500, 'internal_error']);
    expect(JSON.stringify(res.body)).not.toContain('disk full');
    expect(sink.events).toHaveLength(0);
    expect(await inner.getProfile('u1')).toEqual({ displayName: 'Before' });
    expect(log.errors).toHaveLength(1);
  });

  it('a handler that emits and then throws publishes none of its events', async () => {
    const half = defineTool({
      name: 'half.done',
      description: 'Emits then fails.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      async handler(_i, ctx) {
        await ctx.emit({
          type: 'STATE_CHANGED',
          threadId: ctx.threadId,
          runId: ctx.runId,
          ts: Date.now(),
          scope: 'x',
          value: 1,
        });
        throw new Error('midway');
      },
    });
    const { router, mint, sink } = makeSetup({ tools: [half] });
    const res = await router(
      new Request('http://x/tools/half.done', {
        method: 'POST',
        headers: { authorization: `Bearer ${await mint()}` },
        body: '{"threadId":"t1"}',
      }),
    );
    expect(res.status).toBe(500);
    expect(sink.events).toHaveLength(0);
  });

  it('the memory store refuses an append past its bound whole, and the router answers 409', async () => {
    const store = new MemoryToolStore({ maxSessionItems: 3 });
    const { router, mint } = makeSetup({ store });
    const token = await mint();
    const add = (items: JsonValue[]) =>
      router(
        new Request('http://x/tools/session.add', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ threadId: 't1', input: { items } }),
        }),
      );
    expect((await add(['a', 'b'])).status).toBe(200);
    const over = await envelope(await add(['c', 'd']));
    expect([over.status, code(over)]).toEqual([409, 'conflict']);
    expect(await store.getSessionItems('t1')).toEqual(['a', 'b']);
  });
});

describe('bounds on handlers', () => {
  it('a handler past handlerTimeoutMs answers 504 timeout and sees its signal abort', async () => {
    let aborted: unknown;
    const stuck = defineTool({
      name: 'stuck.op',
      description: 'Hangs.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler: (_i, ctx) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
            reject(ctx.signal.reason);
          }),
        ),
    });
    const { router, mint } = makeSetup({ tools: [stuck], handlerTimeoutMs: 50 });
    const res = await envelope(
      await router(
        new Request('http://x/tools/stuck.op', {
          method: 'POST',
          headers: { authorization: `Bearer ${await mint()}` },
          body: '{"threadId":"t1"}',
        }),
      ),
    );
    expect([res.status, code(res)]).toEqual([504, 'timeout']);
    expect(aborted).toBeInstanceOf(ToolsKitError);
  });

  it('a handler emitting more than maxEventsPerCall events fails whole', async () => {
    const chatty = defineTool({
      name: 'chatty.op',
      description: 'Emits a lot.',
      input: z.strictObject({ n: z.number().int() }),
      output: z.strictObject({}),
      async handler({ n }, ctx) {
        for (let i = 0; i < n; i++)
          await ctx.emit({
            type: 'STATE_CHANGED',
            threadId: ctx.threadId,
            runId: ctx.runId,
            ts: 1,
            scope: 's',
            value: i,
          });
        return {};
      },
    });
    const { router, mint, sink } = makeSetup({ tools: [chatty], maxEventsPerCall: 3 });
    const token = await mint();
    const send = (n: number) =>
      router(
        new Request('http://x/tools/chatty.op', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ threadId: 't1', input: { n } }),
        }),
      );
    expect((await send(3)).status).toBe(200);
    expect(sink.events).toHaveLength(3);
    expect((await send(4)).status).toBe(409);
    expect(sink.events).toHaveLength(3);
  });

  it('output that breaks its schema is an internal error with a reference; events for another thread are refused', async () => {
    const liar = defineTool({
      name: 'liar.op',
      description: 'Returns the wrong shape.',
      input: z.strictObject({}),
      output: z.strictObject({ n: z.number() }),
      handler: () => ({ n: 'three' }) as never,
    });
    const leaker = defineTool({
      name: 'leaker.op',
      description: 'Emits to another thread.',
      input: z.strictObject({}),
      output: z.strictObject({}),
      async handler(_i, ctx) {
        await ctx.emit({
          type: 'STATE_CHANGED',
          threadId: 'someone-elses',
          runId: ctx.runId,
          ts: 1,
          scope: 's',
          value: 1,
        });
        return {};
      },
    });
    const { router, mint, sink } = makeSetup({ tools: [liar, leaker] });
    const token = await mint();
    const liarRes = await envelope(
      await router(
        new Request('http://x/tools/liar.op', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          body: '{"threadId":"t1"}',
        }),
      ),
    );
    expect([liarRes.status, code(liarRes)]).toEqual([500, 'internal_error']);
    expect(!liarRes.body.ok && liarRes.body.error.ref).toBeTruthy();
    const leak = await envelope(
      await router(
        new Request('http://x/tools/leaker.op', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          body: '{"threadId":"t1"}',
        }),
      ),
    );
    expect([leak.status, code(leak)]).toEqual([403, 'thread_mismatch']);
    expect(sink.events).toHaveLength(0);
  });

  it('refuses bad router options', () => {
    expect(() => makeSetup({ maxBodyBytes: 0 })).toThrow(/maxBodyBytes/);
    expect(() => makeSetup({ basePath: 'no-slash' })).toThrow(/basePath/);
    expect(() => makeSetup({ tokens: {} as never })).toThrow(/verify/);
  });
});
