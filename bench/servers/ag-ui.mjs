// AG-UI peer: a server that streams AG-UI events as SSE with @ag-ui/encoder, the way its users serve a run.
import { createServer } from 'node:http';
import { EventEncoder } from '@ag-ui/encoder';
import { stampedDelta } from '../lib.mjs';

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const input = JSON.parse(body);
    const n = Number(new URL(req.url, 'http://x').searchParams.get('n'));
    const encoder = new EventEncoder({ accept: req.headers.accept });
    res.writeHead(200, { 'content-type': encoder.getContentType(), 'cache-control': 'no-cache' });
    const { threadId, runId } = input;
    res.write(encoder.encodeSSE({ type: 'RUN_STARTED', threadId, runId }));
    res.write(encoder.encodeSSE({ type: 'TEXT_MESSAGE_START', messageId: 'msg_1', role: 'assistant' }));
    let i = 0;
    const pump = () => {
      while (i < n) {
        i++;
        const ok = res.write(
          encoder.encodeSSE({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'msg_1', delta: stampedDelta() }),
        );
        if (!ok) return res.once('drain', pump);
        if (i % 256 === 0) return setImmediate(pump);
      }
      res.write(encoder.encodeSSE({ type: 'TEXT_MESSAGE_END', messageId: 'msg_1' }));
      res.end(encoder.encodeSSE({ type: 'RUN_FINISHED', threadId, runId }));
    };
    pump();
  });
});
server.listen(0, '127.0.0.1', () => console.log(`READY ${JSON.stringify({ port: server.address().port })}`));
process.on('SIGTERM', () => process.exit(0));
