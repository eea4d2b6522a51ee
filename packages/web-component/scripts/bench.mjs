// Benchmark: prints the script-tag bundle size and how long <agent-chat> takes to render a 10,000-chunk answer
// in Chromium (plus the longest main-thread task while it streams; the target is under 50 ms).
// Uses the built bundle: run `npm run build -w @threadline/web-component` first.
/* global customElements, document, PerformanceObserver, requestAnimationFrame -- these run inside the page */
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';
import { WebSocketServer } from 'ws';
import { CHROMIUM, launchChromium } from './chromium.mjs';

const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 10_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const bundlePath = new URL('../dist/agent-chat.js', import.meta.url);
if (!existsSync(bundlePath)) {
  console.error('dist/agent-chat.js is missing: run `npm run build -w @threadline/web-component` first');
  process.exit(1);
}
const bundle = readFileSync(bundlePath);
console.log(
  `bundle: dist/agent-chat.js ${bundle.length} bytes, ${gzipSync(bundle, { level: 9 }).length} bytes gzipped (budget 20480)`,
);
if (!existsSync(CHROMIUM)) {
  console.log(`render: skipped, no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
  process.exit(0);
}

const page = `<!doctype html><meta charset="utf-8"><script type="module" src="/agent-chat.js"></script><body></body>`;
const http = createServer((req, res) => {
  if (req.url === '/agent-chat.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
  else res.writeHead(200, { 'content-type': 'text/html' }).end(page);
});
await new Promise((r) => http.listen(0, '127.0.0.1', r));

// A minimal relay stand-in: each `send` starts a run that streams CHUNKS chunks as fast as the socket takes them.
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
await new Promise((r) => wss.once('listening', r));
wss.on('connection', (ws) => {
  let seq = 0;
  let run = 0;
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data));
    if (msg.type !== 'send') return;
    const runId = `r${++run}`;
    const base = () => ({ threadId: msg.threadId, runId, ts: Date.now(), seq: ++seq });
    ws.send(JSON.stringify({ type: 'ack', clientMessageId: msg.clientMessageId, runId }));
    ws.send(JSON.stringify({ type: 'event', event: { ...base(), type: 'RUN_STARTED' } }));
    for (let i = 0; i < CHUNKS; i++) {
      ws.send(
        JSON.stringify({
          type: 'event',
          event: { ...base(), type: 'TEXT_MESSAGE_CHUNK', messageId: `${runId}-m`, delta: `w${i} ` },
        }),
      );
    }
    ws.send(JSON.stringify({ type: 'event', event: { ...base(), type: 'RUN_FINISHED' } }));
  });
});

const browser = await launchChromium();
try {
  const results = [];
  for (let n = 0; n < RUNS; n++) {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${http.address().port}/`);
    await tab.waitForFunction(() => customElements.get('agent-chat'));
    const r = await tab.evaluate(
      async ({ url, chunks }) => {
        const el = document.createElement('agent-chat');
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', 'bench');
        document.body.append(el);
        await new Promise((res) =>
          el.addEventListener('agent-chat:connection', (e) => e.detail.state === 'connected' && res(), {
            once: false,
          }),
        );
        // 'connected' fires inside the socket's open callback: let that task end first, so the figures below
        // cover the stream only (not the connection, nor this setup).
        await new Promise((res) => setTimeout(res, 0));
        const longTasks = [];
        let longestScript = 0;
        let longestInvoker = '';
        new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration))).observe({
          type: 'longtask',
        });
        // Long animation frames say which script ran inside a slow frame; on a loaded machine a frame can be
        // slow with no script of ours in it, so this separates our work from the machine's.
        try {
          new PerformanceObserver((l) =>
            l.getEntries().forEach((e) =>
              e.scripts.forEach((sc) => {
                if (sc.duration > longestScript) [longestScript, longestInvoker] = [sc.duration, sc.invoker];
              }),
            ),
          ).observe({ type: 'long-animation-frame' });
        } catch {
          // long-animation-frame is Chromium 123+; without it only the long-task figure is printed
        }
        const t0 = performance.now();
        el.send('go');
        await new Promise((res) => el.addEventListener('agent-chat:run-finished', res, { once: true }));
        const expectedLength = Array.from({ length: chunks }, (_, i) => `w${i} `)
          .join('')
          .trim().length;
        // Done when the text is on screen, not just received.
        for (;;) {
          await new Promise((res) => requestAnimationFrame(res));
          const div = el.shadowRoot.querySelector('[part~="assistant-message"] > div');
          if (div && div.textContent.length >= expectedLength) break;
        }
        return {
          ms: performance.now() - t0,
          longest: Math.max(0, ...longTasks),
          longestScript,
          longestInvoker,
        };
      },
      { url: `ws://127.0.0.1:${wss.address().port}`, chunks: CHUNKS },
    );
    results.push(r);
    await tab.close();
  }
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  const longest = Math.max(...results.map((r) => r.longest));
  console.log(
    `render: ${CHUNKS} chunks in ${median.toFixed(0)} ms median of ${RUNS} (${ms.map((m) => m.toFixed(0)).join(', ')})`,
  );
  const worst = results.reduce((a, b) => (b.longestScript > a.longestScript ? b : a));
  const script = worst.longestScript;
  console.log(`render: longest main-thread task while streaming ${longest.toFixed(0)} ms (target < 50 ms)`);
  console.log(
    `render: longest single script callback inside slow frames ${script.toFixed(0)} ms (${worst.longestInvoker || 'none'}; wall-clock, so a loaded machine inflates it)`,
  );
} finally {
  await browser.close();
  for (const c of wss.clients) c.terminate();
  wss.close();
  http.close();
}
