import { describe, expect, it } from 'vitest';
import {
  uid,
  chunk,
  finished,
  startInput,
  expectStoreError,
  toolPart,
  nextMillisecond,
  type SuiteContext,
} from './fixtures.js';

// Conformance cases of retention (pruneOlderThan) and close.

/** Retention: `pruneOlderThan` removes idle threads whole, never one with a running run. */
export function retentionCases(suite: SuiteContext): void {
  describe('retention (pruneOlderThan)', () => {
    /** Session items a pruned thread loses: `n` in a suite.store that is a ToolStore too, else none. */
    const sessionCount = (n: number): number => (toolPart(suite.store) ? n : 0);
    /** Removes every idle thread the shared database holds from earlier tests, so counts below are exact. */
    async function pruneEverythingIdle(): Promise<void> {
      await nextMillisecond();
      const cutoff = Date.now() + 1;
      while ((await suite.store.pruneOlderThan(cutoff, { limit: 1000 })).more);
    }
    /** A thread with `runs` finished runs (user message + chunk + RUN_FINISHED each) and `items` session items. */
    async function idleThread(runs: number, items: number): Promise<{ threadId: string; runIds: string[] }> {
      const threadId = await suite.newThread('retention-owner');
      const runIds: string[] = [];
      for (let i = 0; i < runs; i++) {
        const runId = uid('r');
        runIds.push(runId);
        await suite.store.startRun(startInput(threadId, runId, uid('c')));
        await suite.store.append(threadId, [chunk(threadId, runId, 'hi'), finished(threadId, runId)]);
      }
      if (items > 0)
        await toolPart(suite.store)?.addSessionItems(
          threadId,
          Array.from({ length: items }, (_, i) => ({ i })),
        );
      return { threadId, runIds };
    }
    /** Waits a few ms on either side of the cutoff it returns: what was written before is older than it. */
    async function cutoffNow(): Promise<number> {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const cutoff = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 5));
      return cutoff;
    }

    it('removes exactly the threads idle since before the cutoff, with their events, runs and session items; never one with a running run', async () => {
      await pruneEverythingIdle();
      const old = await idleThread(2, 3);
      const busy = await idleThread(1, 2);
      const busyRun = uid('r');
      await suite.store.startRun(startInput(busy.threadId, busyRun, uid('c')));
      const cutoff = await cutoffNow();
      const recent = await idleThread(1, 1);

      const result = await suite.store.pruneOlderThan(cutoff);
      // old: 2 × (user message, chunk, finished) = 6 events, 2 runs, 3 items.
      expect(result).toEqual({
        threads: 1,
        events: 6,
        runs: 2,
        sessionItems: sessionCount(3),
        more: false,
      });
      expect(await suite.store.getThread(old.threadId)).toBeNull();
      expect(await suite.store.read(old.threadId, { afterSeq: 0, limit: 100 })).toEqual([]);
      expect(await suite.store.lastSeq(old.threadId)).toBe(0);
      expect((await toolPart(suite.store)?.getSessionItems(old.threadId)) ?? []).toEqual([]);
      for (const runId of old.runIds) expect(await suite.store.getRun(runId)).toBeNull();
      expect(await suite.store.listThreads('retention-owner')).toHaveLength(2);

      // The thread with a run in progress is untouched, although it is older than the cutoff.
      expect(await suite.store.getThread(busy.threadId)).not.toBeNull();
      expect(await suite.store.read(busy.threadId, { afterSeq: 0, limit: 100 })).toHaveLength(4);
      expect((await toolPart(suite.store)?.getSessionItems(busy.threadId)) ?? []).toHaveLength(
        sessionCount(2),
      );
      expect((await suite.store.activeRun(busy.threadId))?.runId).toBe(busyRun);
      expect((await suite.store.getRun(busy.runIds[0]!))?.status).toBe('finished');
      // So is the recent one.
      expect(await suite.store.read(recent.threadId, { afterSeq: 0, limit: 100 })).toHaveLength(3);
      expect((await toolPart(suite.store)?.getSessionItems(recent.threadId)) ?? []).toHaveLength(
        sessionCount(1),
      );

      // Nothing left to remove before that cutoff; the thread ended its run after it, so it is recent now.
      await suite.store.append(busy.threadId, [finished(busy.threadId, busyRun)]);
      expect(await suite.store.pruneOlderThan(cutoff)).toEqual({
        threads: 0,
        events: 0,
        runs: 0,
        sessionItems: 0,
        more: false,
      });
      // A removed thread's id can be used again, from seq 1.
      await suite.store.createThread({ threadId: old.threadId, ownerId: 'retention-owner' });
      expect((await suite.store.append(old.threadId, [chunk(old.threadId, 'r-new', 'x')]))[0]?.seq).toBe(1);
    });

    it('removes at most limit threads per call, oldest first, and says when there may be more', async () => {
      await pruneEverythingIdle();
      const first = await idleThread(1, 0);
      await nextMillisecond();
      const second = await idleThread(1, 0);
      await nextMillisecond();
      const third = await idleThread(0, 1);
      const cutoff = await cutoffNow();
      expect(await suite.store.pruneOlderThan(cutoff, { limit: 2 })).toMatchObject({
        threads: 2,
        more: true,
      });
      expect(await suite.store.getThread(first.threadId)).toBeNull();
      expect(await suite.store.getThread(second.threadId)).toBeNull();
      expect(await suite.store.getThread(third.threadId)).not.toBeNull();
      expect(await suite.store.pruneOlderThan(cutoff, { limit: 2 })).toEqual({
        threads: 1,
        events: 0,
        runs: 0,
        sessionItems: sessionCount(1),
        more: false,
      });
    });

    it('refuses a bad cutoff or limit with invalid_message and removes nothing', async () => {
      const t = await idleThread(1, 1);
      const cutoff = await cutoffNow();
      for (const bad of [Number.NaN, -1, 1.5, '1' as unknown as number])
        await expectStoreError(suite.store.pruneOlderThan(bad), 'invalid_message');
      for (const limit of [0, 1001, 2.5])
        await expectStoreError(suite.store.pruneOlderThan(cutoff, { limit }), 'invalid_message');
      expect(await suite.store.getThread(t.threadId)).not.toBeNull();
    });
  });
}

/** Close: calls after it reject with `closed`; closing twice is fine. */
export function closeCases(suite: SuiteContext): void {
  describe('close', () => {
    it('rejects calls after close with code closed, and close is idempotent', async () => {
      const t = await suite.newThread();
      await suite.store.close();
      await suite.store.close();
      await expectStoreError(suite.store.getThread(t), 'closed');
      await expectStoreError(suite.store.append(t, [chunk(t, 'r1', 'a')]), 'closed');
    });
  });
}
