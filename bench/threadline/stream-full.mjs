// Threadline full topology: agent service (HTTP/SSE, its own process) → relay → SQLite → WebSocket → client.
import { randomBytes } from 'node:crypto';
import { measureThreadStream } from '../servers/threadline-client.mjs';

export async function run(_n, { measure, startServer, here }) {
  const env = { BENCH_AGENT_SECRET: randomBytes(32).toString('hex') };
  const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['http', '1', agent.info.url], env);
  try {
    return await measureThreadStream(relay.info.port, measure);
  } finally {
    await relay.stop();
    await agent.stop();
  }
}
