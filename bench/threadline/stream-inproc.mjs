// Threadline, one process on the API side: in-process agent → relay → SQLite → WebSocket → validating client.
import { measureThreadStream } from '../servers/threadline-client.mjs';

export async function run(_n, { measure, startServer, here }) {
  const relay = await startServer(here('servers/threadline-relay.mjs'), ['inproc', '1']);
  try {
    return await measureThreadStream(relay.info.port, measure);
  } finally {
    await relay.stop();
  }
}
