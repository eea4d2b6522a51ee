import {
  createRunFinishedEvent,
  createTextMessageChunkEvent,
  createUserMessageEvent,
} from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../src/memory.js';

describe('MemoryStore (smoke)', () => {
  it('sequences, stores JSON once and ends a run with its terminal event', async () => {
    const store = createMemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'u1' });
    const userMessage = createUserMessageEvent({
      threadId: 't1',
      runId: 'r1',
      messageId: 'm1',
      clientMessageId: 'c1',
      userId: 'u1',
      text: 'hi',
    });
    const started = await store.startRun({
      threadId: 't1',
      runId: 'r1',
      userId: 'u1',
      clientMessageId: 'c1',
      userMessage,
    });
    expect(started.status).toBe('started');
    const stored = await store.append('t1', [
      createTextMessageChunkEvent({ threadId: 't1', runId: 'r1', messageId: 'a1', delta: 'hello' }),
      createRunFinishedEvent({ threadId: 't1', runId: 'r1' }),
    ]);
    expect(stored.map((s) => s.seq)).toEqual([2, 3]);
    expect(JSON.parse(stored[0]!.json)).toMatchObject({ type: 'TEXT_MESSAGE_CHUNK', delta: 'hello', seq: 2 });
    expect((await store.getRun('r1'))?.status).toBe('finished');
    expect(await store.activeRun('t1')).toBeNull();
  });
});
