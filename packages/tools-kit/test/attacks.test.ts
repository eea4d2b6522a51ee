import { generateKeyPairSync } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { ACT_AS_AUDIENCE, ToolResultSchema } from '@threadline/contracts';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryToolStore, createTokenIssuer, createToolRouter, defineTool } from '../src/index.js';
import { toolRouterMiddleware } from '../src/express.js';
import { ISSUER, captureLogger, makeSetup, post, serveExpress } from './helpers.js';

/**
 * Attacks beyond the token matrix: what a hostile caller can do with the body, the path, the headers, the
 * connection itself and the key material, over real HTTP where the transport matters.
 */

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});
async function serve(router: Parameters<typeof serveExpress>[0]) {
  const s = await serveExpress(router);
  closers.push(() => s.close());
  return { url: s.url, port: Number(new URL(s.url).port) };
}
/** An Express app with the adapter and an error handler that records what reached it (a 500 otherwise). */
async function serveApp(router: Parameters<typeof serveExpress>[0], before?: express.RequestHandler) {
  const app = express();
  const errors: unknown[] = [];
  if (before) app.use(before);
  app.use(toolRouterMiddleware(router));
  app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errors.push(error);
    res.status(500).end('express error handler');
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, errors };
}

/** Writes raw bytes on a socket and collects the answer until the server closes or `waitMs` passes. */
function rawHttp(
  port: number,
  text: string,
  opts: { waitMs?: number; destroyAfterWrite?: boolean; untilResponses?: number } = {},
): Promise<{ status: number; headers: string; body: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(text);
      if (opts.destroyAfterWrite) setImmediate(() => socket.destroy());
    });
    let out = '';
    let timedOut = false;
    socket.on('data', (d) => {
      out += d.toString();
      // A keep-alive socket stays open: end once the expected responses are complete (each is a short JSON).
      const seen = out.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0;
      if (opts.untilResponses !== undefined && seen >= opts.untilResponses && out.endsWith('}')) socket.end();
    });
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, opts.waitMs ?? 3000);
    socket.on('close', () => {
      clearTimeout(timer);
      const [head = '', ...rest] = out.split('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0),
        headers: head,
        body: rest.join('\r\n\r\n'),
        timedOut,
      });
    });
  });
}

const echo = defineTool({
  name: 'any.echo',
  description: 'Stores whatever it is given.',
  input: z.strictObject({ v: z.unknown() }),
  output: z.strictObject({ stored: z.string() }),
  handler: ({ v }) => {
    echoed.push(v);
    return { stored: typeof v };
  },
});
const echoed: unknown[] = [];

describe('numbers JSON.parse turns into something else', () => {
  it('1e400 and -1e400 (Infinity after parsing) are refused with a path before any handler runs', async () => {
    echoed.length = 0;
    const { router, mint, store } = makeSetup({ tools: [echo] });
    const token = await mint();
    const before = store.snapshot();
    for (const [body, path] of [
      ['{"threadId":"t1","input":{"v":1e400}}', 'input.v'],
      ['{"threadId":"t1","input":{"v":[0,{"x":-1e400}]}}', 'input.v[1].x'],
    ] as const) {
      const res = await router(
        new Request('http://x/tools/any.echo', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body,
        }),
      );
      const envelope = ToolResultSchema.parse(await res.json());
      expect([res.status, envelope]).toMatchObject([
        400,
        { ok: false, error: { code: 'invalid_input', issues: [{ path }] } },
      ]);
    }
    // The same through a built-in: Infinity never reaches the session store as a silent null.
    const res = await router(
      new Request('http://x/tools/session.add', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: '{"threadId":"t1","input":{"items":[1e999]}}',
      }),
    );
    expect(res.status).toBe(400);
    expect(echoed).toEqual([]);
    expect(store.snapshot()).toEqual(before);
  });

  it('integers past 2^53 (which lose precision when parsed) are refused by integer inputs', async () => {
    const { router, mint } = makeSetup();
    const res = await router(
      new Request('http://x/tools/session.get', {
        method: 'POST',
        headers: { authorization: `Bearer ${await mint()}` },
        body: '{"threadId":"t1","input":{"limit":9007199254740993}}',
      }),
    );
    expect(res.status).toBe(400);
  });
});

describe('the request body stream (Fetch API handler)', () => {
  it('a body stream that fails part-way is the caller’s fault: no 500 and nothing in the error log', async () => {
    const { router, mint, log } = makeSetup();
    const res = await router(
      new Request('http://x/tools/session.add', {
        method: 'POST',
        headers: { authorization: `Bearer ${await mint()}` },
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"threadId":"t1",'));
          },
          pull(c) {
            c.error(new Error('client went away'));
          },
        }),
        duplex: 'half',
      } as RequestInit),
    );
    expect(res.status).toBeLessThan(500);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('aborted');
    expect(log.errors).toHaveLength(0);
  });

  it('a body that stops arriving answers 408 request_timeout after bodyTimeoutMs', async () => {
    const { router, mint, store } = makeSetup({ bodyTimeoutMs: 50 });
    const before = store.snapshot();
    let cancelled = false;
    const res = await router(
      new Request('http://x/tools/session.add', {
        method: 'POST',
        headers: { authorization: `Bearer ${await mint()}` },
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"threadId":"t1","input":{"items":['));
          },
          cancel() {
            cancelled = true;
          },
        }),
        duplex: 'half',
      } as RequestInit),
    );
    expect([res.status, res.headers.get('connection')]).toEqual([408, 'close']);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('request_timeout');
    expect(cancelled).toBe(true);
    expect(store.snapshot()).toEqual(before);
    expect(() => makeSetup({ bodyTimeoutMs: 0 })).toThrow(/bodyTimeoutMs/);
  });
});

describe('the connection (Express adapter over a raw socket)', () => {
  it('slowloris: a body trickled past bodyTimeoutMs is answered 408 and the connection closed', async () => {
    const { router, mint, store } = makeSetup({ bodyTimeoutMs: 100 });
    const { port } = await serve(router);
    const before = store.snapshot();
    const res = await rawHttp(
      port,
      `POST /tools/session.add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await mint()}\r\n` +
        `Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"threadId":"t1",`,
    );
    expect(res.timedOut).toBe(false);
    expect(res.status).toBe(408);
    expect(JSON.parse(res.body)).toMatchObject({ ok: false, error: { code: 'request_timeout' } });
    expect(store.snapshot()).toEqual(before);
  });

  it('a Content-Length far over the limit is refused at once, without waiting for the body', async () => {
    // The body timeout is long on purpose: only an answer that does not wait for the body passes.
    const { router, mint } = makeSetup({ bodyTimeoutMs: 60_000 });
    const { port } = await serve(router);
    const res = await rawHttp(
      port,
      `POST /tools/session.add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await mint()}\r\n` +
        `Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"thr`,
    );
    expect(res.timedOut).toBe(false);
    expect(res.status).toBe(413);
    expect(res.headers.toLowerCase()).toContain('connection: close');
  });

  it('a Content-Length shorter than the body sent does not smuggle the rest in as a second request', async () => {
    const { router, mint, store } = makeSetup();
    const { port } = await serve(router);
    const token = await mint();
    const first = '{"threadId":"t1","input":{}}';
    const smuggled =
      `POST /tools/profile.patch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await mint({ userId: 'u2' })}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 47\r\n\r\n{"threadId":"t1","input":{"displayName":"Eve"}}`;
    const res = await rawHttp(
      port,
      `POST /tools/state.get HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${first.length}\r\n\r\n${first}${smuggled}`,
      { waitMs: 10_000, untilResponses: 2 },
    );
    // HTTP/1.1 pipelining is legitimate: the "smuggled" request is a request of its own, judged by its own token.
    expect(res.status).toBe(200);
    expect(await store.getProfile('u2')).toEqual({ displayName: 'Eve' });
    expect(await store.getProfile('u1')).toEqual({});
  });

  it('a client that hangs up mid-body reaches no Express error handler and leaves the server serving', async () => {
    const { router, mint, log } = makeSetup();
    const { port, errors } = await serveApp(router);
    const token = await mint();
    await rawHttp(
      port,
      `POST /tools/session.add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"threadId":"t1",`,
      { destroyAfterWrite: true },
    );
    const after = await post(`http://127.0.0.1:${port}/tools/state.get`, token, { threadId: 't1' });
    expect(after.status).toBe(200);
    expect(errors).toEqual([]);
    expect(log.errors).toHaveLength(0);
  });

  it('a body parser in front that accepted very deep JSON yields a 400 envelope, not an Express 500', async () => {
    const { router, mint } = makeSetup();
    const { port, errors } = await serveApp(router, express.json({ limit: '1mb' }));
    const deep = `{"threadId":"t1","input":{"items":[${'['.repeat(20_000)}${']'.repeat(20_000)}]}}`;
    const res = await post(`http://127.0.0.1:${port}/tools/session.add`, await mint(), deep);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_input');
    expect(errors).toEqual([]);
  });
});

describe('paths, methods and names', () => {
  it('dot segments cannot reach another route than the one Express matched', async () => {
    const { router, mint } = makeSetup();
    const { port } = await serve(router);
    const auth = `Authorization: Bearer ${await mint()}\r\n`;
    for (const path of [
      '/tools/%2e%2e/state?threadId=t1',
      '/tools/%2E%2E/state?threadId=t1',
      '/tools/../state?threadId=t1',
      '/tools/x/%2e%2e/%2e%2e/state?threadId=t1',
      '/tools/..%2Fstate?threadId=t1',
      '/tools\\..\\state?threadId=t1',
    ]) {
      const res = await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`);
      expect([path, res.status]).toEqual([path, 404]);
      // Either the adapter's envelope, or (for a path Express itself does not see under /tools/) the app's own 404.
      expect(res.body).not.toContain('profile');
    }
    // The honest path still works on the same server.
    const ok = await rawHttp(
      port,
      `GET /state?threadId=t1 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
    );
    expect(ok.status).toBe(200);
  });

  it('method override headers are ignored', async () => {
    const { router, mint, store } = makeSetup();
    const { url } = await serve(router);
    const token = await mint();
    const before = store.snapshot();
    for (const header of ['x-http-method-override', 'x-http-method', 'x-method-override']) {
      const patch = await fetch(`${url}/tools/profile.patch`, {
        method: 'GET',
        headers: { authorization: `Bearer ${token}`, [header]: 'POST' },
      });
      expect(patch.status).toBe(405);
      const state = await post(`${url}/state?threadId=t1`, token, {}, { [header]: 'GET' });
      expect(state.status).toBe(405);
    }
    for (const method of ['HEAD', 'OPTIONS', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${url}/tools/session.clear`, {
        method,
        headers: { authorization: `Bearer ${token}` },
      });
      expect([method, res.status]).toEqual([method, 405]);
    }
    expect(store.snapshot()).toEqual(before);
  });

  it('unicode lookalikes and control characters in tool names reach no tool and no header', async () => {
    const { router, mint, store, tokens } = makeSetup();
    const { url } = await serve(router);
    const token = await mint();
    const before = store.snapshot();
    for (const name of [
      'profile\u2024patch', // one dot leader
      '\uff50rofile.patch', // fullwidth p
      'profile.patch\u200b', // zero-width space
      'profile.patch\u0000',
      'profile.patch\r\nset-cookie: pwned=1',
    ]) {
      const res = await post(`${url}/tools/${encodeURIComponent(name)}`, token, {
        threadId: 't1',
        input: { displayName: 'Mallory' },
      });
      expect([JSON.stringify(name), res.status]).toEqual([JSON.stringify(name), 404]);
      expect(res.headers.get('set-cookie')).toBeNull();
      await expect(
        tokens.issue({ userId: 'u1', threadId: 't1', runId: 'r1', tools: [name] }),
      ).rejects.toMatchObject({ code: 'invalid_token_request' });
    }
    // Names are case-sensitive: a case variant is another (unknown) tool.
    const upper = await post(`${url}/tools/PROFILE.PATCH`, token, { threadId: 't1', input: {} });
    expect(upper.status).toBe(404);
    expect(store.snapshot()).toEqual(before);
  });
});

describe('the thread in the request', () => {
  it('a query threadId cannot override the body on POST, and duplicate keys resolve to what is checked', async () => {
    const { router, mint, store } = makeSetup();
    const { url } = await serve(router);
    await store.addSessionItems('t2', ['secret of t2']);
    const before = store.snapshot();
    const t1 = await mint();
    // Query says t1 (the token's thread), body says t2: the body is what is checked, so it is refused.
    const viaQuery = await post(`${url}/tools/session.get?threadId=t1`, t1, { threadId: 't2', input: {} });
    expect([viaQuery.status, ((await viaQuery.json()) as { error: { code: string } }).error.code]).toEqual([
      403,
      'thread_mismatch',
    ]);
    // JSON.parse keeps the last duplicate; the check and the handler see that same value.
    const lastWins = await post(
      `${url}/tools/session.clear`,
      t1,
      '{"threadId":"t1","threadId":"t2","input":{}}',
    );
    expect(lastWins.status).toBe(403);
    const lastIsMine = await post(
      `${url}/tools/session.get`,
      t1,
      '{"threadId":"t2","threadId":"t1","input":{}}',
    );
    expect(await lastIsMine.json()).toEqual({ ok: true, data: { items: [], more: false } });
    expect(store.snapshot()).toEqual(before);
    // GET /state: a second threadId (even one equal to the token's) is refused rather than picked from.
    const twice = await fetch(`${url}/state?threadId=t2&threadId=t1`, {
      headers: { authorization: `Bearer ${t1}` },
    });
    expect(twice.status).toBe(400);
  });
});

describe('idempotency keys replayed across scopes', () => {
  it('the same key for another user, another tool or another thread runs anew and never returns another’s result', async () => {
    let runs = 0;
    const whoami = defineTool({
      name: 'who.ami',
      description: 'Says who called.',
      input: z.strictObject({}),
      output: z.strictObject({ user: z.string(), thread: z.string(), run: z.number() }),
      handler: (_i, ctx) => ({ user: ctx.userId, thread: ctx.threadId, run: ++runs }),
    });
    const whoelse = defineTool({ ...whoami, name: 'who.else' });
    const { router, mint } = makeSetup({ tools: [whoami, whoelse] });
    const call = async (tool: string, over: { userId?: string; threadId?: string }) => {
      const res = await router(
        new Request(`http://x/tools/${tool}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${await mint(over)}`, 'idempotency-key': 'call_1' },
          body: JSON.stringify({ threadId: over.threadId ?? 't1' }),
        }),
      );
      return ((await res.json()) as { data: { user: string; thread: string; run: number } }).data;
    };
    expect(await call('who.ami', {})).toEqual({ user: 'u1', thread: 't1', run: 1 });
    expect(await call('who.ami', {})).toEqual({ user: 'u1', thread: 't1', run: 1 });
    expect(await call('who.ami', { userId: 'u2' })).toEqual({ user: 'u2', thread: 't1', run: 2 });
    expect(await call('who.else', {})).toEqual({ user: 'u1', thread: 't1', run: 3 });
    expect(await call('who.ami', { threadId: 't2' })).toEqual({ user: 'u1', thread: 't2', run: 4 });
  });

  it('MemoryToolStore forgets the oldest key past maxIdempotencyKeys', async () => {
    const store = new MemoryToolStore({ maxIdempotencyKeys: 2 });
    await store.putIdempotent('a', 1);
    await store.putIdempotent('b', 2);
    await store.putIdempotent('c', 3);
    expect(Object.keys(store.snapshot().idempotent)).toEqual(['b', 'c']);
    expect(await store.getIdempotent('a')).toBeNull();
    expect(() => new MemoryToolStore({ maxIdempotencyKeys: 0 })).toThrow(/maxIdempotencyKeys/);
  });
});

describe('key confusion', () => {
  const claims = { thread: 't1', run: 'r1', tools: ['state.get'] };
  const forge = (alg: string, key: Uint8Array | CryptoKey, header: Record<string, unknown> = {}) => {
    const t = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg, ...header })
      .setIssuer(ISSUER)
      .setAudience(ACT_AS_AUDIENCE)
      .setSubject('u1')
      .setJti('j')
      .setIssuedAt(t)
      .setExpirationTime(t + 60)
      .sign(key);
  };
  async function expectRefused(router: (r: Request) => Promise<Response>, token: string) {
    const res = await router(
      new Request('http://x/state?threadId=t1', { headers: { authorization: `Bearer ${token}` } }),
    );
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_invalid');
  }

  it('an HS256 token keyed with the verifier’s own public key (PEM, DER or JWK bytes) is refused', async () => {
    const ed = generateKeyPairSync('ed25519');
    const es = await generateKeyPair('ES256', { extractable: true });
    const store = new MemoryToolStore();
    const edRouter = createToolRouter({
      tokens: createTokenIssuer({ publicKey: ed.publicKey, algorithm: 'EdDSA', issuer: ISSUER }),
      store,
      logger: captureLogger().logger,
    });
    const esRouter = createToolRouter({
      tokens: createTokenIssuer({ publicKey: es.publicKey, algorithm: 'ES256', issuer: ISSUER }),
      store,
      logger: captureLogger().logger,
    });
    const edSecrets = [
      Buffer.from(ed.publicKey.export({ type: 'spki', format: 'pem' })),
      ed.publicKey.export({ type: 'spki', format: 'der' }),
      Buffer.from(JSON.stringify(ed.publicKey.export({ format: 'jwk' }))),
    ];
    for (const secret of edSecrets) {
      await expectRefused(edRouter, await forge('HS256', new Uint8Array(secret)));
    }
    const esJwk = Buffer.from(JSON.stringify(await exportJWK(es.publicKey)));
    await expectRefused(esRouter, await forge('HS256', new Uint8Array(esJwk)));
    // Control: a genuine token from the private key opens the same router.
    const genuine = await createTokenIssuer({ ...ed, algorithm: 'EdDSA', issuer: ISSUER }).issue({
      userId: 'u1',
      threadId: 't1',
      runId: 'r1',
      tools: ['state.get'],
    });
    const ok = await edRouter(
      new Request('http://x/state?threadId=t1', { headers: { authorization: `Bearer ${genuine}` } }),
    );
    expect(ok.status).toBe(200);
  });

  it('a key embedded in the token header (jwk) is never trusted', async () => {
    const ed = generateKeyPairSync('ed25519');
    const attacker = await generateKeyPair('EdDSA', { extractable: true });
    const router = createToolRouter({
      tokens: createTokenIssuer({ publicKey: ed.publicKey, algorithm: 'EdDSA', issuer: ISSUER }),
      store: new MemoryToolStore(),
      logger: captureLogger().logger,
    });
    const jwk = await exportJWK(attacker.publicKey);
    await expectRefused(router, await forge('EdDSA', attacker.privateKey, { jwk }));
    await expectRefused(router, await forge('EdDSA', attacker.privateKey, { kid: 'primary' }));
  });
});
