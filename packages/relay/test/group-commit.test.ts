// The relay's shared flush: every thread's batch of a turn goes to the store in one appendMany commit.
import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreError } from '../src/errors.js';
import { createRelay, DEFAULT_RELAY_TUNING, inProcessAgentTransport } from '../src/index.js';
import type {
  AgentTransport,
  AppendBatch,
  EventStore,
  Relay,
  RelayLimits,
  RelayTuning,
  StartRunInput,
  Subscription,
} from '../src/index.js';
import { ControlledAgent, makeStore, readAll, tokens } from './helpers.js';
import type { StoreKind } from './helpers.js';

const U = { id: 'user-1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** The real store, with every write recorded and appendMany failures switchable (the store is the seam). */
function instrumented(store: EventStore) {
  const log = {
    appendMany: [] as string[][],
    append: [] as string[],
    /** Fail the next appendMany calls with this error. */
    failNextAppendMany: [] as unknown[],
    /** Refuse appendMany calls holding this thread's batch, and its next append alone (then clear it). */
    refuseThread: null as string | null,
    startRuns: [] as string[][],
    startRun: [] as string[],
    /** Fail the next startRuns calls with this error. */
    failNextStartRuns: [] as unknown[],
    /** Refuse startRuns calls holding this thread's input (`conflict`), and its next startRun alone. */
    refuseStartThread: null as string | null,
  };
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'appendMany') {
        return async (batches: readonly AppendBatch[]) => {
          log.appendMany.push(batches.map((b) => b.threadId));
          const failure = log.failNextAppendMany.shift();
          if (failure !== undefined) throw failure;
          if (log.refuseThread !== null && batches.some((b) => b.threadId === log.refuseThread))
            throw new StoreError('invalid_message', `batch for ${log.refuseThread} refused`);
          return target.appendMany!(batches);
        };
      }
      if (prop === 'startRuns') {
        return async (inputs: readonly StartRunInput[]) => {
          log.startRuns.push(inputs.map((i) => i.threadId));
          const failure = log.failNextStartRuns.shift();
          if (failure !== undefined) throw failure;
          if (log.refuseStartThread !== null && inputs.some((i) => i.threadId === log.refuseStartThread))
            throw new StoreError('conflict', `run start for ${log.refuseStartThread} refused`);
          return target.startRuns!(inputs);
        };
      }
      if (prop === 'startRun') {
        return async (input: StartRunInput) => {
          log.startRun.push(input.threadId);
          if (input.threadId === log.refuseStartThread) {
            log.refuseStartThread = null;
            throw new StoreError('conflict', `run start for ${input.threadId} refused`);
          }
          return target.startRun(input);
        };
      }
      if (prop === 'append') {
        return async (threadId: string, events: readonly AgentEvent[]) => {
          log.append.push(threadId);
          if (threadId === log.refuseThread) {
            log.refuseThread = null;
            throw new StoreError('invalid_message', `batch for ${threadId} refused`);
          }
          return target.append(threadId, events);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { wrapped, log };
}

async function setup(
  kind: StoreKind,
  agent: AgentTransport,
  limits: Partial<RelayLimits & RelayTuning> = {},
) {
  const made = makeStore(kind);
  const { wrapped, log } = instrumented(made.store);
  const relay: Relay = createRelay({
    store: wrapped,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9/api',
    tools: [],
    logger: { error() {}, warn() {} },
    // One user stands in for many here: their per-user shares are lifted.
    limits: { maxBufferedEvents: 100_000, maxRunsPerUser: 10_000, maxRunStartsPerUser: 10_000, ...limits },
  });
  cleanups.push(async () => {
    await relay.close();
    await made.cleanup();
  });
  return { store: wrapped, log, relay };
}

async function collectUntilTerminal(sub: Subscription): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const stored of sub) {
    const e = JSON.parse(stored.json) as Record<string, unknown>;
    expect(e.seq).toBe(stored.seq);
    out.push(e);
    if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') break;
  }
  return out;
}

describe.each<StoreKind>(['sqlite', 'memory'])('shared flush on %s', (kind) => {
  /**
   * Streams `threads` runs at once, each yielding to the event loop (setImmediate) before every `yieldEvery`-th
   * chunk, so every run's chunks of a turn arrive in their own callbacks, all in one I/O turn. Distinct
   * messageIds: nothing coalesces, every chunk is its own stored event. Checks every thread's seqs are gap-free
   * and its subscriber saw exactly the stored log; returns the store, the write log and the thread ids.
   */
  async function streamTogether(
    threads: number,
    perRun: number,
    {
      limits = {},
      multiplexed,
      yieldEvery = 1,
    }: { limits?: Partial<RelayLimits & RelayTuning>; multiplexed?: boolean; yieldEvery?: number },
  ) {
    const agent = inProcessAgentTransport({
      async *run(request) {
        const base = { threadId: request.threadId, runId: request.runId };
        yield { type: 'RUN_STARTED', ...base, ts: Date.now() };
        for (let i = 0; i < perRun; i++) {
          if (i % yieldEvery === 0) await new Promise((r) => setImmediate(r));
          yield { type: 'TEXT_MESSAGE_CHUNK', ...base, ts: Date.now(), messageId: `m${i}`, delta: `${i};` };
        }
        yield { type: 'RUN_FINISHED', ...base, ts: Date.now() };
      },
    });
    const transport = multiplexed === undefined ? agent : { ...agent, multiplexed };
    const { store, log, relay } = await setup(kind, transport, limits);
    const ids = Array.from({ length: threads }, (_, i) => `t${i}`);
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    const subs = await Promise.all(
      ids.map((threadId) => relay.subscribe({ user: U, threadId, afterSeq: 0 })),
    );
    const seen = subs.map((sub) => collectUntilTerminal(sub));
    await Promise.all(
      ids.map((threadId) => relay.send({ user: U, threadId, text: 'go', clientMessageId: 'c1' })),
    );
    const delivered = await Promise.all(seen);
    for (let t = 0; t < threads; t++) {
      const stored = await readAll(store, ids[t]!);
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: perRun + 3 }, (_, i) => i + 1));
      // Subscribers saw exactly the stored log: nothing before it was stored, nothing twice, nothing missing.
      expect(delivered[t]).toEqual(stored.map((e) => ({ ...e.event, seq: e.seq })));
    }
    return { store, log, ids };
  }

  /** The size (threads) of every shared commit of a {@link streamTogether} run. */
  const commitSizes = async (...args: Parameters<typeof streamTogether>) =>
    (await streamTogether(...args)).log.appendMany.map((c) => c.length);

  it('gives many threads streaming at once gap-free per-thread seqs, in shared commits', async () => {
    const threads = 30;
    const perRun = 60;
    const { store, log, ids } = await streamTogether(threads, perRun, { yieldEvery: 5 });
    for (let t = 0; t < threads; t++) {
      const stored = await readAll(store, ids[t]!);
      expect(stored.map((e) => e.event.type)).toEqual([
        'USER_MESSAGE',
        'RUN_STARTED',
        ...Array<string>(perRun).fill('TEXT_MESSAGE_CHUNK'),
        'RUN_FINISHED',
      ]);
      expect(stored.slice(2, -1).map((e) => e.event.delta)).toEqual(
        Array.from({ length: perRun }, (_, i) => `${i};`),
      );
    }
    // The point of the shared flush: several threads per commit, far fewer commits than thread batches.
    const batches = log.appendMany.reduce((n, c) => n + c.length, 0) + log.append.length;
    const commits = log.appendMany.length + log.append.length;
    expect(Math.max(...log.appendMany.map((c) => c.length))).toBeGreaterThanOrEqual(threads / 2);
    expect(commits * 3).toBeLessThan(batches);
    // A thread appears at most once per commit (its writer has one write in flight at a time).
    for (const commit of log.appendMany) expect(new Set(commit).size).toBe(commit.length);
  });

  it('starts the shared write as soon as earlyWriteThreads threads are waiting, not at the end of the turn', async () => {
    const threads = 12;
    const perRun = 20;
    const early = 4;
    const sizes = await commitSizes(threads, perRun, { limits: { earlyWriteThreads: early } });
    // Without the early write each turn's 12 chunks (one per thread) would share one commit; with it a commit
    // starts once 4 threads are waiting. The RUN_STARTED events, all queued in one callback, wait for their runs'
    // first chunks (ThreadWriter.hold), so no commit is bigger.
    expect(sizes.filter((n) => n > early)).toHaveLength(0);
    expect(sizes.filter((n) => n === early).length).toBeGreaterThanOrEqual((threads * perRun) / early);
  });

  it('leaves the early write off for a multiplexed transport unless earlyWriteThreads is set, and at 0', async () => {
    const threads = DEFAULT_RELAY_TUNING.earlyWriteThreads + 20;
    const early = DEFAULT_RELAY_TUNING.earlyWriteThreads;
    // A transport with a connection per run: the default splits each turn's writes at 256 threads.
    const perRunConnection = await commitSizes(threads, 2, {});
    expect(perRunConnection.filter((n) => n === early).length).toBeGreaterThanOrEqual(2);
    // All runs on one connection (one read carries every run's events): each turn is one commit of every thread.
    for (const sizes of [
      await commitSizes(threads, 2, { multiplexed: true }),
      await commitSizes(threads, 2, { limits: { earlyWriteThreads: 0 }, multiplexed: false }),
    ]) {
      expect(sizes.filter((n) => n === early)).toEqual([]);
      expect(sizes.filter((n) => n === threads).length).toBeGreaterThanOrEqual(2);
    }
    // Set explicitly, it applies to a multiplexed transport too.
    const explicit = await commitSizes(12, 4, { limits: { earlyWriteThreads: 4 }, multiplexed: true });
    expect(explicit.filter((n) => n === 4).length).toBeGreaterThanOrEqual(12);
  });

  it('refuses an earlyWriteThreads that is negative or not a number, with code invalid_options', () => {
    for (const earlyWriteThreads of [-1, Number.NaN, Number.POSITIVE_INFINITY, '8' as unknown as number]) {
      let error: unknown;
      try {
        createRelay({
          store: makeStore('memory').store,
          agent: new ControlledAgent(),
          tokens,
          toolsBaseUrl: 'http://127.0.0.1:9/api',
          tools: [],
          limits: { earlyWriteThreads },
        });
      } catch (e) {
        error = e;
      }
      expect(error, String(earlyWriteThreads)).toMatchObject({ code: 'invalid_options' });
    }
  });

  it('fails exactly the runs of a shared commit that failed, with RUN_ERROR store_unavailable', async () => {
    const agent = new ControlledAgent();
    const { store, log, relay } = await setup(kind, agent);
    const ids = ['ta', 'tb', 'tc'];
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    const subs = await Promise.all(
      ids.map((threadId) => relay.subscribe({ user: U, threadId, afterSeq: 0 })),
    );
    const seen = subs.map((sub) => collectUntilTerminal(sub));
    const runIds: string[] = [];
    for (const threadId of ids) {
      runIds.push((await relay.send({ user: U, threadId, text: 'go', clientMessageId: 'c1' })).runId);
    }
    const [a, b, c] = await Promise.all([0, 1, 2].map((i) => agent.nextRun(i)));
    a!.push(a!.started());
    b!.push(b!.started());
    c!.push(c!.started());
    // RUN_STARTED is held up to START_HOLD_MS before it is written: poll by wall time.
    await expect
      .poll(() => Promise.all(ids.map((t) => store.lastSeq(t))), { timeout: 5_000, interval: 1 })
      .toEqual(ids.map(() => 2));

    // A and B stream in the same turn, so their batches share one commit, and that commit fails.
    log.failNextAppendMany.push(new Error('disk I/O error'));
    const failedCall = log.appendMany.length;
    a!.push(a!.chunk('lost a'));
    b!.push(b!.chunk('lost b'));
    const [seenA, seenB] = await Promise.all([seen[0]!, seen[1]!]);
    expect(log.appendMany[failedCall]).toEqual(['ta', 'tb']);
    for (const [events, runId] of [
      [seenA, runIds[0]],
      [seenB, runIds[1]],
    ] as const) {
      expect(events.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'RUN_ERROR']);
      expect(events[2]).toMatchObject({ code: 'store_unavailable', runId });
    }
    expect(a!.signal.aborted).toBe(true);
    expect(b!.signal.aborted).toBe(true);
    for (const threadId of ['ta', 'tb']) {
      expect((await readAll(store, threadId)).map((e) => e.event.type)).toEqual([
        'USER_MESSAGE',
        'RUN_STARTED',
        'RUN_ERROR',
      ]);
    }
    // C was not in that commit: it goes on and finishes.
    expect(c!.signal.aborted).toBe(false);
    c!.push(c!.chunk('kept c'), c!.finished());
    const seenC = await seen[2]!;
    expect(seenC.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(seenC[2]).toMatchObject({ delta: 'kept c' });
    expect((await store.getRun(runIds[2]!))?.status).toBe('finished');
    expect((await store.getRun(runIds[0]!))?.status).toBe('failed');
  });

  it('retries batches one by one when the store refused a shared commit for one batch, failing only that run', async () => {
    const agent = new ControlledAgent();
    const { store, log, relay } = await setup(kind, agent);
    const ids = ['ta', 'tb'];
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    const subs = await Promise.all(
      ids.map((threadId) => relay.subscribe({ user: U, threadId, afterSeq: 0 })),
    );
    const seen = subs.map((sub) => collectUntilTerminal(sub));
    for (const threadId of ids) await relay.send({ user: U, threadId, text: 'go', clientMessageId: 'c1' });
    const [a, b] = await Promise.all([agent.nextRun(0), agent.nextRun(1)]);
    a!.push(a!.started());
    b!.push(b!.started());
    // RUN_STARTED is held up to START_HOLD_MS before it is written: poll by wall time.
    await expect
      .poll(() => Promise.all(ids.map((t) => store.lastSeq(t))), { timeout: 5_000, interval: 1 })
      .toEqual(ids.map(() => 2));

    log.refuseThread = 'ta';
    const firstRetry = log.append.length;
    a!.push(a!.chunk('refused'));
    b!.push(b!.chunk('kept b'));
    const seenA = await seen[0]!;
    expect(seenA.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'RUN_ERROR']);
    expect(seenA[2]).toMatchObject({ code: 'store_unavailable' });
    // B's batch was in the refused commit, then written alone.
    expect(log.append.slice(firstRetry)).toEqual(expect.arrayContaining(['ta', 'tb']));
    b!.push(b!.finished());
    const seenB = await seen[1]!;
    expect(seenB.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(seenB[2]).toMatchObject({ delta: 'kept b' });
    // A's RUN_ERROR was stored: the store refused only the chunk's batch.
    expect((await readAll(store, 'ta')).map((e) => e.event.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'RUN_ERROR',
    ]);
  });
});

describe.each<StoreKind>(['sqlite', 'memory'])('grouped run starts on %s', (kind) => {
  async function sendAll(relay: Relay, threadIds: string[], clientMessageId = 'c1') {
    return Promise.allSettled(
      threadIds.map((threadId) => relay.send({ user: U, threadId, text: 'go', clientMessageId })),
    );
  }

  it('starts a burst of sends in shared startRuns commits, each answered as alone (idempotent, one run per thread)', async () => {
    const agent = new ControlledAgent();
    const { store, log, relay } = await setup(kind, agent);
    const ids = Array.from({ length: 20 }, (_, i) => `t${i}`);
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    const [first, retry, other] = await Promise.all([
      sendAll(relay, ids),
      sendAll(relay, ['t0']), // same clientMessageId: the same run
      sendAll(relay, ['t1'], 'c2'), // another message while t1's run is running
    ]);
    const runIds = first.map((r) =>
      r.status === 'fulfilled' ? r.value.runId : `failed: ${String(r.reason)}`,
    );
    expect(new Set(runIds).size).toBe(ids.length);
    expect(retry[0]).toEqual({ status: 'fulfilled', value: { runId: runIds[0] } });
    expect(other[0]?.status).toBe('rejected');
    if (other[0]?.status === 'rejected') expect(other[0].reason).toMatchObject({ code: 'run_active' });
    // The point: far fewer commits than sends.
    expect(Math.max(...log.startRuns.map((c) => c.length))).toBeGreaterThanOrEqual(ids.length / 2);
    expect(log.startRuns.length + log.startRun.length).toBeLessThan(ids.length / 2);
    for (const commit of log.startRuns) expect(new Set(commit).size).toBe(commit.length);
    for (let t = 0; t < ids.length; t++) {
      const stored = await readAll(store, ids[t]!);
      expect(stored.map((e) => [e.seq, e.event.type, e.event.runId])).toEqual([
        [1, 'USER_MESSAGE', runIds[t]],
      ]);
      expect((await store.activeRun(ids[t]!))?.runId).toBe(runIds[t]);
    }
    // Every run goes on to stream normally.
    const runs = await Promise.all(ids.map((_, i) => agent.nextRun(i)));
    expect(runs.map((r) => r?.request.runId).sort()).toEqual([...runIds].sort());
  });

  it('retries run starts one by one when the store refused the shared commit for one, failing only that send', async () => {
    const agent = new ControlledAgent();
    const { store, log, relay } = await setup(kind, agent);
    const ids = ['ta', 'tb', 'tc'];
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    log.refuseStartThread = 'tb';
    const results = await sendAll(relay, ids);
    expect(log.startRuns[0]).toEqual(ids);
    expect(log.startRun).toEqual(expect.arrayContaining(ids));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // The store's own refusal of that input, as a lone startRun would have given it.
    if (results[1]?.status === 'rejected') expect(results[1].reason).toMatchObject({ code: 'conflict' });
    expect(await store.lastSeq('tb')).toBe(0);
    for (const threadId of ['ta', 'tc']) {
      expect((await readAll(store, threadId)).map((e) => e.event.type)).toEqual(['USER_MESSAGE']);
    }
  });

  it('fails every send of a shared run-start commit that failed, storing nothing; a retry then starts', async () => {
    const agent = new ControlledAgent();
    const { store, log, relay } = await setup(kind, agent);
    const ids = ['ta', 'tb'];
    for (const threadId of ids) await store.createThread({ threadId, ownerId: U.id });
    log.failNextStartRuns.push(new Error('disk I/O error'));
    const results = await sendAll(relay, ids);
    expect(log.startRuns[0]).toEqual(ids);
    expect(log.startRun).toEqual([]); // not retried: a failure that might have written is never repeated
    for (const r of results) {
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'store_error' });
    }
    expect(agent.runs).toHaveLength(0);
    const again = await sendAll(relay, ids);
    expect(again.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    for (const threadId of ids) expect(await store.lastSeq(threadId)).toBe(1);
  });
});
