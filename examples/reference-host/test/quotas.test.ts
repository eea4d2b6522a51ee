import type { ServerMessage } from '@threadline/contracts';
import { inProcessAgentTransport } from '@threadline/relay';
import { openRedisLimits } from '@threadline/relay/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MessageQuota, withMessageQuota } from '../src/quotas.js';
import { startRedis } from '../../../packages/relay/test/servers.js';
import { Client } from './helpers.js';
import { demoRunner, startInProcessHost, type InProcessHost } from './in-process-host.js';

// Per-user quotas, tried from the attacker's side: a signed-in user floods thread creation and message text.
// The whole host in process (real HTTP and WebSocket on 127.0.0.1, real SQLite files), the demo model in
// process, and quotas set low through the host's own settings.
let running: InProcessHost;
let base: string;

beforeAll(async () => {
  running = await startInProcessHost(inProcessAgentTransport(demoRunner()), {
    USER_MAX_THREADS: '50',
    MSG_BYTES_PER_HOUR: '10000',
  });
  base = running.base;
});
afterAll(() => running?.close());

async function user(name: string) {
  const c = new Client(base);
  expect((await c.signup(name)).status).toBe(201);
  return c;
}

describe('per-user thread quota', () => {
  it('300 thread creations at once stop at the bound with 403 too_many_threads; others are unaffected', async () => {
    const attacker = await user('flooder');
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        attacker.req('POST', '/api/threads', { json: { title: `t${i}` } }),
      ),
    );
    const created = answers.filter((r) => r.status === 201);
    const refused = answers.filter((r) => r.status !== 201);
    expect(created).toHaveLength(50);
    expect(new Set(refused.map((r) => `${r.status} ${r.json.error.code}`))).toEqual(
      new Set(['403 too_many_threads']),
    );
    expect(refused[0]!.json.error.message).toMatch(/50 threads/);
    // The store holds exactly the bound, and one more is still refused.
    const list = await attacker.req('GET', '/api/threads');
    expect(list.json.threads).toHaveLength(50);
    expect((await attacker.req('POST', '/api/threads', { json: {} })).status).toBe(403);

    const other = await user('bystander');
    expect((await other.req('POST', '/api/threads', { json: {} })).status).toBe(201);
  });
});

/** A signed-in browser socket that keeps every message. */
async function socket(c: Client) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
    headers: { origin: base, cookie: c.cookie! },
  });
  const messages: ServerMessage[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d)) as ServerMessage));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const next = async (pred: (m: ServerMessage) => boolean) => {
    for (let i = 0; i < 500; i++) {
      const m = messages.find(pred);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no matching message; got ${JSON.stringify(messages.slice(-3))}`);
  };
  return { ws, messages, next };
}

describe('per-user message bytes per hour', () => {
  it('refuses sends past the hourly byte budget with rate_limited and stores nothing of them', async () => {
    const attacker = await user('chatty');
    const threads: string[] = [];
    for (let i = 0; i < 5; i++)
      threads.push((await attacker.req('POST', '/api/threads', { json: {} })).json.threadId as string);
    const s = await socket(attacker);
    const text = 'x'.repeat(3000);
    const outcomes: string[] = [];
    for (const [i, threadId] of threads.entries()) {
      s.ws.send(JSON.stringify({ type: 'send', threadId, text, clientMessageId: `c${i}` }));
      const m = await s.next(
        (m) =>
          (m.type === 'ack' && m.clientMessageId === `c${i}`) || (m.type === 'error' && m.ref === `c${i}`),
      );
      outcomes.push(m.type === 'ack' ? 'ack' : `${m.type} ${m.type === 'error' ? m.code : ''}`);
      if (m.type === 'error') expect(m.message).toMatch(/10000 bytes.*try again in \d+ minutes?/);
    }
    // 3 × 3,000 bytes fit in 10,000; the 4th and 5th do not.
    expect(outcomes).toEqual(['ack', 'ack', 'ack', 'error rate_limited', 'error rate_limited']);
    s.ws.close();
    for (const [i, threadId] of threads.entries()) {
      const events = (await attacker.req('GET', `/api/threads/${threadId}/events`)).json.events as {
        type: string;
      }[];
      expect(events.some((e) => e.type === 'USER_MESSAGE')).toBe(i < 3);
    }

    // Another user's budget is their own.
    const other = await user('quiet');
    const threadId = (await other.req('POST', '/api/threads', { json: {} })).json.threadId as string;
    const o = await socket(other);
    o.ws.send(JSON.stringify({ type: 'send', threadId, text, clientMessageId: 'q1' }));
    expect((await o.next((m) => m.type === 'ack' || m.type === 'error')).type).toBe('ack');
    o.ws.close();
  });
});

describe('MessageQuota', () => {
  it('takes bytes while they fit, refuses without taking, refunds, and starts over when the window ends', () => {
    let now = 0;
    const q = new MessageQuota({ bytesPerWindow: 100, windowMs: 60_000, now: () => now });
    expect(q.take('u', 60)).toBe(0);
    expect(q.take('u', 50)).toBe(60);
    expect(q.take('u', 40)).toBe(0);
    q.refund('u', 40);
    now = 30_000;
    expect(q.take('u', 41)).toBe(30);
    expect(q.take('v', 100)).toBe(0);
    now = 60_000;
    expect(q.take('u', 100)).toBe(0);
  });

  it('tracks at most maxUsers users, dropping ended windows first, then the oldest', () => {
    const q = new MessageQuota({ bytesPerWindow: 10, windowMs: 1_000, maxUsers: 3, now: () => 0 });
    for (const u of ['a', 'b', 'c', 'd']) q.take(u, 10);
    expect(q.size).toBe(3);
    // 'a' was dropped (oldest), so it starts over; 'd' is still tracked and spent.
    expect(q.take('a', 10)).toBe(0);
    expect(q.take('d', 1)).toBeGreaterThan(0);
  });
});

describe('withMessageQuota across instances (REDIS_URL)', () => {
  it('charges one budget per user on two relays sharing Redis; a refused send gives its bytes back', async () => {
    const redis = await startRedis();
    const shared = await Promise.all(
      [1, 2].map(() => openRedisLimits({ url: redis.url, logger: { warn() {} } })),
    );
    try {
      // Stand-ins for the two relays: each accepts every send (the budget is what is tried here).
      const sent: string[] = [];
      const relay = { send: async (input: { text: string }) => (sent.push(input.text), { runId: 'run_x' }) };
      const [a, b] = shared.map((s) =>
        withMessageQuota(relay as never, new MessageQuota({ bytesPerWindow: 100, windowMs: 60_000 }), s),
      );
      const send = (r: typeof a, text: string) =>
        r!.send({ user: { id: 'mallory' }, threadId: 't', text, clientMessageId: `c${sent.length}` });
      await send(a, 'x'.repeat(60));
      // 60 + 60 > 100: each instance's own budget has room, the shared one does not.
      await expect(send(b, 'y'.repeat(60))).rejects.toMatchObject({ code: 'rate_limited' });
      await send(b, 'z'.repeat(40));
      await expect(send(a, '!')).rejects.toMatchObject({ code: 'rate_limited' });
      expect(sent).toEqual(['x'.repeat(60), 'z'.repeat(40)]);
    } finally {
      await Promise.all(shared.map((s) => s.close()));
      await redis.destroy();
    }
  });
});
