// Property: random interleavings of sends, agent output, cancels, subscribes and instance stops across two relay
// instances on one PostgreSQL. An instance is stopped at its seams, as a crash looks from outside: its store
// handle and its pub/sub then refuse everything (its lease is no longer renewed, nothing it does reaches the
// database or the other instance) and its agent sends nothing more. Afterwards every thread's log has
// contiguous seqs, every run exactly one terminal event, and every subscriber got a contiguous slice of the log.
import { parseSequencedEvent } from '@threadline/contracts';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRelay, InProcessPubSub, StoreError, type Relay } from '../src/index.js';
import type { ControlListener, ControlMessage, ThreadListener, ThreadPubSub } from '../src/core/pubsub.js';
import { openPostgresStore, type PostgresStore } from '../src/stores/postgres.js';
import type { EventStore, StoredEvent } from '../src/stores/store.js';
import type { Subscription } from '../src/core/subscription.js';
import { ControlledAgent, tokens, type ControlledRun } from './helpers.js';
import { startPostgres, type TestPostgres } from './servers.js';

let pg: TestPostgres;
beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);
afterAll(async () => {
  await pg?.destroy();
});

/** A store handle that, once cut, refuses every call (a crashed process's connections). */
function cuttableStore(inner: EventStore): { store: EventStore; cut(): void } {
  let cut = false;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || prop === 'close') return value;
      return (...args: unknown[]) =>
        cut
          ? Promise.reject(new StoreError('store_error', 'this instance was stopped'))
          : (value as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { store, cut: () => (cut = true) };
}

/** This instance's view of a shared pub/sub; once cut it neither sends nor hears anything. */
class CuttablePubSub implements ThreadPubSub {
  cut = false;
  readonly #inner: InProcessPubSub;
  constructor(inner: InProcessPubSub) {
    this.#inner = inner;
  }
  publish(threadId: string, events: readonly StoredEvent[]): void {
    if (!this.cut) this.#inner.publish(threadId, events);
  }
  subscribe(threadId: string, listener: ThreadListener): () => void {
    return this.#inner.subscribe(threadId, (events) => {
      if (!this.cut) listener(events);
    });
  }
  listenerCount(threadId: string): number {
    return this.#inner.listenerCount(threadId);
  }
  publishControl(message: ControlMessage): void {
    if (!this.cut) this.#inner.publishControl(message);
  }
  subscribeControl(listener: ControlListener): () => void {
    return this.#inner.subscribeControl((message) => {
      if (!this.cut) listener(message);
    });
  }
}

type Cmd =
  | { kind: 'send'; inst: number; thread: number; msg: number }
  | { kind: 'chunks'; inst: number; count: number }
  | { kind: 'finish'; inst: number }
  | { kind: 'cancel'; inst: number; which: number }
  | { kind: 'subscribe'; inst: number; thread: number; back: number }
  | { kind: 'stop'; inst: number }
  | { kind: 'tick'; ms: number };

const inst = fc.integer({ min: 0, max: 1 });
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({
    kind: fc.constant('send' as const),
    inst,
    thread: fc.integer({ min: 0, max: 2 }),
    msg: fc.integer({ min: 0, max: 3 }),
  }),
  fc.record({ kind: fc.constant('chunks' as const), inst, count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('finish' as const), inst }),
  fc.record({ kind: fc.constant('cancel' as const), inst, which: fc.nat(20) }),
  fc.record({
    kind: fc.constant('subscribe' as const),
    inst,
    thread: fc.integer({ min: 0, max: 2 }),
    back: fc.integer({ min: 0, max: 3 }),
  }),
  fc.record({ kind: fc.constant('stop' as const), inst }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 30 }) }),
);

const user = { id: 'user-p' };
const LEASE = { leaseTtlMs: 400, leaseRenewMs: 100, leaseSweepMs: 100 };
let round = 0;

interface Node {
  relay: Relay;
  raw: PostgresStore;
  cut(): void;
  pubsub: CuttablePubSub;
  agent: ControlledAgent;
  stopped: boolean;
}
interface Watcher {
  threadId: string;
  afterSeq: number;
  inst: number;
  got: StoredEvent[];
  sub: Subscription;
  done: Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the scenario is doing, for the message when it gets stuck. */
let stage = '';

async function scenario(cmds: Cmd[]): Promise<void> {
  round += 1;
  stage = 'setup';
  const shared = new InProcessPubSub();
  const nodes: Node[] = [];
  for (let i = 0; i < 2; i++) {
    const raw = await openPostgresStore({ connectionString: pg.url, maxConnections: 3 });
    const { store, cut } = cuttableStore(raw);
    const pubsub = new CuttablePubSub(shared);
    const agent = new ControlledAgent();
    const relay = createRelay({
      store,
      pubsub,
      agent,
      tokens,
      toolsBaseUrl: 'http://127.0.0.1:9',
      tools: [],
      instanceId: `p${process.pid}-${round}-${i}`,
      limits: { ...LEASE, maxRunsPerUser: 100, maxRunStartsPerUser: 1_000 },
      logger: { error() {}, warn() {} },
    });
    nodes.push({ relay, raw, cut, pubsub, agent, stopped: false });
  }
  const check = nodes[0]!.raw;
  const threads = [0, 1, 2].map((t) => `pt-${process.pid}-${round}-${t}`);
  for (const threadId of threads) await check.createThread({ threadId, ownerId: user.id });
  const runIds: string[] = [];
  const watchers: Watcher[] = [];
  /** Sends and cancels under way, per instance (a stopped instance's may never settle, as in a crash). */
  const pending: Promise<unknown>[][] = [[], []];
  const finished = new Set<ControlledRun>();
  try {
    for (const [i, c] of cmds.entries()) {
      stage = `command ${i} ${JSON.stringify(c)}`;
      if (c.kind === 'tick') {
        await sleep(c.ms);
        continue;
      }
      const node = nodes[c.inst]!;
      if (node.stopped) continue;
      switch (c.kind) {
        case 'send': {
          const sent = node.relay
            .send({ user, threadId: threads[c.thread]!, text: 'hi', clientMessageId: `c${c.msg}` })
            .then(({ runId }) => {
              if (!runIds.includes(runId)) runIds.push(runId);
            })
            .catch(() => {}); // run_active, store_error after a stop, ...
          pending[c.inst]!.push(sent);
          await sent;
          break;
        }
        case 'chunks':
          for (const run of node.agent.runs) for (let k = 0; k < c.count; k++) run.push(run.chunk(`x${k}`));
          break;
        case 'finish': {
          const open = node.agent.runs.find((r) => !r.signal.aborted && !finished.has(r));
          if (open) {
            finished.add(open);
            open.push(open.finished());
          }
          break;
        }
        case 'cancel': {
          const runId = runIds[c.which % Math.max(1, runIds.length)];
          if (runId) pending[c.inst]!.push(node.relay.cancel({ user, runId }).catch(() => {}));
          break;
        }
        case 'subscribe': {
          const threadId = threads[c.thread]!;
          const afterSeq = Math.max(0, (await check.lastSeq(threadId)) - c.back);
          const sub = await node.relay.subscribe({ user, threadId, afterSeq }).catch(() => null);
          if (!sub) break;
          const w: Watcher = { threadId, afterSeq, inst: c.inst, got: [], sub, done: Promise.resolve() };
          w.done = (async () => {
            try {
              for await (const e of sub) w.got.push(e);
            } catch {
              // ended by a stop or the close: what it got so far is what is checked
            }
          })();
          watchers.push(w);
          break;
        }
        case 'stop':
          if (nodes.every((other) => other === node || !other.stopped)) {
            node.stopped = true;
            node.cut();
            node.pubsub.cut = true;
          }
          break;
      }
    }
    stage = 'waiting for pending sends and cancels';
    await Promise.all(nodes.flatMap((node, i) => (node.stopped ? [] : pending[i]!)));
    stage = 'waiting for every run to end';
    // Let every run end: live instances' agents finish theirs; a stopped instance's runs are ended by the
    // other one when their leases expire.
    const deadline = Date.now() + 15_000;
    for (;;) {
      for (const node of nodes) {
        if (node.stopped) continue;
        for (const run of node.agent.runs) {
          if (run.signal.aborted || finished.has(run)) continue;
          finished.add(run);
          run.push(run.finished());
        }
      }
      const active = await Promise.all(threads.map((t) => check.activeRun(t)));
      if (active.every((r) => r === null)) break;
      if (Date.now() > deadline) throw new Error(`runs still active: ${JSON.stringify(active)}`);
      await sleep(50);
    }
    stage = 'waiting for subscribers';
    // Live subscribers catch up with the end of their thread's log.
    for (const w of watchers) {
      if (nodes[w.inst]!.stopped) continue;
      const last = await check.lastSeq(w.threadId);
      const until = Date.now() + 10_000;
      while ((w.got.at(-1)?.seq ?? w.afterSeq) < last && !w.sub.ended) {
        if (Date.now() > until) throw new Error(`subscriber on ${w.threadId} stuck at ${w.got.at(-1)?.seq}`);
        await sleep(20);
      }
    }
  } finally {
    stage = 'closing';
    for (const w of watchers) w.sub.close();
    for (const node of nodes) await node.relay.close();
    // Closed, a stopped instance gives up what it was still trying.
    await Promise.all([...watchers.map((w) => w.done), ...pending.flat()]);
  }

  for (const threadId of threads) {
    const log = await check.read(threadId, { afterSeq: 0, limit: 100_000 });
    // Contiguous seqs from 1.
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    // Every run of the thread: exactly one terminal event (all of them ended), none before its USER_MESSAGE.
    const events = log.map((e) => parseSequencedEvent(JSON.parse(e.json) as unknown));
    const started = events.filter((e) => e.type === 'USER_MESSAGE').map((e) => e.runId);
    for (const runId of started) {
      const ends = events.filter(
        (e) => e.runId === runId && (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR'),
      );
      expect(ends, `terminal events of ${runId}`).toHaveLength(1);
      expect((await check.getRun(runId))?.status).not.toBe('running');
    }
    // Every subscriber: a contiguous slice of the log right after its afterSeq; a live one got all of it.
    for (const w of watchers.filter((x) => x.threadId === threadId)) {
      const slice = log.slice(w.afterSeq, w.afterSeq + w.got.length);
      expect(w.got).toEqual(slice);
      if (!nodes[w.inst]!.stopped) expect(w.got.length).toBe(log.length - w.afterSeq);
    }
  }
  for (const node of nodes) await node.raw.close();
}

it('two instances on one PostgreSQL: contiguous logs, one terminal per run, subscribers get contiguous slices', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(cmd, { minLength: 5, maxLength: 30 }), async (cmds) => {
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario stuck at: ${stage}`)), 60_000);
      });
      try {
        await Promise.race([scenario(cmds), stuck]);
      } finally {
        clearTimeout(timer);
      }
    }),
    { numRuns: 12, endOnFailure: true },
  );
}, 300_000);
