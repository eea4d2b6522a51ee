// createRelay's `cluster` option (and its deprecated top-level spellings) and the tool-event sink.
import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InProcessPubSub,
  createRelay,
  type Relay,
  type RelayOptions,
  type UserShares,
} from '../src/index.js';
import type { StoredEvent } from '../src/stores/store.js';
import { MemoryStore } from '../src/stores/memory.js';
import { ControlledAgent, tokens, until } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function relayWith(store: MemoryStore, extra: Partial<RelayOptions> = {}): Relay {
  const relay = createRelay({
    store,
    agent: new ControlledAgent(),
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: { error() {}, warn() {} },
    ...extra,
  });
  cleanups.push(() => relay.close());
  return relay;
}

/** UserShares that admit everything and count the slots asked for. */
function countingShares(): UserShares & { acquired: string[] } {
  const acquired: string[] = [];
  return {
    acquired,
    async acquire(key) {
      acquired.push(key);
      return true;
    },
    async release() {},
    async takeStart() {
      return { token: 't' };
    },
    async refundStart() {},
  };
}

/** A pub/sub that records what was published through it. */
function recordingPubSub(): InProcessPubSub & { seen: StoredEvent[] } {
  const pubsub = new InProcessPubSub() as InProcessPubSub & { seen: StoredEvent[] };
  pubsub.seen = [];
  const publish = pubsub.publish.bind(pubsub);
  pubsub.publish = (threadId: string, events: readonly StoredEvent[]) => {
    pubsub.seen.push(...events);
    publish(threadId, events);
  };
  return pubsub;
}

const spellings: [
  string,
  (o: Required<Pick<RelayOptions, 'pubsub' | 'instanceId' | 'userShares'>>) => Partial<RelayOptions>,
][] = [
  ['cluster', (o) => ({ cluster: o })],
  ['deprecated top-level keys', (o) => o],
];

describe('createRelay cluster options', () => {
  it.each(spellings)('takes pubsub, instanceId and userShares as %s', async (_name, spell) => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const pubsub = recordingPubSub();
    const userShares = countingShares();
    const relay = relayWith(store, spell({ pubsub, instanceId: 'pod-a', userShares }));
    expect(relay.instanceId).toBe('pod-a');
    await relay.send({ user: { id: 'alice' }, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    expect(userShares.acquired).toEqual(['runs:alice']);
    await until(() => pubsub.seen.length > 0);
    expect(JSON.parse(pubsub.seen[0]!.json)).toMatchObject({ type: 'USER_MESSAGE', text: 'hi' });
  });

  it('accepts both spellings with the same value, refuses different values with invalid_options', async () => {
    const store = new MemoryStore();
    const pubsub = new InProcessPubSub();
    expect(
      relayWith(store, { instanceId: 'a', cluster: { instanceId: 'a', pubsub }, pubsub }).instanceId,
    ).toBe('a');
    for (const extra of [
      { instanceId: 'a', cluster: { instanceId: 'b' } },
      { pubsub, cluster: { pubsub: new InProcessPubSub() } },
      { userShares: countingShares(), cluster: { userShares: countingShares() } },
    ] satisfies Partial<RelayOptions>[]) {
      expect(() => relayWith(store, extra)).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    }
    expect(() => relayWith(store, { cluster: 'x' as never })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    expect(() => relayWith(store, { cluster: { instanceId: 'has space' } })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
  });
});

describe('relay.toolEvents', () => {
  it('stores and fans out a tool event with publish’s checks', async () => {
    const store = new MemoryStore();
    await store.createThread({ threadId: 't1', ownerId: 'alice' });
    const relay = relayWith(store);
    const sub = await relay.subscribe({ user: { id: 'alice' }, threadId: 't1', afterSeq: 0 });
    const base = { threadId: 't1', runId: 'r1', ts: 1 };
    await relay.toolEvents.emit({ type: 'STATE_CHANGED', ...base, scope: 'profile', value: { name: 'Ada' } });
    const batch = await sub.nextBatch();
    expect(batch?.map((e) => e.seq)).toEqual([1]);
    expect(JSON.parse(batch![0]!.json)).toMatchObject({ type: 'STATE_CHANGED', value: { name: 'Ada' } });

    await expect(relay.toolEvents.emit({ type: 'RUN_FINISHED', ...base })).rejects.toMatchObject({
      code: 'invalid_message',
    });
    await expect(relay.toolEvents.emit(null as unknown as AgentEvent)).rejects.toMatchObject({
      code: 'invalid_message',
    });
    await expect(
      relay.toolEvents.emit({ type: 'STATE_CHANGED', ...base, threadId: 'nope', scope: 'x', value: 1 }),
    ).rejects.toMatchObject({ code: 'not_found' });
    expect(await store.lastSeq('t1')).toBe(1);
  });
});
