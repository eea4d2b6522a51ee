// Benchmark of the agent service: events/s over POST /runs SSE with a model that streams as fast as it can, and
// the latency the service adds per event compared with reading the same fake model stream directly.
// Run `npm run build -w @threadline/agent-runner` (and the workspace deps) first.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { createFakeOpenAIServer } from '@threadline/agent-runner/testing';
import { MemoryToolStore, createTokenIssuer, createToolRouter } from '@threadline/tools-kit';

const SECRET = 'bench-secret-that-is-long-enough-0123456789';
const THROUGHPUT_DELTAS = Number(process.env.BENCH_DELTAS ?? 20_000);
const THROUGHPUT_RUNS = Number(process.env.BENCH_RUNS ?? 4);
const LATENCY_DELTAS = Number(process.env.BENCH_LATENCY_DELTAS ?? 2_000);

let writeTimes = [];
let mode = 'throughput';
const fake = await createFakeOpenAIServer({
  respond: () =>
    mode === 'throughput'
      ? { type: 'text', text: 'x'.repeat(THROUGHPUT_DELTAS), chunkSize: 1 }
      : { type: 'text', text: 'y'.repeat(LATENCY_DELTAS), chunkSize: 1, delayMs: 1 },
  onDeltaWritten: (i) => {
    if (mode === 'latency') writeTimes[i] = performance.now();
  },
  maxCaptured: 10,
});

// The host's tool endpoints (history lives there), as a real HTTP server.
const tokens = createTokenIssuer({ secret: 'tools-secret-that-is-long-enough-0123456789', issuer: 'bench' });
const router = createToolRouter({ tokens, store: new MemoryToolStore(), logger: { error() {}, warn() {} } });
const toolsServer = createServer((req, res) => {
  void (async () => {
    const parts = [];
    for await (const c of req) parts.push(c);
    const response = await router(
      new Request(`http://127.0.0.1${req.url}`, {
        method: req.method,
        headers: req.headers,
        ...(req.method === 'GET' ? {} : { body: Buffer.concat(parts) }),
      }),
    );
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  })();
});
await new Promise((r) => toolsServer.listen(0, '127.0.0.1', r));
const toolsBaseUrl = `http://127.0.0.1:${toolsServer.address().port}`;

const child = spawn(
  process.execPath,
  [
    ...(process.env.BENCH_CHILD_FLAGS ? process.env.BENCH_CHILD_FLAGS.split(' ') : []),
    fileURLToPath(new URL('./agent-child.mjs', import.meta.url)),
  ],
  {
    env: {
      ...process.env,
      FAKE_BASE_URL: fake.baseURL,
      BENCH_SECRET: SECRET,
      NODE_ENV: 'production',
      OPENAI_AGENTS_DISABLE_TRACING: '1',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
child.stdout.on('data', (d) => {
  if (process.env.BENCH_CHILD_FLAGS) process.stderr.write(d);
});
const agentUrl = await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (d) => {
    out += String(d);
    const m = /^AGENT_URL (\S+)$/m.exec(out);
    if (m) resolve(m[1]);
    if (out.length > 65_536) out = out.slice(-1024);
  });
  child.once('exit', (code) => reject(new Error(`agent child exited ${code}`)));
});

/** Reads an SSE body and calls onData(payload, now) per `data:` line. */
async function readSse(res, onData) {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body) {
    const now = performance.now();
    buffer += decoder.decode(chunk, { stream: true });
    let idx;
    while ((idx = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, idx);
      buffer = buffer.slice(idx + 2);
      for (const line of block.split('\n')) if (line.startsWith('data: ')) onData(line.slice(6), now);
    }
  }
}

let runNo = 0;
async function viaService(onChunk) {
  runNo++;
  const threadId = `bench-thread-${runNo}`;
  const runId = `bench-run-${runNo}`;
  const token = await tokens.issue({ userId: 'u', threadId, runId, tools: router.toolNames });
  const res = await fetch(`${agentUrl}/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      threadId,
      runId,
      user: { id: 'u' },
      message: 'go',
      tools: { baseUrl: toolsBaseUrl, token },
    }),
  });
  if (res.status !== 200) throw new Error(`POST /runs answered ${res.status}`);
  let terminal = null;
  await readSse(res, (data, now) => {
    const event = JSON.parse(data);
    if (event.type === 'TEXT_MESSAGE_CHUNK') onChunk(now);
    else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') terminal = event;
  });
  if (terminal?.type !== 'RUN_FINISHED') throw new Error(`run ended with ${JSON.stringify(terminal)}`);
}

async function direct(onChunk) {
  const res = await fetch(`${fake.baseURL}/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' },
    body: JSON.stringify({ model: 'fake-model', input: 'go', stream: true }),
  });
  await readSse(res, (data, now) => {
    if (data.includes('"response.output_text.delta"')) onChunk(now);
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const fmt = (n) => n.toFixed(3);

// Warm up both paths (JIT, connections).
mode = 'throughput';
await viaService(() => {});
await direct(() => {});

// Throughput: several runs at once, each streaming THROUGHPUT_DELTAS deltas with no pacing.
let events = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: THROUGHPUT_RUNS }, () => viaService(() => events++)));
const serviceSeconds = (performance.now() - t0) / 1000;
let directEvents = 0;
const t1 = performance.now();
await Promise.all(Array.from({ length: THROUGHPUT_RUNS }, () => direct(() => directEvents++)));
const directSeconds = (performance.now() - t1) / 1000;

// Latency: a paced stream (1 ms between deltas) so every event is measured on its own.
mode = 'latency';
async function latencies(path) {
  writeTimes = [];
  const received = [];
  await path((now) => received.push(now));
  return received.map((t, i) => t - writeTimes[i]).sort((a, b) => a - b);
}
const directLat = await latencies(direct);
const serviceLat = await latencies(viaService);

console.log(
  '@threadline/agent-runner benchmark (agent service in its own process; fake OpenAI server on 127.0.0.1)',
);
console.log(`throughput: ${THROUGHPUT_RUNS} concurrent runs x ${THROUGHPUT_DELTAS} deltas`);
console.log(
  `  via POST /runs SSE : ${Math.round(events / serviceSeconds).toLocaleString('en')} events/s (${events} events in ${serviceSeconds.toFixed(2)} s, whole runs incl. history tools)`,
);
console.log(
  `  fake server direct : ${Math.round(directEvents / directSeconds).toLocaleString('en')} events/s`,
);
console.log(`latency per event (${LATENCY_DELTAS} deltas paced 1 ms; ms from fake write to client read):`);
console.log(`  direct      p50 ${fmt(pct(directLat, 50))}  p99 ${fmt(pct(directLat, 99))}`);
console.log(`  via service p50 ${fmt(pct(serviceLat, 50))}  p99 ${fmt(pct(serviceLat, 99))}`);
console.log(
  `  added       p50 ${fmt(pct(serviceLat, 50) - pct(directLat, 50))}  p99 ${fmt(pct(serviceLat, 99) - pct(directLat, 99))}`,
);
console.log('targets: >= 20,000 events/s on one core; added p99 < 1 ms');

child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
toolsServer.close();
toolsServer.closeAllConnections();
await fake.close();
