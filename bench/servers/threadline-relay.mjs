// The API side: relay + SQLite store + WebSocket transport, with the agent in process or over HTTP/SSE.
// Usage: node threadline-relay.mjs <inproc|http> <threads> [agentUrl]
// BENCH_STORE=postgres with BENCH_PG_URL: the PostgreSQL store instead (a cluster instance: BENCH_REDIS_URL adds
// Redis fan-out, BENCH_INSTANCE_ID names the instance; every instance creates the same bench threads).
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attachWebSocketServer,
  createRelay,
  httpAgentTransport,
  inProcessAgentTransport,
} from '@threadline/relay';
import { createMemoryStore } from '@threadline/relay/memory';
import { openSqliteStore } from '@threadline/relay/sqlite';
import { syntheticRunner } from './synthetic-runner.mjs';

const [mode, threadsText, agentUrl] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'threadline-bench-'));
// For comparison while profiling (the report always runs SQLite with its defaults): BENCH_STORE=memory for the
// memory store (what the store costs), BENCH_SQLITE_SYNC=normal for no WAL sync per commit.
const store =
  process.env.BENCH_STORE === 'memory'
    ? createMemoryStore()
    : process.env.BENCH_STORE === 'postgres'
      ? await (
          await import('@threadline/relay/postgres')
        ).openPostgresStore({ connectionString: process.env.BENCH_PG_URL, maxConnections: 10 })
      : openSqliteStore({
          path: join(dir, 'bench.db'),
          synchronous: process.env.BENCH_SQLITE_SYNC === 'normal' ? 'normal' : 'full',
        });
const pubsub = process.env.BENCH_REDIS_URL
  ? await (
      await import('@threadline/relay/redis')
    ).openRedisPubSub({ url: process.env.BENCH_REDIS_URL, store, logger: console })
  : undefined;
const threads = Number(threadsText ?? 1);
for (let i = 0; i < threads; i++) {
  try {
    await store.createThread({ threadId: `bench_${i}`, ownerId: 'bench_user' });
  } catch (error) {
    // On a shared database the other instance may have created it first.
    if (error?.code !== 'conflict') throw error;
  }
}

const agent =
  mode === 'http'
    ? httpAgentTransport({
        url: agentUrl,
        credential: process.env.BENCH_AGENT_SECRET,
        // As the reference host runs it: one HTTP/1.1 connection per run. BENCH_AGENT_HTTP2=1: every run on
        // one HTTP/2 connection (less CPU per event at 1,000 runs, more latency per event; see the report).
        http2: process.env.BENCH_AGENT_HTTP2 === '1',
      })
    : inProcessAgentTransport(syntheticRunner);
const relay = createRelay({
  store,
  ...(pubsub ? { pubsub } : {}),
  ...(process.env.BENCH_INSTANCE_ID ? { instanceId: process.env.BENCH_INSTANCE_ID } : {}),
  agent,
  tokens: { issue: async () => 'bench-token' },
  toolsBaseUrl: 'http://127.0.0.1:1',
  tools: [],
  limits: {
    maxActiveRuns: 5_000,
    // Every run is the one bench user's: lift the per-user shares.
    maxRunsPerUser: 5_000,
    maxRunStartsPerUser: 1_000_000,
    maxBufferedEvents: 1_000_000,
    maxBufferedBytes: 256 * 1024 * 1024,
    // For A/B runs: BENCH_EARLY_WRITE=<threads> (the report runs the default).
    ...(process.env.BENCH_EARLY_WRITE ? { earlyWriteThreads: Number(process.env.BENCH_EARLY_WRITE) } : {}),
  },
  logger: { warn: console.error, error: console.error },
});
const server = createServer((req, res) => {
  // GET /mem: RSS after a full GC, for the memory figures.
  globalThis.gc?.();
  res.end(String(process.memoryUsage().rss));
});
const ws = attachWebSocketServer(server, relay, {
  authenticate: async () => ({ id: 'bench_user' }),
  allowedOrigins: ['http://127.0.0.1'],
  limits: {
    // Every bench socket signs in as one user, standing in for many browsers: lift the per-user share.
    maxConnectionsPerUser: 10_000,
    messagesPerSecond: 100_000,
    messageBurst: 100_000,
    maxPendingRequests: 10_000,
    maxSubscriptionsPerConnection: 10_000,
    highWaterBytes: 16 * 1024 * 1024,
  },
});
server.listen(0, '127.0.0.1', () =>
  console.log(`READY ${JSON.stringify({ port: server.address().port, pid: process.pid })}`),
);

process.on('SIGTERM', async () => {
  await ws.close();
  await relay.close();
  await pubsub?.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
