// Memory per idle subscribed WebSocket (relay vs a bare ws server) and per active run, from the server
// process's RSS after a full GC, before and after opening N of them.
import { connect } from '../servers/threadline-client.mjs';
import { serverRss } from '../lib.mjs';
import { WebSocket } from 'ws';

const settle = () => new Promise((r) => setTimeout(r, 300));

async function openBare(port, n) {
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    sockets.push(ws);
  }
  return sockets;
}

export async function run(_n, { startServer, here }) {
  const smoke = process.argv.includes('--smoke');
  const n = smoke ? 50 : 2_000;
  const runs = smoke ? 10 : 200;
  const gcArgs = ['--expose-gc'];

  const bare = await startServer(here('servers/bare-ws.mjs'), [], {}, gcArgs);
  let barePerSocket;
  try {
    const before = await serverRss(bare.info.port);
    const sockets = await openBare(bare.info.port, n);
    await settle();
    barePerSocket = ((await serverRss(bare.info.port)) - before) / n;
    for (const ws of sockets) ws.terminate();
  } finally {
    await bare.stop();
  }

  const relay = await startServer(
    here('servers/threadline-relay.mjs'),
    ['inproc', String(n + runs)],
    {},
    gcArgs,
  );
  let relayPerSocket;
  let perRun;
  try {
    const port = relay.info.port;
    // Warm up the code paths once so the figures are per socket, not JIT and first-use costs.
    const warm = await connect(port);
    warm.send(JSON.stringify({ type: 'subscribe', threadId: `bench_${n + runs - 1}`, afterSeq: 0 }));
    await settle();
    const before = await serverRss(port);
    const sockets = [];
    for (let i = 0; i < n; i++) {
      const ws = await connect(port);
      ws.send(JSON.stringify({ type: 'subscribe', threadId: `bench_${i}`, afterSeq: 0 }));
      sockets.push(ws);
    }
    await settle();
    relayPerSocket = ((await serverRss(port)) - before) / n;

    // Active runs: slow streams (1 event/s) so they stay open while measured.
    const beforeRuns = await serverRss(port);
    for (let i = 0; i < runs; i++) {
      sockets[i].send(
        JSON.stringify({
          type: 'send',
          threadId: `bench_${n + i}`,
          text: 'stream 1000 1',
          clientMessageId: `m${i}`,
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 1_500));
    perRun = ((await serverRss(port)) - beforeRuns) / runs;
    for (const ws of sockets) ws.terminate();
    warm.terminate();
  } finally {
    await relay.stop();
  }
  const kb = (b) => (b / 1024).toFixed(1);
  const ratio = relayPerSocket / barePerSocket;
  const markdown =
    `| measure | per item | note |\n|---|---:|---|\n` +
    `| bare \`ws\` server, idle socket | ${kb(barePerSocket)} KB | ${n} sockets |\n` +
    `| relay, idle subscribed socket | ${kb(relayPerSocket)} KB | ${ratio.toFixed(2)}× bare (target ≤ 2×) |\n` +
    `| relay, active streaming run (in-process agent) | ${kb(perRun)} KB | ${runs} runs |\n`;
  return {
    barePerSocketBytes: barePerSocket,
    relayPerSocketBytes: relayPerSocket,
    ratio,
    perRunBytes: perRun,
    markdown,
  };
}
