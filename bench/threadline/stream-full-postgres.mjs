// Threadline full topology on PostgreSQL: agent service (HTTP/SSE, its own process) → relay → PostgreSQL (a
// throwaway server on loopback, fsync and synchronous_commit on) → WebSocket → client. The same measurement as
// stream-full (SQLite); skipped when PostgreSQL is not installed.
import { randomBytes } from 'node:crypto';
import { startEngines } from '../lib.mjs';
import { measureThreadStream } from '../servers/threadline-client.mjs';

export async function run(_n, { measure, startServer, here }) {
  const engines = await startEngines({ postgres: true });
  if (engines.skipped) return { skipped: engines.skipped };
  const env = {
    BENCH_AGENT_SECRET: randomBytes(32).toString('hex'),
    BENCH_STORE: 'postgres',
    BENCH_PG_URL: engines.pg.url,
  };
  try {
    const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
    const relay = await startServer(here('servers/threadline-relay.mjs'), ['http', '1', agent.info.url], env);
    try {
      return await measureThreadStream(relay.info.port, measure);
    } finally {
      await relay.stop();
      await agent.stop();
    }
  } finally {
    await engines.stop();
  }
}
