// Two relay instances on one PostgreSQL with Redis fan-out (throwaway servers on loopback), one agent service:
// 100 runs stream through instance A (50 events/s each, started together) while every thread has one
// subscriber on A (the socket that sent) and one on B, whose events reach it through Redis. Both sides measure
// the same chunks' added latency; seqs are checked on both. Skipped when PostgreSQL or Redis is not installed.
import { randomBytes } from 'node:crypto';
import { latencyRecorder, startEngines } from '../lib.mjs';
import { connect, streamRun } from '../servers/threadline-client.mjs';
import { DELTA_LENGTH, deltaTime } from '../lib.mjs';

/** Follows `threadId` from `afterSeq` on `ws` (subscribe only) until a RUN_FINISHED; counts seq gaps. */
function followRun(ws, { threadId, afterSeq, onChunk }) {
  return new Promise((resolve, reject) => {
    let lastSeq = afterSeq;
    let gaps = 0;
    const onMessage = (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'error') return reject(new Error(`${message.code}: ${message.message}`));
      if (message.type !== 'event' || message.event.threadId !== threadId) return;
      const event = message.event;
      if (event.seq !== lastSeq + 1) gaps++;
      lastSeq = event.seq;
      if (event.type === 'TEXT_MESSAGE_CHUNK') {
        for (let i = 0; i + DELTA_LENGTH <= event.delta.length; i += DELTA_LENGTH)
          onChunk(deltaTime(event.delta.slice(i, i + DELTA_LENGTH)));
      } else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
        ws.off('message', onMessage);
        if (event.type === 'RUN_ERROR') return reject(new Error(`RUN_ERROR ${event.code}`));
        resolve({ lastSeq, gaps });
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq }));
  });
}

export async function run(_n, { startServer, here }) {
  const smoke = process.argv.includes('--smoke');
  const runs = smoke ? 5 : 100;
  const perRun = smoke ? 25 : 200; // 4 s at 50 events/s
  const engines = await startEngines({ postgres: true, redis: true });
  if (engines.skipped) return { skipped: engines.skipped };
  const env = {
    BENCH_AGENT_SECRET: randomBytes(32).toString('hex'),
    BENCH_STORE: 'postgres',
    BENCH_PG_URL: engines.pg.url,
    BENCH_REDIS_URL: engines.redis.url,
  };
  const servers = [];
  try {
    const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
    servers.push(agent);
    const a = await startServer(
      here('servers/threadline-relay.mjs'),
      ['http', String(runs), agent.info.url],
      {
        ...env,
        BENCH_INSTANCE_ID: 'bench-a',
      },
    );
    servers.push(a);
    const b = await startServer(
      here('servers/threadline-relay.mjs'),
      ['http', String(runs), agent.info.url],
      {
        ...env,
        BENCH_INSTANCE_ID: 'bench-b',
      },
    );
    servers.push(b);
    const onA = await Promise.all(Array.from({ length: runs }, () => connect(a.info.port)));
    const onB = await Promise.all(Array.from({ length: runs }, () => connect(b.info.port)));
    const thread = (i) => `bench_${i}`;
    // A first short run per thread, followed on B: once B has its RUN_FINISHED, B's Redis channel for the
    // thread is live, so the measured run reaches B through Redis, not through a replay from the store.
    const primed = await Promise.all(
      onA.map((ws, i) =>
        Promise.all([
          followRun(onB[i], { threadId: thread(i), afterSeq: 0, onChunk() {} }),
          streamRun(ws, { threadId: thread(i), text: 'stream 1', onChunk() {} }),
        ]),
      ),
    );
    const same = latencyRecorder(runs * perRun);
    const cross = latencyRecorder(runs * perRun);
    const seen = { same: 0, cross: 0 };
    let gaps = 0;
    let failed = 0;
    await Promise.all(
      onA.map((ws, i) => {
        const afterSeq = primed[i][1].lastSeq;
        return Promise.all([
          followRun(onB[i], {
            threadId: thread(i),
            afterSeq,
            onChunk: (sentAt) => (seen.cross++, cross.record(sentAt)),
          }),
          streamRun(ws, {
            threadId: thread(i),
            text: `stream ${perRun} 50`,
            afterSeq,
            onChunk: (sentAt) => (seen.same++, same.record(sentAt)),
          }),
        ]).then(
          ([x, y]) => (gaps += x.gaps + y.gaps),
          () => failed++,
        );
      }),
    );
    for (const ws of [...onA, ...onB]) ws.terminate();
    const s = same.summary();
    const c = cross.summary();
    const lost = 2 * runs * perRun - seen.same - seen.cross;
    const target = 2 * s.p99 + 2;
    const met = c.p99 <= target && lost === 0 && gaps === 0 && failed === 0;
    const markdown =
      `Two relay instances (A and B) on one PostgreSQL (fsync on) with Redis fan-out, one agent service. ${runs} runs stream through A at once (${perRun} chunks at 50 events/s each); every thread has one WebSocket subscriber on A (the one that sent) and one on B, which gets the events through Redis. Added latency of the same chunks on both sides:\n\n` +
      `| subscriber | p50 ms | p99 ms | chunks received |\n|---|---:|---:|---:|\n` +
      `| on the owning instance (A) | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${seen.same} of ${runs * perRun} |\n` +
      `| on the other instance (B, through Redis) | ${c.p50.toFixed(2)} | ${c.p99.toFixed(2)} | ${seen.cross} of ${runs * perRun} |\n\n` +
      `Target: cross-instance p99 ≤ 2 × same-instance p99 + 2 ms = ${target.toFixed(2)} ms: **${met ? 'met' : 'missed'}** (lost ${lost}, seq gaps ${gaps}, failed runs ${failed}).\n`;
    return { runs, perRun, same: s, cross: c, lost, gaps, failed, target, met, markdown };
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await engines.stop();
  }
}
