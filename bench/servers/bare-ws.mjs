// The physical limit: a bare `ws` server streaming ~150-byte JSON events, one send per frame or corked batches.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { stampedDelta } from '../lib.mjs';

const server = createServer((req, res) => {
  // GET /mem: RSS after a full GC, for the memory comparison.
  globalThis.gc?.();
  res.end(String(process.memoryUsage().rss));
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const { n, mode } = JSON.parse(String(data));
    let seq = 0;
    const frame = () =>
      JSON.stringify({
        type: 'event',
        event: {
          type: 'TEXT_MESSAGE_CHUNK',
          threadId: 'thread_bench',
          runId: 'run_bench',
          messageId: 'msg_1',
          delta: stampedDelta(),
          ts: Date.now(),
          seq: ++seq,
        },
      });
    const batch = mode === 'corked' ? 256 : 1;
    const pump = () => {
      // Yield to the event loop between batches so sends interleave with socket writes, like a live stream.
      const socket = ws._socket;
      if (batch > 1) socket.cork();
      for (let i = 0; i < batch && seq < n; i++) ws.send(frame());
      if (batch > 1) socket.uncork();
      if (seq < n) {
        if (ws.bufferedAmount > 8 * 1024 * 1024) ws._socket.once('drain', pump);
        else setImmediate(pump);
      } else ws.send('{"type":"done"}');
    };
    pump();
  });
});
server.listen(0, '127.0.0.1', () => console.log(`READY ${JSON.stringify({ port: server.address().port })}`));
process.on('SIGTERM', () => process.exit(0));
