import {
  setDefaultOpenAIClient,
  setDefaultOpenAIKey,
  setTracingDisabled,
  setTracingExportApiKey,
} from '@openai/agents';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, flushTraces } from '../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

// A user who configures OpenAI the way the Agents SDK documents it (setDefaultOpenAIKey(),
// setDefaultOpenAIClient(), setTracingExportApiKey()) and sets no environment variable gets OpenAI and traces,
// not the demo model. The SDK's settings are global, so this file has its own process (vitest forks).

let fake: FakeOpenAIServer;
let tools: ToolsServer;
const savedBaseUrl = process.env.OPENAI_BASE_URL;
const savedKey = process.env.OPENAI_API_KEY;

beforeAll(async () => {
  setTracingDisabled(false); // vitest's NODE_ENV=test turns the SDK's tracing off
  fake = await createFakeOpenAIServer();
  tools = await startToolsServer({ tools: [] });
  delete process.env.OPENAI_API_KEY;
  // The openai client the SDK builds from a default key reads its base URL from here: the local fake.
  process.env.OPENAI_BASE_URL = fake.baseURL;
});
afterAll(async () => {
  setTracingDisabled(true);
  if (savedBaseUrl === undefined) delete process.env.OPENAI_BASE_URL;
  else process.env.OPENAI_BASE_URL = savedBaseUrl;
  if (savedKey !== undefined) process.env.OPENAI_API_KEY = savedKey;
  await fake.close();
  await tools.close();
});

function recordingLogger() {
  const lines: string[] = [];
  const log = (line: string) => void lines.push(line);
  return { lines, logger: { info: log, warn: log, error: log } };
}

async function runOnce(runner: ReturnType<typeof createRunner>, runId: string) {
  const ids = { threadId: 'thread-sdk', runId };
  return collect(
    runner.run({
      ...ids,
      user: { id: 'u1' },
      text: 'hello',
      tools: await tools.toolsRef({ ...ids, userId: 'u1' }),
    }),
  );
}

describe("the Agents SDK's own defaults", () => {
  it('with none set (and no environment key): the demo model, tracing off, each said once', async () => {
    const { lines, logger } = recordingLogger();
    const runner = createRunner({
      env: {},
      model: 'fake-model',
      logger,
      tracing: { endpoint: fake.tracesEndpoint },
    });
    const before = fake.requests.length;
    for (const runId of ['run-demo-1', 'run-demo-2']) {
      const terminal = terminalOf(await runOnce(runner, runId));
      expect(terminal.type).toBe('RUN_FINISHED');
      expect((terminal as { traceId?: string }).traceId).toBeUndefined();
    }
    expect(fake.requests.length).toBe(before);
    expect(lines.filter((l) => l.includes('offline demo model'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('tracing off'))).toHaveLength(1);
  });

  it('uses the key from setDefaultOpenAIKey() for the model and setTracingExportApiKey() for traces', async () => {
    setDefaultOpenAIKey('sk-from-setter');
    setTracingExportApiKey('sk-tracing-from-setter');
    const { lines, logger } = recordingLogger();
    const runner = createRunner({
      env: {},
      model: 'fake-model',
      logger,
      tracing: { endpoint: fake.tracesEndpoint, scheduleDelayMs: 60_000, exportMaxRetries: 1 },
    });
    fake.enqueue({ type: 'text', text: 'from the fake OpenAI' });
    const events = await runOnce(runner, 'run-key');
    const terminal = terminalOf(events);
    expect(terminal.type).toBe('RUN_FINISHED');
    const text = events.flatMap((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? [e.delta] : [])).join('');
    expect(text).toBe('from the fake OpenAI');
    expect(fake.requests.at(-1)?.headers.authorization).toBe('Bearer sk-from-setter');
    expect(lines.join('\n')).not.toMatch(/demo model|tracing off/);

    const traceId = (terminal as { traceId?: string }).traceId;
    expect(traceId).toMatch(/^trace_[0-9a-f]{32}$/);
    await flushTraces();
    await fake.waitForTraceItems((items) => items.some((i) => i.id === traceId), 10_000);
    expect(fake.traceIngests.every((t) => t.headers.authorization === 'Bearer sk-tracing-from-setter')).toBe(
      true,
    );
  });

  it('uses the client from setDefaultOpenAIClient()', async () => {
    setDefaultOpenAIClient(new OpenAI({ apiKey: 'sk-client', baseURL: fake.baseURL, maxRetries: 0 }));
    const runner = createRunner({
      env: {},
      model: 'fake-model',
      logger: recordingLogger().logger,
      tracing: false,
    });
    fake.enqueue({ type: 'text', text: 'via the default client' });
    const events = await runOnce(runner, 'run-client');
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    expect(fake.requests.at(-1)?.headers.authorization).toBe('Bearer sk-client');
  });
});
