import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  BROWSER_ERROR_CODES,
  LIMITS,
  SequencedAgentEventSchema,
  ServerMessageSchema,
} from '@threadline/contracts';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { attachWebSocketServer } from '../src/index.js';
import { makeWsHarness, ORIGIN, readAll, TestClient } from './helpers.js';

type WsHarness = Awaited<ReturnType<typeof makeWsHarness>>;
let h: WsHarness | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
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
        limits: { maxBadFrames: 1e9, messagesPerSecond: 1e9, messageBurst: 1e9, maxPendingRequests: 1e6 },
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
        limits: {
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
    h = await makeWsHarness('memory', {}, { limits: { heartbeatIntervalMs: 40 } });
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
      { limits: { highWaterBytes: 16 * 1024 } },
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
    h = await makeWsHarness('sqlite', { limits: { replayPageSize: 16 } });
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

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
