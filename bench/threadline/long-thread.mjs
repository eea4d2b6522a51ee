// Long threads (issue 23): the real stack (relay + SQLite + tools-kit router in one process, the agent runner
// with the demo model streaming without delay in another, over HTTP/SSE) on threads whose agent history holds
// 0, 100, 1,000 and 10,000 items.
// - first text: a browser-like client's `send` → the run's first TEXT_MESSAGE_CHUNK, p50/p99 over sequential
//   runs; the same through `POST /runs` at the agent directly (no relay); "host adds" is the difference of p50s;
// - agent CPU per run: the agent process's CPU time over those runs ÷ runs;
// - runs/s: 20 conversations at once, each sending its next message when its run ends, on short threads and on
//   1,000-item threads.
import { BUILTIN_TOOLS, createTokenIssuer } from '@threadline/tools-kit';
import { connect } from '../servers/threadline-client.mjs';
import { percentile } from '../lib.mjs';

const SECRET = 'bench-agent-secret-that-is-long-enough-0123456789';
const TOOLS_SECRET = 'bench-tools-secret-that-is-long-enough-0123';

export async function run(_n, { startServer, here }) {
  const smoke = process.argv.includes('--smoke');
  // BENCH_LONG_SIZES (e.g. "0") and BENCH_LONG_RUNS narrow the row for A/B runs; BENCH_LONG_THROUGHPUT=0 skips
  // the runs/s part. The report runs the defaults.
  const sizes = process.env.BENCH_LONG_SIZES
    ? process.env.BENCH_LONG_SIZES.split(',').map(Number)
    : smoke
      ? [0, 100]
      : [0, 100, 1_000, 10_000];
  const runs = Number(process.env.BENCH_LONG_RUNS ?? (smoke ? 3 : 40));
  const rounds = smoke ? 1 : 4;
  const runsPerRound = Math.max(1, Math.round(runs / rounds));
  const warmup = smoke ? 2 : 10;
  const concurrent = 20;
  const seconds = smoke ? 1 : 8;
  const env = { BENCH_AGENT_SECRET: SECRET };
  const agent = await startServer(here('servers/long-thread-agent.mjs'), [], env);
  const seed = [
    ...sizes.map((items) => ({ prefix: `h${items}`, threads: 2, items })),
    { prefix: 'short', threads: concurrent, items: 0 },
    ...(smoke || process.env.BENCH_LONG_THROUGHPUT === '0'
      ? []
      : [{ prefix: 'long', threads: concurrent, items: 1_000 }]),
  ];
  const api = await startServer(
    here('servers/long-thread-api.mjs'),
    [agent.info.url, JSON.stringify(seed)],
    env,
  );
  const tokens = createTokenIssuer({ secret: TOOLS_SECRET, issuer: 'bench' });
  const toolsBaseUrl = `http://127.0.0.1:${api.info.port}`;
  const agentCpu = async () => {
    const { user, system } = await (await fetch(`http://127.0.0.1:${agent.info.cpuPort}/cpu`)).json();
    return (user + system) / 1000;
  };
  const ws = await connect(api.info.port);
  let seq = 0;
  const subscriptions = new WeakMap();

  /** One run through the relay; resolves with ms from send to the first text chunk, at its terminal event. */
  const viaHost = (socket, threadId) =>
    new Promise((resolve, reject) => {
      let first;
      const t0 = performance.now();
      const onMessage = (data) => {
        const m = JSON.parse(data.toString());
        if (m.type === 'error') return reject(new Error(`${m.code}: ${m.message}`));
        if (m.type !== 'event' || m.event.threadId !== threadId) return;
        if (m.event.type === 'TEXT_MESSAGE_CHUNK' && first === undefined) first = performance.now() - t0;
        if (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR') {
          socket.off('message', onMessage);
          if (m.event.type === 'RUN_ERROR')
            return reject(new Error(`RUN_ERROR ${m.event.code}: ${m.event.message}`));
          resolve(first);
        }
      };
      socket.on('message', onMessage);
      // Each socket subscribes to a thread once, before its first message (the seeded threads have no events).
      const subscribed = subscriptions.get(socket) ?? new Set();
      subscriptions.set(socket, subscribed);
      if (!subscribed.has(threadId)) {
        subscribed.add(threadId);
        socket.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq: 0 }));
      }
      socket.send(
        JSON.stringify({ type: 'send', threadId, text: 'hello there', clientMessageId: `c${++seq}` }),
      );
    });
  /** One run at the agent service directly (POST /runs, SSE back); ms to the first text chunk. */
  const direct = async (threadId) => {
    const runId = `direct_${++seq}`;
    const token = await tokens.issue({ userId: 'bench_user', threadId, runId, tools: TOOL_NAMES });
    const t0 = performance.now();
    const res = await fetch(`${agent.info.url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        threadId,
        runId,
        user: { id: 'bench_user' },
        message: 'hello there',
        tools: { baseUrl: toolsBaseUrl, token },
      }),
    });
    let first;
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      text += decoder.decode(chunk, { stream: true });
      if (first === undefined && text.includes('"TEXT_MESSAGE_CHUNK"')) first = performance.now() - t0;
    }
    if (!text.includes('"RUN_FINISHED"')) throw new Error(`direct run did not finish: ${text.slice(-300)}`);
    return first;
  };

  const rows = [];
  try {
    // Both processes compile their per-run code first, on a thread of its own, so the first size measured does
    // not pay for it.
    for (let i = 0; i < warmup * 3; i++) await viaHost(ws, 'short_0');
    for (let i = 0; i < warmup * 3; i++) await direct('short_1');
    // The sizes are compared with each other, so each size's runs are spread over the whole measurement:
    // `rounds` rounds of runs/rounds per size, in an order that alternates (0 → 10,000, then 10,000 → 0).
    // Whatever drifts meanwhile (the machine's load, the growing SQLite file, V8) lands on every size alike
    // instead of on the last one measured.
    const perSize = new Map(sizes.map((items) => [items, { host: [], direct: [], cpu: 0 }]));
    for (const items of sizes) {
      for (let i = 0; i < warmup; i++) await viaHost(ws, `h${items}_0`);
      for (let i = 0; i < warmup; i++) await direct(`h${items}_1`);
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? sizes : [...sizes].reverse();
      for (const items of order) {
        const m = perSize.get(items);
        const cpu0 = await agentCpu();
        for (let i = 0; i < runsPerRound; i++) m.host.push(await viaHost(ws, `h${items}_0`));
        m.cpu += (await agentCpu()) - cpu0;
        for (let i = 0; i < runsPerRound; i++) m.direct.push(await direct(`h${items}_1`));
      }
    }
    for (const items of sizes) {
      const { host, direct: agentOnly, cpu } = perSize.get(items);
      const p50 = percentile([...host], 50);
      const directP50 = percentile([...agentOnly], 50);
      rows.push({
        items,
        p50,
        p99: percentile([...host], 99),
        directP50,
        hostAdds: p50 - directP50,
        cpuPerRun: cpu / host.length,
      });
    }
    const throughput = {};
    const prefixes = process.env.BENCH_LONG_THROUGHPUT === '0' ? [] : smoke ? ['short'] : ['short', 'long'];
    for (const prefix of prefixes) {
      const sockets = await Promise.all(Array.from({ length: concurrent }, () => connect(api.info.port)));
      for (let i = 0; i < concurrent; i++) await viaHost(sockets[i], `${prefix}_${i}`); // warm-up, in turn
      let done = 0;
      const end = performance.now() + seconds * 1000;
      const t0 = performance.now();
      await Promise.all(
        sockets.map(async (socket, i) => {
          while (performance.now() < end) {
            await viaHost(socket, `${prefix}_${i}`);
            done++;
          }
        }),
      );
      throughput[prefix] = done / ((performance.now() - t0) / 1000);
      for (const s of sockets) s.terminate();
    }
    const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
    let markdown = `Real stack, demo model without delay; ${runsPerRound * rounds} sequential runs per size after ${warmup} warm-up runs, in ${rounds} rounds that alternate the order of the sizes. First text = send → first TEXT_MESSAGE_CHUNK at the client; direct = POST /runs at the agent → first chunk; host adds = difference of the p50s; agent CPU = the agent process's CPU time ÷ runs.\n\n`;
    markdown +=
      '| history items | first text p50 ms | p99 ms | direct p50 ms | host adds ms | agent CPU ms/run |\n|---:|---:|---:|---:|---:|---:|\n';
    for (const r of rows)
      markdown += `| ${r.items.toLocaleString('en')} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.directP50)} | ${f(r.hostAdds)} | ${f(r.cpuPerRun)} |\n`;
    markdown += `\n${concurrent} conversations at once for ${seconds} s: ${Object.entries(throughput)
      .map(
        ([k, v]) => `**${v.toFixed(1)} runs/s** on ${k === 'short' ? 'short threads' : '1,000-item threads'}`,
      )
      .join(', ')}.`;
    return { rows, throughput, markdown };
  } finally {
    ws.terminate();
    await api.stop();
    await agent.stop();
  }
}

// What the relay puts in a run's token: every tool the router has (built-ins only here).
const TOOL_NAMES = Object.values(BUILTIN_TOOLS);
