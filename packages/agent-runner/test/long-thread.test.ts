import type { JsonValue, RunRequest } from '@threadline/contracts';
import { MemoryToolStore } from '@threadline/tools-kit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_HISTORY_ITEMS, type AgentRunnerOptions } from '../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, fakeOpenAIRunner, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

/** A store that counts the session items it hands out, so a test sees what crossed the API boundary. */
class CountingStore extends MemoryToolStore {
  itemsRead = 0;
  override async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    const items = await super.getSessionItems(threadId, limit);
    this.itemsRead += items.length;
    return items;
  }
}

let fake: FakeOpenAIServer;
let tools: ToolsServer;
const store = new CountingStore({ maxSessionItems: 20_000 });

beforeAll(async () => {
  fake = await createFakeOpenAIServer();
  tools = await startToolsServer({ store });
});
afterAll(async () => {
  await fake.close();
  await tools.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  tools.sent.length = 0;
  store.itemsRead = 0;
});

const makeRunner = (options: Partial<AgentRunnerOptions> = {}) => fakeOpenAIRunner(fake.baseURL, options);

async function request(threadId: string, message = 'What now?'): Promise<RunRequest> {
  const runId = `run-${threadId}-${Math.random().toString(36).slice(2)}`;
  return {
    threadId,
    runId,
    user: { id: 'user-1' },
    text: message,
    tools: await tools.toolsRef({ userId: 'user-1', threadId, runId }),
  };
}

const userItem = (i: number) => ({ type: 'message', role: 'user', content: `history item ${i}` });

async function fill(threadId: string, items: JsonValue[]): Promise<void> {
  for (let i = 0; i < items.length; i += 1000)
    await store.addSessionItems(threadId, items.slice(i, i + 1000));
}

const modelInput = () => fake.requests.at(-1)!.body.input as { content?: unknown }[];
const sessionGetBytes = () =>
  tools.sent.filter((s) => s.call.endsWith('/tools/session.get')).reduce((sum, s) => sum + s.bytes, 0);

describe('a run on a long thread reads a bounded window of history', () => {
  it('on a 10,000-item thread: one session.get, at most window + 1 items from the store, the model gets the newest 200', async () => {
    const threadId = 'thread-10k';
    await fill(
      threadId,
      Array.from({ length: 10_000 }, (_, i) => userItem(i)),
    );
    fake.enqueue({ type: 'text', text: 'ok' });
    const events = await collect(makeRunner().run(await request(threadId)));
    expect(terminalOf(events).type).toBe('RUN_FINISHED');
    // The thread says so, once, right after RUN_STARTED and before any answer.
    expect(events.filter((e) => e.type === 'HISTORY_WINDOWED')).toHaveLength(1);
    expect(events[1]).toMatchObject({ type: 'HISTORY_WINDOWED', windowItems: DEFAULT_HISTORY_ITEMS });

    expect(tools.sent.filter((s) => s.call.endsWith('/tools/session.get'))).toHaveLength(1);
    // The store read n + 1 to learn that older items exist; nothing else of the 10,000 was read.
    expect(store.itemsRead).toBeLessThanOrEqual(DEFAULT_HISTORY_ITEMS + 1);
    // 200 items of ~55 bytes each: far below what 1,000 items would take.
    expect(sessionGetBytes()).toBeLessThan(DEFAULT_HISTORY_ITEMS * 80);

    const input = modelInput();
    expect(input).toHaveLength(DEFAULT_HISTORY_ITEMS + 1);
    expect(input[0]).toMatchObject({ content: 'history item 9800' });
    expect(input.at(-2)).toMatchObject({ content: 'history item 9999' });
    expect(JSON.stringify(input.at(-1))).toContain('What now?');
  });

  it('historyItems sets the window; a short thread is read whole', async () => {
    const threadId = 'thread-short';
    await fill(
      threadId,
      Array.from({ length: 30 }, (_, i) => userItem(i)),
    );
    fake.enqueue({ type: 'text', text: 'ok' });
    const windowed = await collect(makeRunner({ tuning: { historyItems: 10 } }).run(await request(threadId)));
    expect(windowed.find((e) => e.type === 'HISTORY_WINDOWED')).toMatchObject({ windowItems: 10 });
    expect(modelInput()).toHaveLength(11);
    expect(modelInput()[0]).toMatchObject({ content: 'history item 20' });
    expect(store.itemsRead).toBe(11);

    fake.enqueue({ type: 'text', text: 'ok' });
    const whole = await collect(
      makeRunner({ tuning: { historyItems: 100 } }).run(await request(threadId, 'again')),
    );
    // 30 stored + the previous run's user message and answer.
    expect(modelInput()).toHaveLength(33);
    expect(whole.some((e) => e.type === 'HISTORY_WINDOWED')).toBe(false);
  });

  it('a window that starts at a tool result drops it: the model API refuses an output whose call is not there', async () => {
    const threadId = 'thread-tool-edge';
    await fill(threadId, [
      userItem(0),
      { type: 'function_call', callId: 'c1', name: 'lookup', arguments: '{}', status: 'completed' },
      { type: 'function_call_result', callId: 'c1', name: 'lookup', status: 'completed', output: 'x' },
      userItem(3),
      userItem(4),
    ]);
    fake.enqueue({ type: 'text', text: 'ok' });
    const events = await collect(makeRunner({ tuning: { historyItems: 3 } }).run(await request(threadId)));
    // The window kept 2 of the 3 items read.
    expect(events.find((e) => e.type === 'HISTORY_WINDOWED')).toMatchObject({ windowItems: 2 });
    const input = modelInput();
    expect(JSON.stringify(input)).not.toContain('function_call_output');
    expect(input.slice(0, 2)).toMatchObject([{ content: 'history item 3' }, { content: 'history item 4' }]);
  });

  it('refuses a window outside 1..1000 with invalid_options', () => {
    for (const bad of [0, 1001, 1.5, Number.NaN]) {
      expect(() => makeRunner({ tuning: { historyItems: bad } })).toThrow(
        expect.objectContaining({ code: 'invalid_options' }),
      );
    }
    expect(() => makeRunner({ env: { THREADLINE_HISTORY_ITEMS: 'many' } })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
  });
});
