// The hot paths of the HTTP agent transport: the hand-written check of text chunks must accept and refuse exactly
// what the contract's schema does, and the SSE parser's fast path must keep the strict parser's meaning.
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentEventSchema, LIMITS } from '@threadline/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentTransportError, httpAgentTransport } from '../src/index.js';
import { SseParser } from '../src/agent/sse.js';

let body = '';
let url = '';
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method === 'DELETE') return void res.writeHead(204).end();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(body);
  });
});
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const request = {
  threadId: 't1',
  runId: 'r1',
  user: { id: 'u' },
  text: 'm',
  tools: { baseUrl: 'http://127.0.0.1:9', token: 'x' },
};

/** Streams `payloads` (raw JSON texts) through the transport; returns the events or the error it threw. */
async function through(payloads: string[]): Promise<{ events: unknown[]; error?: unknown }> {
  body = payloads.map((p) => `data: ${p}\n\n`).join('');
  const events: unknown[] = [];
  try {
    const transport = httpAgentTransport({ url, credential: 's' });
    for await (const e of transport.run(request, { signal: new AbortController().signal })) events.push(e);
    return { events };
  } catch (error) {
    return { events, error };
  }
}

const chunk = {
  type: 'TEXT_MESSAGE_CHUNK',
  threadId: 't1',
  runId: 'r1',
  ts: 1,
  messageId: 'm1',
  delta: 'hé 🌍',
};

describe('httpAgentTransport text chunk check', () => {
  const bad: [string, unknown][] = [
    ['an extra key', { ...chunk, extra: 1 }],
    ['a missing messageId', { ...chunk, messageId: undefined }],
    ['a messageId with a space', { ...chunk, messageId: 'm 1' }],
    ['an empty messageId', { ...chunk, messageId: '' }],
    ['an empty threadId', { ...chunk, threadId: '' }],
    ['a runId over the length bound', { ...chunk, runId: 'r'.repeat(LIMITS.maxIdLength + 1) }],
    ['a fractional ts', { ...chunk, ts: 1.5 }],
    ['a negative ts', { ...chunk, ts: -1 }],
    ['a ts as a string', { ...chunk, ts: '1' }],
    ['an unsafe integer ts', { ...chunk, ts: 2 ** 53 }],
    ['a delta over the bound', { ...chunk, delta: 'x'.repeat(LIMITS.maxDeltaLength + 1) }],
    // One UTF-16 unit over, though far fewer code points: the contract counts UTF-16 units, as this check does.
    [
      'an astral delta one UTF-16 unit over the bound',
      { ...chunk, delta: '🌍'.repeat(LIMITS.maxDeltaLength / 2) + 'x' },
    ],
    ['a numeric delta', { ...chunk, delta: 5 }],
    ['an array', [chunk]],
    ['null', null],
  ];
  it.each(bad)('refuses a chunk with %s, as the schema does', async (_name, value) => {
    const payload = JSON.stringify(value);
    expect(AgentEventSchema.safeParse(JSON.parse(payload)).success).toBe(false);
    // After a valid chunk, so ids it has already seen cannot wave a bad one through.
    const { events, error } = await through([JSON.stringify(chunk), payload]);
    expect(events).toEqual([chunk]);
    expect(error).toBeInstanceOf(AgentTransportError);
    expect((error as AgentTransportError).runErrorCode).toBe('agent_stream_invalid');
  });

  it('refuses an own __proto__ key', async () => {
    const payload = JSON.stringify(chunk).replace('{', '{"__proto__":{"x":1},');
    const { error } = await through([payload]);
    expect((error as AgentTransportError).runErrorCode).toBe('agent_stream_invalid');
  });

  it('accepts valid chunks whatever their key order, with ids and bounds at their limits', async () => {
    const edge = {
      delta: 'x'.repeat(LIMITS.maxDeltaLength),
      messageId: `A.b:c-_${'9'.repeat(LIMITS.maxIdLength - 7)}`,
      ts: Number.MAX_SAFE_INTEGER,
      runId: 'r1',
      threadId: 't1',
      type: 'TEXT_MESSAGE_CHUNK',
    };
    const others = [
      { type: 'RUN_STARTED', threadId: 't1', runId: 'r1', ts: 0 },
      { ...chunk, messageId: 'm3', delta: '🌍'.repeat(LIMITS.maxDeltaLength / 2) },
      { ...chunk, messageId: 'm2' },
      { type: 'RUN_FINISHED', threadId: 't1', runId: 'r1', ts: 2 },
    ];
    const all = [chunk, edge, ...others];
    for (const e of all) expect(AgentEventSchema.safeParse(e).success).toBe(true);
    const { events, error } = await through(all.map((e) => JSON.stringify(e)));
    expect(error).toBeUndefined();
    expect(events).toEqual(all);
  });
});

describe('SseParser', () => {
  const feed = (parser: SseParser, text: string, step: number) => {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += step) out.push(...parser.push(text.slice(i, i + step)));
    return out;
  };
  const stream =
    ': ping\n\ndata: {"a":1}\n\ndata:{"b":2}\r\n\r\nevent: message\nid: 7\nretry: 5\ndata: [1,\ndata\ndata: 2]\n\n' +
    'data: tail\n\n';
  it.each([1, 2, 3, 7, 1000])(
    'reads the same events whatever the split (%i characters at a time)',
    (step) => {
      expect(feed(new SseParser(1000), stream, step)).toEqual(['{"a":1}', '{"b":2}', '[1,\n\n2]', 'tail']);
    },
  );

  it('refuses unknown fields and event types', () => {
    expect(() => new SseParser(100).push('foo: 1\n')).toThrow(/malformed SSE line/);
    expect(() => new SseParser(100).push('event: other\n')).toThrow(/unknown type "other"/);
  });

  it('bounds an event in one data line, across data lines, and in an unfinished line', () => {
    expect(() => new SseParser(10).push(`data: ${'x'.repeat(11)}\n`)).toThrow(/longer than 10/);
    expect(() => new SseParser(10).push('data: 12345\ndata: 67890\n')).toThrow(/longer than 10/);
    const p = new SseParser(10);
    p.push('data: 123');
    expect(() => p.push('45678901')).toThrow(/longer than 10/);
  });
});

describe('httpAgentTransport connections (node:http by default)', () => {
  /** An agent whose handler the test writes; counts TCP connections and reports each request's close. */
  async function agent(handler: (res: ServerResponse, request: typeof base) => void) {
    const state = { connections: 0, closed: 0, requests: 0 };
    const srv = createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        if (req.method === 'DELETE') return void res.writeHead(204).end();
        state.requests++;
        res.on('close', () => state.closed++);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        handler(res, JSON.parse(text) as typeof base);
      });
    });
    srv.on('connection', () => state.connections++);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const stop = async () => {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    };
    return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, state, stop };
  }
  const base = { ...request };
  const line = (e: object) => `data: ${JSON.stringify(e)}\n\n`;
  const finished = (r: typeof base) => ({
    type: 'RUN_FINISHED',
    threadId: r.threadId,
    runId: r.runId,
    ts: 1,
  });
  const started = (r: typeof base) => ({ type: 'RUN_STARTED', threadId: r.threadId, runId: r.runId, ts: 1 });
  const drain = async (it: AsyncIterable<unknown>) => {
    const out: unknown[] = [];
    for await (const e of it) out.push(e);
    return out;
  };

  it('ends the stream at the terminal event and reuses the connection for the next run', async () => {
    const a = await agent((res, r) => res.end(line(started(r)) + line(finished(r))));
    try {
      const t = httpAgentTransport({ url: a.url, credential: 's' });
      for (const runId of ['r1', 'r2', 'r3']) {
        const events = await drain(t.run({ ...base, runId }, { signal: new AbortController().signal }));
        expect(events).toEqual([started({ ...base, runId }), finished({ ...base, runId })]);
        await new Promise((r) => setImmediate(r)); // the drained socket goes back to the pool
      }
      expect(a.state.requests).toBe(3);
      expect(a.state.connections).toBe(1);
    } finally {
      await a.stop();
    }
  });

  it('cuts off an agent that keeps the response open after the terminal event', async () => {
    const a = await agent((res, r) => res.write(line(finished(r)))); // and never ends
    try {
      const t = httpAgentTransport({ url: a.url, credential: 's' });
      const events = await drain(t.run(base, { signal: new AbortController().signal }));
      expect(events).toHaveLength(1);
      const t0 = Date.now();
      while (a.state.closed === 0) await new Promise((r) => setTimeout(r, 20));
      expect(Date.now() - t0).toBeLessThan(3_000);
    } finally {
      await a.stop();
    }
  });

  it('drops the connection when the run is aborted mid-stream', async () => {
    let timer: NodeJS.Timeout | undefined;
    const a = await agent((res, r) => {
      res.write(line(started(r)));
      timer = setInterval(() => res.write(': ping\n\n'), 5);
      res.on('close', () => clearInterval(timer));
    });
    try {
      const t = httpAgentTransport({ url: a.url, credential: 's' });
      const controller = new AbortController();
      const reason = new Error('stop');
      const seen: unknown[] = [];
      const error = await (async () => {
        for await (const e of t.run(base, { signal: controller.signal })) {
          seen.push(e);
          controller.abort(reason);
        }
      })().catch((e: unknown) => e);
      expect(seen).toHaveLength(1);
      expect(error).toBeInstanceOf(Error);
      while (a.state.closed === 0) await new Promise((r) => setTimeout(r, 10));
    } finally {
      clearInterval(timer);
      await a.stop();
    }
  });

  it('uses an injected fetch instead when one is given', async () => {
    const a = await agent((res, r) => res.end(line(started(r)) + line(finished(r))));
    try {
      let calls = 0;
      const counting: typeof fetch = (input, init) => {
        calls++;
        return fetch(input, init);
      };
      const t = httpAgentTransport({ url: a.url, credential: 's', fetch: counting });
      const events = await drain(t.run(base, { signal: new AbortController().signal }));
      expect(events).toEqual([started(base), finished(base)]);
      expect(calls).toBe(1);
    } finally {
      await a.stop();
    }
  });
});
