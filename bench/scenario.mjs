// Runs one streaming scenario's client in this process against its server(s) in child processes, and prints
// one JSON line: { name, events, seconds, eventsPerSec, p50, p99, complete }.
// Usage: node bench/scenario.mjs <scenario> <events> [timeoutSeconds]
import { Worker } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { DELTA_LENGTH, deltaTime, latencyRecorder, now, onServerSpawn, startServer } from './lib.mjs';

const [name, nArg, timeoutArg] = process.argv.slice(2);
const n = Number(nArg);
const timeoutMs = Number(timeoutArg ?? 120) * 1000;
const here = (f) => new URL(f, import.meta.url).pathname;

// A watchdog on its own thread: some clients keep this thread busy (or stuck in one long synchronous step) so
// that no timer here can fire. Past the time limit (plus grace) the watchdog prints what the client managed
// (count and time from shared memory; no latency figures), kills the servers and this process.
const shared = new Float64Array(new SharedArrayBuffer(4 * 8)); // [count, started, last, deadline]
const watchdog = new Worker(
  `const { workerData, parentPort } = require('node:worker_threads');
  const { writeSync } = require('node:fs');
  const [shared, label] = [workerData.shared, workerData.label];
  const pids = [];
  parentPort.on('message', (pid) => pids.push(pid));
  setInterval(() => {
    const [count, started, last, deadline] = shared;
    if (deadline === 0 || Date.now() < deadline + 5000) return;
    const seconds = (last - started) / 1000;
    writeSync(1, JSON.stringify({ ...label, events: count, seconds, eventsPerSec: count / seconds, p50: null, p99: null, complete: false, stalled: true }) + '\\n');
    for (const pid of pids) try { process.kill(pid, 'SIGKILL'); } catch {}
    process.kill(process.pid, 'SIGKILL');
  }, 250);`,
  { eval: true, workerData: { shared, label: { name, requested: n } } },
);
watchdog.unref();
onServerSpawn((pid) => watchdog.postMessage(pid));
process.on('SIGTERM', () => process.exit(1)); // so 'exit' handlers stop the servers

/**
 * The warm-up every scenario runs first, in the same processes, before it is measured: WARMUP_MESSAGES messages
 * of WARMUP events each. One message of 2,000 left the per-event code of every path half-compiled, so the
 * 5,000-event figure measured V8's tiering more than the path (Threadline in-process: 230-290k events/s after
 * one warm-up message, 430-600k after five); a server that has answered a few messages is past that.
 */
const WARMUP = Math.min(2_000, n);
const WARMUP_MESSAGES = 5;

/**
 * Runs `body(onEvent, count)` WARMUP_MESSAGES times with WARMUP events (not measured: it pays for JIT compilation and first
 * connections on both sides, for every path alike), then with `n` events until it resolves or the time limit
 * passes; reports how far it got.
 */
async function measure(body) {
  if (WARMUP > 0) {
    // The watchdog covers the warm-up too: a path that cannot even finish it reports zero events.
    shared[1] = shared[2] = now();
    shared[3] = shared[1] + timeoutMs;
    for (let i = 0; i < WARMUP_MESSAGES; i++) await body(() => {}, WARMUP);
  }
  const lat = latencyRecorder(n);
  let count = 0;
  const started = now();
  let last = started;
  const deadline = started + timeoutMs;
  shared[1] = started;
  shared[2] = started;
  shared[3] = deadline;
  const onEvent = (sentAt) => {
    count++;
    last = now();
    shared[0] = count;
    shared[2] = last;
    lat.record(sentAt);
    // A client that keeps the event loop busy may never let the time-limit timer below fire: report from
    // here once past the limit, with what it managed so far.
    if (last > deadline) report(partial(count, started, last, lat));
  };
  let timer;
  const limit = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const outcome = await Promise.race([body(onEvent, n).then(() => 'done'), limit]);
  clearTimeout(timer);
  return { ...partial(count, started, last, lat), complete: outcome === 'done' && count === n };
}

function partial(count, started, last, lat) {
  const seconds = (last - started) / 1000;
  return { events: count, seconds, eventsPerSec: count / seconds, ...lat.summary(), complete: false };
}

function report(result) {
  console.log(JSON.stringify({ name, requested: n, ...result }));
  process.exit(0);
}

async function bareWs(mode) {
  const server = await startServer(here('servers/bare-ws.mjs'));
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.info.port}`);
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const result = await measure(
      (onEvent, count) =>
        new Promise((resolve) => {
          const onMessage = (data) => {
            const msg = JSON.parse(String(data));
            if (msg.type === 'done') {
              ws.off('message', onMessage);
              return resolve();
            }
            onEvent(deltaTime(msg.event.delta));
          };
          ws.on('message', onMessage);
          ws.send(JSON.stringify({ n: count, mode }));
        }),
    );
    ws.terminate();
    return result;
  } finally {
    await server.stop();
  }
}

async function agUi() {
  const { HttpAgent } = await import('@ag-ui/client');
  const server = await startServer(here('servers/ag-ui.mjs'));
  try {
    // A fresh agent per stream: an HttpAgent keeps the messages of its previous runs.
    return await measure((onEvent, count) =>
      new HttpAgent({
        url: `http://127.0.0.1:${server.info.port}/run?n=${count}`,
        threadId: 'thread_bench',
      }).runAgent(
        { runId: 'run_bench' },
        {
          onTextMessageContentEvent({ event }) {
            onEvent(deltaTime(event.delta));
          },
        },
      ),
    );
  } finally {
    await server.stop();
  }
}

async function aiSdk() {
  const { DefaultChatTransport, readUIMessageStream } = await import('ai');
  const server = await startServer(here('servers/ai-sdk.mjs'));
  try {
    return await measure(async (onEvent, count) => {
      const transport = new DefaultChatTransport({
        api: `http://127.0.0.1:${server.info.port}/api/chat?n=${count}`,
      });
      const stream = await transport.sendMessages({
        chatId: 'thread_bench',
        messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'go' }] }],
        abortSignal: undefined,
        trigger: 'submit-message',
        messageId: undefined,
      });
      let seen = 0;
      for await (const message of readUIMessageStream({ stream })) {
        const part = message.parts.find((p) => p.type === 'text');
        if (!part) continue;
        // Each yield is the whole message so far; the newest delta is its tail.
        const deltas = part.text.length / DELTA_LENGTH;
        while (seen < deltas) {
          seen++;
          onEvent(deltaTime(part.text.slice(part.text.length - DELTA_LENGTH)));
        }
      }
    });
  } finally {
    await server.stop();
  }
}

const scenarios = {
  'bare-ws-frame': () => bareWs('frame'),
  'bare-ws-corked': () => bareWs('corked'),
  'ag-ui': agUi,
  'ai-sdk': aiSdk,
};
try {
  const mod = scenarios[name] ? null : await import(`./threadline/${name}.mjs`).catch(() => null);
  const run = scenarios[name] ?? mod?.run;
  if (!run) throw new Error(`unknown scenario ${name}`);
  report(await run(n, { measure, startServer, here }));
} catch (err) {
  console.log(JSON.stringify({ name, requested: n, error: String(err?.stack ?? err) }));
  process.exit(1);
}
