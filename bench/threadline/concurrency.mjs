// How many simultaneous streaming runs (each 50 events/s) the full topology holds with p99 added latency under
// 50 ms and no lost or duplicated event (checked by seq), stepping up the number of runs.
import { randomBytes } from 'node:crypto';
import { connect, streamRun } from '../servers/threadline-client.mjs';
import { latencyRecorder } from '../lib.mjs';

// For profiling: BENCH_LEVELS=1000 picks levels, BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" passes
// node flags to the relay process, BENCH_AGENT_NODE_ARGS to the agent service.
export async function run(_n, { startServer, here }) {
  const smoke = process.argv.includes('--smoke');
  const levels = smoke
    ? [5]
    : process.env.BENCH_LEVELS
      ? process.env.BENCH_LEVELS.split(',').map(Number)
      : [10, 100, 300, 1_000];
  const perRun = smoke ? 25 : 200; // 4 s at 50 events/s
  const totalThreads = levels.reduce((a, b) => a + b, 0);
  const env = { BENCH_AGENT_SECRET: randomBytes(32).toString('hex') };
  const agent = await startServer(
    here('servers/threadline-agent.mjs'),
    [],
    env,
    process.env.BENCH_AGENT_NODE_ARGS ? process.env.BENCH_AGENT_NODE_ARGS.split(' ') : [],
  );
  const relay = await startServer(
    here('servers/threadline-relay.mjs'),
    ['http', String(totalThreads), agent.info.url],
    env,
    process.env.BENCH_RELAY_NODE_ARGS ? process.env.BENCH_RELAY_NODE_ARGS.split(' ') : [],
  );
  const rows = [];
  let offset = 0;
  try {
    for (const level of levels) {
      const sockets = await Promise.all(Array.from({ length: level }, () => connect(relay.info.port)));
      const lat = latencyRecorder(level * perRun);
      let chunks = 0;
      let gaps = 0;
      let failed = 0;
      const started = performance.now();
      await Promise.all(
        sockets.map((ws, i) =>
          streamRun(ws, {
            threadId: `bench_${offset + i}`,
            text: `stream ${perRun} 50`,
            onChunk: (sentAt) => {
              chunks++;
              lat.record(sentAt);
            },
          }).then(
            (r) => (gaps += r.gaps),
            () => failed++,
          ),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      for (const ws of sockets) ws.terminate();
      offset += level;
      const { p50, p99 } = lat.summary();
      const lost = level * perRun - chunks;
      rows.push({
        runs: level,
        p50,
        p99,
        lost,
        gaps,
        failed,
        seconds,
        ok: p99 < 50 && lost === 0 && gaps === 0 && failed === 0,
      });
    }
  } finally {
    await relay.stop();
    await agent.stop();
  }
  const held = Math.max(0, ...rows.filter((r) => r.ok).map((r) => r.runs));
  let markdown = `Full topology, each run streaming ${perRun} chunks at 50 events/s, one WebSocket per run.\n\n| runs | p50 ms | p99 ms | lost | seq gaps | failed runs | within 50 ms, nothing lost |\n|---:|---:|---:|---:|---:|---:|---|\n`;
  for (const r of rows)
    markdown += `| ${r.runs} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.lost} | ${r.gaps} | ${r.failed} | ${r.ok ? 'yes' : '**no**'} |\n`;
  markdown += `\nHeld: **${held}** simultaneous runs (largest level tried: ${levels.at(-1)}).`;
  return { rows, held, markdown };
}
