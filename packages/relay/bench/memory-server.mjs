// A server process for the memory benchmark: a bare ws server or the relay's transport on SQLite. Prints its
// port, then one JSON line of memory figures (after a GC) each time it reads "measure" on stdin.
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { WebSocketServer } from 'ws';
import { attachWebSocketServer, createRelay, inProcessAgentTransport } from '@threadline/relay';
import { openSqliteStore } from '@threadline/relay/sqlite';

const [mode, dir] = process.argv.slice(2);
const server = createServer();
let relay;
const threads = [];
if (mode === 'bare') {
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', () => {}));
} else {
  const store = openSqliteStore({ path: join(dir, `memory-${process.pid}.db`) });
  for (let i = 0; i < 100; i++) {
    await store.createThread({ threadId: `t${i}`, ownerId: 'u' });
    threads.push(`t${i}`);
  }
  relay = createRelay({
    store,
    agent: inProcessAgentTransport({ async *run() {} }),
    tokens: { issue: async () => 'x' },
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    limits: { maxSubscribersPerThread: 10_000 },
  });
  attachWebSocketServer(server, relay, {
    authenticate: async () => ({ id: 'u' }),
    allowedOrigins: ['http://bench.local'],
    limits: { messagesPerSecond: 1e6, messageBurst: 1e6 },
  });
}
server.listen(0, '127.0.0.1', () =>
  process.stdout.write(`${JSON.stringify({ port: server.address().port, threads })}\n`),
);
for await (const line of createInterface({ input: process.stdin })) {
  if (line !== 'measure') continue;
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = process.memoryUsage();
  process.stdout.write(
    `${JSON.stringify({ rss: m.rss, heap: m.heapUsed, subscribers: relay?.subscribers ?? 0 })}\n`,
  );
}
