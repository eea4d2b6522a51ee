// Per-user bounds across instances on one real Redis (started by the test), from the attacker's side: one user
// opening sockets and runs through two relays hits one bound; a killed instance's share comes free within the
// TTL; Redis down fails open to per-process bounds with one log line.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RelayError } from '../src/errors.js';
import { openRedisLimits } from '../src/cluster/redis.js';
import { makeRelay, makeWsHarness, ORIGIN, until } from './helpers.js';
import { startRedis, type TestRedis } from './servers.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
}, 60_000);
afterAll(async () => {
  await redis?.destroy();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let n = 0;
const prefix = () => `t${process.pid}-${++n}:`;
const quiet = { warn() {} };

async function limits(keyPrefix: string, extra: { ttlMs?: number; logger?: Pick<Console, 'warn'> } = {}) {
  const l = await openRedisLimits({ url: redis.url, keyPrefix, logger: quiet, ...extra });
  cleanups.push(() => l.close());
  return l;
}

const open: Socket[] = [];
cleanups.push(() => {
  for (const s of open.splice(0)) s.destroy();
});

/** Upgrades as `user` to `url`; the status (101 kept open, else the refusal's). */
function upgrade(url: string, user: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url.replace(/^ws/, 'http'), {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        origin: ORIGIN,
        'x-user': user,
      },
    });
    req.on('upgrade', (_res, socket) => {
      open.push(socket);
      resolve(101);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('RedisLimits: per-user bounds across instances', () => {
  it('one user opening sockets on two relays hits one bound; a close on one frees a slot for the other', async () => {
    const p = prefix();
    const [la, lb] = await Promise.all([limits(p), limits(p)]);
    const a = await makeWsHarness('memory', {}, { counter: la, limits: { maxConnectionsPerUser: 3 } });
    const b = await makeWsHarness('memory', {}, { counter: lb, limits: { maxConnectionsPerUser: 3 } });
    cleanups.push(
      () => a.cleanup(),
      () => b.cleanup(),
    );
    expect(await upgrade(a.url, 'mallory')).toBe(101);
    expect(await upgrade(b.url, 'mallory')).toBe(101);
    expect(await upgrade(a.url, 'mallory')).toBe(101);
    // Three held across the two: a fourth is refused on either instance.
    expect(await upgrade(b.url, 'mallory')).toBe(429);
    expect(await upgrade(a.url, 'mallory')).toBe(429);
    // Someone else is not affected.
    expect(await upgrade(b.url, 'alice')).toBe(101);
    // Mallory closes her socket on A: B admits one again.
    open[0]!.destroy();
    await until(() => la.held('user:mallory') === 1);
    expect(await upgrade(b.url, 'mallory')).toBe(101);
    expect(await upgrade(b.url, 'mallory')).toBe(429);
  });

  it('one user starting runs on two relays hits maxRunsPerUser and maxRunStartsPerUser across them', async () => {
    const p = prefix();
    const [la, lb] = await Promise.all([limits(p), limits(p)]);
    const shares = { maxRunsPerUser: 2, maxRunStartsPerUser: 3, runStartWindowMs: 60_000 };
    const a = await makeRelay('memory', { userShares: la, limits: shares });
    const b = await makeRelay('memory', { userShares: lb, limits: shares });
    cleanups.push(
      () => a.cleanup(),
      () => b.cleanup(),
    );
    const user = { id: 'mallory' };
    for (const h of [a, a, b, b]) await h.store.createThread({ threadId: `th-${++n}`, ownerId: user.id });
    const threads = (h: typeof a) => h.store.listThreads(user.id).then((l) => l.map((t) => t.threadId));
    const [ta, tb] = await Promise.all([threads(a), threads(b)]);
    const send = (h: typeof a, threadId: string) =>
      h.relay.send({ user, threadId, text: 'hi', clientMessageId: `c-${++n}` });
    await send(a, ta[0]!);
    await send(b, tb[0]!);
    // Two runs in progress, one on each instance: a third is refused on either.
    await expect(send(b, tb[1]!)).rejects.toMatchObject({ code: 'too_many_runs' });
    await expect(send(a, ta[1]!)).rejects.toMatchObject({ code: 'too_many_runs' });
    // A's run ends: its share comes back, and B may start one (the third start of the window).
    (await a.agent.nextRun(0)).end();
    await until(async () => (await a.store.activeRun(ta[0]!)) === null);
    await until(async () => {
      try {
        await send(b, tb[1]!);
        return true;
      } catch (error) {
        if ((error as RelayError).code !== 'too_many_runs') throw error;
        return false;
      }
    });
    // Three starts in the window across both instances: the fourth is rate limited, with a wait.
    (await b.agent.nextRun(0)).end();
    await until(async () => (await b.store.activeRun(tb[0]!)) === null);
    const refused = await send(a, ta[1]!).catch((error: unknown) => error as RelayError);
    expect(refused).toMatchObject({ code: 'rate_limited' });
    expect((refused as RelayError).retryAfterMs).toBeGreaterThan(50_000);
  });

  it('a killed instance releases its share within the TTL', async () => {
    const p = prefix();
    const ttlMs = 1_000;
    const child = spawn(
      process.execPath,
      [
        '--conditions=@threadline/source',
        '--import',
        fileURLToPath(new URL('./fixtures/ts-hooks.mjs', import.meta.url)),
        fileURLToPath(new URL('./fixtures/limits-holder.ts', import.meta.url)),
        redis.url,
        p,
        String(ttlMs),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => void child.kill('SIGKILL'));
    const ready = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', resolve);
      child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    expect(ready).toBe('HOLDING 3');
    const mine = await limits(p, { ttlMs });
    expect(await mine.acquire('user:mallory', 3)).toBe(false);
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await until(() => mine.acquire('user:mallory', 3), ttlMs + 3_000);
    // Not before the dead instance's liveness could have run out (it renews every ttl/3).
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(ttlMs / 3 - 100);
    expect(mine.held('user:mallory')).toBe(1);
  });

  it('Redis down: fails open to the per-process bound with one log line, and counts in Redis again once back', async () => {
    const p = prefix();
    const lines: string[] = [];
    const mine = await limits(p, { logger: { warn: (line: string) => lines.push(line) } });
    const other = await limits(p);
    expect(await other.acquire('user:mallory', 2)).toBe(true);
    expect(await other.acquire('user:mallory', 2)).toBe(true);
    expect(await mine.acquire('user:mallory', 2)).toBe(false);
    await redis.stop();
    try {
      // This process holds none: it admits up to the bound on its own count, then refuses.
      expect(await mine.acquire('user:mallory', 2)).toBe(true);
      expect(await mine.acquire('user:mallory', 2)).toBe(true);
      expect(await mine.acquire('user:mallory', 2)).toBe(false);
      expect((await mine.takeStart('starts:mallory', 1, 60_000)) as object).toHaveProperty('token');
      expect(await mine.take('bytes:mallory', 10, 5, 60_000)).toBe(0);
      expect(lines.filter((l) => l.includes('Redis is unavailable for per-user bounds'))).toHaveLength(1);
      await mine.release('user:mallory');
      await mine.release('user:mallory');
      expect(mine.held('user:mallory')).toBe(0);
    } finally {
      await redis.start();
    }
    // Back (an empty Redis: nothing persisted): the bound is shared again.
    await until(
      async () => (await mine.acquire('user:mallory', 1)) && lines.some((l) => l.includes('is back')),
      10_000,
    );
    await until(() => other.heartbeat().then(() => true), 10_000);
    expect(await other.acquire('user:mallory', 1)).toBe(false);
  });

  it('budgets: one fixed window of bytes across instances, refunds never below zero', async () => {
    const p = prefix();
    const [la, lb] = await Promise.all([limits(p), limits(p)]);
    expect(await la.take('bytes:mallory', 60, 100, 60_000)).toBe(0);
    const wait = await lb.take('bytes:mallory', 60, 100, 60_000);
    expect(wait).toBeGreaterThan(50_000);
    expect(wait).toBeLessThanOrEqual(60_000);
    expect(await lb.take('bytes:mallory', 40, 100, 60_000)).toBe(0);
    await la.refund('bytes:mallory', 1_000);
    expect(await lb.take('bytes:mallory', 100, 100, 60_000)).toBe(0);
    expect(await la.take('bytes:mallory', 1, 100, 60_000)).toBeGreaterThan(0);
    // Refunding a key that does not exist creates nothing.
    await la.refund('bytes:nobody', 5);
    expect(await la.take('bytes:nobody', 100, 100, 60_000)).toBe(0);
  });
});
