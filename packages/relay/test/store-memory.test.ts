import { describe, expect, it } from 'vitest';
import { createMemoryStore, MemoryStore } from '../src/stores/memory.js';
import { runStoreConformance } from '../src/testing.js';

runStoreConformance('memory', async () => ({ store: createMemoryStore() }));

describe('MemoryStore', () => {
  it('keeps stores independent', async () => {
    const a = new MemoryStore();
    const b = createMemoryStore();
    await a.createThread({ threadId: 't1', ownerId: 'u1' });
    expect(await b.getThread('t1')).toBeNull();
    await b.createThread({ threadId: 't1', ownerId: 'u2' });
    expect((await a.getThread('t1'))?.ownerId).toBe('u1');
  });
});
