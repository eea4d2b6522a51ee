import { createServer } from 'node:http';
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import {
  BROWSER_ERROR_CODES,
  LIMITS,
  SequencedAgentEventSchema,
  ServerMessageSchema,
} from '@threadline/contracts';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { attachWebSocketServer, MemoryConnectionCounter, upgradePath } from '../src/browser/ws-server.js';
import { makeWsHarness, ORIGIN, readAll, TestClient } from './helpers.js';

type WsHarness = Awaited<ReturnType<typeof makeWsHarness>>;
let h: WsHarness | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const socket of held.splice(0)) socket.destroy();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await h?.cleanup();
  h = undefined;
});
async function connect(user: string | null, origin?: string): Promise<TestClient> {
  const c = new TestClient(h!.url, user, origin);
  clients.push(c);
  await c.opened;
  return c;
}
const isTerminalEvent = (e: Record<string, unknown>) => e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR';
const isTerminal = (m: Record<string, unknown>) =>
  m.type === 'event' && ['RUN_FINISHED', 'RUN_ERROR'].includes((m.event as { type: string }).type);

describe('WebSocket transport', () => {
  it('refuses unauthenticated users and foreign origins before upgrading', async () => {
    h = await makeWsHarness('sqlite');
    await expect(connect(null)).rejects.toThrow('HTTP 401');
    await expect(connect('user-a', 'http://evil.test')).rejects.toThrow('HTTP 403');
    await expect(connect('user-a', '')).rejects.toThrow('HTTP 403');
    const ok = await connect('user-a');
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("with unauthorized: 'close', tells an unauthenticated browser why and closes with 4401", async () => {
    h = await makeWsHarness('sqlite', {}, { unauthorized: 'close' });
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const anonymous = await connect(null);
    const { code } = await anonymous.closed;
    expect(code).toBe(4401);
    expect(anonymous.messages).toEqual([
      { type: 'error', code: 'unauthorized', message: 'Not signed in: sign in and connect again.' },
    ]);
    expect(ServerMessageSchema.safeParse(anonymous.messages[0]).success).toBe(true);
    // Nothing an unauthenticated socket sends reaches the relay: it is closed before any frame is read.
    expect(await h.store.lastSeq('t1')).toBe(0);
    // Origin is still checked before upgrading, and signed-in users are unaffected.
    await expect(connect(null, 'http://evil.test')).rejects.toThrow('HTTP 403');
    const ok = await connect('user-a');
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('sends, acks and streams valid server messages; N sockets see the identical sequence', async () => {
    h = await makeWsHarness('sqlite');
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const sockets = await Promise.all(Array.from({ length: 6 }, () => connect('user-a')));
    for (const s of sockets) s.send({ type: 'subscribe', threadId: 't1', afterSeq: 0 });
    // Subscriptions are in place once each socket got the (empty) backlog; a send round trip proves it.
    const sender = sockets[0]!;
    sender.send({ type: 'send', threadId: 't1', text: 'hello', clientMessageId: 'c1' });
    const ack = await sender.waitFor((m) => m.type === 'ack');
    const run = await h.agent.nextRun(0);
    expect(ack).toEqual({ type: 'ack', clientMessageId: 'c1', runId: run.request.runId });
    run.push(run.started());
    for (let i = 0; i < 500; i++) {
      run.push(
        i % 50 === 0
          ? {
              type: 'TOOL_CALL_STARTED',
              threadId: 't1',
              runId: run.request.runId,
              ts: 1,
              toolCallId: `tc${i}`,
              toolName: 'x',
            }
          : run.chunk(`${i} `),
      );
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    run.push(run.finished());
    await Promise.all(sockets.map((s) => s.waitFor(isTerminal)));
    const log = await readAll(h.store, 't1');
    for (const s of sockets) {
      for (const m of s.messages) expect(ServerMessageSchema.safeParse(m).success).toBe(true);
      expect(s.events()).toEqual(log.map((e) => e.event));
    }
  });

  it('takes a message of astral characters at exactly the limit and refuses one UTF-16 unit more', async () => {
    h = await makeWsHarness('sqlite');
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const a = await connect('user-a');
    // 16,000 emoji are 32,000 UTF-16 units (the limit) but only 16,000 code points.
    const atLimit = '\u{1F600}'.repeat(LIMITS.maxMessageLength / 2);
    a.send({ type: 'send', threadId: 't1', text: `${atLimit}x`, clientMessageId: 'c-over' });
    const refused = await a.waitFor((m) => m.type === 'error');
    expect(refused).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect(await h.store.lastSeq('t1')).toBe(0);

    a.send({ type: 'send', threadId: 't1', text: atLimit, clientMessageId: 'c-at' });
    await a.waitFor((m) => m.type === 'ack');
    const run = await h.agent.nextRun(0);
    expect(run.request.message).toBe(atLimit);
    const [stored] = await readAll(h.store, 't1');
    expect(stored?.event).toMatchObject({ type: 'USER_MESSAGE', text: atLimit });
    expect(SequencedAgentEventSchema.safeParse(stored?.event).success).toBe(true);
  });

  it('keeps user B out of user A’s thread by any frame', async () => {
    h = await makeWsHarness('sqlite');
    await h.store.createThread({ threadId: 'a-thread', ownerId: 'user-a' });
    const a = await connect('user-a');
    a.send({ type: 'subscribe', threadId: 'a-thread', afterSeq: 0 });
    a.send({ type: 'send', threadId: 'a-thread', text: 'secret plans', clientMessageId: 'c1' });
    const { runId } = (await a.waitFor((m) => m.type === 'ack')) as { runId: string };
    const run = await h.agent.nextRun(0);
    run.push(run.started(), run.chunk('secret answer'));
    await a.waitFor((m) => m.type === 'event' && (m.event as { type: string }).type === 'TEXT_MESSAGE_CHUNK');
    const before = await h.store.lastSeq('a-thread');

    const b = await connect('user-b');
    const attacks = [
      { type: 'subscribe', threadId: 'a-thread', afterSeq: 0 },
      { type: 'send', threadId: 'a-thread', text: 'hi', clientMessageId: 'c2' },
      { type: 'send', threadId: 'a-thread', text: 'secret plans', clientMessageId: 'c1' }, // replay of A's id
      { type: 'cancel', runId },
      { type: 'subscribe', threadId: 'a-thread', afterSeq: 1, userId: 'user-a' }, // smuggled identity
      { type: 'send', threadId: 'a-thread', text: 'x', clientMessageId: 'c3', user: { id: 'user-a' } },
    ];
    for (const attack of attacks) b.send(attack);
    await until(() => b.messages.length >= attacks.length);
    expect(b.messages.map((m) => m.type)).toEqual(attacks.map(() => 'error'));
    // Answers come back as each request completes, so compare them as sets keyed by `ref`.
    const byRef = b.messages.map((m) => `${String(m.ref)}:${String(m.code)}`).sort();
    expect(byRef).toEqual(
      [
        'a-thread:not_found',
        'c2:not_found',
        'c1:not_found',
        `${runId}:not_found`,
        'undefined:invalid_message',
        'undefined:invalid_message',
      ].sort(),
    );
    expect(JSON.stringify(b.messages)).not.toContain('secret');
    // Nothing was written, A's run is untouched and still streams to A only.
    expect(await h.store.lastSeq('a-thread')).toBe(before);
    expect(run.signal.aborted).toBe(false);
    run.push(run.finished());
    await a.waitFor(isTerminal);
    expect(b.events()).toEqual([]);
  });

  it('answers 5,000 fuzzed frames with an error each, writes nothing and stays up', async () => {
    h = await makeWsHarness(
      'sqlite',
      {},
      {
        tuning: { maxBadFrames: 1e9, messagesPerSecond: 1e9, messageBurst: 1e9, maxPendingRequests: 1e6 },
      },
    );
    await h.store.createThread({ threadId: 'a-thread', ownerId: 'user-a' });
    const id = fc.oneof(fc.constantFrom('a-thread', 'nope', 'run_x', ''), fc.string({ maxLength: 20 }));
    const valueish = fc.oneof(
      fc.string({ maxLength: 50 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.json({ maxDepth: 2 }),
    );
    const shaped = fc.record(
      {
        type: fc.oneof(
          fc.constantFrom('send', 'subscribe', 'cancel', 'event', 'ack', 'SEND'),
          fc.string({ maxLength: 8 }),
        ),
        threadId: fc.oneof(id, valueish),
        text: fc.oneof(fc.string({ maxLength: 40 }), valueish),
        clientMessageId: fc.oneof(id, valueish),
        afterSeq: fc.oneof(fc.integer({ min: -5, max: 1e6 }), valueish),
        runId: fc.oneof(id, valueish),
        extra: valueish,
      },
      { requiredKeys: [] },
    );
    // Well-formed messages aimed at threads and runs that are not the attacker's.
    const wellFormed = fc.oneof(
      fc.record({
        type: fc.constant('send'),
        threadId: fc.constantFrom('a-thread', 'nope'),
        text: fc.string({ minLength: 1, maxLength: 40 }),
        clientMessageId: fc.constantFrom('c1', 'c2'),
      }),
      fc.record({
        type: fc.constant('subscribe'),
        threadId: fc.constantFrom('a-thread', 'nope'),
        afterSeq: fc.nat(),
      }),
      fc.record({ type: fc.constant('cancel'), runId: fc.constantFrom('run_x', 'a-thread') }),
    );
    const frame = fc.oneof(
      wellFormed.map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 4 }),
      shaped.map((v) => JSON.stringify(v)),
      shaped.map((v) => JSON.stringify(v).slice(0, -1)), // truncated
      fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
    );
    const frames = fc.sample(frame, { numRuns: 5_000, seed: 42 });
    const attacker = await connect('user-b');
    for (const f of frames) attacker.ws.send(f);
    await attacker.waitFor(() => attacker.messages.length >= frames.length);
    expect(attacker.messages).toHaveLength(frames.length);
    for (const m of attacker.messages) {
      expect(m.type).toBe('error');
      expect(BROWSER_ERROR_CODES).toContain(m.code);
      expect(typeof m.message).toBe('string');
    }
    expect(new Set(attacker.messages.map((m) => m.code)).size).toBeGreaterThanOrEqual(3);
    expect(await h.store.lastSeq('a-thread')).toBe(0);
    expect(await h.store.listThreads('user-b')).toEqual([]);
    expect(h.agent.runs).toHaveLength(0);
    // The server is still up for everyone.
    const a = await connect('user-a');
    a.send({ type: 'send', threadId: 'a-thread', text: 'still here?', clientMessageId: 'c1' });
    expect(await a.waitFor((m) => m.type === 'ack')).toMatchObject({ clientMessageId: 'c1' });
  });

  it('closes with 1008 after repeated bad frames, 1009 for oversize ones, and rate-limits', async () => {
    h = await makeWsHarness(
      'sqlite',
      {},
      {
        tuning: {
          maxBadFrames: 3,
          maxFrameBytes: 1024,
          messagesPerSecond: 1,
          messageBurst: 5,
          maxRateLimitedFrames: 2,
        },
      },
    );
    const bad = await connect('user-a');
    for (let i = 0; i < 5; i++) bad.send('{nope');
    expect((await bad.closed).code).toBe(1008);
    expect(bad.messages.map((m) => m.code)).toEqual(['invalid_json', 'invalid_json', 'invalid_json']);

    const big = await connect('user-a');
    big.send('x'.repeat(2048));
    expect((await big.closed).code).toBe(1009);

    const chatty = await connect('user-a');
    for (let i = 0; i < 10; i++) chatty.send({ type: 'cancel', runId: `r${i}` });
    expect((await chatty.closed).code).toBe(1008);
    const codes = chatty.messages.map((m) => m.code);
    expect(codes.filter((c) => c === 'rate_limited')).toHaveLength(3);
    expect(codes.filter((c) => c === 'not_found').length).toBeLessThanOrEqual(5);
  });

  it('drops peers that stop answering pings', async () => {
    h = await makeWsHarness('memory', {}, { tuning: { heartbeatIntervalMs: 40 } });
    const live = await connect('user-a');
    const dead = new TestClient(h.url, 'user-a');
    clients.push(dead);
    // A peer whose pongs never come, like one whose network went away.
    (dead.ws as unknown as { _autoPong: boolean })._autoPong = false;
    await dead.opened;
    expect((await dead.closed).code).toBe(1006);
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('disconnects a slow consumer with slow_consumer; it resumes from its last seq', async () => {
    h = await makeWsHarness(
      'sqlite',
      { limits: { maxBufferedEvents: 50 } },
      { tuning: { highWaterBytes: 16 * 1024 } },
    );
    await h.store.createThread({ threadId: 't1', ownerId: 'user-a' });
    const slow = await connect('user-a');
    slow.send({ type: 'subscribe', threadId: 't1', afterSeq: 0 });
    slow.send({ type: 'send', threadId: 't1', text: 'flood me', clientMessageId: 'c1' });
    await slow.waitFor((m) => m.type === 'ack');
    const socket = (slow.ws as unknown as { _socket: Socket })._socket;
    socket.pause(); // stop reading: the server's socket backs up
    const run = await h.agent.nextRun(0);
    run.push(run.started());
    const big = 'y'.repeat(16_000);
    for (let i = 0; i < 1_500 && !run.signal.aborted; i++) {
      run.push({ ...run.chunk(big), messageId: `m${i}` });
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
      if (i % 100 === 0 && h.relay.subscribers === 0) break;
    }
    run.push(run.finished());
    socket.resume();
    const closed = await slow.closed;
    expect(closed.code).toBe(1013);
    const error = slow.messages.find((m) => m.type === 'error');
    expect(error).toMatchObject({ code: 'slow_consumer', ref: 't1' });
    const lastSeq = Math.max(0, ...slow.events().map((e) => e.seq as number));
    const again = await connect('user-a');
    again.send({ type: 'subscribe', threadId: 't1', afterSeq: lastSeq });
    await again.waitFor(isTerminal);
    const log = await readAll(h.store, 't1');
    expect([...slow.events(), ...again.events()].map((e) => e.seq)).toEqual(log.map((e) => e.seq));
  });

  it('resumes over a real socket with no gap and no duplicate, whenever it disconnects (property)', async () => {
    // One user starts up to 40 runs here: lift the per-user window bound.
    h = await makeWsHarness('sqlite', { limits: { replayPageSize: 16, maxRunStartsPerUser: 1_000 } });
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 6 }),
        async (cuts) => {
          const threadId = `t${round++}`;
          await h!.store.createThread({ threadId, ownerId: 'user-a' });
          const first = await connect('user-a');
          first.send({ type: 'subscribe', threadId, afterSeq: 0 });
          first.send({ type: 'send', threadId, text: 'stream', clientMessageId: 'c1' });
          await first.waitFor((m) => m.type === 'ack');
          const run = await h!.agent.nextRun(round - 1);
          run.push(run.started());
          // The agent streams on its own clock while the client drops and comes back.
          let i = 0;
          const feed = setInterval(() => {
            for (let k = 0; k < 8 && i < 240; k++, i++)
              run.push({ ...run.chunk(`${i};`), messageId: `m${i % 4}` });
            if (i >= 240) {
              clearInterval(feed);
              run.push(run.finished());
            }
          }, 1);
          const seen: Record<string, unknown>[] = [];
          let client = first;
          for (const cut of cuts) {
            if (seen.some(isTerminalEvent)) break;
            const start = client.events().length;
            await Promise.race([
              client.waitFor(() => client.events().length >= start + cut),
              client.waitFor(isTerminal),
            ]);
            await client.close();
            seen.push(...client.events());
            const lastSeq = (seen.at(-1)?.seq as number | undefined) ?? 0;
            client = await connect('user-a');
            client.send({ type: 'subscribe', threadId, afterSeq: lastSeq });
          }
          if (!seen.some(isTerminalEvent)) await client.waitFor(isTerminal);
          seen.push(...client.events());
          await client.close();
          clearInterval(feed);
          const log = await readAll(h!.store, threadId);
          expect(seen).toEqual(log.map((e) => e.event));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('works on a WebSocketServer too, checking origin and user right after the upgrade', async () => {
    h = await makeWsHarness('memory');
    const server = createServer();
    const wss = new WebSocketServer({ server });
    const ws = attachWebSocketServer(wss, h.relay, {
      authenticate: async (req) => (req.headers['x-user'] ? { id: String(req.headers['x-user']) } : null),
      allowedOrigins: (origin) => origin === ORIGIN,
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const anon = new TestClient(url, null);
      expect((await anon.closed).code).toBe(4401);
      expect(anon.messages).toMatchObject([{ type: 'error', code: 'unauthorized' }]);
      const ok = new TestClient(url, 'user-a');
      await ok.opened;
      ok.send({ type: 'cancel', runId: 'nope' });
      expect(await ok.waitFor((m) => m.type === 'error')).toMatchObject({ code: 'not_found', ref: 'nope' });
      await ok.close();
    } finally {
      await ws.close();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('WebSocket transport: request targets', () => {
  it('upgradePath reads a target one way: the plain path as sent, null for anything ambiguous', () => {
    const table: [string | undefined, string | null][] = [
      ['/ws', '/ws'],
      ['/ws?', '/ws'],
      ['/ws?a=1&b=/../x', '/ws'],
      ['/', '/'],
      ['/a/b/', '/a/b/'],
      ['/%77s', '/%77s'],
      ['/WS', '/WS'],
      ['/ws#a', null],
      ['/ws?#', null],
      ['http://host/ws', null],
      ['HTTP://host/ws', null],
      ['*', null],
      ['host:80', null],
      ['', null],
      [undefined, null],
      ['ws', null],
      ['//ws', null],
      ['/a//ws', null],
      ['/x/../ws', null],
      ['/./ws', null],
      ['/ws/.', null],
      ['/ws/..', null],
      ['/x/%2e%2E/ws', null],
      ['/x/.%2e/ws', null],
      ['/ws\\..', null],
    ];
    for (const [url, path] of table)
      expect([url, upgradePath({ url } as { url: string })]).toEqual([url, path]);
  });

  it('answers every upgrade off its path (404, 400 for an ambiguous target) when it is the only listener', async () => {
    h = await makeWsHarness('memory');
    const port = Number(new URL(h.url).port);
    for (const [target, status] of [
      ['/elsewhere', 404],
      ['/ws/', 404],
      ['/ws#a', 400],
      ['http://127.0.0.1/ws', 400],
      ['/x/../ws', 400],
      ['//ws', 400],
      ['*', 400],
    ] as const) {
      expect([target, await rawUpgrade(port, target)]).toEqual([target, status]);
    }
    // A query does not change the path.
    expect(await rawUpgrade(port, '/ws?x=1', { 'x-user': 'user-a' })).toBe(101);
  });

  it("leaves other paths to the server's other 'upgrade' listeners (or refuses them when told to)", async () => {
    h = await makeWsHarness('memory');
    const port = Number(new URL(h.url).port);
    h.server.on('upgrade', (req, socket: Socket) => {
      if (upgradePath(req) === '/ws') return;
      socket.end('HTTP/1.1 418 Teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    expect(await rawUpgrade(port, '/other')).toBe(418);
    expect(await rawUpgrade(port, '/ws#a')).toBe(418);
    expect(await rawUpgrade(port, '/ws', { 'x-user': 'user-a' })).toBe(101);
    await h.cleanup();

    h = await makeWsHarness('memory', {}, { otherUpgrades: 'refuse' });
    h.server.on('upgrade', () => {});
    expect(await rawUpgrade(Number(new URL(h.url).port), '/other')).toBe(404);
  });

  it('survives a peer that resets mid-upgrade or sends an invalid frame while being closed with 4401', async () => {
    h = await makeWsHarness('memory', {}, { unauthorized: 'close' });
    const port = Number(new URL(h.url).port);
    const invalidFrame = Buffer.from([0xf1, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]); // reserved bits set
    for (const target of ['/ws', '/ws#a', '/elsewhere']) {
      const socket = tcpConnect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(upgradeBytes(target, {}));
      if (target === '/ws') {
        // Waits for the 101 (and the error frame), then sends a frame the server's parser rejects.
        await new Promise((r) => socket.once('data', r));
        socket.write(invalidFrame);
        await new Promise((r) => setTimeout(r, 50));
      }
      socket.resetAndDestroy();
    }
    // Still serving (an unhandled 'error' would have failed this test file).
    await new Promise((r) => setTimeout(r, 100));
    expect(await rawUpgrade(port, '/ws', { 'x-user': 'user-a' })).toBe(101);
  });
});

describe('WebSocket transport: fair shares', () => {
  it('refuses a user past maxConnectionsPerUser with 429 and Retry-After; others connect; a close frees a slot', async () => {
    h = await makeWsHarness(
      'memory',
      {},
      {
        limits: { maxConnectionsPerUser: 3 },
        tuning: { retryAfterSeconds: 7 },
      },
    );
    const port = Number(new URL(h.url).port);
    const mine = await Promise.all([1, 2, 3].map(() => connect('user-a')));
    const refused = await rawUpgradeReply(port, '/ws', { 'x-user': 'user-a' });
    expect(refused).toMatch(/^HTTP\/1\.1 429 /);
    expect(refused).toMatch(/\r\nRetry-After: 7\r\n/);
    expect(refused).toContain('too many connections for this user');
    await expect(connect('user-a')).rejects.toThrow('HTTP 429');
    // Another user is not affected.
    const theirs = await connect('user-b');
    expect(theirs.ws.readyState).toBe(WebSocket.OPEN);
    // Closing one of user-a's sockets gives its slot back (once the server has seen the close).
    await mine[0]!.close();
    await until(() => rawUpgrade(port, '/ws', { 'x-user': 'user-a' }).then((s) => s === 101));
  });

  it("with unauthorized: 'close', the refused socket gets error too_many_connections and close 1013", async () => {
    h = await makeWsHarness('memory', {}, { unauthorized: 'close', limits: { maxConnectionsPerUser: 2 } });
    await connect('user-a');
    await connect('user-a');
    const third = await connect('user-a');
    expect(await third.closed).toEqual({ code: 1013, reason: 'too many connections' });
    expect(third.messages).toEqual([
      {
        type: 'error',
        code: 'too_many_connections',
        message: 'at most 2 open connections per user: close one, or try again later',
      },
    ]);
    expect(ServerMessageSchema.safeParse(third.messages[0]).success).toBe(true);
    expect(BROWSER_ERROR_CODES).toContain('too_many_connections');
    expect((await connect('user-b')).ws.readyState).toBe(WebSocket.OPEN);
  });

  it('holds the per-user bound when sockets open all at once, and frees every slot when they close', async () => {
    const counter = new MemoryConnectionCounter();
    h = await makeWsHarness('memory', {}, { counter, limits: { maxConnectionsPerUser: 32 } });
    const port = Number(new URL(h.url).port);
    // The attacker's burst: 100 upgrades of one user in parallel, as in the report (it took all 10,000).
    const statuses = await Promise.all(
      Array.from({ length: 100 }, () => rawUpgrade(port, '/ws', { 'x-user': 'greedy' }, true)),
    );
    expect(statuses.filter((s) => s === 101)).toHaveLength(32);
    expect(statuses.filter((s) => s === 429)).toHaveLength(68);
    expect((await connect('someone-else')).ws.readyState).toBe(WebSocket.OPEN);
    // The 32 accepted sockets were left open by rawUpgrade(…, true): close them all from the client side.
    for (const socket of held.splice(0)) socket.destroy();
    await until(() => counter.held('user:greedy') === 0);
    expect(counter.size).toBe(1); // someone-else
  });

  it("bounds signed-out upgrades per address (429 with Retry-After), counting from the peer's side", async () => {
    h = await makeWsHarness(
      'memory',
      {},
      {
        unauthorized: 'close',
        limits: { maxUnauthenticatedPerAddress: 2 },
        tuning: { retryAfterSeconds: 3 },
      },
    );
    const port = Number(new URL(h.url).port);
    // Two anonymous peers complete the upgrade and then never answer the server's close: each holds a slot.
    expect(await rawUpgrade(port, '/ws', {}, true)).toBe(101);
    expect(await rawUpgrade(port, '/ws', {}, true)).toBe(101);
    const refused = await rawUpgradeReply(port, '/ws', {});
    expect(refused).toMatch(/^HTTP\/1\.1 429 /);
    expect(refused).toMatch(/\r\nRetry-After: 3\r\n/);
    // A signed-in user from the same address is not blocked by them once authenticated...
    expect(await rawUpgrade(port, '/ws', { 'x-user': 'user-a' })).toBe(101);
    // ...and a peer that goes away gives its slot back.
    held.shift()!.destroy();
    await until(() => rawUpgrade(port, '/ws', {}).then((s) => s === 101));
    for (const socket of held.splice(0)) socket.destroy();
  });

  it('applies the per-user bound on a WebSocketServer too (error too_many_connections, close 1013)', async () => {
    h = await makeWsHarness('memory');
    const server = createServer();
    const wss = new WebSocketServer({ server });
    const ws = attachWebSocketServer(wss, h.relay, {
      authenticate: async (req) => (req.headers['x-user'] ? { id: String(req.headers['x-user']) } : null),
      allowedOrigins: [ORIGIN],
      limits: { maxConnectionsPerUser: 1 },
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const first = await TestClient.connect(url, 'user-a');
      const second = new TestClient(url, 'user-a');
      expect((await second.closed).code).toBe(1013);
      expect(second.messages).toMatchObject([{ type: 'error', code: 'too_many_connections' }]);
      await first.close();
      // The slot comes back with the close: a new socket is served (it answers a request).
      await until(async () => {
        const again = new TestClient(url, 'user-a');
        await again.opened;
        again.send({ type: 'cancel', runId: 'probe' });
        const m = await again.waitFor((x) => x.type === 'error');
        await again.close();
        return m.code === 'not_found';
      });
    } finally {
      await ws.close();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('lets the server close a signed-out peer that never answers the close handshake', async () => {
    h = await makeWsHarness('memory', {}, { unauthorized: 'close' });
    const port = Number(new URL(h.url).port);
    expect(await rawUpgrade(port, '/ws', {}, true)).toBe(101);
    const socket = held.shift()!;
    // Bounded by the close grace (2 s), not ws's 30 s close timeout.
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  });
});

/** Sockets `rawUpgrade(…, keep = true)` left open. */
const held: Socket[] = [];

function upgradeBytes(target: string, headers: Record<string, string>): string {
  const lines = [
    `GET ${target} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    `Origin: ${ORIGIN}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return lines.join('\r\n') + '\r\n\r\n';
}

/**
 * Sends one raw upgrade request and resolves with the head of the server's answer ('' if it closed without
 * one). With `keep`, the socket stays open (in `held`) after the head arrived.
 */
function rawUpgradeReply(
  port: number,
  target: string,
  headers: Record<string, string> = {},
  keep = false,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to an upgrade of ${target}`));
    }, 5_000);
    const done = () => {
      clearTimeout(timer);
      if (keep && !socket.destroyed) held.push(socket);
      else socket.destroy();
      resolve(reply);
    };
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.includes('\r\n\r\n')) done();
    });
    socket.on('close', done);
    socket.on('error', done);
    socket.write(upgradeBytes(target, headers));
  });
}

/** Sends one raw upgrade request and resolves with the status the server answered (0: closed, no answer). */
async function rawUpgrade(
  port: number,
  target: string,
  headers: Record<string, string> = {},
  keep = false,
): Promise<number> {
  const reply = await rawUpgradeReply(port, target, headers, keep);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);
}

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
