// Time for a client to reconnect and catch up on a 10,000-event thread (every event stored separately).
import { connect, streamRun } from '../servers/threadline-client.mjs';
import { ServerMessageSchema } from '@threadline/contracts';
import { percentile } from '../lib.mjs';

export async function run(_n, { startServer, here }) {
  const smoke = process.argv.includes('--smoke');
  const events = smoke ? 500 : 10_000;
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['inproc', '1']);
  const times = [];
  let lastSeq = 0;
  try {
    const seed = await connect(relay.info.port);
    ({ lastSeq } = await streamRun(seed, {
      threadId: 'bench_0',
      text: `stream ${events} 0 distinct`,
      onChunk() {},
    }));
    seed.terminate();
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      const ws = await connect(relay.info.port);
      await new Promise((resolve, reject) => {
        ws.on('message', (data) => {
          const message = JSON.parse(data.toString());
          if (!ServerMessageSchema.safeParse(message).success) reject(new Error('invalid message'));
          if (message.type === 'event' && message.event.seq === lastSeq) resolve();
        });
        ws.send(JSON.stringify({ type: 'subscribe', threadId: 'bench_0', afterSeq: 0 }));
      });
      times.push(performance.now() - t0);
      ws.terminate();
    }
  } finally {
    await relay.stop();
  }
  const median = percentile([...times], 50);
  const markdown = `Reconnect (new socket) + subscribe afterSeq 0 + receive and validate all ${lastSeq} stored events, 7 tries: median **${median.toFixed(1)} ms**, min ${Math.min(...times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms (target < 50 ms).`;
  return { storedEvents: lastSeq, medianMs: median, times, markdown };
}
