// A run's RUN_STARTED from the agent waits (briefly) for the run's next event, so both share one store write:
// an agent service fetches its tools and history from this API between the two, and a commit of RUN_STARTED
// alone would hold those answers up (on SQLite a commit blocks the event loop for its fsync).
import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { START_HOLD_MS } from '../src/core/thread-writer.js';
import { createRelay } from '../src/index.js';
import type { AppendBatch, EventStore } from '../src/index.js';
import { ControlledAgent, makeStore, readAll, tokens } from './helpers.js';

const U = { id: 'user-1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** The relay on a memory store whose event writes are recorded as the event types of each write. */
async function setup() {
  const { store, cleanup } = makeStore('memory');
  const writes: string[][] = [];
  const types = (events: readonly AgentEvent[]) => events.map((e) => e.type);
  const recorded = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'appendMany')
        return async (batches: readonly AppendBatch[]) => {
          if (batches.length > 0) writes.push(batches.flatMap((b) => types(b.events)));
          return target.appendMany!(batches);
        };
      if (prop === 'append')
        return async (threadId: string, events: readonly AgentEvent[]) => {
          writes.push(types(events));
          return target.append(threadId, events);
        };
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as EventStore;
  const agent = new ControlledAgent();
  const relay = createRelay({
    store: recorded,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9/api',
    tools: [],
  });
  cleanups.push(async () => {
    await relay.close();
    await cleanup();
  });
  await store.createThread({ threadId: 't1', ownerId: U.id, title: 'x' });
  return { store, relay, agent, writes };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RUN_STARTED held for the next event', () => {
  it('is written in one write with the first event that follows within START_HOLD_MS', async () => {
    const { store, relay, agent, writes } = await setup();
    await relay.send({ user: U, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await agent.nextRun(0);
    run.push(run.started());
    await sleep(Math.floor(START_HOLD_MS / 3));
    expect(writes).toEqual([]);
    run.push(run.chunk('a'));
    await sleep(START_HOLD_MS * 2);
    expect(writes).toEqual([['RUN_STARTED', 'TEXT_MESSAGE_CHUNK']]);
    run.push(run.finished());
    run.end();
    await sleep(20);
    const stored = await readAll(store, 't1');
    expect(stored.map((e) => e.event.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(stored.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('is written alone after START_HOLD_MS when nothing follows, and reaches subscribers', async () => {
    const { relay, agent, writes } = await setup();
    const sub = await relay.subscribe({ user: U, threadId: 't1', afterSeq: 0 });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of sub) {
        seen.push((JSON.parse(e.json) as AgentEvent).type);
        if (seen.length === 2) return;
      }
    })();
    await relay.send({ user: U, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await agent.nextRun(0);
    const pushed = performance.now();
    run.push(run.started());
    await reading;
    expect(performance.now() - pushed).toBeGreaterThanOrEqual(START_HOLD_MS - 2);
    expect(writes).toEqual([['RUN_STARTED']]);
    expect(seen).toEqual(['USER_MESSAGE', 'RUN_STARTED']);
    sub.close();
    run.push(run.finished());
    run.end();
  });

  it('is written before a cancel ends the run, in order', async () => {
    const { store, relay, agent } = await setup();
    await relay.send({ user: U, threadId: 't1', text: 'hi', clientMessageId: 'c1' });
    const run = await agent.nextRun(0);
    run.push(run.started());
    await sleep(1);
    await relay.cancel({ user: U, runId: run.request.runId });
    await sleep(START_HOLD_MS * 2);
    const stored = await readAll(store, 't1');
    expect(stored.map((e) => e.event.type)).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'RUN_ERROR']);
  });
});
