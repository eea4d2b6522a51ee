// Benchmark of @threadline/relay against the built package (run `npm run build -w @threadline/relay` first;
// `npm run bench -w @threadline/relay` does). Prints figures; the targets are in issue 5.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WebSocket, WebSocketServer } from 'ws';
import { attachWebSocketServer, createRelay, inProcessAgentTransport } from '@threadline/relay';
import { openSqliteStore } from '@threadline/relay/sqlite';

const ORIGIN = 'http://bench.local';
const quick = process.argv.includes('--quick');
// `--only=baseline,throughput,latency,memory,replay` runs a subset (e.g. under `node --cpu-prof`).
const onlyArg = process.argv.find((a) => a.startsWith('--only='));
const only = onlyArg ? new Set(onlyArg.slice('--only='.length).split(',')) : null;
const wants = (section) => only === null || only.has(section);
// SQLite durability: 'full' (the store's default) syncs the WAL on every commit; 'normal' survives a process crash.
const synchronous = process.argv.includes('--sync=normal') ? 'normal' : 'full';
const dir = mkdtempSync(join(tmpdir(), 'threadline-bench-'));
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const line = (label, value) => console.log(`  ${label.padEnd(58)} ${value}`);

/** A validating client on its own thread. */
function client() {
  const worker = new Worker(new URL('./client-worker.mjs', import.meta.url));
  return {
    /** Starts a job; `ready` resolves once subscribed, `result` when `expect` events arrived. */
    start(job) {
      let resolveReady;
      const ready = new Promise((r) => (resolveReady = r));
      const result = new Promise((resolve, reject) => {
        const onMessage = (m) => {
          if (m.ready) return resolveReady();
          worker.off('message', onMessage);
          if (m.error) reject(new Error(m.error));
          else resolve(m);
        };
        worker.on('message', onMessage);
      });
      worker.postMessage(job);
      return { ready, result };
    },
    close: () => worker.terminate(),
  };
}

function listen(server) {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port)));
}

// ---------------------------------------------------------------------------------------------------------
async function bareWs(n, corked) {
  const server = createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  const port = await listen(server);
  const frames = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      type: 'event',
      event: {
        type: 'TEXT_MESSAGE_CHUNK',
        threadId: 't1',
        runId: 'r1',
        ts: 1,
        messageId: 'm1',
        delta: 'word ',
        seq: i + 1,
      },
    }),
  );
  wss.on('connection', (ws) => {
    ws.once('message', () => {
      const socket = ws._socket;
      let i = 0;
      const pump = () => {
        const end = Math.min(n, i + 512);
        if (corked) socket.cork();
        for (; i < end; i++) ws.send(frames[i]);
        if (corked) socket.uncork();
        if (i < n) {
          if (ws.bufferedAmount > 1 << 20) ws.send(frames[i++], () => setImmediate(pump));
          else setImmediate(pump);
        }
      };
      pump();
    });
  });
  const c = client();
  const job = c.start({
    url: `ws://127.0.0.1:${port}`,
    headers: { origin: ORIGIN },
    connections: 1,
    subscribe: [['t1', 0]],
    expect: n,
    validate: true,
  });
  const r = await job.result;
  await c.close();
  wss.close();
  server.closeAllConnections();
  server.close();
  return { rate: (r.count / (r.endedAt - r.startedAt)) * 1000, invalid: r.invalid };
}

// ---------------------------------------------------------------------------------------------------------
/** An in-process agent that streams `n` events per run as fast as the relay takes them. */
function fastAgent(n, { distinctMessages = false, latency = false, intervalMs = 0 } = {}) {
  return inProcessAgentTransport({
    async *run(request, { signal }) {
      const base = { threadId: request.threadId, runId: request.runId };
      yield { type: 'RUN_STARTED', ...base, ts: Date.now() };
      const ts = Date.now();
      for (let i = 0; i < n && !signal.aborted; i++) {
        if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
        const delta = latency ? String(performance.timeOrigin + performance.now()) : 'word ';
        yield {
          type: 'TEXT_MESSAGE_CHUNK',
          ...base,
          ts,
          messageId: distinctMessages || latency ? `m${i}` : 'm1',
          delta,
        };
      }
      yield { type: 'RUN_FINISHED', ...base, ts: Date.now() };
    },
  });
}

async function relayHost(agent, relayLimits = {}, wsLimits = {}) {
  const path = join(dir, `relay-${Math.random().toString(36).slice(2)}.db`);
  const store = openSqliteStore({ path, synchronous });
  const relay = createRelay({
    store,
    agent,
    tokens: { issue: async () => 'bench-token' },
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    limits: {
      maxActiveRuns: 5_000,
      // Every run is the one bench user's: lift the per-user shares.
      maxRunsPerUser: 5_000,
      maxRunStartsPerUser: 1_000_000,
      maxBufferedEvents: 100_000,
      maxBufferedBytes: 64 << 20,
      ...relayLimits,
    },
  });
  const server = createServer();
  const transport = attachWebSocketServer(server, relay, {
    authenticate: async (req) => ({ id: String(req.headers['x-user'] ?? 'u') }),
    allowedOrigins: [ORIGIN],
    limits: {
      maxSubscriptionsPerConnection: 5_000,
      messagesPerSecond: 1e6,
      messageBurst: 1e6,
      maxPendingRequests: 1e6,
      ...wsLimits,
    },
  });
  const port = await listen(server);
  return {
    store,
    relay,
    url: `ws://127.0.0.1:${port}`,
    async close() {
      await transport.close();
      await relay.close();
      server.closeAllConnections();
      server.close();
      await store.close();
    },
  };
}

async function throughput(n, options) {
  const host = await relayHost(fastAgent(n, options));
  await host.store.createThread({ threadId: 't1', ownerId: 'u' });
  const c = client();
  const job = c.start({
    url: host.url,
    headers: { origin: ORIGIN, 'x-user': 'u' },
    connections: 1,
    subscribe: [['t1', 0]],
    expect: Number.MAX_SAFE_INTEGER,
    untilType: 'RUN_FINISHED',
    validate: true,
  });
  await job.ready;
  await new Promise((r) => setTimeout(r, 50));
  const start = performance.timeOrigin + performance.now();
  await host.relay.send({ user: { id: 'u' }, threadId: 't1', text: 'go', clientMessageId: 'c1' });
  const r = await job.result;
  await c.close();
  const stored = await host.store.lastSeq('t1');
  await host.close();
  return { rate: (n / (r.endedAt - start)) * 1000, stored, frames: r.count, invalid: r.invalid };
}

// ---------------------------------------------------------------------------------------------------------
async function latency(runs, perRun, intervalMs) {
  const host = await relayHost(fastAgent(perRun, { latency: true, intervalMs }));
  const threads = [];
  for (let i = 0; i < runs; i++) {
    await host.store.createThread({ threadId: `t${i}`, ownerId: 'u' });
    threads.push([`t${i}`, 0]);
  }
  const c = client();
  const expect = runs * (perRun + 3); // USER_MESSAGE, RUN_STARTED, chunks, RUN_FINISHED
  const job = c.start({
    url: host.url,
    headers: { origin: ORIGIN, 'x-user': 'u' },
    connections: Math.min(runs, 10),
    subscribe: threads,
    expect,
    validate: true,
    latency: true,
  });
  await job.ready;
  await new Promise((r) => setTimeout(r, 100));
  await Promise.all(
    threads.map(([threadId]) =>
      host.relay.send({ user: { id: 'u' }, threadId, text: 'go', clientMessageId: 'c1' }),
    ),
  );
  const r = await job.result;
  await c.close();
  await host.close();
  const sorted = r.latencies.sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return { p50: at(0.5), p99: at(0.99), n: sorted.length, invalid: r.invalid };
}

// ---------------------------------------------------------------------------------------------------------
/** RSS per idle socket, measured in a separate server process so nothing else is counted. */
async function memoryPerSocket(mode, sockets) {
  const child = spawn(
    process.execPath,
    ['--expose-gc', new URL('./memory-server.mjs', import.meta.url).pathname, mode, dir],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = [];
  let wake;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    lines.push(...d.trim().split('\n'));
    wake?.();
  });
  const next = async () => {
    while (lines.length === 0) await new Promise((r) => (wake = r));
    return JSON.parse(lines.shift());
  };
  const { port, threads } = await next();
  child.stdin.write('measure\n');
  const before = await next();
  const clients = [];
  let opened = 0;
  for (let i = 0; i < sockets; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, {
      headers: { origin: ORIGIN, 'x-user': 'u' },
      perMessageDeflate: false,
    });
    clients.push(ws);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    if (mode === 'relay')
      ws.send(
        JSON.stringify({ type: 'subscribe', threadId: threads[i % threads.length], afterSeq: 1_000_000 }),
      );
    opened++;
  }
  await new Promise((r) => setTimeout(r, 500));
  child.stdin.write('measure\n');
  const after = await next();
  for (const ws of clients) ws.terminate();
  child.kill();
  return {
    perSocket: (after.rss - before.rss) / opened,
    heapPerSocket: (after.heap - before.heap) / opened,
    subscribers: after.subscribers,
  };
}

// ---------------------------------------------------------------------------------------------------------
async function replay(events) {
  const host = await relayHost(fastAgent(0));
  await host.store.createThread({ threadId: 't1', ownerId: 'u' });
  const ts = Date.now();
  for (let i = 0; i < events; i += 500) {
    const batch = Array.from({ length: Math.min(500, events - i) }, (_, k) => ({
      type: 'TEXT_MESSAGE_CHUNK',
      threadId: 't1',
      runId: 'r1',
      ts,
      messageId: `m${i + k}`,
      delta: `word ${i + k} `,
    }));
    await host.store.append('t1', batch);
  }
  const times = [];
  for (let round = 0; round < 5; round++) {
    const c = client();
    const job = c.start({
      url: host.url,
      headers: { origin: ORIGIN, 'x-user': 'u' },
      connections: 1,
      subscribe: [['t1', 0]],
      expect: events,
      validate: false,
    });
    const r = await job.result;
    times.push(r.endedAt - r.startedAt);
    await c.close();
  }
  await host.close();
  times.sort((a, b) => a - b);
  return { median: times[2], best: times[0] };
}

// ---------------------------------------------------------------------------------------------------------
try {
  console.log(
    `@threadline/relay benchmark (Node ${process.version}, ${(await import('node:os')).cpus().length} cores)${quick ? ' [quick]' : ''}, SQLite synchronous=${synchronous}`,
  );
  let perFrame = { rate: NaN };
  let corked = { rate: NaN };
  if (wants('baseline')) {
    console.log('\nBaselines: bare ws server → validating client');
    const bareN = quick ? 50_000 : 200_000;
    perFrame = await bareWs(bareN, false);
    line(`bare ws, one write per frame (${fmt(bareN)} events)`, `${fmt(perFrame.rate)} events/s`);
    corked = await bareWs(bareN, true);
    line(`bare ws, corked writes (${fmt(bareN)} events)`, `${fmt(corked.rate)} events/s`);
  }

  if (wants('throughput')) {
    console.log('\nThroughput: in-process agent → relay → SQLite → ws → validating client (agent events/s)');
    // The first message through a fresh process pays for JIT compilation of the whole path; a relay serves
    // many messages, so it is shown apart and the sizes below are measured warm.
    const cold = await throughput(5_000);
    line(
      'first message in this process, 5,000 chunks (cold JIT)',
      `${fmt(cold.rate)} events/s  (${cold.invalid} invalid)`,
    );
    const sizes = quick ? [5_000, 50_000] : [5_000, 50_000, 200_000];
    for (const n of sizes) {
      const r = await throughput(n);
      line(
        `one message of ${fmt(n)} chunks`,
        `${fmt(r.rate)} events/s  (${fmt(r.stored)} stored, ${fmt(r.frames)} frames, ${r.invalid} invalid)  ${(r.rate / corked.rate).toFixed(2)}x corked ws`,
      );
    }
    for (const n of quick ? [20_000] : [50_000]) {
      const r = await throughput(n, { distinctMessages: true });
      line(
        `${fmt(n)} events that cannot be coalesced`,
        `${fmt(r.rate)} events/s  (${fmt(r.stored)} stored, ${r.invalid} invalid)  ${(r.rate / perFrame.rate).toFixed(2)}x per-frame ws`,
      );
    }
  }

  if (wants('latency')) {
    console.log(
      '\nLatency added per event (agent yield → validated at the client), concurrent streaming runs',
    );
    for (const [runs, perRun, interval] of [
      [1, 500, 2],
      [100, 50, 20],
      [1_000, quick ? 5 : 10, 100],
    ]) {
      const r = await latency(runs, perRun, interval);
      line(
        `${fmt(runs)} runs × ${perRun} events`,
        `p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   (${fmt(r.n)} samples, ${r.invalid} invalid)`,
      );
    }
  }

  if (wants('memory')) {
    console.log('\nMemory per idle socket (separate server process, RSS delta / sockets)');
    const socketsN = quick ? 500 : 2_000;
    const bare = await memoryPerSocket('bare', socketsN);
    line(
      `bare ws, ${fmt(socketsN)} idle sockets`,
      `${(bare.perSocket / 1024).toFixed(1)} KB/socket (heap ${(bare.heapPerSocket / 1024).toFixed(1)} KB)`,
    );
    const subscribed = await memoryPerSocket('relay', socketsN);
    line(
      `relay, ${fmt(socketsN)} idle subscribed sockets (${subscribed.subscribers} subscriptions)`,
      `${(subscribed.perSocket / 1024).toFixed(1)} KB/socket (heap ${(subscribed.heapPerSocket / 1024).toFixed(1)} KB)  ${(subscribed.perSocket / bare.perSocket).toFixed(2)}x bare (heap ${(subscribed.heapPerSocket / bare.heapPerSocket).toFixed(2)}x)`,
    );
  }

  if (wants('replay')) {
    console.log('\nReplay: resuming client reads a 10,000-event thread from SQLite over ws');
    const r = await replay(10_000);
    line(
      '10,000 events, subscribe → last event received',
      `median ${r.median.toFixed(1)} ms, best ${r.best.toFixed(1)} ms`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
