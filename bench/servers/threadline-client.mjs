// The browser stand-in for Threadline paths: a WebSocket client that parses and validates every server message
// against the contract, subscribes to a thread, sends one message and reports each chunk's latency.
import { ServerMessageSchema } from '@threadline/contracts';
import { WebSocket } from 'ws';
import { DELTA_LENGTH, deltaTime } from '../lib.mjs';

export async function connect(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, {
    headers: { origin: 'http://127.0.0.1' },
    perMessageDeflate: false,
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/**
 * Streams one run on `threadId`: resolves when its RUN_FINISHED arrives. `onChunk(sentAt)` is called once per
 * agent chunk (a stored chunk may hold several coalesced agent chunks; each carries its own time stamp).
 * Returns the seqs seen, to check for gaps and duplicates.
 */
export function streamRun(ws, { threadId, text, onChunk, afterSeq = 0, validate = true }) {
  return new Promise((resolve, reject) => {
    let lastSeq = afterSeq;
    let gaps = 0;
    const onMessage = (data) => {
      const message = JSON.parse(data.toString());
      if (validate && !ServerMessageSchema.safeParse(message).success)
        return reject(new Error(`invalid message ${data}`));
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
        if (event.type === 'RUN_ERROR') return reject(new Error(`RUN_ERROR ${event.code}: ${event.message}`));
        resolve({ lastSeq, gaps });
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq }));
    ws.send(JSON.stringify({ type: 'send', threadId, text, clientMessageId: `c_${threadId}_${Date.now()}` }));
  });
}

/**
 * The client side of forwarder.mjs (the floor of the concurrency test): starts one run on `threadId` and
 * resolves at its RUN_FINISHED. Frames carry the agent's events as they came (no seq to check: lost chunks show
 * in the count), and are only parsed, not validated.
 */
export function streamForwarded(ws, { threadId, text, onChunk }) {
  return new Promise((resolve, reject) => {
    const onMessage = (data) => {
      const event = JSON.parse(data.toString()).event;
      if (event.type === 'TEXT_MESSAGE_CHUNK') onChunk(deltaTime(event.delta));
      else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
        ws.off('message', onMessage);
        if (event.type === 'RUN_ERROR') return reject(new Error(`RUN_ERROR ${event.code}: ${event.message}`));
        resolve({ lastSeq: 0, gaps: 0 });
      }
    };
    ws.on('message', onMessage);
    ws.once('close', () => reject(new Error('the forwarder closed the socket')));
    ws.send(JSON.stringify({ threadId, text }));
  });
}

/**
 * Measures streaming on one thread through a relay on `port`: `measure` runs the warm-up and the measured
 * stream (each a new run on the same thread, resuming after the previous one); seq gaps are added up.
 */
export async function measureThreadStream(port, measure) {
  const ws = await connect(port);
  try {
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
    return { ...result, seqGaps: gaps };
  } finally {
    ws.terminate();
  }
}
