// The floor of the full topology on this machine: the relay replaced by a forwarder that does nothing but move
// bytes. Each WebSocket message `{"threadId","text"}` starts a run on the same agent service (one HTTP/1.1
// connection per run, as the relay has); each SSE event of its answer goes out as one WebSocket frame
// `{"type":"event","event":<the agent's JSON as it came>}` at once: no parsing, no validation, no seq, no store,
// no fan-out. What it costs is the sockets and the three processes sharing two cores.
// Usage: node forwarder.mjs <agentUrl>   (BENCH_AGENT_SECRET: the agent service's shared secret)
import { Agent, createServer, request } from 'node:http';
import { WebSocketServer } from 'ws';

const [agentUrl] = process.argv.slice(2);
const target = new URL('/runs', agentUrl);
const secret = process.env.BENCH_AGENT_SECRET;
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
const server = createServer((req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
let runs = 0;

wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const { threadId, text } = JSON.parse(String(data));
    const body = JSON.stringify({
      threadId,
      runId: `fwd_${++runs}`,
      user: { id: 'bench_user' },
      message: text,
      tools: { baseUrl: 'http://127.0.0.1:1', token: 'bench-token' },
    });
    const req = request(target, {
      method: 'POST',
      agent,
      headers: {
        authorization: `Bearer ${secret}`,
        'content-type': 'application/json',
        accept: 'text/event-stream',
      },
    });
    req.on('response', (res) => {
      res.setEncoding('utf8');
      let carry = '';
      res.on('data', (text) => {
        // SSE framing only: events end with a blank line; a chunk may end mid-event.
        carry += text;
        let end;
        while ((end = carry.indexOf('\n\n')) !== -1) {
          const frame = carry.slice(0, end);
          carry = carry.slice(end + 2);
          if (frame.startsWith('data: ')) ws.send(`{"type":"event","event":${frame.slice(6)}}`);
        }
      });
      res.on('error', () => ws.terminate());
    });
    req.on('error', () => ws.terminate());
    req.end(body);
  });
});

server.listen(0, '127.0.0.1', () =>
  console.log(`READY ${JSON.stringify({ port: server.address().port, pid: process.pid })}`),
);
process.on('SIGTERM', () => {
  for (const ws of wss.clients) ws.terminate();
  agent.destroy();
  server.close();
  process.exit(0);
});
