// The benchmark's browser stand-in, on its own thread (its own core): opens sockets, subscribes, parses and
// validates every server message against the contract, and reports counts, timings and latencies.
import { parentPort } from 'node:worker_threads';
import { ServerMessageSchema } from '@threadline/contracts';
import { WebSocket } from 'ws';

const now = () => performance.timeOrigin + performance.now();

parentPort.on('message', async (job) => {
  try {
    parentPort.postMessage(await run(job));
  } catch (error) {
    parentPort.postMessage({ error: String(error?.stack ?? error) });
  }
});

/**
 * job: { url, headers, connections, subscribe: [[threadId, afterSeq]...] (spread over connections),
 *        expect: number of events, validate: bool, latency: bool, sendAfterOpen?: object }
 */
async function run(job) {
  const sockets = [];
  let count = 0;
  let invalid = 0;
  let firstAt = 0;
  const latencies = job.latency ? [] : null;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const onMessage = (data) => {
    const message = JSON.parse(data.toString());
    if (job.validate && !ServerMessageSchema.safeParse(message).success) invalid++;
    if (message.type !== 'event') return;
    if (count === 0) firstAt = now();
    count++;
    if (latencies && message.event.type === 'TEXT_MESSAGE_CHUNK')
      latencies.push(now() - Number(message.event.delta));
    if (count >= job.expect || (job.untilType && message.event.type === job.untilType)) resolveDone();
  };
  for (let i = 0; i < job.connections; i++) {
    const ws = new WebSocket(job.url, { headers: job.headers, perMessageDeflate: false });
    ws.on('message', onMessage);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    sockets.push(ws);
  }
  const startedAt = now();
  job.subscribe.forEach(([threadId, afterSeq], i) => {
    sockets[i % sockets.length].send(JSON.stringify({ type: 'subscribe', threadId, afterSeq }));
  });
  parentPort.postMessage({ ready: true });
  if (job.expect > 0) await done;
  const endedAt = now();
  for (const ws of sockets) ws.terminate();
  return { count, invalid, startedAt, firstAt, endedAt, latencies };
}
