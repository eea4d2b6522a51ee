import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRelay, inProcessAgentTransport, type Relay } from '@threadline/relay';
import { createMemoryStore, type MemoryStore } from '@threadline/relay/memory';
import { MemoryToolStore, type ToolStore } from '@threadline/tools-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { EXAMPLE_ROOT } from '../src/config.js';
import { allowedOrigins } from '../src/security.js';
import { Sessions } from '../src/sessions.js';
import { SqliteUserStore } from '../src/users/sqlite-user-store.js';
import { Client, rawRequest } from './helpers.js';

// The Express app over real HTTP on 127.0.0.1, with a real SQLite users file, the relay's memory store and
// tools-kit's memory store for profiles.
let server: Server;
let base: string;
let dir: string;
let users: SqliteUserStore;
let store: MemoryStore & Pick<ToolStore, 'getProfile'>;
let relay: Relay;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-api-'));
  users = new SqliteUserStore(join(dir, 'users.db'));
  const tools = new MemoryToolStore();
  store = Object.assign(createMemoryStore(), { getProfile: (userId: string) => tools.getProfile(userId) });
  relay = createRelay({
    store,
    agent: inProcessAgentTransport({ async *run() {} }),
    tokens: { issue: async () => 'token' },
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: { error() {}, warn() {} },
  });
  server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  const origins = allowedOrigins(undefined, port);
  server.on(
    'request',
    createApp({
      users,
      store,
      threads: relay,
      sessions: new Sessions(users, { ttlMs: 3_600_000, secure: false }),
      isAllowedOrigin: (o) => origins.includes(o),
      publicDir: join(EXAMPLE_ROOT, 'public'),
      limits: { authAttempts: 8, signups: 100, jsonBodyBytes: 1024, maxEventsPerPage: 2 },
      logger: { error: () => {} },
    }),
  );
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await relay.close();
  await users.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('auth', () => {
  it('signs up, keeps a session in an httpOnly SameSite=Lax cookie, and signs out', async () => {
    const c = new Client(base);
    const r = await c.signup('Alice');
    expect(r.status).toBe(201);
    expect(r.json.user.username).toBe('alice');
    const setCookie = r.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^tl_session=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    expect(setCookie).not.toMatch(/Secure/);
    expect((await c.req('GET', '/api/me')).json.user.username).toBe('alice');

    const out = await c.req('POST', '/api/auth/logout');
    expect(out.status).toBe(204);
    expect(c.cookie).toBeUndefined();
    expect((await c.req('GET', '/api/me')).status).toBe(401);
  });

  it('the old cookie stops working after sign-out (the session is deleted server-side)', async () => {
    const c = new Client(base);
    await c.signup('bob');
    const stolen = c.cookie;
    await c.req('POST', '/api/auth/logout');
    const thief = new Client(base);
    thief.cookie = stolen;
    expect((await thief.req('GET', '/api/me')).status).toBe(401);
  });

  it('stores only an argon2id hash (OWASP minimum params) and logs in with the password', async () => {
    const c = new Client(base);
    await c.signup('carol', 'a long enough password');
    const u = await users.findUserByUsername('carol');
    expect(u?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const again = new Client(base);
    const r = await again.req('POST', '/api/auth/login', {
      json: { username: 'Carol', password: 'a long enough password' },
    });
    expect(r.status).toBe(200);
    expect((await again.req('GET', '/api/me')).json.user.username).toBe('carol');
  });

  it('answers a wrong password and an unknown user with the same generic error', async () => {
    await new Client(base).signup('dave');
    const wrong = await new Client(base).req('POST', '/api/auth/login', {
      json: { username: 'dave', password: 'nope nope nope' },
    });
    const unknown = await new Client(base).req('POST', '/api/auth/login', {
      json: { username: 'nobody', password: 'nope nope nope' },
    });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.json).toEqual(unknown.json);
    expect(wrong.json.error.code).toBe('invalid_credentials');
  });

  it('refuses a taken username with 409 and bad credentials with 400 and field issues', async () => {
    await new Client(base).signup('erin');
    expect((await new Client(base).signup('ERIN')).json.error.code).toBe('username_taken');
    const bad = await new Client(base).req('POST', '/api/auth/signup', {
      json: { username: 'x', password: 'short' },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('invalid_input');
    expect(bad.json.error.issues.map((i: { path: string }) => i.path)).toEqual(['username', 'password']);
    const extra = await new Client(base).req('POST', '/api/auth/signup', {
      json: { username: 'frank', password: 'long enough pw', admin: true },
    });
    expect(extra.status).toBe(400);
  });

  it('refuses the commonest passwords at sign-up with 400 password_too_common, whatever their case', async () => {
    const common = ['12345678', 'password', 'Password1', 'QWERTYUIOP', 'iloveyou', '1qaz2wsx'];
    for (const [i, password] of common.entries()) {
      const r = await new Client(base).req('POST', '/api/auth/signup', {
        json: { username: `common${i}`, password },
      });
      expect([r.status, r.json.error?.code, password]).toEqual([400, 'password_too_common', password]);
      expect(r.json.error.message).toMatch(/commonly used password/);
      expect(r.json.error.issues).toEqual([{ path: 'password', message: expect.any(String) }]);
    }
    // Nothing was created: the same username signs up with a better password.
    expect((await new Client(base).signup('common0', 'a long unusual phrase')).status).toBe(201);
  });

  it('signing in again replaces the session: the previous cookie stops working', async () => {
    const c = new Client(base);
    await c.signup('rotate', 'a long enough password');
    const before = c.cookie;
    await c.req('POST', '/api/auth/login', {
      json: { username: 'rotate', password: 'a long enough password' },
    });
    expect(c.cookie).not.toBe(before);
    expect((await c.req('GET', '/api/me')).status).toBe(200);
    const old = new Client(base);
    old.cookie = before;
    expect((await old.req('GET', '/api/me')).status).toBe(401);
  });

  it('refuses a forged or oversized session cookie', async () => {
    const c = new Client(base);
    c.cookie = `tl_session=${'A'.repeat(43)}`;
    expect((await c.req('GET', '/api/me')).status).toBe(401);
    c.cookie = `tl_session=${'A'.repeat(5000)}`;
    expect((await c.req('GET', '/api/me')).status).toBe(401);
  });
});

describe('CSRF', () => {
  it('refuses cookie-authenticated POSTs from another origin, and cross-site requests without Origin', async () => {
    const c = new Client(base);
    await c.signup('mallory-victim');
    const evil = new Client(base, 'https://evil.example');
    evil.cookie = c.cookie;
    const r = await evil.req('POST', '/api/threads', { json: { title: 'pwned' } });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('cross_origin');
    const noOrigin = new Client(base, null);
    noOrigin.cookie = c.cookie;
    const r2 = await noOrigin.req('POST', '/api/threads', {
      json: {},
      headers: { 'sec-fetch-site': 'cross-site' },
    });
    expect(r2.status).toBe(403);
    // Login CSRF too: a foreign page cannot sign the victim into the attacker's account.
    const r3 = await new Client(base, 'https://evil.example').req('POST', '/api/auth/login', {
      json: { username: 'mallory-victim', password: 'correct horse battery' },
    });
    expect(r3.status).toBe(403);
    expect((await c.req('GET', '/api/threads')).json.threads).toEqual([]);
  });

  it('accepts the same request from the host origin (localhost and 127.0.0.1)', async () => {
    const port = new URL(base).port;
    const c = new Client(base, `http://localhost:${port}`);
    expect((await c.signup('sameorigin')).status).toBe(201);
    expect((await c.req('POST', '/api/threads', { json: {} })).status).toBe(201);
  });
});

describe('threads REST and isolation', () => {
  it('counts usage only from RUN_FINISHED events: a tool state that names RUN_FINISHED and carries usage adds nothing', async () => {
    const c = new Client(base);
    await c.signup('usagecheck');
    const { threadId } = (await c.req('POST', '/api/threads', { json: {} })).json as { threadId: string };
    // What a tool may write into the log (STATE_CHANGED), shaped to look like a finished run's usage.
    await relay.publish(threadId, [
      {
        type: 'STATE_CHANGED',
        threadId,
        runId: 'run_forged',
        ts: Date.now(),
        scope: 'profile',
        value: { note: 'RUN_FINISHED', usage: { inputTokens: 1e6, outputTokens: 1e6, totalTokens: 2e6 } },
      },
    ]);
    const usage = await c.req('GET', `/api/threads/${threadId}/usage`);
    expect(usage.status).toBe(200);
    expect(usage.json.usage).toMatchObject({ inputTokens: 0, outputTokens: 0, totalTokens: 0, runs: 0 });
  });

  it('creates and lists a user’s own threads, and reads their events', async () => {
    const c = new Client(base);
    await c.signup('gina');
    const t = await c.req('POST', '/api/threads', { json: { title: '  Trip plans ' } });
    expect(t.status).toBe(201);
    expect(t.json.title).toBe('Trip plans');
    expect(t.json.threadId).toMatch(/^thr_[A-Za-z0-9_-]{16}$/);
    const list = await c.req('GET', '/api/threads');
    expect(list.json.threads.map((x: { threadId: string }) => x.threadId)).toEqual([t.json.threadId]);

    const me = (await c.req('GET', '/api/me')).json.user.id as string;
    await store.startRun({
      threadId: t.json.threadId,
      runId: 'run1',
      userId: me,
      clientMessageId: 'm1',
      userMessage: {
        type: 'USER_MESSAGE',
        threadId: t.json.threadId,
        runId: 'run1',
        ts: 1,
        messageId: 'um1',
        clientMessageId: 'm1',
        userId: me,
        text: 'hello',
      },
    });
    await store.append(t.json.threadId, [
      { type: 'RUN_STARTED', threadId: t.json.threadId, runId: 'run1', ts: 2 },
      { type: 'RUN_FINISHED', threadId: t.json.threadId, runId: 'run1', ts: 3 },
    ]);
    // A page never holds more than maxEventsPerPage (2 here), whatever `limit` asks for.
    const capped = await c.req('GET', `/api/threads/${t.json.threadId}/events?limit=1000`);
    expect(capped.json.events).toHaveLength(2);
    expect(capped.json.hasMore).toBe(true);
    const ev = await c.req('GET', `/api/threads/${t.json.threadId}/events?afterSeq=1`);
    expect(ev.status).toBe(200);
    expect(ev.json.events.map((e: { type: string; seq: number }) => [e.seq, e.type])).toEqual([
      [2, 'RUN_STARTED'],
      [3, 'RUN_FINISHED'],
    ]);
    expect(ev.json.nextAfterSeq).toBe(3);
    expect(ev.json.hasMore).toBe(false);
    const page = await c.req('GET', `/api/threads/${t.json.threadId}/events?afterSeq=0&limit=1`);
    expect(page.json.events).toHaveLength(1);
    expect(page.json.hasMore).toBe(true);
    expect((await c.req('GET', `/api/threads/${t.json.threadId}/events?afterSeq=-1`)).status).toBe(400);
    expect((await c.req('GET', `/api/threads/${t.json.threadId}/events?afterSeq=abc`)).status).toBe(400);
  });

  it('another user cannot list, read or open the thread: it answers like a missing one', async () => {
    const owner = new Client(base);
    await owner.signup('henry');
    const t = (await owner.req('POST', '/api/threads', { json: {} })).json.threadId as string;
    const other = new Client(base);
    await other.signup('ivan');
    expect((await other.req('GET', '/api/threads')).json.threads).toEqual([]);
    const events = await other.req('GET', `/api/threads/${t}/events`);
    expect(events.status).toBe(404);
    expect(events.json).toEqual((await other.req('GET', '/api/threads/thr_doesnotexist/events')).json);
    expect((await other.req('GET', `/api/threads/${t}`)).status).toBe(404);
    // The chat page itself is refused too.
    expect((await other.req('GET', `/threads/${t}`, { headers: { accept: 'text/html' } })).status).toBe(404);
    expect((await owner.req('GET', `/threads/${t}`, { headers: { accept: 'text/html' } })).status).toBe(200);
    // And nobody signed out gets anything.
    expect((await new Client(base).req('GET', `/api/threads/${t}/events`)).status).toBe(401);
  });

  it('rejects a malformed thread id without touching the store', async () => {
    const c = new Client(base);
    await c.signup('judy');
    const r = await c.req('GET', `/api/threads/${encodeURIComponent('../../etc')}/events`);
    expect(r.status).toBe(404);
  });
});

describe('input handling and limits', () => {
  let c: Client;
  beforeAll(async () => {
    c = new Client(base);
    await c.signup('kim');
  });

  it('answers bad JSON with 400 invalid_json', async () => {
    const r = await c.req('POST', '/api/threads', {
      body: '{"title": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('invalid_json');
    const r2 = await c.req('POST', '/api/threads', {
      body: '"just a string"',
      headers: { 'content-type': 'application/json' },
    });
    expect(r2.status).toBe(400);
  });

  it('answers a body over the limit with 413, whatever Content-Length claims', async () => {
    const big = JSON.stringify({ title: 'x'.repeat(2000) });
    const r = await c.req('POST', '/api/threads', {
      body: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('payload_too_large');
    const lying = await rawRequest(`${base}/api/threads`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': '10',
        cookie: c.cookie!,
        origin: base,
      },
      body: '{"title":"this is much longer than ten bytes"}',
    });
    expect(lying.status).toBe(400);
  });

  it('answers non-JSON bodies with 415, wrong shapes with 400, never 500', async () => {
    const form = await c.req('POST', '/api/threads', {
      body: 'title=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(415);
    for (const body of [[], { title: 5 }, { title: '' }, { title: 'x'.repeat(201) }, { nope: 1 }, null]) {
      const r = await c.req('POST', '/api/threads', { json: body });
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    const proto = await c.req('POST', '/api/auth/signup', {
      body: '{"__proto__": {"admin": true}, "username": "zed", "password": "long enough pw"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(proto.status).toBe(400);
  });

  it('answers unknown /api routes with 404 JSON', async () => {
    const r = await c.req('GET', '/api/nope');
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('not_found');
    expect((await c.req('DELETE', '/api/threads')).status).toBe(404);
  });

  it('rate-limits sign-in attempts per client address (429 after the limit)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      statuses.push(
        (
          await new Client(base).req('POST', '/api/auth/login', {
            json: { username: 'kim', password: `guess ${i}` },
          })
        ).status,
      );
    }
    expect(statuses).toEqual([...Array(8).fill(401), ...Array(4).fill(429)]);
    // Another username from the same address is not locked out.
    const other = await new Client(base).req('POST', '/api/auth/login', {
      json: { username: 'someone', password: 'x' },
    });
    expect(other.status).toBe(401);
  });
});

describe('security headers and pages', () => {
  it('sends a strict CSP, frame-ancestors none, nosniff and a referrer policy on pages and API', async () => {
    for (const path of ['/', '/api/me', '/js/auth.js']) {
      const r = await new Client(base).req('GET', path);
      const csp = r.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('referrer-policy')).toBe('no-referrer');
      expect(r.headers.get('x-powered-by')).toBeNull();
    }
  });

  it('serves pages without inline scripts, and redirects signed-out visitors to sign-in', async () => {
    const home = await new Client(base).req('GET', '/');
    expect(home.status).toBe(200);
    expect(home.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    const threads = await new Client(base).req('GET', '/threads');
    expect(threads.status).toBe(303);
    expect(threads.headers.get('location')).toBe('/');
  });
});
