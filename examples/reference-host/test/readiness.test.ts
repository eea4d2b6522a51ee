import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createDemoModelProvider,
  createRunner,
  serveAgent,
  type ServedAgent,
} from '@threadline/agent-runner';
import type { AgentEvent, ServerMessage } from '@threadline/contracts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import pg from 'pg';
import { readConfig } from '../src/config.js';
import { postgresProbe } from '../src/readiness.js';
import { startHost, type Host } from '../src/host.js';
import { loadSecrets } from '../src/secrets.js';
import { Client } from './helpers.js';
import { ensureBuilt, spawnUserHost, type UserHost } from './user-host.js';

// The host is ready when a message would run: /healthz answers 503 until the store is open and the agent
// service answers, and a message sent while the agent (re)starts waits for it within AGENT_WAIT_MS.

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Signs a user up and opens a thread; returns a function that sends a message and resolves with its run. */
async function chatter(base: string, username: string) {
  const c = new Client(base);
  expect((await c.signup(username)).status).toBe(201);
  const threadId = (await c.req('POST', '/api/threads', { json: {} })).json as { threadId: string };
  return { client: c, threadId: threadId.threadId };
}

/** Opens a socket with `cookie`, sends one message and resolves with the run's events once it ends. */
async function sendAndWait(
  base: string,
  cookie: string,
  threadId: string,
  clientMessageId: string,
): Promise<{ events: AgentEvent[]; sentAt: number; endedAt: number }> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, { headers: { origin: base, cookie } });
  const events: AgentEvent[] = [];
  let runId: string | undefined;
  let endedAt = 0;
  const done = new Promise<void>((resolve, reject) => {
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as ServerMessage;
      if (m.type === 'ack' && m.clientMessageId === clientMessageId) runId = m.runId;
      if (m.type === 'error') reject(new Error(`${m.code}: ${m.message}`));
      if (m.type !== 'event' || m.event.runId === undefined || m.event.runId !== runId) return;
      events.push(m.event);
      if (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR') {
        endedAt = Date.now();
        resolve();
      }
    });
    ws.on('error', reject);
  });
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq: 0 }));
  const sentAt = Date.now();
  ws.send(JSON.stringify({ type: 'send', threadId, text: 'hello', clientMessageId }));
  await done;
  ws.close();
  return { events, sentAt, endedAt };
}

const health = async (base: string) => {
  const r = await fetch(`${base}/healthz`);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

describe('readiness in process: an agent service on AGENT_PORT that is down, then up, then down', () => {
  let dir: string;
  let host: Host;
  let base: string;
  let agentPort: number;
  let secret: string;
  let agent: ServedAgent | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-ready-'));
    agentPort = await freePort();
    const config = readConfig({
      PORT: '0',
      AGENT_PORT: String(agentPort),
      DATA_DIR: dir,
      AGENT_WAIT_MS: '800',
    });
    const secrets = loadSecrets(dir);
    secret = secrets.agentSharedSecret;
    host = await startHost({ config, secrets, logger: { error: () => {}, warn: () => {} } });
    base = `http://127.0.0.1:${host.port}`;
  });
  afterAll(async () => {
    await agent?.close({ deadlineMs: 0 });
    await host?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 503 "starting" while the agent has never answered, and a message fails only after AGENT_WAIT_MS', async () => {
    const before = await health(base);
    expect(before.status).toBe(503);
    expect(before.body).toMatchObject({ status: 'starting', agent: 'down', store: 'sqlite' });

    const { client, threadId } = await chatter(base, 'ready-one');
    const run = await sendAndWait(base, client.cookie!, threadId, 'c1');
    expect(run.events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'agent_unreachable' });
    expect(run.endedAt - run.sentAt).toBeGreaterThanOrEqual(800);
  });

  it('answers 200 once the agent listens, runs a message, and says "degraded" when the agent goes away', async () => {
    agent = await serveAgent(
      createRunner({
        modelProvider: createDemoModelProvider({ delayMs: 0 }),
        model: 'demo',
        tracing: false,
        logger: { info: () => {}, warn: () => {}, error: () => {} },
      }),
      {
        port: agentPort,
        host: '127.0.0.1',
        auth: { sharedSecret: secret },
        doctor: false,
        logger: { info() {}, warn() {}, error() {} },
      },
    );
    let h = await health(base);
    for (let i = 0; i < 100 && h.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      h = await health(base);
    }
    expect(h).toMatchObject({ status: 200, body: { status: 'ok', agent: 'up' } });
    const { client, threadId } = await chatter(base, 'ready-two');
    const run = await sendAndWait(base, client.cookie!, threadId, 'c1');
    expect(run.events.at(-1)?.type).toBe('RUN_FINISHED');

    await agent.close({ deadlineMs: 0 });
    agent = undefined;
    for (let i = 0; i < 100 && h.status === 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      h = await health(base);
    }
    expect(h).toMatchObject({ status: 503, body: { status: 'degraded', agent: 'down' } });
  });
});

describe('readiness of `node dist/main.js`', () => {
  beforeAll(() => ensureBuilt(), 240_000);
  let host: UserHost | undefined;
  let dataDir: string | undefined;
  afterEach(async () => {
    await host?.stop();
    host = undefined;
  });
  afterAll(() => {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 200 only once its agent service answers; a message sent at that instant runs; one sent during an agent restart waits for it', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'tl-ready-main-'));
    const port = await freePort();
    const agentPort = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = { PORT: String(port), AGENT_PORT: String(agentPort) };

    // A first start makes a user, a session and a thread in the data folder.
    host = spawnUserHost(env, dataDir);
    await host.waitForOutput(/Press Ctrl-C to stop/);
    const { client, threadId } = await chatter(base, 'restarted-user');
    await host.stop();

    // Second start: poll /healthz from the first instant; the moment it says 200, the agent must answer and
    // a message must run.
    host = spawnUserHost(env, dataDir);
    const seen: unknown[] = [];
    for (let i = 0; i < 2_000; i++) {
      const h = await health(base).catch(() => undefined);
      if (h) seen.push(h.body.status);
      if (h?.status === 200) break;
      if (h) expect(h).toMatchObject({ status: 503, body: { status: 'starting' } });
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen.at(-1)).toBe('ok');
    const agentNow = await fetch(`http://127.0.0.1:${agentPort}/healthz`).catch((e: Error) => e);
    // 401 (no credential) proves the agent service is listening.
    expect(agentNow).toMatchObject({ status: 401 });
    const first = await sendAndWait(base, client.cookie!, threadId, 'c1');
    expect(first.events.at(-1)?.type).toBe('RUN_FINISHED');

    // Kill the agent process; send at once: the message waits for the restart and runs.
    const pid = Number((await host.waitForOutput(/\(pid (\d+)\)/))[1]);
    const from = host.output().length;
    process.kill(pid, 'SIGKILL');
    await host.waitForOutput(/agent service: exited/, from);
    const during = await health(base);
    expect(during).toMatchObject({ status: 503, body: { status: 'degraded', agent: 'down' } });
    const second = await sendAndWait(base, client.cookie!, threadId, 'c2');
    expect(second.events.map((e) => e.type)).toContain('RUN_STARTED');
    expect(second.events.at(-1)?.type).toBe('RUN_FINISHED');
    expect((await health(base)).status).toBe(200);
  }, 60_000);
});

describe('postgresProbe', () => {
  const pools: pg.Pool[] = [];
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
  });
  const poolTo = (port: number) => {
    const pool = new pg.Pool({
      connectionString: `postgres://app@127.0.0.1:${port}/app`,
      connectionTimeoutMillis: 30_000,
    });
    pool.on('error', () => {});
    pools.push(pool);
    return pool;
  };

  it('says down, with the reason, when nothing listens', async () => {
    const probe = postgresProbe(poolTo(await freePort()));
    expect(await probe()).toEqual({ up: false, detail: 'PostgreSQL: ECONNREFUSED' });
  });

  it('says down within its timeout when the server accepts and never answers (not after the pool’s 30 s)', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => void sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const probe = postgresProbe(poolTo((silent.address() as { port: number }).port), {
        timeoutMs: 300,
        cacheMs: 0,
      });
      expect(await probe()).toEqual({ up: false, detail: 'PostgreSQL: no answer within 300 ms' });
      // Probes while the first query still waits for a connection reuse it: one connection attempt in all.
      expect(await probe()).toEqual({ up: false, detail: 'PostgreSQL: no answer within 300 ms' });
      expect(sockets.size).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});
