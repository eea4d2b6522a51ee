import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Client } from './helpers.js';
import { ensureBuilt, isAlive, startUserHost, type UserHost } from './user-host.js';

// An unauthenticated attacker's WebSocket upgrades against the host as a user runs it (`node dist/main.js`):
// odd request targets, malformed handshakes and TCP resets. Every upgrade must be answered or closed, and none
// may kill the process or leave a descriptor behind.
beforeAll(() => ensureBuilt(), 240_000);

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

interface UpgradeOptions {
  method?: string;
  origin?: string | null;
  key?: string | null;
  version?: string | null;
  upgrade?: string | null;
  host?: string | null;
  extra?: string[];
  httpVersion?: string;
}

/** One upgrade request as raw bytes (no client library's checks in the way). */
function upgradeRequest(port: number, target: string, o: UpgradeOptions = {}): string {
  const origin = o.origin === undefined ? `http://127.0.0.1:${port}` : o.origin;
  const lines = [`${o.method ?? 'GET'} ${target} ${o.httpVersion ?? 'HTTP/1.1'}`];
  if (o.host !== null) lines.push(`Host: ${o.host ?? `127.0.0.1:${port}`}`);
  lines.push('Connection: Upgrade');
  if (o.upgrade !== null) lines.push(`Upgrade: ${o.upgrade ?? 'websocket'}`);
  if (o.key !== null) lines.push(`Sec-WebSocket-Key: ${o.key ?? KEY}`);
  if (o.version !== null) lines.push(`Sec-WebSocket-Version: ${o.version ?? '13'}`);
  if (origin !== null) lines.push(`Origin: ${origin}`);
  lines.push(...(o.extra ?? []));
  return lines.join('\r\n') + '\r\n\r\n';
}

type Ending = 'reset' | 'fin' | 'wait';

/**
 * Sends `bytes` on a new connection and ends it: `reset` (TCP RST) or `fin` once the server has had a moment
 * to read, or `wait` for the server to answer or close (up to `waitMs`). Resolves with what the server sent.
 */
function attack(
  port: number,
  bytes: string | Buffer,
  ending: Ending,
  waitMs = 3_000,
): Promise<{ reply: string; serverClosed: boolean }> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let reply = '';
    let serverClosed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ending === 'reset') socket.resetAndDestroy();
      else if (ending === 'fin') socket.end();
      else socket.destroy();
      resolve({ reply, serverClosed });
    };
    socket.on('error', () => finish());
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (ending === 'wait') finish();
    });
    socket.on('end', () => {
      serverClosed = true;
      finish();
    });
    socket.on('close', () => {
      serverClosed = true;
      finish();
    });
    // Resets and FINs come after the server has had time to read the request (and hand it to its handlers).
    const timer = setTimeout(finish, ending === 'wait' ? waitMs : 50);
    socket.write(bytes);
  });
}

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

async function healthy(url: string): Promise<number> {
  const res = await fetch(`${url}/healthz`, { headers: { connection: 'close' } });
  await res.text();
  return res.status;
}

/** The host's output must show no crash of any kind. */
function expectNoCrash(host: UserHost): void {
  expect(host.child.exitCode, host.output()).toBeNull();
  expect(isAlive(host.child.pid!), host.output()).toBe(true);
  expect(host.output()).not.toMatch(/ECONNRESET|Uncaught|TypeError|Invalid URL|Unhandled 'error'/);
}

/** Targets that parsers disagree about (fragment, absolute form, dot segments, encodings, junk). */
const ODD_TARGETS = (port: number) => [
  '/ws#a',
  '/ws#',
  'http://127.0.0.1/ws',
  `http://127.0.0.1:${port}/ws`,
  'HTTP://X/ws',
  'https://x/ws',
  'ws://x/ws',
  '/x/../ws',
  '/./ws',
  '/ws/.',
  '/ws/..',
  '/ws/%2e%2e',
  '//ws',
  '///ws',
  '/ws?',
  '/ws?a=1',
  '/ws?#',
  '/%77s',
  '/w%73',
  '/ws%2f',
  '/ws%00',
  '/WS',
  '/ws/',
  '/ws;a',
  '\\ws',
  '/ws\\..',
  '*',
  '/',
  'ws',
  'http://[/ws',
  'http://x:99999/ws',
  '127.0.0.1:80',
  `/${'a'.repeat(3000)}`,
];

describe('upgrade abuse: one request must not kill the host', () => {
  // A fresh host per case: a crash in one case must not hide the next.
  let host: UserHost | undefined;
  afterAll(async () => {
    await host?.stop();
  });

  it.each([
    ['a fragment (/ws#a)', '/ws#a'],
    ['the absolute form (http://host/ws)', 'http://127.0.0.1/ws'],
    ['a dot segment (/x/../ws)', '/x/../ws'],
    ['a target the URL parser rejects (http://[/ws)', 'http://[/ws'],
  ])('an upgrade with %s followed by a TCP reset', async (_name, target) => {
    await host?.stop();
    host = await startUserHost();
    const port = Number(new URL(host.url).port);
    await attack(port, upgradeRequest(port, target), 'reset');
    // Another connection's request is served only after the reset was read (one event loop).
    await attack(port, upgradeRequest(port, target), 'reset');
    await new Promise((r) => setTimeout(r, 200));
    expectNoCrash(host);
    expect(await healthy(`http://127.0.0.1:${port}`)).toBe(200);
  });

  it('a signed-out socket closed with 4401 that sends an invalid frame', async () => {
    await host?.stop();
    host = await startUserHost();
    const port = Number(new URL(host.url).port);
    // After the 101, an unmasked frame with reserved bits set: the server's parser rejects it.
    const frame = Buffer.from([0xf1, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);
    const bytes = Buffer.concat([Buffer.from(upgradeRequest(port, '/ws')), frame, frame]);
    const { reply } = await attack(port, bytes, 'wait');
    expect(reply).toMatch(/^HTTP\/1\.1 101 /);
    await new Promise((r) => setTimeout(r, 200));
    expectNoCrash(host);
    expect(await healthy(`http://127.0.0.1:${port}`)).toBe(200);
  });
});

describe('upgrade abuse: a flood of odd and malformed upgrades', () => {
  let host: UserHost;
  beforeAll(async () => {
    host = await startUserHost();
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
  });

  it('answers or closes every one, survives resets, and gives every descriptor back', async () => {
    const port = Number(new URL(host.url).port);
    const base = `http://127.0.0.1:${port}`;
    const pid = host.child.pid!;
    expect(await healthy(base)).toBe(200);
    const baseline = fdCount(pid);

    const targets = ODD_TARGETS(port);
    const variants: ((target: string) => string | Buffer)[] = [
      (t) => upgradeRequest(port, t),
      (t) => upgradeRequest(port, t, { key: 'abc' }),
      (t) => upgradeRequest(port, t, { key: null }),
      (t) => upgradeRequest(port, t, { version: '12' }),
      (t) => upgradeRequest(port, t, { version: null }),
      (t) => upgradeRequest(port, t, { upgrade: 'h2c' }),
      (t) => upgradeRequest(port, t, { method: 'POST', extra: ['Content-Length: 3'] }) + 'abc',
      (t) => upgradeRequest(port, t, { origin: null }),
      (t) => upgradeRequest(port, t, { origin: 'https://evil.example' }),
      (t) => upgradeRequest(port, t, { host: null }),
      (t) => upgradeRequest(port, t, { httpVersion: 'HTTP/1.0' }),
      (t) => upgradeRequest(port, t, { extra: ['Cookie: tl_session=forged'] }),
      (t) => upgradeRequest(port, t, { extra: ['Sec-WebSocket-Protocol: ,,,'] }),
      (t) => upgradeRequest(port, t, { extra: [`X-Big: ${'b'.repeat(20_000)}`] }),
      (t) => upgradeRequest(port, t).slice(0, 40), // cut off mid-request
      () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]), // garbage (TLS-like)
    ];
    const total = 2_000;
    const endings: Ending[] = ['reset', 'fin', 'wait'];
    let unanswered = 0;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const target = targets[i % targets.length]!;
        const variant = variants[Math.floor(i / targets.length) % variants.length]!;
        const ending = endings[i % endings.length]!;
        const bytes = variant(target);
        const r = await attack(port, bytes, ending);
        // Cut-off requests cannot be answered before the client is done; the server may simply wait.
        if (ending === 'wait' && !r.reply && !r.serverClosed && bytes.length > 40) unanswered++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));

    expectNoCrash(host);
    expect(unanswered).toBe(0);
    // Descriptors come back: poll within a bounded wait (refused sockets are destroyed within a second).
    let fds = fdCount(pid);
    for (let waited = 0; fds > baseline + 16 && waited < 15_000; waited += 250) {
      await new Promise((r) => setTimeout(r, 250));
      fds = fdCount(pid);
    }
    expect(fds).toBeLessThanOrEqual(baseline + 16);
    expect(await healthy(base)).toBe(200);

    // And a real user still connects.
    const c = new Client(base);
    expect((await c.signup('after-flood')).status).toBe(201);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: base, cookie: c.cookie! } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.close();
    expectNoCrash(host);
  }, 120_000);
});
