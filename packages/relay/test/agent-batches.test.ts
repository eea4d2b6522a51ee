// Batched agent streams: a transport's runBatches (one asynchronous step per batch of events) through the relay,
// and httpAgentTransport's own runBatches over a real HTTP agent on 127.0.0.1.
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentTransportError, httpAgentTransport } from '../src/index.js';
import type { AgentTransport } from '../src/index.js';
import { listenLocal, readAll, relayThrough, runToEnd } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Batch = readonly unknown[] | unknown;

/** A transport with only runBatches' shape in use: yields the batches `make` builds for the run. */
function batchedAgent(make: (base: { threadId: string; runId: string }) => Batch[]): AgentTransport & {
  singleRuns: number;
} {
  const agent = {
    singleRuns: 0,
    run(): AsyncIterable<AgentEvent> {
      agent.singleRuns++;
      throw new Error('run() must not be used when runBatches exists');
    },
    runBatches(request: RunRequest): AsyncIterable<readonly AgentEvent[]> {
      const batches = make({ threadId: request.threadId, runId: request.runId });
      return (async function* () {
        for (const batch of batches) {
          await new Promise((r) => setImmediate(r));
          yield batch as readonly AgentEvent[];
        }
      })();
    },
  };
  return agent;
}

const chunk = (base: { threadId: string; runId: string }, delta: string, messageId = 'm1'): AgentEvent => ({
  type: 'TEXT_MESSAGE_CHUNK',
  ...base,
  ts: 1,
  messageId,
  delta,
});

describe('a transport with runBatches', () => {
  it('is read a batch at a time, in order, and nothing after the terminal event is stored', async () => {
    const agent = batchedAgent((base) => [
      [{ type: 'RUN_STARTED', ...base, ts: 1 }, chunk(base, 'a'), chunk(base, 'b')],
      [],
      [chunk(base, 'c', 'm2'), { type: 'RUN_FINISHED', ...base, ts: 2 }, chunk(base, 'late')],
      [chunk(base, 'never read')],
    ]);
    const { relay, store } = await relayThrough(agent, cleanups);
    const events = await runToEnd(relay);
    expect(agent.singleRuns).toBe(0);
    expect(events.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    const log = await readAll(store, 't1');
    expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    const text = log
      .filter((e) => e.event.type === 'TEXT_MESSAGE_CHUNK')
      .map((e) => `${String(e.event.messageId)}:${String(e.event.delta)}`);
    // Chunks of one message in one batch are coalesced for storage; another message stays apart.
    expect(text).toEqual(['m1:ab', 'm2:c']);
    expect(log.at(-1)!.event.type).toBe('RUN_FINISHED');
  });

  it.each([
    ['a batch that is not an array', (base: { threadId: string; runId: string }) => [chunk(base, 'x')]],
    [
      'an invalid event inside a batch',
      (base: { threadId: string; runId: string }) => [
        [chunk(base, 'ok'), { ...chunk(base, 'x'), delta: 42 }],
      ],
    ],
    [
      'an event of another run inside a batch',
      (base: { threadId: string; runId: string }) => [
        [chunk(base, 'ok'), chunk({ ...base, runId: 'r_other' }, 'x')],
      ],
    ],
  ])('fails the run with agent_stream_invalid on %s', async (_name, make) => {
    const { relay, store } = await relayThrough(batchedAgent(make), cleanups);
    const events = await runToEnd(relay);
    expect(events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'agent_stream_invalid' });
    const log = await readAll(store, 't1');
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    expect(log.filter((e) => e.event.type === 'RUN_ERROR')).toHaveLength(1);
  });
});

/** A real HTTP agent on 127.0.0.1 answering every run with `write(res)`. */
async function agentServer(write: (res: ServerResponse, base: { threadId: string; runId: string }) => void) {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const { threadId, runId } = JSON.parse(body) as { threadId: string; runId: string };
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      write(res, { threadId, runId });
    });
  });
  const transport = httpAgentTransport({
    url: await listenLocal(server, cleanups),
    credential: 'agent-secret',
  });
  cleanups.push(() => transport.close());
  return transport;
}

const sse = (e: object) => `data: ${JSON.stringify(e)}\n\n`;
const request: RunRequest = {
  threadId: 't1',
  runId: 'r1',
  user: { id: 'u' },
  text: 'go',
  tools: { baseUrl: 'http://127.0.0.1:9', token: 'tok' },
};

describe('httpAgentTransport runBatches', () => {
  it('yields the events of one read together, and run() yields the same events one by one', async () => {
    const transport = await agentServer((res, base) => {
      // Four events in one write (one read on the relay side), then the end after a pause (another read).
      res.write(
        sse({ type: 'RUN_STARTED', ...base, ts: 1 }) +
          sse(chunk(base, 'a')) +
          sse(chunk(base, 'b')) +
          sse(chunk(base, 'c')),
      );
      setTimeout(() => {
        res.write(sse({ type: 'RUN_FINISHED', ...base, ts: 2 }) + sse(chunk(base, 'after the end')));
        res.end();
      }, 30);
    });
    const batches: (readonly AgentEvent[])[] = [];
    for await (const batch of transport.runBatches!(request, { signal: new AbortController().signal }))
      batches.push(batch);
    const types = [
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ];
    expect(batches.flat().map((e) => e.type)).toEqual(types);
    expect(batches.length).toBeLessThan(types.length);
    expect(batches[0]!.length).toBeGreaterThan(1);
    expect(batches.every((b) => b.length > 0)).toBe(true);

    const singles: AgentEvent[] = [];
    for await (const event of transport.run(
      { ...request, runId: 'r2' },
      { signal: new AbortController().signal },
    ))
      singles.push(event);
    expect(singles.map((e) => e.type)).toEqual(types);
  });

  it('yields the events before a bad one, then fails with agent_stream_invalid', async () => {
    const transport = await agentServer((res, base) => {
      res.end(sse({ type: 'RUN_STARTED', ...base, ts: 1 }) + sse(chunk(base, 'ok')) + 'data: {not json\n\n');
    });
    const seen: string[] = [];
    let failure: unknown;
    try {
      for await (const batch of transport.runBatches!(request, { signal: new AbortController().signal }))
        for (const e of batch) seen.push(e.type);
    } catch (error) {
      failure = error;
    }
    expect(seen).toEqual(['RUN_STARTED', 'TEXT_MESSAGE_CHUNK']);
    expect(failure).toBeInstanceOf(AgentTransportError);
    expect((failure as AgentTransportError).runErrorCode).toBe('agent_stream_invalid');
  });
});
