import { type AgentEvent } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import type { EventStore } from '../store.js';
import {
  uid,
  TS,
  chunk,
  finished,
  failed,
  userMessage,
  startInput,
  expectStoreError,
  type SuiteContext,
} from './fixtures.js';

// Conformance cases of runs: startRun, the optional grouped startRuns, run ends and listing.

/** The optional grouped run start `startRuns`: skipped when the store has none. */
export function startRunsCases(suite: SuiteContext): void {
  describe('startRuns (optional grouped run start)', () => {
    /** The adapter's startRuns, or a skip: the method is optional on the port. */
    function startRunsOf(ctx: { skip(note?: string): never }): NonNullable<EventStore['startRuns']> {
      if (!suite.store.startRuns)
        ctx.skip(`${name} does not offer startRuns (the relay starts runs one by one)`);
      return suite.store.startRuns!.bind(suite.store);
    }

    it("starts several threads' runs in one call, each answered as startRun would, in order", async (ctx) => {
      const startRuns = startRunsOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      const busy = await suite.newThread();
      const done = await suite.newThread();
      await suite.store.append(a, [chunk(a, 'r0', 'earlier')]);
      const busyRun = uid('run');
      await suite.store.startRun(startInput(busy, busyRun, 'cm-busy'));
      const doneRun = uid('run');
      await suite.store.startRun(startInput(done, doneRun, 'cm-done'));
      await suite.store.append(done, [finished(done, doneRun)]);
      const [runA, runB, runA2, runB2, runBusy, runDone] = Array.from({ length: 6 }, () => uid('run'));
      const results = await startRuns([
        startInput(a, runA!, 'cm-1'),
        startInput(b, runB!, 'cm-1'),
        startInput(a, runA2!, 'cm-2'), // a's run from this very call is running
        startInput(b, runB2!, 'cm-1'), // same message as this call's earlier input
        startInput(busy, runBusy!, 'cm-new'),
        startInput(done, runDone!, 'cm-done'), // seen before, its run already ended
      ]);
      expect(results.map((r) => r.status)).toEqual([
        'started',
        'started',
        'run_active',
        'duplicate',
        'run_active',
        'duplicate',
      ]);
      const [ra, rb, ra2, rb2, rbusy, rdone] = results;
      if (ra?.status !== 'started' || rb?.status !== 'started') throw new Error('expected started');
      expect(ra.run).toMatchObject({
        runId: runA,
        threadId: a,
        status: 'running',
        clientMessageId: 'cm-1',
      });
      expect(ra.userMessage.seq).toBe(2);
      expect(JSON.parse(ra.userMessage.json)).toEqual({
        ...userMessage(a, runA!, 'cm-1', 'user-1'),
        seq: 2,
      });
      expect(rb.userMessage.seq).toBe(1);
      if (ra2?.status === 'run_active') expect(ra2.activeRun.runId).toBe(runA);
      if (rb2?.status === 'duplicate') expect(rb2.run.runId).toBe(runB);
      if (rbusy?.status === 'run_active') expect(rbusy.activeRun.runId).toBe(busyRun);
      if (rdone?.status === 'duplicate')
        expect(rdone.run).toMatchObject({ runId: doneRun, status: 'finished' });
      expect(await suite.store.read(a, { afterSeq: 1, limit: 10 })).toEqual([ra.userMessage]);
      expect(await suite.store.read(b, { afterSeq: 0, limit: 10 })).toEqual([rb.userMessage]);
      expect(await suite.store.lastSeq(busy)).toBe(1);
      expect(await suite.store.lastSeq(done)).toBe(2);
      expect(await suite.store.activeRun(a)).toEqual(ra.run);
      expect(await suite.store.getRun(runA2!)).toBeNull();
      expect(await suite.store.getRun(runB2!)).toBeNull();
      expect(await startRuns([])).toEqual([]);
    });

    it('is all or nothing: an invalid input, an unknown thread or a taken run id stores nothing for anyone', async (ctx) => {
      const startRuns = startRunsOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      const taken = uid('run');
      const other = await suite.newThread();
      await suite.store.startRun(startInput(other, taken, 'cm-x'));
      const good = () => [startInput(a, uid('run'), 'cm-1'), startInput(b, uid('run'), 'cm-1')];
      const mismatched = { ...startInput(b, uid('run'), 'cm-2'), clientMessageId: 'cm-other' };
      await expectStoreError(startRuns([...good(), mismatched]), 'invalid_message');
      await expectStoreError(
        startRuns([...good(), startInput(uid('ghost'), uid('run'), 'cm-1')]),
        'not_found',
      );
      const c = await suite.newThread();
      await expectStoreError(startRuns([...good(), startInput(c, taken, 'cm-9')]), 'conflict');
      const twice = uid('run');
      await expectStoreError(
        startRuns([startInput(a, twice, 'cm-1'), startInput(b, twice, 'cm-1')]),
        'conflict',
      );
      await expectStoreError(
        startRuns('nope' as unknown as Parameters<typeof startRuns>[0]),
        'invalid_message',
      );
      for (const t of [a, b, c]) {
        expect(await suite.store.lastSeq(t)).toBe(0);
        expect(await suite.store.activeRun(t)).toBeNull();
      }
      // Nothing was half-written: the same messages start normally afterwards.
      const after = await startRuns(good());
      expect(after.map((r) => r.status)).toEqual(['started', 'started']);
    });

    it('never starts two runs of one thread when startRuns and startRun race', async (ctx) => {
      const startRuns = startRunsOf(ctx);
      const t = await suite.newThread();
      const results = await Promise.all([
        startRuns(Array.from({ length: 5 }, (_, i) => startInput(t, uid('run'), `cm-a${i}`))),
        suite.store.startRun(startInput(t, uid('run'), 'cm-b')),
        startRuns([startInput(t, uid('run'), 'cm-c')]),
      ]);
      const statuses = [...results[0], results[1], ...results[2]].map((r) => r.status);
      expect(statuses.filter((s) => s === 'started')).toHaveLength(1);
      expect(await suite.store.lastSeq(t)).toBe(1);
    });
  });
}

/** Runs: start, idempotency on clientMessageId, one running run per thread, ends, regenerate, races. */
export function runCases(suite: SuiteContext): void {
  describe('runs', () => {
    it('starts a run: USER_MESSAGE appended with the next seq, run recorded as running', async () => {
      const t = await suite.newThread();
      await suite.store.append(t, [chunk(t, 'r0', 'earlier')]);
      const runId = uid('run');
      const result = await suite.store.startRun(startInput(t, runId, 'cm-1'));
      if (result.status !== 'started') throw new Error(`expected started, got ${result.status}`);
      expect(result.run).toMatchObject({
        runId,
        threadId: t,
        userId: 'user-1',
        clientMessageId: 'cm-1',
        status: 'running',
      });
      expect(result.run.endedAt).toBeUndefined();
      expect(result.userMessage.seq).toBe(2);
      expect(JSON.parse(result.userMessage.json)).toEqual({
        ...userMessage(t, runId, 'cm-1', 'user-1'),
        seq: 2,
      });
      expect(await suite.store.read(t, { afterSeq: 1, limit: 10 })).toEqual([result.userMessage]);
      expect(await suite.store.getRun(runId)).toEqual(result.run);
      expect(await suite.store.activeRun(t)).toEqual(result.run);
      expect((await suite.store.listRunningRuns()).map((r) => r.runId)).toContain(runId);
      expect(await suite.store.getRun(uid('nope'))).toBeNull();
    });

    it('is idempotent on clientMessageId: a retry returns the first run and writes nothing, even after it ended', async () => {
      const t = await suite.newThread();
      const runId = uid('run');
      await suite.store.startRun(startInput(t, runId, 'cm-1'));
      const retry = await suite.store.startRun(startInput(t, uid('run'), 'cm-1'));
      expect(retry.status).toBe('duplicate');
      if (retry.status === 'duplicate') expect(retry.run.runId).toBe(runId);
      expect(await suite.store.lastSeq(t)).toBe(1);
      await suite.store.append(t, [finished(t, runId)]);
      const late = await suite.store.startRun(startInput(t, uid('run'), 'cm-1'));
      expect(late.status).toBe('duplicate');
      if (late.status === 'duplicate') expect(late.run).toMatchObject({ runId, status: 'finished' });
      expect(await suite.store.lastSeq(t)).toBe(2);
    });

    it('refuses a second run while one is running (run_active), writing nothing', async () => {
      const t = await suite.newThread();
      const runId = uid('run');
      await suite.store.startRun(startInput(t, runId, 'cm-1'));
      const second = await suite.store.startRun(startInput(t, uid('run'), 'cm-2'));
      expect(second.status).toBe('run_active');
      if (second.status === 'run_active') expect(second.activeRun.runId).toBe(runId);
      expect(await suite.store.lastSeq(t)).toBe(1);
      // Another thread is not blocked by this one.
      const other = await suite.newThread();
      expect((await suite.store.startRun(startInput(other, uid('run'), 'cm-2'))).status).toBe('started');
    });

    it('ends the run in the same append as RUN_FINISHED, then allows the next run', async () => {
      const t = await suite.newThread();
      const runId = uid('run');
      await suite.store.startRun(startInput(t, runId, 'cm-1'));
      const stored = await suite.store.append(t, [chunk(t, runId, 'hi'), finished(t, runId)]);
      expect(stored.map((e) => e.seq)).toEqual([2, 3]);
      const run = await suite.store.getRun(runId);
      expect(run?.status).toBe('finished');
      expect(run?.endedAt).toBeGreaterThan(0);
      expect(await suite.store.activeRun(t)).toBeNull();
      expect((await suite.store.listRunningRuns()).map((r) => r.runId)).not.toContain(runId);
      const next = await suite.store.startRun(startInput(t, uid('run'), 'cm-2'));
      expect(next.status).toBe('started');
      if (next.status === 'started') expect(next.userMessage.seq).toBe(4);
    });

    it('marks the run failed on RUN_ERROR', async () => {
      const t = await suite.newThread();
      const runId = uid('run');
      await suite.store.startRun(startInput(t, runId, 'cm-1'));
      await suite.store.append(t, [failed(t, runId)]);
      expect((await suite.store.getRun(runId))?.status).toBe('failed');
      expect(await suite.store.activeRun(t)).toBeNull();
    });

    it("does not end a run from another thread's log, nor from an invalid batch", async () => {
      const a = await suite.newThread();
      const b = await suite.newThread();
      const runA = uid('run');
      await suite.store.startRun(startInput(a, runA, 'cm-1'));
      // A terminal event naming run A, written into thread B: run A must stay running.
      await suite.store.append(b, [finished(b, runA)]);
      expect((await suite.store.getRun(runA))?.status).toBe('running');
      const bad = { ...chunk(a, runA, 'x'), messageId: '' } as AgentEvent;
      await expectStoreError(suite.store.append(a, [finished(a, runA), bad]), 'invalid_message');
      expect((await suite.store.getRun(runA))?.status).toBe('running');
      expect(await suite.store.lastSeq(a)).toBe(1);
    });

    it('lists every running run across threads and drops ended ones', async () => {
      const a = await suite.newThread();
      const b = await suite.newThread();
      const runA = uid('run');
      const runB = uid('run');
      await suite.store.startRun(startInput(a, runA, 'cm-1'));
      await suite.store.startRun(startInput(b, runB, 'cm-1'));
      let running = (await suite.store.listRunningRuns()).map((r) => r.runId);
      expect(running).toEqual(expect.arrayContaining([runA, runB]));
      await suite.store.append(a, [failed(a, runA)]);
      running = (await suite.store.listRunningRuns()).map((r) => r.runId);
      expect(running).toContain(runB);
      expect(running).not.toContain(runA);
    });

    it('starts a regenerate with its RUN_STARTED (regenerates) as the first event: no USER_MESSAGE, same rules', async () => {
      const t = await suite.newThread();
      const first = uid('run');
      await suite.store.startRun(startInput(t, first, 'cm-1'));
      await suite.store.append(t, [finished(t, first)]);
      const runId = uid('run');
      const started = {
        type: 'RUN_STARTED' as const,
        threadId: t,
        runId,
        ts: TS,
        regenerates: first,
      };
      const input = {
        threadId: t,
        runId,
        userId: 'user-1',
        clientMessageId: 'cm-regen',
        userMessage: started,
      };
      const result = await suite.store.startRun(input);
      if (result.status !== 'started') throw new Error(`expected started, got ${result.status}`);
      expect(result.run).toMatchObject({ runId, clientMessageId: 'cm-regen', status: 'running' });
      expect(JSON.parse(result.userMessage.json)).toEqual({ ...started, seq: 3 });
      // The same key again: the first run, nothing written; another key while it runs: run_active.
      const again = uid('run');
      const retry = await suite.store.startRun({
        ...input,
        runId: again,
        userMessage: { ...started, runId: again },
      });
      expect(retry.status).toBe('duplicate');
      if (retry.status === 'duplicate') expect(retry.run.runId).toBe(runId);
      const other = uid('run');
      const busy = await suite.store.startRun({
        ...input,
        runId: other,
        clientMessageId: 'cm-regen-2',
        userMessage: { ...started, runId: other },
      });
      expect(busy.status).toBe('run_active');
      expect(await suite.store.lastSeq(t)).toBe(3);
      // A RUN_STARTED without `regenerates`, or of another run, is refused.
      const { regenerates: _dropped, ...bare } = started;
      const plain = { ...input, clientMessageId: 'cm-x', userMessage: bare };
      await expectStoreError(suite.store.startRun(plain), 'invalid_message');
      const wrongRun = {
        ...input,
        clientMessageId: 'cm-y',
        userMessage: { ...started, runId: uid('run') },
      };
      await expectStoreError(suite.store.startRun(wrongRun), 'invalid_message');
      expect(await suite.store.lastSeq(t)).toBe(3);
    });

    it('refuses inconsistent startRun input and unknown threads', async () => {
      const t = await suite.newThread();
      const runId = uid('run');
      const mismatched = {
        ...startInput(t, runId, 'cm-1'),
        userMessage: userMessage(t, runId, 'cm-other', 'user-1'),
      };
      await expectStoreError(suite.store.startRun(mismatched), 'invalid_message');
      const notUser = { ...startInput(t, runId, 'cm-1'), userMessage: chunk(t, runId, 'x') };
      await expectStoreError(suite.store.startRun(notUser), 'invalid_message');
      const ghost = uid('ghost');
      await expectStoreError(suite.store.startRun(startInput(ghost, runId, 'cm-1')), 'not_found');
      expect(await suite.store.lastSeq(t)).toBe(0);
      expect(await suite.store.getRun(runId)).toBeNull();
    });

    it('refuses a runId already used (conflict)', async () => {
      const a = await suite.newThread();
      const b = await suite.newThread();
      const runId = uid('run');
      await suite.store.startRun(startInput(a, runId, 'cm-1'));
      await expectStoreError(suite.store.startRun(startInput(b, runId, 'cm-1')), 'conflict');
      expect(await suite.store.lastSeq(b)).toBe(0);
    });

    it('starts exactly one run when the same send races, and one when different sends race', async () => {
      const t = await suite.newThread();
      const same = await Promise.all(
        Array.from({ length: 10 }, () => suite.store.startRun(startInput(t, uid('run'), 'cm-same'))),
      );
      expect(same.filter((r) => r.status === 'started')).toHaveLength(1);
      expect(same.filter((r) => r.status === 'duplicate')).toHaveLength(9);
      const runIds = new Set(same.map((r) => (r.status === 'run_active' ? r.activeRun.runId : r.run.runId)));
      expect(runIds.size).toBe(1);
      const u = await suite.newThread();
      const different = await Promise.all(
        Array.from({ length: 10 }, (_, i) => suite.store.startRun(startInput(u, uid('run'), `cm-${i}`))),
      );
      expect(different.filter((r) => r.status === 'started')).toHaveLength(1);
      expect(different.filter((r) => r.status === 'run_active')).toHaveLength(9);
      expect(await suite.store.lastSeq(t)).toBe(1);
      expect(await suite.store.lastSeq(u)).toBe(1);
    });
  });
}
