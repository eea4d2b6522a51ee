// The agent service of the reference host, run by main.ts as its own process (the real topology: the API
// reaches it over HTTP/SSE). It reads its settings from the environment main.ts gives it and reports
// `ready` over IPC once it listens.
import {
  createDemoCompactionClient,
  createDemoModelProvider,
  createRunner,
  doctor,
  serveAgent,
} from '@threadline/agent-runner';
import { z } from 'zod';

const EnvSchema = z.object({
  AGENT_PORT: z.coerce.number().int().min(0).max(65535),
  AGENT_SHARED_SECRET: z.string().min(32),
  OPENAI_API_KEY: z.string().min(1).optional(),
  OPENAI_MODEL: z.string().min(1).default('gpt-4.1-mini'),
  OPENAI_BASE_URL: z.url().optional(),
  /** Delay between the demo model's streamed deltas (ms); lets a demo or a test watch a run stream. */
  DEMO_MODEL_DELAY_MS: z.coerce.number().int().min(0).max(10_000).default(15),
  /** Runs taken at once; more are answered 429 and wait in the relay's fair queue. */
  AGENT_MAX_RUNS: z.coerce.number().int().min(1).max(10_000).default(32),
  /** Compact a thread's history past this many items (unset: off); the host's COMPACT_AFTER_ITEMS. */
  COMPACT_AFTER_ITEMS: z.coerce.number().int().min(2).max(1000).optional(),
});

const emptyToUnset = Object.fromEntries(
  Object.entries(process.env).filter(([, v]) => v !== undefined && v.trim() !== ''),
);
const parsed = EnvSchema.safeParse(emptyToUnset);
if (!parsed.success) {
  console.error(
    `agent service: invalid settings: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
  );
  process.exit(1);
}
const env = parsed.data;
const apiKey = env.OPENAI_API_KEY;
const demo = apiKey === undefined;

const afterItems = env.COMPACT_AFTER_ITEMS;
const runner = createRunner(
  apiKey === undefined
    ? {
        modelProvider: createDemoModelProvider({ delayMs: env.DEMO_MODEL_DELAY_MS }),
        model: 'demo',
        // The demo compaction is offline; the compact request still names an OpenAI model.
        ...(afterItems === undefined
          ? {}
          : { compaction: { afterItems, model: 'gpt-4.1-mini', client: createDemoCompactionClient() } }),
      }
    : {
        model: env.OPENAI_MODEL,
        openai: { apiKey, ...(env.OPENAI_BASE_URL ? { baseURL: env.OPENAI_BASE_URL } : {}) },
        ...(afterItems === undefined ? {} : { compaction: { afterItems } }),
      },
);
const service = await serveAgent(runner, {
  port: env.AGENT_PORT,
  host: '127.0.0.1',
  auth: { sharedSecret: env.AGENT_SHARED_SECRET },
  maxConcurrentRuns: env.AGENT_MAX_RUNS,
  // main.ts prints the verdict in its banner instead.
  doctor: false,
});

const report = doctor(process.env);
const problem = report.findings.find((f) => f.level === 'error');
const warning = report.findings.find((f) => f.level === 'warning');
const verdict = problem
  ? `traces will NOT reach the OpenAI dashboard: ${problem.message}`
  : `traces go to the OpenAI dashboard${warning ? ` (note: ${warning.message})` : ''}`;
process.send?.({
  type: 'ready',
  url: service.url,
  model: demo ? 'demo (offline; set OPENAI_API_KEY for OpenAI models)' : `${env.OPENAI_MODEL} (OpenAI)`,
  tracing: verdict,
});

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  // Running runs get a few seconds to finish; traces are flushed by close().
  await service.close({ deadlineMs: 5_000 }).catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
// If the host dies without stopping us, do not linger as an orphan holding the port.
process.on('disconnect', () => void stop());
