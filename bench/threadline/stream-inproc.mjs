// Threadline, one process on the API side: in-process agent → relay → SQLite → WebSocket → validating client.
import { connect, streamRun } from '../servers/threadline-client.mjs';

export async function run(n, { measure, startServer, here }) {
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['inproc', '1']);
  try {
    const ws = await connect(relay.info.port);
    let outcome;
    const result = await measure(async (onChunk) => {
      outcome = await streamRun(ws, { threadId: 'bench_0', text: `stream ${n}`, onChunk });
    });
    ws.terminate();
    return { ...result, seqGaps: outcome?.gaps ?? null };
  } finally {
    await relay.stop();
  }
}
