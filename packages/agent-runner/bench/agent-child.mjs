// The agent service under benchmark, in its own process (one core): serveAgent + createRunner from the built
// package, pointed at the fake OpenAI server whose base URL comes from the parent.
import { OpenAIProvider } from '@openai/agents';
import OpenAI from 'openai';
import { createRunner, serveAgent } from '@threadline/agent-runner';

const runner = createRunner({
  modelProvider: new OpenAIProvider({
    openAIClient: new OpenAI({ apiKey: 'sk-bench', baseURL: process.env.FAKE_BASE_URL, maxRetries: 0 }),
  }),
  model: 'fake-model',
  tracing: false,
  logger: { info() {}, warn() {}, error: console.error },
});
const served = await serveAgent(runner, {
  auth: { sharedSecret: process.env.BENCH_SECRET },
  doctor: false,
  maxConcurrentRuns: 64,
  logger: { info() {}, warn() {}, error: console.error },
});
process.stdout.write(`AGENT_URL ${served.url}\n`);
process.on('SIGTERM', () => void served.close({ deadlineMs: 1000 }).then(() => process.exit(0)));
