// Threadline full topology: agent service (HTTP/SSE, its own process) → relay → SQLite → WebSocket → client.
import { randomBytes } from 'node:crypto';
import { connect, streamRun } from '../servers/threadline-client.mjs';

export async function run(n, { measure, startServer, here }) {
  const env = { BENCH_AGENT_SECRET: randomBytes(32).toString('hex') };
  const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['http', '1', agent.info.url], env);
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
    await agent.stop();
  }
}
