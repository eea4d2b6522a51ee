// Threadline, one process on the API side: in-process agent → relay → SQLite → WebSocket → validating client.
import { connect, streamRun } from '../servers/threadline-client.mjs';

export async function run(n, { measure, startServer, here }) {
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['inproc', '1']);
  try {
    const ws = await connect(relay.info.port);
    let outcome = { lastSeq: 0, gaps: 0 };
    let gaps = 0;
    const result = await measure(async (onChunk, count) => {
      outcome = await streamRun(ws, {
        threadId: 'bench_0',
        text: `stream ${count}`,
        onChunk,
        afterSeq: outcome.lastSeq,
      });
      gaps += outcome.gaps;
    });
    ws.terminate();
    return { ...result, seqGaps: gaps };
  } finally {
    await relay.stop();
  }
}
