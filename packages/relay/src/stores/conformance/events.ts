import { LIMITS, parseSequencedEvent, type AgentEvent } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import type { EventStore, StoredEvent } from '../store.js';
import {
  uid,
  TS,
  chunk,
  finished,
  failed,
  startInput,
  expectStoreError,
  type SuiteContext,
} from './fixtures.js';

// Conformance cases of the event log: append, read, and the optional group commit appendMany.

/** Texts whose characters an adapter's encoding could mangle (separators, escapes, quoting, surrogate pairs). */
const TRICKY_TEXTS = [
  'line one\nline two\r\nline three\n',
  '\n',
  'quotes " and \' and `, a backslash \\ and \\n (backslash n), a tab\tend',
  '{"json":"inside","arr":[1,"2"]}',
  'U+2028 \u2028 and U+2029 \u2029, NUL \u0000 and DEL \u007f',
  'emoji 🧵 and a CJK 線, accents é',
  ',"seq":99}',
];

/** Appending events and reading them back: seqs, validation, pages, races. */
export function appendCases(suite: SuiteContext): void {
  describe('append and read', () => {
    it('assigns consecutive seqs from 1 across batches and stores the sequenced JSON', async () => {
      const t = await suite.newThread();
      const first = await suite.store.append(t, [chunk(t, 'r1', 'a'), chunk(t, 'r1', 'b')]);
      const second = await suite.store.append(t, [chunk(t, 'r1', 'c')]);
      expect([...first, ...second].map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(await suite.store.lastSeq(t)).toBe(3);
      for (const stored of [...first, ...second]) {
        const parsed = parseSequencedEvent(JSON.parse(stored.json));
        expect(parsed.seq).toBe(stored.seq);
        expect(parsed.threadId).toBe(t);
      }
      expect(JSON.parse(second[0]!.json)).toEqual({ ...chunk(t, 'r1', 'c'), seq: 3 });
      expect(await suite.store.read(t, { afterSeq: 0, limit: 10 })).toEqual([...first, ...second]);
    });

    it('returns [] for an empty batch and writes nothing', async () => {
      const t = await suite.newThread();
      expect(await suite.store.append(t, [])).toEqual([]);
      expect(await suite.store.lastSeq(t)).toBe(0);
    });

    it('stores nothing when any event of the batch is invalid (invalid_message carrying the ContractError)', async () => {
      const t = await suite.newThread();
      await suite.store.append(t, [chunk(t, 'r1', 'before')]);
      const bad = { ...chunk(t, 'r1', 'x'), delta: 42 } as unknown as AgentEvent;
      const error = await expectStoreError(
        suite.store.append(t, [chunk(t, 'r1', 'ok'), chunk(t, 'r1', 'ok'), bad]),
        'invalid_message',
      );
      expect((error.cause as Error | undefined)?.name).toBe('ContractError');
      const unknownType = { type: 'NOPE', threadId: t, runId: 'r1', ts: TS } as unknown as AgentEvent;
      await expectStoreError(suite.store.append(t, [chunk(t, 'r1', 'ok'), unknownType]), 'invalid_message');
      const extraKey = { ...chunk(t, 'r1', 'x'), seq: 99 } as unknown as AgentEvent;
      await expectStoreError(suite.store.append(t, [extraKey]), 'invalid_message');
      expect(await suite.store.lastSeq(t)).toBe(1);
      expect((await suite.store.read(t, { afterSeq: 0, limit: 10 })).map((e) => e.seq)).toEqual([1]);
    });

    it('refuses every text chunk the contract refuses, even right after valid ones (no shortcut waves one through)', async () => {
      const t = await suite.newThread();
      const ok = chunk(t, 'r1', 'ok');
      const bad: [string, unknown][] = [
        ['an empty runId', { ...ok, runId: '' }],
        ['a runId with a space', { ...ok, runId: 'r 1' }],
        ['a runId over the length bound', { ...ok, runId: 'r'.repeat(LIMITS.maxIdLength + 1) }],
        ['a numeric runId', { ...ok, runId: 7 }],
        ['a messageId with a space', { ...ok, messageId: 'm 1' }],
        ['a missing messageId', { ...ok, messageId: undefined }],
        ['a fractional ts', { ...ok, ts: 1.5 }],
        ['a negative ts', { ...ok, ts: -1 }],
        ['an unsafe integer ts', { ...ok, ts: 2 ** 53 }],
        ['a delta over the bound', { ...ok, delta: 'x'.repeat(LIMITS.maxDeltaLength + 1) }],
        ['a numeric delta', { ...ok, delta: 5 }],
        ['an extra key', { ...ok, extra: 1 }],
        ['an empty messageId', { ...ok, messageId: '' }],
        ['a missing threadId', { ...ok, threadId: undefined }],
        ['a missing runId', { ...ok, runId: undefined }],
      ];
      for (const [name, value] of bad) {
        const error = await expectStoreError(
          suite.store.append(t, [ok, chunk(t, 'r2', 'ok', 'msg-2'), value as AgentEvent]),
          'invalid_message',
        );
        expect(error.message, name).toContain('event [2]');
        // And as the first event of a batch, before any id has been seen.
        await expectStoreError(suite.store.append(t, [value as AgentEvent]), 'invalid_message');
      }
      expect(await suite.store.lastSeq(t)).toBe(0);
      // What it accepts it stores exactly: the event as given, plus its seq.
      await suite.store.append(t, [ok, chunk(t, 'r2', 'next', 'msg-2')]);
      const stored = await suite.store.read(t, { afterSeq: 0, limit: 10 });
      expect(stored.map((e) => JSON.parse(e.json) as unknown)).toEqual([
        { ...ok, seq: 1 },
        { ...chunk(t, 'r2', 'next', 'msg-2'), seq: 2 },
      ]);
    });

    it('stores every character of a text exactly: newlines, quotes, backslashes, tabs, U+2028, NUL, emoji', async () => {
      const t = await suite.newThread();
      const stored = await suite.store.append(
        t,
        TRICKY_TEXTS.map((text) => chunk(t, 'r1', text)),
      );
      const read = await suite.store.read(t, { afterSeq: 0, limit: 100 });
      expect(read).toEqual(stored);
      expect(read.map((e) => (JSON.parse(e.json) as { delta: string }).delta)).toEqual(TRICKY_TEXTS);
    });

    it("refuses an event of another thread in the batch and stores nothing (a writer can't cross threads)", async () => {
      const t = await suite.newThread();
      const other = await suite.newThread();
      await expectStoreError(
        suite.store.append(t, [chunk(t, 'r1', 'a'), chunk(other, 'r1', 'b')]),
        'invalid_message',
      );
      expect(await suite.store.lastSeq(t)).toBe(0);
      expect(await suite.store.lastSeq(other)).toBe(0);
    });

    it('refuses to append to a thread that does not exist (not_found)', async () => {
      const ghost = uid('ghost');
      await expectStoreError(suite.store.append(ghost, [chunk(ghost, 'r1', 'a')]), 'not_found');
      expect(await suite.store.lastSeq(ghost)).toBe(0);
      expect(await suite.store.getThread(ghost)).toBeNull();
    });

    it('reads after a seq with a limit, in pages, ascending', async () => {
      const t = await suite.newThread();
      const events = Array.from({ length: 25 }, (_, i) => chunk(t, 'r1', `d${i}`));
      const stored = await suite.store.append(t, events);
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
      const page1 = await suite.store.read(t, { afterSeq: 0, limit: 10 });
      const page2 = await suite.store.read(t, { afterSeq: 10, limit: 10 });
      const page3 = await suite.store.read(t, { afterSeq: 20, limit: 10 });
      expect(page1.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(page2[0]!.seq).toBe(11);
      expect(page3.map((e) => e.seq)).toEqual([21, 22, 23, 24, 25]);
      expect([...page1, ...page2, ...page3]).toEqual(stored);
      expect(await suite.store.read(t, { afterSeq: 25, limit: 10 })).toEqual([]);
      expect(await suite.store.read(t, { afterSeq: 1000, limit: 10 })).toEqual([]);
      expect(await suite.store.read(uid('missing'), { afterSeq: 0, limit: 10 })).toEqual([]);
      const delta = (e: { json: string }) => (JSON.parse(e.json) as { delta: string }).delta;
      expect(page2.map(delta)).toEqual(events.slice(10, 20).map((e) => e.delta));
    });

    it('refuses a bad read cursor or limit with invalid_message', async () => {
      const t = await suite.newThread();
      await expectStoreError(suite.store.read(t, { afterSeq: -1, limit: 10 }), 'invalid_message');
      await expectStoreError(suite.store.read(t, { afterSeq: 0, limit: 0 }), 'invalid_message');
      await expectStoreError(suite.store.read(t, { afterSeq: 0.5, limit: 10 }), 'invalid_message');
    });

    it('keeps a large batch whole and in order', async () => {
      const t = await suite.newThread();
      const n = 2000;
      const stored = await suite.store.append(
        t,
        Array.from({ length: n }, (_, i) => chunk(t, 'r1', String(i))),
      );
      expect(stored).toHaveLength(n);
      const back = await suite.store.read(t, { afterSeq: 0, limit: n });
      expect(back).toEqual(stored);
      expect(
        back.every(
          (e, i) => e.seq === i + 1 && (JSON.parse(e.json) as { delta: string }).delta === String(i),
        ),
      ).toBe(true);
    });

    it('never hands out a seq twice or leaves a hole under many parallel appends', async () => {
      const t = await suite.newThread();
      const calls = Array.from({ length: 40 }, (_, i) =>
        suite.store.append(
          t,
          Array.from({ length: (i % 5) + 1 }, (_, j) => chunk(t, 'r1', `${i}.${j}`)),
        ),
      );
      const results = await Promise.all(calls);
      const total = results.reduce((n, r) => n + r.length, 0);
      for (const r of results) {
        // One call's events are consecutive: a batch is never interleaved with another writer's.
        for (let k = 1; k < r.length; k++) expect(r[k]!.seq).toBe(r[k - 1]!.seq + 1);
      }
      const seqs = results
        .flat()
        .map((e) => e.seq)
        .sort((a, b) => a - b);
      expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect(await suite.store.lastSeq(t)).toBe(total);
      const back = await suite.store.read(t, { afterSeq: 0, limit: total + 10 });
      expect(back.map((e) => e.seq)).toEqual(seqs);
    });
  });
}

/** The optional group commit `appendMany`: skipped when the store has none. */
export function appendManyCases(suite: SuiteContext): void {
  describe('appendMany (optional group commit)', () => {
    /** The adapter's appendMany, or a skip: the method is optional on the port. */
    function appendManyOf(ctx: { skip(note?: string): never }): NonNullable<EventStore['appendMany']> {
      if (!suite.store.appendMany)
        ctx.skip(`${name} does not offer appendMany (the relay appends per thread)`);
      return suite.store.appendMany!.bind(suite.store);
    }

    it('appends several threads in one call: per-thread consecutive seqs, sequenced JSON, results in order', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      await suite.store.append(a, [chunk(a, 'r1', 'earlier')]);
      const result = await appendMany([
        { threadId: a, events: [chunk(a, 'r1', 'a1'), chunk(a, 'r1', 'a2')] },
        { threadId: b, events: [chunk(b, 'r1', 'b1')] },
        { threadId: a, events: [chunk(a, 'r1', 'a3')] },
        { threadId: b, events: [] },
      ]);
      expect(result.map((r) => r.map((e) => e.seq))).toEqual([[2, 3], [1], [4], []]);
      expect(JSON.parse(result[0]![1]!.json)).toEqual({ ...chunk(a, 'r1', 'a2'), seq: 3 });
      expect(JSON.parse(result[1]![0]!.json)).toEqual({ ...chunk(b, 'r1', 'b1'), seq: 1 });
      expect(await suite.store.read(a, { afterSeq: 1, limit: 10 })).toEqual([...result[0]!, ...result[2]!]);
      expect(await suite.store.read(b, { afterSeq: 0, limit: 10 })).toEqual(result[1]);
      expect(await suite.store.lastSeq(a)).toBe(4);
      expect(await suite.store.lastSeq(b)).toBe(1);
      expect(await appendMany([])).toEqual([]);
    });

    it('stores every character of a text exactly in a group commit, each event in its own thread', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      const result = await appendMany([
        { threadId: a, events: TRICKY_TEXTS.map((text) => chunk(a, 'r1', text)) },
        { threadId: b, events: TRICKY_TEXTS.map((text) => chunk(b, 'r1', `${text}|b`)) },
      ]);
      for (const [threadId, suffix, i] of [
        [a, '', 0],
        [b, '|b', 1],
      ] as const) {
        const read = await suite.store.read(threadId, { afterSeq: 0, limit: 100 });
        expect(read).toEqual(result[i]);
        expect(read.map((e) => (JSON.parse(e.json) as { delta: string }).delta)).toEqual(
          TRICKY_TEXTS.map((text) => `${text}${suffix}`),
        );
      }
    });

    it('ends runs on terminal events, each in its own thread only', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      const runA = uid('run');
      const runB = uid('run');
      await suite.store.startRun(startInput(a, runA, 'cm-a'));
      await suite.store.startRun(startInput(b, runB, 'cm-b'));
      await appendMany([
        { threadId: a, events: [chunk(a, runA, 'x'), finished(a, runA)] },
        // A terminal event naming run A inside thread B's batch must not end run A (nor B).
        { threadId: b, events: [finished(b, runA), chunk(b, runB, 'y')] },
      ]);
      expect((await suite.store.getRun(runA))?.status).toBe('finished');
      expect((await suite.store.getRun(runB))?.status).toBe('running');
      await appendMany([{ threadId: b, events: [failed(b, runB)] }]);
      expect((await suite.store.getRun(runB))?.status).toBe('failed');
    });

    it('rejects the whole call when one batch is invalid, naming it, and stores nothing for any thread', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const a = await suite.newThread();
      const b = await suite.newThread();
      const runA = uid('run');
      await suite.store.startRun(startInput(a, runA, 'cm-a'));
      const bad = { ...chunk(b, 'r1', 'x'), delta: 42 } as unknown as AgentEvent;
      const error = await expectStoreError(
        appendMany([
          { threadId: a, events: [chunk(a, runA, 'ok'), finished(a, runA)] },
          { threadId: b, events: [chunk(b, 'r1', 'ok'), bad] },
        ]),
        'invalid_message',
      );
      expect(error.message).toContain('batch [1]');
      // An event of another thread inside a batch is refused the same way.
      await expectStoreError(
        appendMany([
          { threadId: a, events: [chunk(a, runA, 'ok')] },
          { threadId: b, events: [chunk(a, runA, 'smuggled')] },
        ]),
        'invalid_message',
      );
      await expectStoreError(
        appendMany([{ threadId: 'bad id!', events: [] }] as unknown as Parameters<typeof appendMany>[0]),
        'invalid_message',
      );
      expect(await suite.store.lastSeq(a)).toBe(1);
      expect(await suite.store.lastSeq(b)).toBe(0);
      expect((await suite.store.getRun(runA))?.status).toBe('running');
    });

    it('rejects the whole call with not_found when one thread does not exist, storing nothing', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const a = await suite.newThread();
      const runA = uid('run');
      await suite.store.startRun(startInput(a, runA, 'cm-a'));
      const ghost = uid('ghost');
      await expectStoreError(
        appendMany([
          { threadId: a, events: [chunk(a, runA, 'ok'), finished(a, runA)] },
          { threadId: ghost, events: [chunk(ghost, 'r1', 'x')] },
        ]),
        'not_found',
      );
      expect(await suite.store.lastSeq(a)).toBe(1);
      expect((await suite.store.getRun(runA))?.status).toBe('running');
      expect(await suite.store.getThread(ghost)).toBeNull();
    });

    it('never hands out a seq twice or leaves a hole when appendMany and append race on the same threads', async (ctx) => {
      const appendMany = appendManyOf(ctx);
      const threads = [await suite.newThread(), await suite.newThread(), await suite.newThread()];
      const calls: Promise<StoredEvent[][]>[] = [];
      for (let i = 0; i < 30; i++) {
        if (i % 3 === 0) {
          const t = threads[i % threads.length]!;
          calls.push(suite.store.append(t, [chunk(t, 'r1', `s${i}`)]).then((r) => [r]));
        } else {
          calls.push(
            appendMany(
              threads.map((t, k) => ({
                threadId: t,
                events: Array.from({ length: ((i + k) % 3) + 1 }, (_, j) => chunk(t, 'r1', `${i}.${j}`)),
              })),
            ),
          );
        }
      }
      await Promise.all(calls);
      for (const t of threads) {
        const last = await suite.store.lastSeq(t);
        const back = await suite.store.read(t, { afterSeq: 0, limit: last + 10 });
        expect(back.map((e) => e.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      }
    });
  });
}
