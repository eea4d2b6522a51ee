// The relay's thread API (createThread, listThreads, getThread): hosts create, list and read threads through the
// relay, which applies `authorize`; another user's thread is answered exactly like a missing one.
import { afterEach, describe, expect, it } from 'vitest';
import { RelayError } from '../src/index.js';
import { makeRelay } from './helpers.js';
import type { Harness } from './helpers.js';

const A = { id: 'user-a' };
const B = { id: 'user-b' };
let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof RelayError ? e.code : `not a RelayError: ${String(e)}`),
  );
}

describe.each(['memory', 'sqlite'] as const)('thread API on %s', (kind) => {
  it('creates untitled or titled threads for their owner, lists only the owner’s, reads through authorize', async () => {
    h = await makeRelay(kind);
    const untitled = await h.relay.createThread({ user: A });
    expect(untitled).toMatchObject({ ownerId: A.id, title: '' });
    expect(untitled.threadId).toMatch(/^thr_/);
    const titled = await h.relay.createThread({ user: A, title: '  Trip plans ', threadId: 'thread-1' });
    expect(titled).toMatchObject({ threadId: 'thread-1', title: 'Trip plans' });
    await h.relay.createThread({ user: B, threadId: 'thread-b' });

    const listed = await h.relay.listThreads({ user: A });
    expect(listed.map((t) => t.threadId).sort()).toEqual([untitled.threadId, 'thread-1'].sort());
    expect(await h.relay.listThreads({ user: A, limit: 1 })).toHaveLength(1);
    expect((await h.relay.getThread({ user: A, threadId: 'thread-1' })).title).toBe('Trip plans');
  });

  it('answers another user’s thread like a missing one, and refuses bad input with a code', async () => {
    h = await makeRelay(kind);
    await h.relay.createThread({ user: A, threadId: 'thread-a' });
    expect(await codeOf(h.relay.getThread({ user: B, threadId: 'thread-a' }))).toBe('not_found');
    expect(await codeOf(h.relay.getThread({ user: B, threadId: 'no-such' }))).toBe('not_found');
    expect(await codeOf(h.relay.createThread({ user: B, threadId: 'thread-a' }))).toBe('conflict');
    expect((await h.relay.getThread({ user: A, threadId: 'thread-a' })).ownerId).toBe(A.id);
    expect(await codeOf(h.relay.createThread({ user: A, title: 'x'.repeat(201) }))).toBe('invalid_message');
    expect(await codeOf(h.relay.createThread({ user: A, threadId: 'bad id!' }))).toBe('invalid_message');
    expect(await codeOf(h.relay.listThreads({ user: A, limit: 0 }))).toBe('invalid_message');
    expect(await codeOf(h.relay.getThread({ user: { id: '' }, threadId: 'thread-a' }))).toBe(
      'invalid_message',
    );
  });

  it('lets authorize share a thread: getThread follows it, listThreads stays the owner’s', async () => {
    h = await makeRelay(kind, {
      authorize: (user, thread) => user.id === thread.ownerId || user.id === B.id,
    });
    await h.relay.createThread({ user: A, threadId: 'shared' });
    expect((await h.relay.getThread({ user: B, threadId: 'shared' })).threadId).toBe('shared');
    expect(await h.relay.listThreads({ user: B })).toEqual([]);
  });
});
