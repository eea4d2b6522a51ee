// Threadline full topology: agent service (HTTP/SSE, its own process) → relay → SQLite → WebSocket → client.
import { randomBytes } from 'node:crypto';
import { connect, streamRun } from '../servers/threadline-client.mjs';

export async function run(n, { measure, startServer, here }) {
  const env = { BENCH_AGENT_SECRET: randomBytes(32).toString('hex') };
  const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['http', '1', agent.info.url], env);
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
    await agent.stop();
  }
}
