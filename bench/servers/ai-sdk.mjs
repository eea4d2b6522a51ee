// Vercel AI SDK peer: a UI message stream served as SSE with pipeUIMessageStreamToResponse.
import { createServer } from 'node:http';
import { createUIMessageStream, pipeUIMessageStreamToResponse } from 'ai';
import { stampedDelta } from '../lib.mjs';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const n = Number(new URL(req.url, 'http://x').searchParams.get('n'));
    const stream = createUIMessageStream({
      async execute({ writer }) {
        writer.write({ type: 'text-start', id: 'msg_1' });
        for (let i = 0; i < n; i++) {
          writer.write({ type: 'text-delta', id: 'msg_1', delta: stampedDelta() });
          if (i % 256 === 255) await new Promise((r) => setImmediate(r));
        }
        writer.write({ type: 'text-end', id: 'msg_1' });
      },
    });
    pipeUIMessageStreamToResponse({ response: res, stream });
  });
});
server.listen(0, '127.0.0.1', () => console.log(`READY ${JSON.stringify({ port: server.address().port })}`));
process.on('SIGTERM', () => process.exit(0));
