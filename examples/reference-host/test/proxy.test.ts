import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfig } from '../src/config.js';
import { startHost, type Host } from '../src/host.js';
import { loadSecrets } from '../src/secrets.js';
import { Client } from './helpers.js';

// The host behind a real reverse proxy process on loopback (test/fixtures/forwarding-proxy.mjs appends the
// client address to X-Forwarded-For, as nginx does). Each test client picks its address with a header the
// proxy consumes, so "attacker at 10.0.0.1" and "victim at 10.0.0.2" reach the host through the same proxy.
const PROXY = fileURLToPath(new URL('./fixtures/forwarding-proxy.mjs', import.meta.url));
const LIMITS = { authAttempts: 3, authFailuresPerAddress: 6, signups: 3 };

interface Setup {
  host: Host;
  dir: string;
  /** The host's own URL (its origin is the one the API accepts). */
  direct: string;
  proxy?: { child: ChildProcess; url: string };
}

async function startProxy(targetPort: number): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [PROXY, String(targetPort)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`proxy exited (${code})`)));
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

async function setup(env: Record<string, string>, withProxy: boolean): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'tl-proxy-'));
  const config = readConfig({ PORT: '0', AGENT_PORT: '0', DATA_DIR: dir, ...env });
  const host = await startHost({
    config,
    secrets: loadSecrets(dir),
    limits: LIMITS,
    logger: { error: () => {}, warn: () => {} },
  });
  const direct = `http://127.0.0.1:${host.port}`;
  return { host, dir, direct, ...(withProxy ? { proxy: await startProxy(host.port) } : {}) };
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  if (s.proxy && s.proxy.child.exitCode === null) {
    const exited = new Promise((r) => s.proxy!.child.once('exit', r));
    s.proxy.child.kill('SIGTERM');
    await exited;
  }
  await s.host.close();
  rmSync(s.dir, { recursive: true, force: true });
}

/** A browser at client address `address`, going through the proxy (its pages come from the host's origin). */
function browserAt(s: Setup, address: string, extra: Record<string, string> = {}) {
  const c = new Client(s.proxy!.url, s.direct);
  const headers = { 'x-test-client-address': address, ...extra };
  return {
    client: c,
    login: (username: string, password: string) =>
      c.req('POST', '/api/auth/login', { json: { username, password }, headers }),
    signup: (username: string, password = 'correct horse battery') =>
      c.req('POST', '/api/auth/signup', { json: { username, password }, headers }),
  };
}

describe('behind a proxy with TRUST_PROXY=1', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup({ TRUST_PROXY: '1' }, true);
  });
  afterAll(() => teardown(s));

  it("an attacker's failures from one address do not lock the victim out from another", async () => {
    const victim = browserAt(s, '10.0.0.2');
    expect((await victim.signup('vera', 'victim password 1')).status).toBe(201);

    const attacker = browserAt(s, '10.0.0.1');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await attacker.login('vera', `guess ${i}`)).status);
    // Three wrong guesses, then refused for this (address, account) pair, even with the right password.
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429]);
    const locked = await attacker.login('vera', 'victim password 1');
    expect(locked.status).toBe(429);
    expect(locked.json.error.code).toBe('rate_limited');
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);

    // The victim, from their own address, signs in at once.
    const ok = await browserAt(s, '10.0.0.2').login('vera', 'victim password 1');
    expect(ok.status).toBe(200);
    expect(ok.json.user.username).toBe('vera');
  });

  it('a spoofed X-Forwarded-For sent through the proxy does not give the attacker a fresh address', async () => {
    const victim = browserAt(s, '10.0.1.2');
    expect((await victim.signup('sam', 'victim password 2')).status).toBe(201);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      // The proxy appends the real client address after whatever the client claimed; with one trusted hop
      // the host takes the last one.
      const a = browserAt(s, '10.0.1.1', { 'x-forwarded-for': `192.0.2.${i}` });
      statuses.push((await a.login('sam', `guess ${i}`)).status);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
  });

  it('caps failures per address across accounts (password spraying), without touching other addresses', async () => {
    const sprayer = browserAt(s, '10.0.2.1');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await sprayer.login(`nobody${i}`, 'password')).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 401, 429, 429]);
    expect((await browserAt(s, '10.0.2.2').login('nobody0', 'password')).status).toBe(401);
  });

  it('a correct sign-in does not count toward the limits', async () => {
    const me = browserAt(s, '10.0.3.1');
    expect((await me.signup('rita', 'rita password 3')).status).toBe(201);
    for (let i = 0; i < 6; i++) expect((await me.login('rita', 'rita password 3')).status).toBe(200);
    // A typo after many good sign-ins is an ordinary 401.
    expect((await me.login('rita', 'typo')).status).toBe(401);
  });

  it('concurrent guesses cannot slip past the limit while passwords are being hashed', async () => {
    const guesser = browserAt(s, '10.0.5.1');
    const statuses = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => (await guesser.login('vera', `burst ${i}`)).status),
    );
    expect(statuses.filter((x) => x === 401)).toHaveLength(3);
    expect(statuses.filter((x) => x === 429)).toHaveLength(9);
  });

  it('limits sign-ups per client address, not for the whole site', async () => {
    const spammer = browserAt(s, '10.0.4.1');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await spammer.signup(`spam${i}`)).status);
    expect(statuses).toEqual([201, 201, 201, 429, 429]);
    // Someone else signs up meanwhile.
    expect((await browserAt(s, '10.0.4.2').signup('newcomer')).status).toBe(201);
  });
});

describe('without TRUST_PROXY (the default)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup({}, false);
  });
  afterAll(() => teardown(s));

  it('ignores X-Forwarded-For: an attacker cannot pose as many addresses by sending it', async () => {
    const c = new Client(s.direct);
    expect((await c.signup('olga', 'olga password 4')).status).toBe(201);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await new Client(s.direct).req('POST', '/api/auth/login', {
        json: { username: 'olga', password: `guess ${i}` },
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
      });
      statuses.push(r.status);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429]);

    const signups: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await new Client(s.direct).req('POST', '/api/auth/signup', {
        json: { username: `xff${i}`, password: 'correct horse battery' },
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
      });
      signups.push(r.status);
    }
    // olga's sign-up was the first of three from this address.
    expect(signups).toEqual([201, 201, 429, 429]);
  });
});

/** A signed-out WebSocket upgrade straight to the host claiming `forwardedFor`; resolves with the status code. */
function upgradeStatus(port: number, origin: string, forwardedFor: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
          `Origin: ${origin}\r\nX-Forwarded-For: ${forwardedFor}\r\n\r\n`,
      ),
    );
    socket.on('error', reject);
    // The socket is left open (a signed-out peer that never answers the close holds its slot for a while).
    socket.once('data', (d: Buffer) => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(String(d))?.[1] ?? 0)));
    sockets.push(socket);
  });
}
const sockets: Socket[] = [];

describe('signed-out WebSockets per client address', () => {
  let s: Setup | undefined;
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await teardown(s);
  });

  it('count by the forwarded address with TRUST_PROXY, so one address cannot take every slot', async () => {
    s = await setup({ TRUST_PROXY: '1' }, false);
    const origin = s.direct;
    // One "client" behind the proxy: past the per-address bound (32) its upgrades get 429.
    const one = await Promise.all(
      Array.from({ length: 40 }, () => upgradeStatus(s!.host.port, origin, '127.0.0.44')),
    );
    expect(one.filter((c) => c === 101)).toHaveLength(32);
    expect(one.filter((c) => c === 429)).toHaveLength(8);
    // Another client address, through the same proxy hop, still gets upgraded.
    expect(await upgradeStatus(s.host.port, origin, '127.0.0.45')).toBe(101);
  });
});
