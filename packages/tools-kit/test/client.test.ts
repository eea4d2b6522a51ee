import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createToolClient, defineTool } from '../src/index.js';
import { makeSetup, serveExpress } from './helpers.js';

/** Resolves when the handler of `slow.wait` sees its signal abort, so tests can await it instead of sleeping. */
let sawAbort: (reason: unknown) => void = () => {};
const slow = defineTool({
  name: 'slow.wait',
  description: 'Waits until aborted.',
  input: z.strictObject({}),
  output: z.strictObject({}),
  handler(_input, ctx) {
    return new Promise((_, reject) => {
      ctx.signal.addEventListener('abort', () => {
        sawAbort(ctx.signal.reason);
        reject(ctx.signal.reason);
      });
    });
  },
});

const setup = makeSetup({ tools: [slow] });
let server: { url: string; close(): Promise<void> };
const extra: Server[] = [];

beforeAll(async () => {
  server = await serveExpress(setup.router);
});
afterAll(() => server.close());
afterEach(async () => {
  await Promise.all(extra.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function rawServer(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer(handler);
  extra.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

describe('createToolClient against a real router', () => {
  it('calls tools, reads the manifest and the state', async () => {
    const client = createToolClient({ baseUrl: `${server.url}/`, token: await setup.mint(), threadId: 't1' });
    expect(await client.call('profile.patch', { displayName: 'Grace' })).toEqual({
      ok: true,
      data: { profile: { displayName: 'Grace' } },
    });
    expect(await client.state()).toEqual({ ok: true, data: { profile: { displayName: 'Grace' } } });
    const manifest = await client.manifest();
    expect(manifest.ok && manifest.data.tools.map((t) => t.name)).toContain('slow.wait');
    const bad = await client.call('profile.patch', { displayName: 7 });
    expect(bad).toMatchObject({
      ok: false,
      error: { code: 'invalid_input', issues: [{ path: 'displayName' }] },
    });
    expect(await client.call('no.such', {})).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('times out with code timeout, and the handler sees its signal abort', async () => {
    const aborted = new Promise((r) => (sawAbort = r));
    const client = createToolClient({
      baseUrl: server.url,
      token: await setup.mint(),
      threadId: 't1',
      timeoutMs: 5_000,
    });
    const result = await client.call('slow.wait', {}, { timeoutMs: 100 });
    expect(result).toMatchObject({ ok: false, error: { code: 'timeout' } });
    await expect(aborted).resolves.toBeDefined();
  });

  it('honours an AbortSignal, before and during a call', async () => {
    const client = createToolClient({ baseUrl: server.url, token: await setup.mint(), threadId: 't1' });
    expect(await client.call('state.get', {}, { signal: AbortSignal.abort() })).toMatchObject({
      ok: false,
      error: { code: 'aborted' },
    });
    const controller = new AbortController();
    const aborted = new Promise((r) => (sawAbort = r));
    const pending = client.call('slow.wait', {}, { signal: controller.signal });
    // Abort only once the handler is running, so the abort crosses the wire.
    setImmediate(() => setTimeout(() => controller.abort(), 50));
    expect(await pending).toMatchObject({ ok: false, error: { code: 'aborted' } });
    await expect(aborted).resolves.toBeDefined();
    expect(await client.manifest({ signal: AbortSignal.abort() })).toMatchObject({
      ok: false,
      error: { code: 'aborted' },
    });
  });

  it('turns network failures and non-envelope answers into unavailable, never a rejection', async () => {
    const closed = await rawServer((_req, res) => res.end());
    await new Promise((r) => extra.pop()?.close(r));
    const down = createToolClient({ baseUrl: closed, token: 'x', threadId: 't1' });
    expect(await down.call('state.get', {})).toMatchObject({ ok: false, error: { code: 'unavailable' } });

    const html = await rawServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<h1>Bad gateway</h1>');
    });
    expect(await createToolClient({ baseUrl: html, token: 'x', threadId: 't1' }).call('a', {})).toMatchObject(
      {
        ok: false,
        error: { code: 'unavailable', message: expect.stringContaining('502') },
      },
    );

    const wrongShape = await rawServer((_req, res) => res.end(JSON.stringify({ ok: 'yes' })));
    expect(await createToolClient({ baseUrl: wrongShape, token: 'x', threadId: 't1' }).state()).toMatchObject(
      { ok: false, error: { code: 'unavailable' } },
    );

    const huge = await rawServer((_req, res) =>
      res.end(JSON.stringify({ ok: true, data: 'x'.repeat(10_000) })),
    );
    expect(
      await createToolClient({ baseUrl: huge, token: 'x', threadId: 't1', maxResponseBytes: 1000 }).call(
        'a',
        {},
      ),
    ).toMatchObject({
      ok: false,
      error: { code: 'unavailable', message: expect.stringContaining('1000 bytes') },
    });

    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(await down.call('a', cyclic)).toMatchObject({ ok: false, error: { code: 'invalid_input' } });
  });

  it('never follows a redirect with the token', async () => {
    let leaked = 0;
    const sinkUrl = await rawServer((req, res) => {
      if (req.headers.authorization) leaked++;
      res.end(JSON.stringify({ ok: true, data: {} }));
    });
    const redirecting = await rawServer((_req, res) => {
      res.writeHead(307, { location: `${sinkUrl}/tools/a` });
      res.end();
    });
    const result = await createToolClient({
      baseUrl: redirecting,
      token: 'secret-token',
      threadId: 't1',
    }).call('a', {});
    expect(result).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(leaked).toBe(0);
  });

  it('refuses bad options at creation', () => {
    expect(() => createToolClient({ baseUrl: 'not a url', token: 't', threadId: 't1' })).toThrow(/not a URL/);
    expect(() => createToolClient({ baseUrl: 'ftp://x', token: 't', threadId: 't1' })).toThrow(/http/);
    expect(() => createToolClient({ baseUrl: 'http://x', token: '', threadId: 't1' })).toThrow(/token/);
  });
});
