// Throughput figures for @threadline/tools-kit. Run `npm run build -w @threadline/tools-kit` first.
// Prints numbers; asserts nothing (speed targets live here, not in tests).
import { performance } from 'node:perf_hooks';
import express from 'express';
import { createTokenIssuer, createToolRouter, MemoryToolStore } from '../dist/index.js';
import { toolRouterMiddleware } from '../dist/express.js';

const secret = 'bench-secret-that-is-at-least-32-bytes-long';
const tokens = createTokenIssuer({ secret, issuer: 'bench' });
const store = new MemoryToolStore({ maxSessionItems: 1_000_000 });
const events = {
  emitted: 0,
  async emit() {
    this.emitted++;
  },
};
const router = createToolRouter({ tokens, store, events });
const token = await tokens.issue({ userId: 'u1', threadId: 't1', runId: 'r1', tools: router.toolNames });

async function measure(label, n, fn) {
  for (let i = 0; i < Math.min(200, n); i++) await fn(i); // warm-up
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const ms = performance.now() - start;
  console.log(
    `${label.padEnd(44)} ${String(Math.round((n / ms) * 1000)).padStart(8)} ops/s  (${((ms / n) * 1000).toFixed(1)} µs/op)`,
  );
}

const call = (name, input) =>
  router(
    new Request(`http://x/tools/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ threadId: 't1', input }),
    }),
  );

await measure('token issue (HS256)', 5_000, () =>
  tokens.issue({ userId: 'u1', threadId: 't1', runId: 'r1', tools: router.toolNames }),
);
await measure('token verify (HS256)', 5_000, () => tokens.verify(token));
await measure('in-process state.get', 5_000, () => call('state.get', {}));
await measure('in-process profile.patch (+STATE_CHANGED)', 5_000, (i) =>
  call('profile.patch', { displayName: `User ${i}` }),
);
await measure('in-process session.add (10 items)', 5_000, () =>
  call('session.add', { items: Array.from({ length: 10 }, (_, k) => ({ role: 'user', content: `m${k}` })) }),
);
await measure('in-process rejected call (bad token)', 5_000, () =>
  router(
    new Request('http://x/tools/state.get', {
      method: 'POST',
      headers: { authorization: 'Bearer nope' },
      body: '{"threadId":"t1"}',
    }),
  ),
);

const app = express();
app.use(toolRouterMiddleware(router));
const server = await new Promise((resolve) => {
  const s = app.listen(0, '127.0.0.1', () => resolve(s));
});
const url = `http://127.0.0.1:${server.address().port}`;
const concurrency = 16;
const total = 4_000;
let next = 0;
const start = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < total) {
      next++;
      const res = await fetch(`${url}/tools/state.get`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{"threadId":"t1"}',
      });
      await res.arrayBuffer();
    }
  }),
);
const ms = performance.now() - start;
console.log(
  `${'HTTP (Express) state.get, 16 concurrent'.padEnd(44)} ${String(Math.round((total / ms) * 1000)).padStart(8)} req/s`,
);
server.closeAllConnections();
server.close();
console.log(`events emitted: ${events.emitted}`);
