// The agent service of the long-thread scenario: the real runner (tool manifest, history through the API's
// session tools, the SDK loop) with the offline demo model streaming without delay, over HTTP/SSE.
import { createServer } from 'node:http';
import { createDemoModelProvider, createRunner, serveAgent } from '@threadline/agent-runner';

const runner = createRunner({
  modelProvider: createDemoModelProvider({ delayMs: 0 }),
  model: 'demo',
  tracing: false,
  logger: { info() {}, warn: console.error, error: console.error },
});
const served = await serveAgent(runner, {
  auth: { sharedSecret: process.env.BENCH_AGENT_SECRET },
  port: 0,
  host: '127.0.0.1',
  doctor: false,
  maxConcurrentRuns: 1_000,
  logger: { info() {}, log() {}, warn: console.error, error: console.error },
});
// GET /cpu on a side port: this process's CPU time in µs (the bench divides it by the runs it made).
const side = createServer((_req, res) => res.end(JSON.stringify(process.cpuUsage())));
await new Promise((resolve) => side.listen(0, '127.0.0.1', resolve));
console.log(`READY ${JSON.stringify({ url: served.url, cpuPort: side.address().port, pid: process.pid })}`);
process.on('SIGTERM', async () => {
  await served.close({ deadlineMs: 1_000 });
  process.exit(0);
});
