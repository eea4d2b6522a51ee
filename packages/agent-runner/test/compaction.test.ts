// Compaction of a thread's history through the Responses API's compact endpoint (the fake OpenAI server answers
// it as the spec defines it) and, with the demo model, offline: the compaction item is stored behind the API, the
// next run's model request carries it instead of the old turns, and the thread says so (HISTORY_WINDOWED
// reason 'compacted').
import type { JsonValue, RunRequest } from '@threadline/contracts';
import { MemoryToolStore } from '@threadline/tools-kit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEMO_COMPACTION_PREFIX, createRunner, type AgentRunnerOptions } from '../src/index.js';
import { FAKE_COMPACTION_PREFIX, createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, silent, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

let fake: FakeOpenAIServer;
let tools: ToolsServer;
const store = new MemoryToolStore({ maxSessionItems: 20_000 });

beforeAll(async () => {
  fake = await createFakeOpenAIServer({ respond: () => ({ type: 'text', text: 'fresh answer' }) });
  tools = await startToolsServer({ store });
});
afterAll(async () => {
  await fake.close();
  await tools.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  fake.compactRequests.length = 0;
});

function openAIRunner(options: Partial<AgentRunnerOptions> = {}) {
  return createRunner({
    openai: { apiKey: 'sk-test', baseURL: fake.baseURL, maxRetries: 0 },
    model: 'gpt-4.1-mini',
    tracing: false,
    logger: silent,
    env: {},
    ...options,
  });
}

async function request(threadId: string, message = 'What now?'): Promise<RunRequest> {
  const runId = `run-${Math.random().toString(36).slice(2)}`;
  return {
    threadId,
    runId,
    user: { id: 'user-1' },
    message,
    tools: await tools.toolsRef({ userId: 'user-1', threadId, runId }),
  };
}

const user = (text: string): JsonValue => ({ type: 'message', role: 'user', content: text });
const assistant = (text: string): JsonValue => ({
  type: 'message',
  role: 'assistant',
  status: 'completed',
  content: [{ type: 'output_text', text, annotations: [] }],
});
const turns = (n: number, from = 0): JsonValue[] =>
  Array.from({ length: n }, (_, i) => [
    user(`question ${from + i}`),
    assistant(`old answer ${from + i}`),
  ]).flat();

async function fill(threadId: string, items: JsonValue[]) {
  for (let i = 0; i < items.length; i += 1000)
    await store.addSessionItems(threadId, items.slice(i, i + 1000));
}
const stored = (threadId: string) =>
  store.getSessionItems(threadId, 1000) as Promise<Record<string, unknown>[]>;
const compactionItems = async (threadId: string) =>
  (await stored(threadId)).filter((i) => i.type === 'compaction');

describe('compaction with an OpenAI model (fake server)', () => {
  it('past the threshold: one compact request, one compaction item stored; the next run sends it instead of the old turns', async () => {
    const threadId = 'thread-compact';
    await fill(threadId, turns(3));
    const runner = openAIRunner({ compaction: { afterItems: 4 } });

    const first = await collect(runner.run(await request(threadId, 'fourth question')));
    expect(terminalOf(first).type).toBe('RUN_FINISHED');
    expect(first.some((e) => e.type === 'HISTORY_WINDOWED')).toBe(false);
    // 3 old answers + the new one reached the threshold after the model turn.
    expect(fake.compactRequests).toHaveLength(1);
    const compactBody = fake.compactRequests[0]!.body;
    expect(compactBody.model).toBe('gpt-4.1-mini');
    expect(compactBody.previous_response_id).toBeUndefined();
    expect(JSON.stringify(compactBody.input)).toContain('old answer 0');
    expect(JSON.stringify(compactBody.input)).toContain('fresh answer');

    // Behind the API: the user messages and exactly one compaction item, nothing of the old answers.
    const after = await stored(threadId);
    expect(await compactionItems(threadId)).toEqual([
      expect.objectContaining({ type: 'compaction', encrypted_content: `${FAKE_COMPACTION_PREFIX}4` }),
    ]);
    expect(after).toHaveLength(5);
    expect(JSON.stringify(after)).not.toContain('old answer');

    const second = await collect(runner.run(await request(threadId, 'fifth question')));
    expect(terminalOf(second).type).toBe('RUN_FINISHED');
    // The thread says so once, right after RUN_STARTED.
    expect(second.filter((e) => e.type === 'HISTORY_WINDOWED')).toEqual([
      expect.objectContaining({ reason: 'compacted', windowItems: 5 }),
    ]);
    expect(second[1]?.type).toBe('HISTORY_WINDOWED');
    const input = fake.requests.at(-1)!.body.input as Record<string, unknown>[];
    expect(input.filter((i) => i.type === 'compaction')).toEqual([
      expect.objectContaining({ encrypted_content: `${FAKE_COMPACTION_PREFIX}4` }),
    ]);
    expect(JSON.stringify(input)).not.toContain('old answer');
    expect(JSON.stringify(input)).not.toContain('fresh answer');
    expect(JSON.stringify(input)).toContain('fifth question');
    // One new answer is below the threshold: no second compaction.
    expect(fake.compactRequests).toHaveLength(1);
    expect(await compactionItems(threadId)).toHaveLength(1);
  });

  it('below the threshold nothing is compacted', async () => {
    const threadId = 'thread-below';
    await fill(threadId, turns(1));
    const events = await collect(
      openAIRunner({ compaction: { afterItems: 10 } }).run(await request(threadId)),
    );
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    expect(fake.compactRequests).toHaveLength(0);
    expect(await stored(threadId)).toHaveLength(4);
  });

  it('on a thread longer than the window, compaction covers what the model saw and sends no more than that', async () => {
    const threadId = 'thread-long-compact';
    await fill(threadId, turns(150)); // 300 items; the window is 50
    const events = await collect(
      openAIRunner({ tuning: { historyItems: 50 }, compaction: { afterItems: 20 } }).run(
        await request(threadId, 'newest'),
      ),
    );
    expect(events.find((e) => e.type === 'HISTORY_WINDOWED')).toMatchObject({ windowItems: 50 });
    expect(fake.compactRequests).toHaveLength(1);
    const input = fake.compactRequests[0]!.body.input as unknown[];
    // The window, the new user message and the answer.
    expect(input).toHaveLength(52);
    expect(JSON.stringify(input)).not.toContain('question 124"');
    const after = await stored(threadId);
    // 25 user messages of the window + the new one + one compaction item; the unseen older part is gone with them.
    expect(after).toHaveLength(27);
    expect(after.filter((i) => i.type === 'compaction')).toHaveLength(1);
  });

  it('refuses bad settings with invalid_options', () => {
    expect(() => openAIRunner({ compaction: { afterItems: 1 } })).toThrow(/afterItems/);
    expect(() => openAIRunner({ compaction: {}, model: 'claude-3' })).toThrow(/compaction.model/);
    expect(() => openAIRunner({ env: { THREADLINE_COMPACT_AFTER_ITEMS: 'many' } })).toThrow(/afterItems/);
  });
});

describe('compaction with the demo model (offline, deterministic)', () => {
  it('THREADLINE_COMPACT_AFTER_ITEMS turns it on; the compaction item is stored and the next run says compacted', async () => {
    const threadId = 'thread-demo';
    await fill(threadId, turns(2));
    const runner = createRunner({
      tracing: false,
      logger: silent,
      env: { THREADLINE_COMPACT_AFTER_ITEMS: '3' },
    });
    const first = await collect(runner.run(await request(threadId, 'hello there')));
    expect(terminalOf(first).type).toBe('RUN_FINISHED');
    const items = await compactionItems(threadId);
    expect(items).toHaveLength(1);
    expect(String(items[0]!.encrypted_content)).toMatch(
      new RegExp(`^${DEMO_COMPACTION_PREFIX} 3 earlier items`),
    );
    expect(await stored(threadId)).toHaveLength(4);

    const second = await collect(runner.run(await request(threadId, 'and again')));
    expect(terminalOf(second).type).toBe('RUN_FINISHED');
    expect(second.find((e) => e.type === 'HISTORY_WINDOWED')).toMatchObject({ reason: 'compacted' });
    expect(fake.compactRequests).toHaveLength(0);
  });
});
