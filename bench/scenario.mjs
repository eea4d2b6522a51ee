// Runs one streaming scenario's client in this process against its server(s) in child processes, and prints
// one JSON line: { name, events, seconds, eventsPerSec, p50, p99, complete }.
// Usage: node bench/scenario.mjs <scenario> <events> [timeoutSeconds]
import { WebSocket } from 'ws';
import { DELTA_LENGTH, deltaTime, latencyRecorder, now, startServer } from './lib.mjs';

const [name, nArg, timeoutArg] = process.argv.slice(2);
const n = Number(nArg);
const timeoutMs = Number(timeoutArg ?? 120) * 1000;
const here = (f) => new URL(f, import.meta.url).pathname;

/** Events of the warm-up stream every scenario runs first, in the same processes, before it is measured. */
const WARMUP = Math.min(2_000, n);

/**
 * Runs `body(onEvent, count)` once with WARMUP events (not measured: it pays for JIT compilation and first
 * connections on both sides, for every path alike), then with `n` events until it resolves or the time limit
 * passes; reports how far it got.
 */
async function measure(body) {
  if (WARMUP > 0) await body(() => {}, WARMUP);
  const lat = latencyRecorder(n);
  let count = 0;
  const started = now();
  let last = started;
  const onEvent = (sentAt) => {
    count++;
    last = now();
    lat.record(sentAt);
  };
  let timer;
  const limit = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const outcome = await Promise.race([body(onEvent, n).then(() => 'done'), limit]);
  clearTimeout(timer);
  const seconds = (last - started) / 1000;
  return {
    events: count,
    seconds,
    eventsPerSec: count / seconds,
    ...lat.summary(),
    complete: outcome === 'done' && count === n,
  };
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
    const agent = new HttpAgent({
      url: `http://127.0.0.1:${server.info.port}/run?n=${n}`,
      threadId: 'thread_bench',
    });
    return await measure((onEvent) =>
      agent.runAgent(
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
    const transport = new DefaultChatTransport({
      api: `http://127.0.0.1:${server.info.port}/api/chat?n=${n}`,
    });
    return await measure(async (onEvent) => {
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
  const result = await run(n, { measure, startServer, here });
  console.log(JSON.stringify({ name, requested: n, ...result }));
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ name, requested: n, error: String(err?.stack ?? err) }));
  process.exit(1);
}
