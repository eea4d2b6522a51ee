// agent.mjs — node agent.mjs
import { Agent } from '@openai/agents';
import { createRunner, serveAgent } from '@threadline/agent-runner';

const runner = createRunner({
  agent: new Agent({ name: 'Helper', instructions: 'Be brief and friendly.' }),
  // no OPENAI_API_KEY → the offline demo model; tracing: { workflowName: 'Support chat' }
});
const served = await serveAgent(runner, {
  auth: { sharedSecret: process.env.THREADLINE_AGENT_SECRET }, // >= 32 bytes, same value in the API
  port: Number(process.env.PORT ?? 8787),
});
process.on('SIGTERM', () => void served.close({ deadlineMs: 10_000 }).then(() => process.exit(0)));
