import { OpenAIProvider, setTracingDisabled } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { defineTool } from '@threadline/tools-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, flushTraces } from '../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, silent, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

let fake: FakeOpenAIServer;
let tools: ToolsServer;

const echo = defineTool({
  name: 'echo',
  description: 'Echo',
  input: z.strictObject({ text: z.string() }),
  output: z.strictObject({ text: z.string() }),
  handler: ({ text }) => ({ text }),
});

beforeAll(async () => {
  // vitest sets NODE_ENV=test, which turns the SDK's tracing off; this file turns it on on purpose.
  setTracingDisabled(false);
  fake = await createFakeOpenAIServer();
  tools = await startToolsServer({ tools: [echo] });
});
afterAll(async () => {
  setTracingDisabled(true);
  await fake.close();
  await tools.close();
});

describe('trace export', () => {
  it('exports one trace per run, grouped by thread, with metadata and agent/response/function spans', async () => {
    const runner = createRunner({
      modelProvider: new OpenAIProvider({
        openAIClient: new OpenAI({ apiKey: 'sk-model', baseURL: fake.baseURL, maxRetries: 0 }),
      }),
      model: 'fake-model',
      logger: silent,
      // A long batch delay proves the runner's own flush at run end is what exports.
      tracing: {
        endpoint: fake.tracesEndpoint,
        apiKey: 'sk-tracing',
        workflowName: 'Test workflow',
        scheduleDelayMs: 60_000,
        exportMaxRetries: 1,
      },
    });
    const runs = [
      { threadId: 'thread-a', runId: 'run-a1' },
      { threadId: 'thread-b', runId: 'run-b1' },
    ];
    const finished: string[] = [];
    fake.enqueue(
      { type: 'tool_call', calls: [{ name: 'echo', arguments: { text: 'hi' } }] },
      { type: 'text', text: 'done' },
    );
    fake.enqueue({ type: 'text', text: 'plain' });
    for (const r of runs) {
      const events = await collect(
        runner.run({
          ...r,
          user: { id: 'user-7' },
          text: 'go',
          tools: await tools.toolsRef({ ...r, userId: 'user-7' }),
        }),
      );
      const terminal = terminalOf(events);
      expect(terminal.type).toBe('RUN_FINISHED');
      const traceId = (terminal as { traceId?: string }).traceId;
      expect(traceId).toMatch(/^trace_[0-9a-f]{32}$/);
      finished.push(traceId!);
    }
    await fake.waitForTraceItems(
      (items) =>
        items.filter((i) => i.object === 'trace').length >= 2 &&
        items.some((i) => (i.span_data as { type?: string } | undefined)?.type === 'function'),
      10_000,
    );
    await flushTraces();
    const items = fake.traceItems();
    const traces = items.filter((i) => i.object === 'trace');
    expect(traces.map((t) => t.id).sort()).toEqual([...finished].sort());
    for (const [i, r] of runs.entries()) {
      const trace = traces.find((t) => t.id === finished[i])!;
      expect(trace).toMatchObject({
        workflow_name: 'Test workflow',
        group_id: r.threadId,
        metadata: { threadId: r.threadId, runId: r.runId, userId: 'user-7' },
      });
    }
    const spanTypes = (traceId: string) =>
      items
        .filter((i) => i.object === 'trace.span' && i.trace_id === traceId)
        .map((i) => (i.span_data as { type: string }).type);
    expect(spanTypes(finished[0]!)).toEqual(expect.arrayContaining(['agent', 'response', 'function']));
    expect(spanTypes(finished[1]!)).toEqual(expect.arrayContaining(['agent', 'response']));
    expect(spanTypes(finished[1]!)).not.toContain('function');
    const fn = items.find(
      (i) => i.trace_id === finished[0] && (i.span_data as { type: string }).type === 'function',
    )!;
    expect(fn.span_data).toMatchObject({ name: 'echo' });
    // The tracing key, not the model key, authenticates the export.
    expect(fake.traceIngests.every((t) => t.headers.authorization === 'Bearer sk-tracing')).toBe(true);
    expect(fake.traceIngests[0]!.headers['openai-beta']).toBe('traces=v1');
  });

  it("a compaction is a history.compaction span inside the run's trace", async () => {
    const runner = createRunner({
      openai: { apiKey: 'sk-model', baseURL: fake.baseURL, maxRetries: 0 },
      model: 'gpt-4.1-mini',
      compaction: { afterItems: 2 },
      logger: silent,
      env: {},
      tracing: {
        endpoint: fake.tracesEndpoint,
        apiKey: 'sk-tracing',
        scheduleDelayMs: 60_000,
        exportMaxRetries: 1,
      },
    });
    const r = { threadId: 'thread-compacted', runId: 'run-c1' };
    await tools.store.addSessionItems(r.threadId, [
      { type: 'message', role: 'user', content: 'old question' },
      {
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text: 'old answer', annotations: [] }],
      },
    ]);
    fake.enqueue({ type: 'text', text: 'new answer' });
    const events = await collect(
      runner.run({
        ...r,
        user: { id: 'user-7' },
        text: 'go',
        tools: await tools.toolsRef({ ...r, userId: 'user-7' }),
      }),
    );
    const traceId = (terminalOf(events) as { traceId?: string }).traceId!;
    expect(fake.compactRequests).toHaveLength(1);
    const isCompaction = (i: Record<string, unknown>) =>
      i.trace_id === traceId && (i.span_data as { name?: string } | undefined)?.name === 'history.compaction';
    await fake.waitForTraceItems((items) => items.some(isCompaction), 10_000);
    expect(fake.traceItems().find(isCompaction)!.span_data).toMatchObject({
      type: 'custom',
      data: { model: 'gpt-4.1-mini', outputItems: 3 },
    });
  });
});
