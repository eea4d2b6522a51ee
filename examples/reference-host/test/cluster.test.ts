// Two reference host instances behind nginx, on one PostgreSQL and one Redis, each with its own agent service:
// every piece a real process on 127.0.0.1, started and stopped by this test (scripts/install-servers.sh
// installs PostgreSQL, Redis and nginx). Browsers are played by real WebSockets.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import type { Browser, Page as BrowserPage } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  startPostgres,
  startRedis,
  type TestPostgres,
  type TestRedis,
} from '../../../packages/relay/test/servers.js';
import {
  ended,
  Page,
  runText,
  startAgentService,
  startNginx,
  startPinProxy,
  type AgentService,
  type Nginx,
} from './cluster-helpers.js';
import { browserSuite, launchChromium } from '../../../packages/web-component/test/helpers/browser.js';
import { Client } from './helpers.js';
import { ensureBuilt, REPO_ROOT, spawnUserHost, type UserHost } from './user-host.js';

const SECRETS = {
  TOOLS_TOKEN_SECRET: randomBytes(32).toString('base64url'),
  AGENT_SHARED_SECRET: randomBytes(32).toString('base64url'),
};
/** Pause between the demo model's 4-character deltas: a reply to LONG streams for about 2.5 s. */
const DELAY_MS = 30;
const LONG =
  `Please stream a long answer. ${'The quick brown fox jumps over the lazy dog. '.repeat(4)}`.slice(0, 200);

let postgres: TestPostgres;
let redis: TestRedis;
let agents: AgentService[] = [];
let nginx: Nginx;
const hosts: (UserHost & { port: number; env: Record<string, string> })[] = [];
let origin = '';
let users = 0;

async function startInstance(i: number, port: number, agentUrl: string, dataDir?: string) {
  const env = {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: postgres.url,
    REDIS_URL: redis.url,
    AGENT_URL: agentUrl,
    PUBLIC_ORIGIN: origin,
    TRUST_PROXY: 'loopback',
    RUNS_PER_MINUTE: '1000',
    ...SECRETS,
  };
  const host = spawnUserHost(env, dataDir);
  await host.waitForOutput(/Press Ctrl-C to stop/);
  hosts[i] = { ...host, url: `http://127.0.0.1:${port}`, port, env };
}

beforeAll(async () => {
  ensureBuilt();
  [postgres, redis, ...agents] = await Promise.all([
    startPostgres(),
    startRedis(),
    startAgentService({ secret: SECRETS.AGENT_SHARED_SECRET, delayMs: DELAY_MS }),
    startAgentService({ secret: SECRETS.AGENT_SHARED_SECRET, delayMs: DELAY_MS }),
  ]);
  const [p1, p2, pn] = await Promise.all([freePort(), freePort(), freePort()]);
  origin = `http://127.0.0.1:${pn}`;
  // Both at once: they create the schema together (under the stores' advisory locks).
  await Promise.all([startInstance(0, p1!, agents[0]!.url), startInstance(1, p2!, agents[1]!.url)]);
  nginx = await startNginx([p1!, p2!], pn);
}, 60_000);

/** Data folders of instances started again on an earlier one's folder (their stop() leaves them). */
const restartedDirs: string[] = [];

afterAll(async () => {
  await Promise.allSettled(hosts.map((h) => h.stop()));
  for (const dir of restartedDirs) rmSync(dir, { recursive: true, force: true });
  await Promise.allSettled([nginx?.stop(), ...agents.map((a) => a.stop())]);
  await Promise.allSettled([postgres?.destroy(), redis?.destroy()]);
});

/** A signed-up user (through instance 1) with one thread, and the cookie that signs them in anywhere. */
async function userWithThread() {
  const c = new Client(hosts[0]!.url, origin);
  const name = `user${++users}`;
  expect((await c.signup(name)).status).toBe(201);
  const thread = await c.req('POST', '/api/threads', { json: { title: `${name}'s thread` } });
  expect(thread.status).toBe(201);
  return { client: c, cookie: c.cookie!, threadId: thread.json.threadId as string };
}

/** The thread's whole stored log, read over REST from `base`. */
async function log(base: string, cookie: string, threadId: string): Promise<SequencedAgentEvent[]> {
  const c = new Client(base, origin);
  c.cookie = cookie;
  const out: SequencedAgentEvent[] = [];
  for (let after = 0; ;) {
    const r = await c.req('GET', `/api/threads/${threadId}/events?afterSeq=${after}&limit=1000`);
    expect(r.status).toBe(200);
    out.push(...(r.json.events as SequencedAgentEvent[]));
    if (!r.json.hasMore) return out;
    after = r.json.nextAfterSeq as number;
  }
}

/** Seqs 1..n with no gap and no duplicate. */
function expectContiguous(events: readonly SequencedAgentEvent[], from = 1) {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => from + i));
}

const ack = (clientMessageId: string) => (m: ServerMessage) =>
  m.type === 'ack' && m.clientMessageId === clientMessageId;
const errorFor = (ref: string) => (m: ServerMessage) => m.type === 'error' && m.ref === ref;
const chunkOf = (runId: string) => (m: ServerMessage) =>
  m.type === 'event' && m.event.type === 'TEXT_MESSAGE_CHUNK' && m.event.runId === runId;

async function sendAndAck(page: Page, threadId: string, text: string, clientMessageId: string) {
  page.send({ type: 'send', threadId, text, clientMessageId });
  const m = await page.next((x) => ack(clientMessageId)(x) || errorFor(clientMessageId)(x));
  if (m.type !== 'ack') throw new Error(`send refused: ${JSON.stringify(m)}`);
  return m.runId;
}

async function health(base: string) {
  const r = await fetch(`${base}/healthz`);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe('cluster: two instances, one PostgreSQL, one Redis, behind nginx', () => {
  it('each instance reports PostgreSQL and Redis in /healthz', async () => {
    for (const h of hosts) {
      const { status, body } = await health(h.url);
      expect(status).toBe(200);
      expect(body).toMatchObject({
        status: 'ok',
        store: 'postgres',
        storeStatus: 'ok',
        pubsub: 'redis',
        pubsubStatus: 'up',
        agent: 'up',
      });
    }
  });

  it('each instance says at start where its store, fan-out and agent are, without passwords', () => {
    const out = hosts[0]!.output();
    expect(out).toContain(`Store    PostgreSQL at ${postgres.url}`);
    expect(out).toContain(`Fan-out  Redis at ${redis.url}`);
    expect(out).toContain(`Agent    service at ${agents[0]!.url} (AGENT_URL)`);
  });

  it('a user who signs up through instance 1 is signed in on instance 2, directly and through nginx', async () => {
    const a = new Client(hosts[0]!.url, origin);
    expect((await a.signup('ada')).status).toBe(201);
    const me = (base: string) => {
      const c = new Client(base, origin);
      c.cookie = a.cookie;
      return c.req('GET', '/api/me');
    };
    const direct = await me(hosts[1]!.url);
    expect(direct.status).toBe(200);
    expect(direct.json.user.username).toBe('ada');

    // Through nginx, round robin: consecutive requests reach both instances, and both know the session.
    const before = nginx.accessLog().length;
    for (let i = 0; i < 4; i++) {
      const r = await me(nginx.url);
      expect(r.status).toBe(200);
      expect(r.json.user.username).toBe('ada');
    }
    const upstreams = nginx
      .accessLog()
      .slice(before)
      .filter((l) => l.startsWith('GET /api/me 200'))
      .map((l) => l.split(' ')[3]);
    expect(new Set(upstreams)).toEqual(new Set(hosts.map((h) => `127.0.0.1:${h.port}`)));

    // Signing in through nginx and out on instance 2 ends the session on instance 1 too.
    const b = new Client(nginx.url, origin);
    expect(
      (
        await b.req('POST', '/api/auth/login', {
          json: { username: 'ada', password: 'correct horse battery' },
        })
      ).status,
    ).toBe(200);
    const onOne = new Client(hosts[0]!.url, origin);
    onOne.cookie = b.cookie;
    expect((await onOne.req('GET', '/api/me')).status).toBe(200);
    const onTwo = new Client(hosts[1]!.url, origin);
    onTwo.cookie = b.cookie;
    expect((await onTwo.req('POST', '/api/auth/logout')).status).toBeLessThan(300);
    expect((await onOne.req('GET', '/api/me')).status).toBe(401);
  });

  it('a page on instance 2 follows a run that streams through instance 1 exactly: same seqs, same text, no gap, no duplicate', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    const pn = await Page.open(nginx.url, cookie, origin);
    for (const p of [p1, p2, pn]) p.subscribe(threadId);
    // The first subscribe's replay (empty thread) has nothing to send; give instance 2 time to subscribe.
    await new Promise((r) => setTimeout(r, 200));
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    // Instance 2's page hears the run live, while instance 1 still streams it.
    await p2.next(chunkOf(runId));
    expect(p1.messages.some(ended(runId))).toBe(false);
    await Promise.all([p1, p2, pn].map((p) => p.next(ended(runId))));
    const stored = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(stored);
    expect(stored.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId });
    for (const p of [p1, p2, pn]) expect(p.events()).toEqual(stored);
    expect(runText(p2.events(), runId)).toMatch(/^Demo model here/);
    expect(runText(p2.events(), runId)).toBe(runText(p1.events(), runId));
    for (const p of [p1, p2, pn]) p.close();
  });

  it('a page that subscribes on instance 2 in the middle of a run gets the stored part, then the live rest', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    p1.subscribe(threadId);
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await p1.next(chunkOf(runId));
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p2.subscribe(threadId);
    await Promise.all([p1.next(ended(runId)), p2.next(ended(runId))]);
    const stored = await log(hosts[0]!.url, cookie, threadId);
    expectContiguous(stored);
    expect(p2.events()).toEqual(stored);
    p1.close();
    p2.close();
  });

  it('Redis restarting mid-run: the page on the other instance misses nothing (the gap is read from PostgreSQL)', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p1.subscribe(threadId);
    p2.subscribe(threadId);
    await new Promise((r) => setTimeout(r, 200));
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await p2.next(chunkOf(runId));
    await redis.stop();
    const during = await health(hosts[1]!.url);
    // Redis down is reported, but does not take the instance out of a load balancer.
    expect(during.body).toMatchObject({ pubsub: 'redis', pubsubStatus: 'down', status: 'ok' });
    await new Promise((r) => setTimeout(r, 300));
    await redis.start();
    await Promise.all([p1.next(ended(runId)), p2.next(ended(runId), 20_000)]);
    const stored = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(stored);
    expect(stored.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId });
    expect(p1.events()).toEqual(stored);
    expect(p2.events()).toEqual(stored);
    // Live delivery between the instances works again.
    const again = await sendAndAck(p1, threadId, 'and again', 'c2');
    await p2.next(ended(again));
    expect(p2.events()).toEqual(await log(hosts[0]!.url, cookie, threadId));
    for (let i = 0; i < 50 && (await health(hosts[1]!.url)).body['pubsubStatus'] !== 'up'; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect((await health(hosts[1]!.url)).body['pubsubStatus']).toBe('up');
    p1.close();
    p2.close();
  });

  it('PostgreSQL stopping mid-run: clear errors (503, store_error), no crash; once back, the thread works and its log has no hole', async () => {
    const { cookie, threadId } = await userWithThread();
    const other = new Client(hosts[0]!.url, origin);
    other.cookie = cookie;
    const second = (await other.req('POST', '/api/threads', { json: { title: 'second' } })).json
      .threadId as string;
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p1.subscribe(threadId);
    p2.subscribe(threadId);
    await new Promise((r) => setTimeout(r, 200));
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await p2.next(chunkOf(runId));
    await postgres.stop();
    try {
      // A send gets one clear error frame, and is not acknowledged: nothing was stored.
      for (const [p, ref] of [
        [p1, 'down1'],
        [p2, 'down2'],
      ] as const) {
        p.send({ type: 'send', threadId: second, text: 'hello?', clientMessageId: ref });
        const m = await p.next(errorFor(ref));
        expect(m).toMatchObject({ type: 'error', code: 'store_error' });
        if (m.type === 'error') expect(m.message).toMatch(/unavailable|database|store/i);
        expect(p.messages.filter((x) => x.type === 'ack' && x.clientMessageId === ref)).toEqual([]);
      }
      // REST answers 503 store_unavailable, never a 500, and /healthz says degraded.
      for (const h of hosts) {
        const c = new Client(h.url, origin);
        c.cookie = cookie;
        const r = await c.req('GET', '/api/threads');
        expect(r.status).toBe(503);
        expect(r.json.error.code).toBe('store_unavailable');
        // The database probe's answer may be up to its cache age (0.5 s) old.
        let hz = await health(h.url);
        for (let i = 0; i < 50 && hz.status !== 503; i++) {
          await new Promise((r) => setTimeout(r, 100));
          hz = await health(h.url);
        }
        expect(hz.status).toBe(503);
        expect(hz.body).toMatchObject({ status: 'degraded', storeStatus: 'degraded' });
      }
    } finally {
      await postgres.start();
    }
    // The run in flight ends with exactly one terminal event once its end can be stored.
    await Promise.all([p1.next(ended(runId), 30_000), p2.next(ended(runId), 30_000)]);
    const stored = await log(hosts[0]!.url, cookie, threadId);
    expectContiguous(stored);
    // Its events could not be stored while the database was down: it ends with store_unavailable.
    expect(terminalsOf(stored, runId)).toEqual([
      expect.objectContaining({ type: 'RUN_ERROR', code: 'store_unavailable' }),
    ]);
    expect(p1.events()).toEqual(stored);
    expect(p2.events()).toEqual(stored);
    // Both processes are still up, and the thread works again, through either instance.
    for (const h of hosts) expect(h.child.exitCode).toBeNull();
    const next = await sendAndAck(p2, threadId, 'back again?', 'c2');
    await Promise.all([p1.next(ended(next)), p2.next(ended(next))]);
    const after = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(after);
    expect(after.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId: next });
    expect(p2.events()).toEqual(after);
    for (const h of hosts) expect((await health(h.url)).status).toBe(200);
    p1.close();
    p2.close();
  }, 60_000);
});

/** The agent service's count of runs in progress (its model calls), from its /healthz. */
async function agentActiveRuns(agent: AgentService): Promise<number> {
  const r = await fetch(`${agent.url}/healthz`, {
    headers: { authorization: `Bearer ${SECRETS.AGENT_SHARED_SECRET}` },
  });
  return ((await r.json()) as { activeRuns: number }).activeRuns;
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const terminalsOf = (events: readonly SequencedAgentEvent[], runId: string) =>
  events.filter((e) => (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') && e.runId === runId);

describe('cluster: per-user bounds hold across instances (Redis)', () => {
  it('a user opening sockets on both instances hits one WS_CONNECTIONS_PER_USER bound (32), not 32 per instance', async () => {
    const { cookie } = await userWithThread();
    const pages: Page[] = [];
    for (let i = 0; i < 32; i++) pages.push(await Page.open(hosts[i % 2]!.url, cookie, origin));
    // The 33rd, on either instance, is told too_many_connections and closed.
    for (const host of hosts) {
      const extra = await Page.open(host.url, cookie, origin);
      const m = await extra.next((x) => x.type === 'error');
      expect(m).toMatchObject({ type: 'error', code: 'too_many_connections' });
      extra.close();
    }
    // One closed on instance 1 frees a slot for instance 2.
    pages.shift()!.close();
    let admitted = false;
    for (let i = 0; i < 50 && !admitted; i++) {
      const again = await Page.open(hosts[1]!.url, cookie, origin);
      await new Promise((r) => setTimeout(r, 100));
      admitted = !again.messages.some((x) => x.type === 'error');
      if (admitted) pages.push(again);
      else again.close();
    }
    expect(admitted).toBe(true);
    for (const p of pages) p.close();
  });

  it('a user starting runs on both instances hits one RUNS_PER_USER bound (4)', async () => {
    const { client, cookie, threadId } = await userWithThread();
    const threads = [threadId];
    for (let i = 0; i < 4; i++) {
      const t = await client.req('POST', '/api/threads', { json: { title: `more ${i}` } });
      threads.push(t.json.threadId as string);
    }
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    const pages = [p1, p2, p1, p2];
    for (let i = 0; i < 4; i++) await sendAndAck(pages[i]!, threads[i]!, LONG, `share-${i}`);
    // Four runs in progress, two on each instance: a fifth is refused on either.
    for (const [p, id] of [
      [p1, 'share-x1'],
      [p2, 'share-x2'],
    ] as const) {
      p.send({ type: 'send', threadId: threads[4]!, text: 'one more', clientMessageId: id });
      expect(await p.next(errorFor(id))).toMatchObject({ code: 'too_many_runs' });
    }
    p1.close();
    p2.close();
  });
});

describe('cluster: one thread, runs across instances', () => {
  it('a send on instance 2 while instance 1 streams a run gets run_active, and stores nothing', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p1.subscribe(threadId);
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await p1.next(chunkOf(runId));
    p2.send({ type: 'send', threadId, text: 'me too', clientMessageId: 'c2' });
    expect(await p2.next(errorFor('c2'))).toMatchObject({ type: 'error', code: 'run_active' });
    await p1.next(ended(runId));
    const stored = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(stored);
    expect(stored.filter((e) => e.type === 'USER_MESSAGE')).toHaveLength(1);
    expect(stored.filter((e) => e.type === 'RUN_STARTED')).toHaveLength(1);
    expect(terminalsOf(stored, runId)).toEqual([expect.objectContaining({ type: 'RUN_FINISHED' })]);
    p1.close();
    p2.close();
  });

  it('a send retried on instance 2 (same clientMessageId) gets the first runId and starts nothing', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p1.subscribe(threadId);
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    expect(await sendAndAck(p2, threadId, LONG, 'c1')).toBe(runId);
    await p1.next(ended(runId));
    const stored = await log(hosts[0]!.url, cookie, threadId);
    expect(stored.filter((e) => e.type === 'USER_MESSAGE')).toHaveLength(1);
    expect(stored.filter((e) => e.type === 'RUN_STARTED')).toHaveLength(1);
    p1.close();
    p2.close();
  });
});

// One Chromium page per instance: each browser context reaches its instance through a proxy that pins it
// there, while the page keeps the public origin (nginx's), so cookies and Origin checks are the real ones.
browserSuite('cluster: one Chromium page per instance')('cluster: one Chromium page per instance', () => {
  const WAIT = { timeout: 15_000, interval: 50 };
  let browser: Browser;
  const proxies: Awaited<ReturnType<typeof startPinProxy>>[] = [];
  beforeAll(async () => {
    proxies.push(await startPinProxy(hosts[0]!.port), await startPinProxy(hosts[1]!.port));
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await Promise.all(proxies.map((p) => p.close()));
  });

  const chat = (p: BrowserPage) => p.locator('agent-chat');
  const assistant = (p: BrowserPage) => chat(p).locator('[part~="assistant-message"]');
  const connected = (p: BrowserPage) =>
    expect.poll(() => chat(p).locator('[part~="status"]').getAttribute('data-state'), WAIT).toBe('connected');
  async function recordEvents(p: BrowserPage) {
    await p.evaluate(() => {
      const w = window as unknown as { tlEvents: unknown[] };
      w.tlEvents = [];
      document.querySelector('agent-chat')!.addEventListener('agent-chat:event', (e) => {
        w.tlEvents.push((e as CustomEvent).detail.event);
      });
    });
  }
  const events = (p: BrowserPage) =>
    p.evaluate(() => (window as unknown as { tlEvents: SequencedAgentEvent[] }).tlEvents);

  it('signs up on instance 1, signs in on instance 2, and the page on instance 2 shows the reply streamed through instance 1', async () => {
    const pages: BrowserPage[] = [];
    for (const proxy of proxies) {
      const context = await browser.newContext({
        viewport: { width: 1000, height: 700 },
        // `<-loopback>`: send 127.0.0.1 through the proxy too (Chromium skips proxies for loopback by default).
        proxy: { server: proxy.server, bypass: '<-loopback>' },
      });
      pages.push(await context.newPage());
    }
    const [one, two] = pages as [BrowserPage, BrowserPage];
    await one.goto(origin);
    await one.fill('#username', 'grace');
    await one.fill('#password', 'correct horse battery');
    await one.click('#signup');
    await one.waitForURL(`${origin}/threads`);
    await one.fill('#thread-title', 'Across instances');
    await one.click('#new-thread button');
    await one.waitForURL(/\/threads\/thr_/);
    const threadUrl = one.url();

    await two.goto(origin);
    await two.fill('#username', 'grace');
    await two.fill('#password', 'correct horse battery');
    await two.click('#login');
    await two.waitForURL(`${origin}/threads`);
    await two.goto(threadUrl);
    await Promise.all([connected(one), connected(two)]);
    await Promise.all([recordEvents(one), recordEvents(two)]);
    // Each page and its WebSocket went to its own instance.
    for (const p of proxies) expect(p.forwarded.tunnels).toBeGreaterThan(0);

    await chat(one).locator('[part~="input"]').fill('hello from instance one');
    await chat(one).locator('[part~="send-button"]').click();
    for (const p of [one, two]) {
      await expect
        .poll(async () => (await events(p)).some((e) => e.type === 'RUN_FINISHED'), WAIT)
        .toBe(true);
      await expect
        .poll(() => assistant(p).first().textContent(), WAIT)
        .toContain('You said: "hello from instance one"');
    }
    const [a, b] = await Promise.all([events(one), events(two)]);
    expect(b.map((e) => e.seq)).toEqual(a.map((e) => e.seq));
    expect(a.map((e) => e.seq)).toEqual(a.map((_, i) => a[0]!.seq + i));
    expect(await assistant(two).first().textContent()).toBe(await assistant(one).first().textContent());
    const artifacts = join(REPO_ROOT, 'test-artifacts', 'reference-host');
    mkdirSync(artifacts, { recursive: true });
    await two.screenshot({ path: join(artifacts, 'cluster-instance-2.png') });
  }, 60_000);
});

// The relay's cluster semantics: cancel reaches the owner over the pub/sub control channel, a dead owner's run
// is ended by a live instance once its lease expires, and a starting instance fails no run another one holds.
describe('cluster: cancel from another instance, and an instance dying', () => {
  it('a cancel sent on instance 2 stops instance 1’s run and its model call', async () => {
    const { cookie, threadId } = await userWithThread();
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p1.subscribe(threadId);
    p2.subscribe(threadId);
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await p2.next(chunkOf(runId));
    expect(await agentActiveRuns(agents[0]!)).toBe(1);
    p2.send({ type: 'cancel', runId });
    // Well before the reply would have ended by itself (about 2.5 s of streaming).
    await Promise.all([p1.next(ended(runId), 2_000), p2.next(ended(runId), 2_000)]);
    await eventually(async () => (await agentActiveRuns(agents[0]!)) === 0, 2_000, 'agent 1 stops the run');
    const stored = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(stored);
    expect(terminalsOf(stored, runId)).toEqual([
      expect.objectContaining({ type: 'RUN_ERROR', code: 'cancelled' }),
    ]);
    expect(runText(stored, runId).length).toBeLessThan(200);
    expect(p1.events()).toEqual(stored);
    expect(p2.events()).toEqual(stored);
    p1.close();
    p2.close();
  });

  it('AGENT_URL on a load balancer in front of both agent services: a cancel from another instance still stops the model call', async () => {
    // A third instance whose AGENT_URL is nginx in front of the two agent services: the relay aborts its
    // request, nginx closes its upstream connection, and the agent service that ran the call stops it.
    const agentLb = await startNginx([agents[0]!.port, agents[1]!.port]);
    const port = await freePort();
    await startInstance(2, port, agentLb.url);
    const [third] = hosts.splice(2, 1);
    try {
      const { cookie, threadId } = await userWithThread();
      const p3 = await Page.open(third!.url, cookie, origin);
      const p2 = await Page.open(hosts[1]!.url, cookie, origin);
      p3.subscribe(threadId);
      p2.subscribe(threadId);
      const active = async () => (await agentActiveRuns(agents[0]!)) + (await agentActiveRuns(agents[1]!));
      const runId = await sendAndAck(p3, threadId, LONG, 'lb1');
      await p2.next(chunkOf(runId));
      expect(await active()).toBe(1);
      p2.send({ type: 'cancel', runId });
      await Promise.all([p3.next(ended(runId), 2_000), p2.next(ended(runId), 2_000)]);
      await eventually(async () => (await active()) === 0, 2_000, 'the agent behind nginx stops the run');
      const stored = await log(hosts[1]!.url, cookie, threadId);
      expect(terminalsOf(stored, runId)).toEqual([
        expect.objectContaining({ type: 'RUN_ERROR', code: 'cancelled' }),
      ]);
      expect(runText(stored, runId).length).toBeLessThan(200);
      p3.close();
      p2.close();
    } finally {
      await third!.stop();
      rmSync(third!.dataDir, { recursive: true, force: true });
      await agentLb.stop();
    }
  });

  it('SIGKILL instance 1 mid-run: pages through nginx resume on instance 2 with no gap or duplicate, the run ends with one RUN_ERROR owner_lost, the next message runs; restarting instance 1 fails nothing instance 2 owns', async () => {
    const { cookie, threadId } = await userWithThread();
    // Two pages through nginx: round robin puts one on each instance.
    const pages = [
      await Page.open(nginx.url, cookie, origin, true),
      await Page.open(nginx.url, cookie, origin, true),
    ];
    for (const p of pages) p.subscribe(threadId);
    const p1 = await Page.open(hosts[0]!.url, cookie, origin);
    await new Promise((r) => setTimeout(r, 200));
    const runId = await sendAndAck(p1, threadId, LONG, 'c1');
    await Promise.all(pages.map((p) => p.next(chunkOf(runId))));
    const dead = hosts[0]!;
    dead.child.kill('SIGKILL');
    await new Promise((r) => dead.child.once('exit', r));
    // The agent sees its caller go and stops the model call.
    await eventually(async () => (await agentActiveRuns(agents[0]!)) === 0, 5_000, 'agent 1 stops the run');
    // The run's owner is gone: within the lease bound (at most 15 s) another instance ends it, once.
    await Promise.all(pages.map((p) => p.next(ended(runId), 25_000)));
    expect(pages.some((p) => p.opens > 1)).toBe(true);
    const stored = await log(nginx.url, cookie, threadId);
    expectContiguous(stored);
    expect(terminalsOf(stored, runId)).toEqual([
      expect.objectContaining({ type: 'RUN_ERROR', code: 'owner_lost' }),
    ]);
    for (const p of pages) expect(p.events()).toEqual(stored);
    // The next message runs, through nginx (instance 2 now).
    const next = await sendAndAck(pages[0]!, threadId, 'still there?', 'c2');
    await Promise.all(pages.map((p) => p.next(ended(next))));
    expect(terminalsOf(await log(nginx.url, cookie, threadId), next)).toEqual([
      expect.objectContaining({ type: 'RUN_FINISHED' }),
    ]);

    // Instance 2 streams a run while instance 1 starts again: instance 1's start fails none of it.
    const p2 = await Page.open(hosts[1]!.url, cookie, origin);
    p2.subscribe(threadId);
    const owned = await sendAndAck(p2, threadId, LONG, 'c3');
    await p2.next(chunkOf(owned));
    await startInstance(0, dead.port, agents[0]!.url, dead.dataDir);
    await p2.next(ended(owned), 20_000);
    const after = await log(hosts[1]!.url, cookie, threadId);
    expectContiguous(after);
    expect(terminalsOf(after, owned)).toEqual([expect.objectContaining({ type: 'RUN_FINISHED' })]);
    expect(after.filter((e) => e.type === 'RUN_ERROR' && e.code === 'relay_restarted')).toEqual([]);
    for (const p of [...pages, p1, p2]) p.close();
    restartedDirs.push(dead.dataDir);
  }, 60_000);
});
