// The agent service of the full topology: @threadline/agent-runner's HTTP service around the synthetic runner.
import { serveAgent } from '@threadline/agent-runner';
import { syntheticRunner } from './synthetic-runner.mjs';

const secret = process.env.BENCH_AGENT_SECRET;
const served = await serveAgent(syntheticRunner, {
  auth: { sharedSecret: secret },
  port: 0,
  host: '127.0.0.1',
  doctor: false,
  maxConcurrentRuns: 2_000,
  logger: { info() {}, log() {}, warn: console.error, error: console.error },
});
console.log(`READY ${JSON.stringify({ url: served.url })}`);
process.on('SIGTERM', async () => {
  await served.close({ deadlineMs: 1_000 });
  process.exit(0);
});
