// The API side of the long-thread scenario, as the reference host wires it: relay + SQLite store + the tools-kit
// router (manifest and session.* history the agent calls back) + the WebSocket transport, the agent over HTTP.
// Threads `<prefix>_<i>` are seeded with `items` session items each (what the agent's history holds).
// Usage: node long-thread-api.mjs <agentUrl> <seed JSON: [{ prefix, threads, items }]>
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachWebSocketServer, createRelay, httpAgentTransport } from '@threadline/relay';
import { openSqliteStore } from '@threadline/relay/sqlite';
import { createTokenIssuer, createToolRouter } from '@threadline/tools-kit';

const [agentUrl, seedText] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'threadline-long-'));
const store = openSqliteStore({ path: join(dir, 'bench.db') });
const tokens = createTokenIssuer({ secret: 'bench-tools-secret-that-is-long-enough-0123', issuer: 'bench' });
let relay;
const router = createToolRouter({
  tokens,
  store,
  events: { emit: async (event) => void (await relay.publish(event.threadId, [event])) },
  logger: { warn: console.error, error: console.error },
});
const item = (i) =>
  i % 2 === 0
    ? { type: 'message', role: 'user', content: `earlier question ${i}: what about the plan for the week?` }
    : {
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [
          {
            type: 'output_text',
            text: `earlier answer ${i}: the plan holds, see you then.`,
            annotations: [],
          },
        ],
      };
for (const { prefix, threads, items } of JSON.parse(seedText)) {
  for (let t = 0; t < threads; t++) {
    const threadId = `${prefix}_${t}`;
    await store.createThread({ threadId, ownerId: 'bench_user' });
    for (let i = 0; i < items; i += 1000)
      await store.addSessionItems(
        threadId,
        Array.from({ length: Math.min(1000, items - i) }, (_, k) => item(i + k)),
      );
  }
}

const server = createServer((req, res) => {
  if (req.url === '/cpu') return void res.end(JSON.stringify(process.cpuUsage()));
  if (!req.url.startsWith('/tools') && !req.url.startsWith('/state')) {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const response = await router(
      new Request(`http://127.0.0.1${req.url}`, {
        method: req.method,
        headers: req.headers,
        ...(req.method === 'GET' ? {} : { body: Buffer.concat(chunks) }),
      }),
    );
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
relay = createRelay({
  store,
  agent: httpAgentTransport({ url: agentUrl, credential: process.env.BENCH_AGENT_SECRET }),
  tokens,
  toolsBaseUrl: `http://127.0.0.1:${port}`,
  tools: router.toolNames,
  limits: { maxActiveRuns: 5_000, maxRunsPerUser: 5_000, maxRunStartsPerUser: 1_000_000 },
  logger: { warn: console.error, error: console.error },
});
const ws = attachWebSocketServer(server, relay, {
  authenticate: async () => ({ id: 'bench_user' }),
  allowedOrigins: ['http://127.0.0.1'],
  limits: { maxConnectionsPerUser: 10_000, messagesPerSecond: 100_000, messageBurst: 100_000 },
});
console.log(`READY ${JSON.stringify({ port, pid: process.pid })}`);
process.on('SIGTERM', async () => {
  await ws.close();
  await relay.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
