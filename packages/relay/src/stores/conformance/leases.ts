import { afterEach, describe, expect, it } from 'vitest';
import type { EventStore } from '../store.js';
import { uid, finished, failed, startInput, expectStoreError, type SuiteContext } from './fixtures.js';

// Conformance cases of run leases (optional): renewLeases and claimRuns across two instances.

/** Run leases: skipped when the store has no `renewLeases`/`claimRuns`. */
export function leaseCases(suite: SuiteContext): void {
  describe('run leases (optional: renewLeases, claimRuns)', () => {
    /** The second instance's handle on the same data (closed after the test). */
    let second: EventStore | undefined;
    afterEach(async () => {
      await second?.close();
      second = undefined;
    });
    async function other(): Promise<EventStore> {
      second ??= suite.current?.openSecond ? await suite.current.openSecond() : suite.store;
      return second;
    }
    function skipUnlessLeases(ctx: { skip(note?: string): void }) {
      if (!suite.store.renewLeases || !suite.store.claimRuns) ctx.skip('the suite.store has no run leases');
    }
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    /** A run started on a new thread with a lease of `owner` for `ttlMs`. */
    async function leased(owner: string, ttlMs: number): Promise<{ threadId: string; runId: string }> {
      const threadId = await suite.newThread();
      const runId = uid('run');
      const r = await suite.store.startRun({
        ...startInput(threadId, runId, 'cm-1'),
        lease: { owner, ttlMs },
      });
      expect(r.status).toBe('started');
      return { threadId, runId };
    }
    /** Claims as `owner` until a call returns nothing, and keeps only `runIds` (the database may be shared). */
    async function claimAll(
      s: EventStore,
      input: { owner: string; ttlMs: number; orphans?: boolean },
      runIds: readonly string[],
    ) {
      const out = [];
      for (;;) {
        const batch = await s.claimRuns!({ ...input, limit: 1000 });
        out.push(...batch.filter((r) => runIds.includes(r.runId)));
        if (batch.length < 1000) return out;
      }
    }

    it('records the lease with the run, the same for a second instance; none without one', async (ctx) => {
      skipUnlessLeases(ctx);
      const before = Date.now();
      const { threadId, runId } = await leased('inst-a', 60_000);
      const run = await (await other()).getRun(runId);
      expect(run?.lease?.owner).toBe('inst-a');
      // The suite.store's clock may be another machine's: allow it a minute of skew either way.
      expect(run!.lease!.expiresAt).toBeGreaterThan(before);
      expect(run!.lease!.expiresAt).toBeLessThan(before + 180_000);
      expect(await suite.store.getRun(runId)).toEqual(run);
      expect(await suite.store.activeRun(threadId)).toEqual(run);
      const t = await suite.newThread();
      const plain = uid('run');
      await suite.store.startRun(startInput(t, plain, 'cm-1'));
      expect((await suite.store.getRun(plain))?.lease).toBeUndefined();
    });

    it('renews in one call exactly the running runs the owner holds, seen by the other instance', async (ctx) => {
      skipUnlessLeases(ctx);
      const a1 = await leased('inst-a', 50);
      const a2 = await leased('inst-a', 50);
      const ended = await leased('inst-a', 50);
      const b1 = await leased('inst-b', 50);
      await suite.store.append(ended.threadId, [finished(ended.threadId, ended.runId)]);
      const was = (await suite.store.getRun(a1.runId))!.lease!.expiresAt;
      const renewed = await (
        await other()
      ).renewLeases!('inst-a', [a1.runId, a2.runId, ended.runId, b1.runId, uid('unknown-run')], 60_000);
      expect([...renewed].sort()).toEqual([a1.runId, a2.runId].sort());
      const now = (await suite.store.getRun(a1.runId))!.lease!;
      expect(now.owner).toBe('inst-a');
      expect(now.expiresAt).toBeGreaterThan(was);
      expect((await suite.store.getRun(b1.runId))!.lease!.owner).toBe('inst-b');
      expect(await suite.store.renewLeases!('inst-a', [], 1000)).toEqual([]);
      // Renewed leases are not expired: nobody can claim them.
      await sleep(80);
      const claimed = await claimAll(suite.store, { owner: 'inst-c', ttlMs: 60_000 }, [a1.runId, a2.runId]);
      expect(claimed).toEqual([]);
    });

    it('claims only expired leases, atomically hands them to the claimer, and the old owner can no longer renew them', async (ctx) => {
      skipUnlessLeases(ctx);
      const expired = await leased('inst-a', 1);
      const live = await leased('inst-a', 60_000);
      const plain = uid('run');
      await suite.store.startRun(startInput(await suite.newThread(), plain, 'cm-1'));
      await sleep(30);
      const b = await other();
      const claimed = await claimAll(b, { owner: 'inst-b', ttlMs: 60_000 }, [
        expired.runId,
        live.runId,
        plain,
      ]);
      expect(claimed.map((r) => r.runId)).toEqual([expired.runId]);
      expect(claimed[0]).toMatchObject({ status: 'running', lease: { owner: 'inst-b' } });
      expect((await suite.store.getRun(expired.runId))?.lease).toEqual(claimed[0]!.lease);
      expect(await suite.store.renewLeases!('inst-a', [expired.runId, live.runId], 60_000)).toEqual([
        live.runId,
      ]);
      expect(await b.renewLeases!('inst-b', [expired.runId], 60_000)).toEqual([expired.runId]);
      // Claimed once: a second sweep finds nothing more.
      expect(await claimAll(suite.store, { owner: 'inst-c', ttlMs: 60_000 }, [expired.runId])).toEqual([]);
    });

    it('never claims ended runs, and claims orphans (no lease, or held by the claimer itself) only when asked', async (ctx) => {
      skipUnlessLeases(ctx);
      const ended = await leased('inst-a', 1);
      await suite.store.append(ended.threadId, [failed(ended.threadId, ended.runId)]);
      const mine = await leased('inst-o', 60_000);
      const plain = uid('run');
      await suite.store.startRun(startInput(await suite.newThread(), plain, 'cm-1'));
      const theirs = await leased('inst-p', 60_000);
      await sleep(30);
      const ids = [ended.runId, mine.runId, plain, theirs.runId];
      expect(await claimAll(suite.store, { owner: 'inst-o', ttlMs: 60_000 }, ids)).toEqual([]);
      const orphans = await claimAll(await other(), { owner: 'inst-o', ttlMs: 60_000, orphans: true }, ids);
      expect(orphans.map((r) => r.runId).sort()).toEqual([mine.runId, plain].sort());
      expect((await suite.store.getRun(plain))?.lease?.owner).toBe('inst-o');
      expect((await suite.store.getRun(theirs.runId))?.lease?.owner).toBe('inst-p');
      expect((await suite.store.getRun(ended.runId))?.status).toBe('failed');
    });

    it('never hands one run to two instances claiming at once', async (ctx) => {
      skipUnlessLeases(ctx);
      const runs = await Promise.all(Array.from({ length: 12 }, () => leased('inst-dead', 1)));
      const ids = runs.map((r) => r.runId);
      await sleep(30);
      const b = await other();
      const claims = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (i % 2 ? suite.store : b).claimRuns!({ owner: `inst-${i}`, ttlMs: 60_000, limit: 3 }),
        ),
      );
      // Anything left over (every call took at most 3) goes to one more sweep.
      const rest = await claimAll(suite.store, { owner: 'inst-last', ttlMs: 60_000 }, ids);
      const got = [...claims.flat().filter((r) => ids.includes(r.runId)), ...rest].map((r) => r.runId);
      expect([...got].sort()).toEqual([...ids].sort());
      for (const claim of claims) expect(claim.length).toBeLessThanOrEqual(3);
    });

    it('refuses bad lease input with invalid_message', async (ctx) => {
      skipUnlessLeases(ctx);
      const t = await suite.newThread();
      await expectStoreError(
        suite.store.startRun({ ...startInput(t, uid('run'), 'cm-1'), lease: { owner: 'a b', ttlMs: 10 } }),
        'invalid_message',
      );
      await expectStoreError(
        suite.store.startRun({ ...startInput(t, uid('run'), 'cm-1'), lease: { owner: 'a', ttlMs: 0 } }),
        'invalid_message',
      );
      expect(await suite.store.lastSeq(t)).toBe(0);
      await expectStoreError(suite.store.renewLeases!('a', 'nope' as never, 10), 'invalid_message');
      await expectStoreError(suite.store.renewLeases!('a', ['r 1'], 10), 'invalid_message');
      await expectStoreError(suite.store.renewLeases!('a', ['r1'], 1.5), 'invalid_message');
      await expectStoreError(suite.store.claimRuns!({ owner: '', ttlMs: 10, limit: 1 }), 'invalid_message');
      await expectStoreError(suite.store.claimRuns!({ owner: 'a', ttlMs: 10, limit: 0 }), 'invalid_message');
    });
  });
}
