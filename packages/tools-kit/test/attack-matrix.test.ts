import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { ACT_AS_AUDIENCE, ToolResultSchema } from '@threadline/contracts';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_TOOLS } from '../src/index.js';
import { ISSUER, SECRET, makeSetup, serveExpress } from './helpers.js';

/**
 * The attacker's matrix: every token fault against every built-in route, over real HTTP through the
 * Express adapter. Each request must be refused with the right status and code, and leave the store and
 * the event log exactly as they were.
 */
const setup = makeSetup();
const { store, sink, router, mint } = setup;
let server: { url: string; close(): Promise<void> };

const now = () => Math.floor(Date.now() / 1000);
const secretKey = new TextEncoder().encode(SECRET);
const goodClaims = () => ({ thread: 't1', run: 'r1', tools: router.toolNames });

function forge(
  opts: {
    alg?: string;
    key?: Uint8Array | CryptoKey | KeyObject;
    iss?: string;
    aud?: string;
    iat?: number;
    exp?: number;
    nbf?: number;
    claims?: Record<string, unknown>;
  } = {},
) {
  const t = now();
  const jwt = new SignJWT(opts.claims ?? goodClaims())
    .setProtectedHeader({ alg: opts.alg ?? 'HS256' })
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? ACT_AS_AUDIENCE)
    .setSubject('u1')
    .setJti('forged')
    .setIssuedAt(opts.iat ?? t)
    .setExpirationTime(opts.exp ?? t + 120);
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(opts.key ?? secretKey);
}

type Fault = { name: string; header: () => Promise<string | null>; status: number; code: string };

const ed = generateKeyPairSync('ed25519');
const faults: Fault[] = [
  { name: 'missing Authorization', header: async () => null, status: 401, code: 'token_missing' },
  { name: 'empty Authorization', header: async () => '', status: 401, code: 'token_missing' },
  {
    name: 'Basic scheme',
    header: async () => `Basic ${Buffer.from('u1:pw').toString('base64')}`,
    status: 401,
    code: 'token_invalid',
  },
  { name: 'Bearer without token', header: async () => 'Bearer ', status: 401, code: 'token_invalid' },
  { name: 'malformed JWT', header: async () => 'Bearer not.a.jwt', status: 401, code: 'token_invalid' },
  {
    name: 'truncated signature',
    header: async () => `Bearer ${(await mint()).slice(0, -6)}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'expired',
    header: async () => `Bearer ${await forge({ iat: now() - 900, exp: now() - 60 })}`,
    status: 401,
    code: 'token_expired',
  },
  {
    name: 'not yet valid (nbf)',
    header: async () => `Bearer ${await forge({ nbf: now() + 600 })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'issued in the future',
    header: async () => `Bearer ${await forge({ iat: now() + 600, exp: now() + 700 })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'wrong signature',
    header: async () =>
      `Bearer ${await forge({ key: new TextEncoder().encode('another-secret-of-at-least-32-bytes!!') })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'alg none',
    header: async () =>
      `Bearer ${new UnsecuredJWT({ ...goodClaims(), sub: 'u1', jti: 'n', iss: ISSUER, aud: ACT_AS_AUDIENCE }).setIssuedAt().setExpirationTime('2m').encode()}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'wrong algorithm (HS512, same secret)',
    header: async () => `Bearer ${await forge({ alg: 'HS512' })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'wrong algorithm (EdDSA key pair)',
    header: async () => `Bearer ${await forge({ alg: 'EdDSA', key: ed.privateKey })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'wrong issuer',
    header: async () => `Bearer ${await forge({ iss: 'evil' })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'wrong audience',
    header: async () => `Bearer ${await forge({ aud: 'threadline-agent' })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'lifetime over the maximum',
    header: async () => `Bearer ${await forge({ exp: now() + 3 * 3600 })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'claims missing tools',
    header: async () => `Bearer ${await forge({ claims: { thread: 't1', run: 'r1' } })}`,
    status: 401,
    code: 'token_invalid',
  },
  {
    name: 'valid token for another thread',
    header: async () => `Bearer ${await mint({ threadId: 't2' })}`,
    status: 403,
    code: 'thread_mismatch',
  },
  {
    name: "another user's valid token",
    header: async () => `Bearer ${await mint({ userId: 'u2', threadId: 't2' })}`,
    status: 403,
    code: 'thread_mismatch',
  },
  {
    name: 'tool not in the token',
    header: async () => `Bearer ${await mint({ tools: ['some.other'] })}`,
    status: 403,
    code: 'tool_not_allowed',
  },
  {
    name: 'token with no tools',
    header: async () => `Bearer ${await mint({ tools: [] })}`,
    status: 403,
    code: 'tool_not_allowed',
  },
];

type Target = { name: string; method: 'GET' | 'POST'; path: string; body?: unknown };
const targets: Target[] = [
  {
    name: BUILTIN_TOOLS.sessionGet,
    method: 'POST',
    path: '/tools/session.get',
    body: { threadId: 't1', input: {} },
  },
  {
    name: BUILTIN_TOOLS.sessionAdd,
    method: 'POST',
    path: '/tools/session.add',
    body: { threadId: 't1', input: { items: ['injected'] } },
  },
  {
    name: BUILTIN_TOOLS.sessionPop,
    method: 'POST',
    path: '/tools/session.pop',
    body: { threadId: 't1', input: {} },
  },
  {
    name: BUILTIN_TOOLS.sessionClear,
    method: 'POST',
    path: '/tools/session.clear',
    body: { threadId: 't1', input: {} },
  },
  {
    name: BUILTIN_TOOLS.profilePatch,
    method: 'POST',
    path: '/tools/profile.patch',
    body: { threadId: 't1', input: { displayName: 'Mallory' } },
  },
  {
    name: BUILTIN_TOOLS.eventsAppend,
    method: 'POST',
    path: '/tools/events.append',
    body: {
      threadId: 't1',
      input: { event: { type: 'STATE_CHANGED', scope: 'profile', value: { admin: true } } },
    },
  },
  {
    name: BUILTIN_TOOLS.stateGet,
    method: 'POST',
    path: '/tools/state.get',
    body: { threadId: 't1', input: {} },
  },
  { name: 'GET /state', method: 'GET', path: '/state?threadId=t1' },
];

async function send(target: Target, authorization: string | null) {
  const headers: Record<string, string> = {};
  if (authorization !== null) headers.authorization = authorization;
  if (target.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.url}${target.path}`, {
    method: target.method,
    headers,
    ...(target.body !== undefined ? { body: JSON.stringify(target.body) } : {}),
  });
  return { status: res.status, body: ToolResultSchema.parse(await res.json()) };
}

beforeAll(async () => {
  // Both users have data the attacker would love to read or change.
  await store.patchProfile('u1', { displayName: 'Alice' });
  await store.patchProfile('u2', { displayName: 'Bob' });
  await store.addSessionItems('t1', ['a1', 'a2']);
  await store.addSessionItems('t2', ['b1']);
  server = await serveExpress(router);
});
afterAll(() => server.close());

describe('attacker matrix over HTTP (Express adapter)', () => {
  const cases = faults.flatMap((fault) => targets.map((target) => ({ fault, target })));
  it.each(cases.map((c) => [c.fault.name, c.target.name, c] as const))(
    '%s → %s is refused and changes nothing',
    async (_f, _t, { fault, target }) => {
      const before = store.snapshot();
      const eventsBefore = sink.events.length;
      const res = await send(target, await fault.header());
      expect(res.status).toBe(fault.status);
      expect(res.body.ok).toBe(false);
      expect(!res.body.ok && res.body.error.code).toBe(fault.code);
      expect(store.snapshot()).toEqual(before);
      expect(sink.events.length).toBe(eventsBefore);
    },
  );

  it.each(targets.map((t) => [t.name, t] as const))(
    'control: a valid token succeeds on %s (so the matrix can fail)',
    async (_n, target) => {
      const res = await send(target, `Bearer ${await mint()}`);
      expect(res.status).toBe(200);
      expect(res.body.ok).toBe(true);
    },
  );

  it('GET /tools refuses every token fault that is not about scope', async () => {
    for (const fault of faults.filter((f) => f.status === 401)) {
      const headers: Record<string, string> = {};
      const h = await fault.header();
      if (h !== null) headers.authorization = h;
      const res = await fetch(`${server.url}/tools`, { headers });
      expect([fault.name, res.status]).toEqual([fault.name, 401]);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(fault.code);
    }
    const other = await fetch(`${server.url}/tools?threadId=t1`, {
      headers: { authorization: `Bearer ${await mint({ threadId: 't2' })}` },
    });
    expect(other.status).toBe(403);
  });

  it('a user id in the body cannot redirect a write to another user', async () => {
    const before = store.snapshot();
    const res = await send(
      {
        name: 'x',
        method: 'POST',
        path: '/tools/profile.patch',
        body: { threadId: 't1', userId: 'u2', input: { displayName: 'Mallory' } },
      },
      `Bearer ${await mint()}`,
    );
    expect(res.status).toBe(400);
    const smuggled = await send(
      {
        name: 'x',
        method: 'POST',
        path: '/tools/profile.patch',
        body: { threadId: 't1', input: { displayName: 'Mallory', userId: 'u2' } },
      },
      `Bearer ${await mint()}`,
    );
    expect(smuggled.status).toBe(400);
    expect(store.snapshot()).toEqual(before);
  });
});
