import { describe, expect, it } from 'vitest';
import {
  uid,
  chunk,
  finished,
  failed,
  startInput,
  expectStoreError,
  toolPart,
  nextMillisecond,
  type SuiteContext,
} from './fixtures.js';

// Conformance cases of threads: create, get, list, rename and delete.

/** Threads: create, get, list (owner, order, page cap). */
export function threadCases(suite: SuiteContext): void {
  describe('threads', () => {
    it('creates a thread and gets it back; an unknown id is null', async () => {
      const threadId = uid('t');
      const created = await suite.store.createThread({ threadId, ownerId: 'owner-a', title: 'Trip' });
      expect(created).toMatchObject({ threadId, ownerId: 'owner-a', title: 'Trip' });
      expect(created.createdAt).toBeGreaterThan(0);
      expect(created.updatedAt).toBe(created.createdAt);
      expect(await suite.store.getThread(threadId)).toEqual(created);
      expect(await suite.store.getThread(uid('missing'))).toBeNull();
      expect(await suite.store.lastSeq(threadId)).toBe(0);
    });

    it('refuses a second thread with the same id (conflict) and keeps the first', async () => {
      const threadId = uid('t');
      const first = await suite.store.createThread({ threadId, ownerId: 'owner-a' });
      await expectStoreError(suite.store.createThread({ threadId, ownerId: 'owner-b' }), 'conflict');
      expect(await suite.store.getThread(threadId)).toEqual(first);
    });

    it('refuses invalid ids and titles with invalid_message', async () => {
      await expectStoreError(suite.store.createThread({ threadId: '', ownerId: 'u' }), 'invalid_message');
      await expectStoreError(suite.store.createThread({ threadId: 'a b', ownerId: 'u' }), 'invalid_message');
      await expectStoreError(
        suite.store.createThread({ threadId: uid('t'), ownerId: 'x'.repeat(129) }),
        'invalid_message',
      );
      await expectStoreError(
        suite.store.createThread({ threadId: uid('t'), ownerId: 'u', title: 'x'.repeat(201) }),
        'invalid_message',
      );
    });

    it("lists only the owner's threads, most recently updated first, up to the limit", async () => {
      const owner = uid('owner');
      const a = uid('t');
      const b = uid('t');
      const c = uid('t');
      await suite.store.createThread({ threadId: a, ownerId: owner });
      await nextMillisecond();
      await suite.store.createThread({ threadId: b, ownerId: owner });
      await nextMillisecond();
      await suite.store.createThread({ threadId: c, ownerId: uid('someone-else') });
      await nextMillisecond();
      await suite.store.append(a, [chunk(a, 'r1', 'x')]);
      const listed = await suite.store.listThreads(owner);
      expect(listed.map((t) => t.threadId)).toEqual([a, b]);
      expect(listed[0]!.updatedAt).toBeGreaterThan(listed[0]!.createdAt);
      expect((await suite.store.listThreads(owner, { limit: 1 })).map((t) => t.threadId)).toEqual([a]);
      expect(await suite.store.listThreads(uid('nobody'))).toEqual([]);
      await expectStoreError(suite.store.listThreads(owner, { limit: 0 }), 'invalid_message');
    });

    it('caps one page of threads at 1000 whatever limit is asked', async () => {
      const owner = uid('owner');
      for (let i = 0; i < 1001; i++) await suite.store.createThread({ threadId: uid('t'), ownerId: owner });
      expect(await suite.store.listThreads(owner)).toHaveLength(100);
      expect(await suite.store.listThreads(owner, { limit: 5000 })).toHaveLength(1000);
    });
  });
}

/** Renaming and deleting a thread (with its session when the store is a ToolStore too). */
export function renameDeleteCases(suite: SuiteContext): void {
  describe('rename and delete a thread', () => {
    it('renames: the new title, updatedAt kept; null for an unknown thread; bad titles refused', async () => {
      const threadId = uid('t');
      const created = await suite.store.createThread({ threadId, ownerId: 'owner-a', title: 'Trip' });
      await nextMillisecond();
      const renamed = await suite.store.renameThread(threadId, 'Trip to Lisbon');
      expect(renamed).toEqual({ ...created, title: 'Trip to Lisbon' });
      expect(await suite.store.getThread(threadId)).toEqual(renamed);
      expect(await suite.store.renameThread(uid('missing'), 'x')).toBeNull();
      await expectStoreError(suite.store.renameThread(threadId, 'x'.repeat(201)), 'invalid_message');
      await expectStoreError(suite.store.renameThread(threadId, 42 as unknown as string), 'invalid_message');
      expect((await suite.store.getThread(threadId))!.title).toBe('Trip to Lisbon');
    });

    it('with onlyIfUntitled sets a title once: never over a title the thread has', async () => {
      const threadId = await suite.newThread();
      expect((await suite.store.getThread(threadId))!.title).toBe('');
      const first = await suite.store.renameThread(threadId, 'From the first message', {
        onlyIfUntitled: true,
      });
      expect(first!.title).toBe('From the first message');
      const second = await suite.store.renameThread(threadId, 'From another message', {
        onlyIfUntitled: true,
      });
      expect(second!.title).toBe('From the first message');
      await suite.store.renameThread(threadId, 'Renamed');
      expect((await suite.store.renameThread(threadId, 'Auto', { onlyIfUntitled: true }))!.title).toBe(
        'Renamed',
      );
    });

    it('gives one title to an untitled thread when several are set at once', async () => {
      const threadId = await suite.newThread();
      const titles = Array.from({ length: 8 }, (_, i) => `title ${i}`);
      const results = await Promise.all(
        titles.map((t) => suite.store.renameThread(threadId, t, { onlyIfUntitled: true })),
      );
      const stored = (await suite.store.getThread(threadId))!.title;
      expect(titles).toContain(stored);
      for (const r of results) expect(r!.title).toBe(stored);
    });

    it("deletes the thread with its events, runs and session items, and nothing of another thread's", async () => {
      const tools = toolPart(suite.store);
      const owner = uid('owner');
      const gone = uid('t');
      const kept = uid('t');
      await suite.store.createThread({ threadId: gone, ownerId: owner, title: 'Gone' });
      await suite.store.createThread({ threadId: kept, ownerId: owner, title: 'Kept' });
      for (const t of [gone, kept]) {
        await suite.store.startRun(startInput(t, `${t}-r1`, 'c1', owner));
        await suite.store.append(t, [chunk(t, `${t}-r1`, 'hi'), finished(t, `${t}-r1`)]);
        await tools?.addSessionItems(t, [{ role: 'user', content: 'hello' }]);
      }
      await tools?.patchProfile(owner, { name: 'Ada' });
      expect(await suite.store.deleteThread(gone)).toBe('deleted');

      expect(await suite.store.getThread(gone)).toBeNull();
      expect(await suite.store.read(gone, { afterSeq: 0, limit: 100 })).toEqual([]);
      expect(await suite.store.lastSeq(gone)).toBe(0);
      expect(await suite.store.getRun(`${gone}-r1`)).toBeNull();
      if (tools) expect(await tools.getSessionItems(gone)).toEqual([]);
      expect((await suite.store.listThreads(owner)).map((t) => t.threadId)).toEqual([kept]);
      await expectStoreError(suite.store.append(gone, [chunk(gone, 'r2', 'x')]), 'not_found');
      expect(await suite.store.deleteThread(gone)).toBe('not_found');
      expect(await suite.store.deleteThread(uid('missing'))).toBe('not_found');

      expect(await suite.store.read(kept, { afterSeq: 0, limit: 100 })).toHaveLength(3);
      expect((await suite.store.getRun(`${kept}-r1`))!.status).toBe('finished');
      if (tools) {
        expect(await tools.getSessionItems(kept)).toEqual([{ role: 'user', content: 'hello' }]);
        expect(await tools.getProfile(owner)).toEqual({ name: 'Ada' });
      }

      // The id can be used again: a new thread with nothing of the old one (the old clientMessageId is new).
      await suite.store.createThread({ threadId: gone, ownerId: owner });
      const again = await suite.store.startRun(startInput(gone, `${gone}-r2`, 'c1', owner));
      expect(again.status).toBe('started');
      if (again.status === 'started') expect(again.userMessage.seq).toBe(1);
      if (tools) expect(await tools.getSessionItems(gone)).toEqual([]);
    });

    it('refuses to delete while a run is running (run_active), removing nothing', async () => {
      const t = await suite.newThread();
      await suite.store.startRun(startInput(t, `${t}-r1`, 'c1'));
      expect(await suite.store.deleteThread(t)).toBe('run_active');
      expect(await suite.store.getThread(t)).not.toBeNull();
      expect(await suite.store.read(t, { afterSeq: 0, limit: 10 })).toHaveLength(1);
      expect((await suite.store.activeRun(t))!.runId).toBe(`${t}-r1`);
      await suite.store.append(t, [failed(t, `${t}-r1`)]);
      expect(await suite.store.deleteThread(t)).toBe('deleted');
    });

    it('never both deletes a thread and starts a run in it when the two race', async () => {
      for (let i = 0; i < 5; i++) {
        const t = await suite.newThread();
        const [started, deleted] = await Promise.allSettled([
          suite.store.startRun(startInput(t, `${t}-r1`, 'c1')),
          suite.store.deleteThread(t),
        ]);
        expect(deleted.status).toBe('fulfilled');
        const outcome = (deleted as PromiseFulfilledResult<string>).value;
        if (outcome === 'deleted') {
          // The delete went first: the start finds no thread.
          expect(started.status).toBe('rejected');
          expect(((started as PromiseRejectedResult).reason as { code?: string }).code).toBe('not_found');
          expect(await suite.store.getRun(`${t}-r1`)).toBeNull();
        } else {
          expect(outcome).toBe('run_active');
          expect(started.status).toBe('fulfilled');
          expect((await suite.store.getThread(t))!.threadId).toBe(t);
        }
      }
    });
  });
}
