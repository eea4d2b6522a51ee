import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentTransportError, RelayError, createRelay, httpAgentTransport } from '../src/index.js';
import {
  BAD_AGENT_STREAMS,
  listenLocal,
  makeStore,
  readAll,
  relayThrough,
  runToEnd,
  sseEvent as ev,
  tokens,
} from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real HTTP agent on 127.0.0.1 whose handler the test writes. */
async function agentServer(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{
  url: string;
  server: Server;
  requests: { method: string; url: string; auth: string | undefined; body: string }[];
}> {
  const requests: { method: string; url: string; auth: string | undefined; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, body });
      if (req.method === 'DELETE') res.writeHead(204).end();
      else handler(req, res, body);
    });
  });
  return { url: await listenLocal(server, cleanups), server, requests };
}

function sse(res: ServerResponse, chunks: string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const c of chunks) res.write(c);
  res.end();
}

const relayOver = (url: string, limits = {}, waitForAgentMs = 0) =>
  relayThrough(
    httpAgentTransport({ url, credential: () => 'agent-secret', connectTimeoutMs: 2_000, waitForAgentMs }),
    cleanups,
    limits,
  );

/** A URL on 127.0.0.1 where nothing listens now (the port of a server that was just closed). */
async function refusingUrl(): Promise<{ url: string; port: number }> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  return { url: `http://127.0.0.1:${port}`, port };
}

const request = {
  threadId: 't',
  runId: 'r',
  user: { id: 'u' },
  text: 'm',
  tools: { baseUrl: 'http://127.0.0.1:9', token: 'x' },
};

/** Runs `request` through `transport` to its end; the error it failed with (undefined if none). */
async function failureOf(transport: ReturnType<typeof httpAgentTransport>): Promise<unknown> {
  try {
    for await (const _ of transport.run(request, { signal: new AbortController().signal })) void _;
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('httpAgentTransport: an agent that is starting or restarting', () => {
  it('retries refused connections until the agent listens, then runs to RUN_FINISHED', async () => {
    const { url, port } = await refusingUrl();
    const { relay } = await relayOver(url, {}, 5_000);
    const attempts: number[] = [];
    const run = runToEnd(relay);
    // The agent comes up only after the relay has been refused a few times.
    await new Promise((r) => setTimeout(r, 400));
    const server = createServer((req, res) => {
      attempts.push(Date.now());
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => sse(res, [ev(body, { type: 'RUN_STARTED' }), ev(body, { type: 'RUN_FINISHED' })]));
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const events = await run;
    expect(events.map((e) => e.type)).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'RUN_FINISHED']);
    expect(attempts).toHaveLength(1); // refused attempts never reached it; the run was posted once
  });

  it('fails with agent_unreachable once the bound has passed, and not before', async () => {
    const { url } = await refusingUrl();
    const { relay } = await relayOver(url, {}, 600);
    const started = Date.now();
    const events = await runToEnd(relay);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    expect(events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'agent_unreachable' });
    expect(String(events.at(-1)?.message)).toMatch(/within 600 ms.*ECONNREFUSED/);
  });

  it('stops waiting when the run is cancelled', async () => {
    const { url } = await refusingUrl();
    const { relay } = await relayOver(url, {}, 30_000);
    const sub = await relay.subscribe({ user: { id: 'u' }, threadId: 't1', afterSeq: 0 });
    const started = Date.now();
    const { runId } = await relay.send({
      user: { id: 'u' },
      threadId: 't1',
      text: 'go',
      clientMessageId: 'c1',
    });
    setTimeout(() => void relay.cancel({ user: { id: 'u' }, runId }), 200);
    let last: Record<string, unknown> | undefined;
    for await (const s of sub) {
      last = JSON.parse(s.json) as Record<string, unknown>;
      if (last.type === 'RUN_FINISHED' || last.type === 'RUN_ERROR') break;
    }
    expect(last).toMatchObject({ runId, type: 'RUN_ERROR', code: 'cancelled' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a negative or fractional waitForAgentMs with invalid_options', () => {
    for (const waitForAgentMs of [-1, 0.5, Number.NaN]) {
      expect(() =>
        httpAgentTransport({ url: 'http://127.0.0.1:1', credential: 'x', waitForAgentMs }),
      ).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    }
  });
});

describe('httpAgentTransport', () => {
  it('refuses a malformed url or bound when created, with code invalid_options', () => {
    for (const options of [
      { url: 'not a url', credential: 'x' },
      { url: 'ftp://127.0.0.1/agent', credential: 'x' },
      { url: 'http://127.0.0.1:1', credential: 'x', connectTimeoutMs: 0 },
      { url: 'http://127.0.0.1:1', credential: 'x', maxEventLength: 1.5 },
      { url: 'http://127.0.0.1:1', credential: 'x', cancelTimeoutMs: -1 },
    ]) {
      let error: unknown;
      try {
        httpAgentTransport(options);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(RelayError);
      expect((error as RelayError).code).toBe('invalid_options');
    }
    expect(() => httpAgentTransport({ url: 'http://127.0.0.1:1/', credential: 'x' })).not.toThrow();
  });

  it('posts the run request with the credential and parses a strict SSE stream split anywhere', async () => {
    const agent = await agentServer((_req, res, body) => {
      const text =
        ': ping\n\n' +
        ev(body, { type: 'RUN_STARTED' }).replace(/\n\n$/, '\r\n\r\n') +
        'event: message\nid: 1\n' +
        ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: 'héllo 🌍' }) +
        // One event split over two data lines is joined with a newline (JSON allows it between tokens).
        ev(body, { type: 'RUN_FINISHED' }).replace('"type"', '\ndata: "type"');
      // Bytes one at a time, so lines and UTF-8 sequences are cut at every possible place.
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      const bytes = Buffer.from(text);
      let i = 0;
      const tick = () => {
        if (i >= bytes.length) return void res.end();
        res.write(bytes.subarray(i, i + 1));
        i++;
        setImmediate(tick);
      };
      tick();
    });
    const { relay } = await relayOver(agent.url);
    const events = await runToEnd(relay);
    expect(events.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(events[2]).toMatchObject({ delta: 'héllo 🌍' });
    expect(agent.requests[0]).toMatchObject({ method: 'POST', url: '/runs', auth: 'Bearer agent-secret' });
    expect(JSON.parse(agent.requests[0]!.body)).toMatchObject({
      threadId: 't1',
      text: 'go',
      user: { id: 'u' },
    });
  });

  it.each(BAD_AGENT_STREAMS)('turns %s into RUN_ERROR', async (_name, chunks, code) => {
    const agent = await agentServer((_req, res, body) => sse(res, chunks(body)));
    const { relay, store } = await relayOver(agent.url);
    const events = await runToEnd(relay);
    expect(events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code });
    expect((await readAll(store, 't1')).at(-1)?.event).toMatchObject({ type: 'RUN_ERROR', code });
    if (code === 'agent_stream_invalid') {
      // The agent is told to stop: DELETE /runs/:runId.
      await until(() => agent.requests.some((r) => r.method === 'DELETE'));
      const runId = events[0]!.runId as string;
      expect(agent.requests.find((r) => r.method === 'DELETE')).toMatchObject({
        url: `/runs/${runId}`,
        auth: 'Bearer agent-secret',
      });
    }
  });

  it('reports unreachable agents, HTTP errors, wrong content types and idle agents with their codes', async () => {
    const refused = await agentServer(() => {});
    const deadUrl = refused.url;
    await new Promise<void>((r) => refused.server.close(() => r()));
    expect((await runToEnd((await relayOver(deadUrl)).relay)).at(-1)).toMatchObject({
      code: 'agent_unreachable',
    });

    const failing = await agentServer((_req, res) => res.writeHead(503).end('overloaded '.repeat(10_000)));
    const failed = (await runToEnd((await relayOver(failing.url)).relay)).at(-1);
    expect(failed).toMatchObject({ code: 'agent_unreachable' });
    expect(String(failed?.message)).toMatch(/HTTP 503: overloaded/);
    expect(String(failed?.message).length).toBeLessThan(400);

    const html = await agentServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>'),
    );
    expect((await runToEnd((await relayOver(html.url)).relay)).at(-1)).toMatchObject({
      code: 'agent_stream_invalid',
    });

    const stalled = await agentServer((_req, res, body) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(ev(body, { type: 'RUN_STARTED' }));
    });
    const idle = await runToEnd((await relayOver(stalled.url, { agentIdleTimeoutMs: 200 })).relay);
    expect(idle.at(-1)).toMatchObject({ code: 'agent_idle_timeout' });
  });

  it('fails a stream with a typed error when used on its own', async () => {
    const agent = await agentServer((_req, res) => sse(res, ['data: [1,2]\n\n']));
    const transport = httpAgentTransport({ url: `${agent.url}/`, credential: 's' });
    const error = await failureOf(transport);
    expect(error).toBeInstanceOf(AgentTransportError);
    expect((error as AgentTransportError).runErrorCode).toBe('agent_stream_invalid');
    expect(agent.requests[0]!.url).toBe('/runs');
  });

  it('reports an agent at capacity (429) as agent_busy with its Retry-After, over node:http and an injected fetch alike', async () => {
    for (const [header, expected] of [
      ['7', 7_000],
      ['soon', undefined],
      ['99999999', undefined],
    ] as const) {
      const agent = await agentServer((_req, res) => {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': header });
        res.end('{"error":{"code":"too_many_runs","message":"At most 1 runs at once; retry shortly."}}');
      });
      const fetched = httpAgentTransport({ url: agent.url, credential: 's', fetch });
      for (const transport of [httpAgentTransport({ url: agent.url, credential: 's' }), fetched]) {
        const error = await failureOf(transport);
        expect(error).toBeInstanceOf(AgentTransportError);
        expect((error as AgentTransportError).runErrorCode, header).toBe('agent_busy');
        expect((error as AgentTransportError).retryAfterMs, header).toBe(expected);
        expect((error as Error).message).toMatch(/HTTP 429.*too_many_runs/);
      }
    }
  });

  it("words an agent service's error body as its code and message, and any other body as its start", async () => {
    const issues = [{ path: 'text', message: 'required: the user text, as text' }];
    for (const [status, body, expected] of [
      [
        400,
        JSON.stringify({ error: { code: 'invalid_request', message: 'run request: bad text', issues } }),
        'the agent answered HTTP 400: invalid_request: run request: bad text',
      ],
      [400, '{"error":{"code":"teapot","message":"short and stout"}}', 'HTTP 400: {"error":{"code":"teapot"'],
      [502, `<html>\n  ${'bad gateway '.repeat(40)}</html>`, 'HTTP 502: <html> bad gateway bad gateway'],
      [500, '', 'the agent answered HTTP 500'],
    ] as const) {
      const agent = await agentServer((_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      });
      const transport = httpAgentTransport({ url: agent.url, credential: 's' });
      const error = await failureOf(transport);
      transport.close();
      expect(error).toBeInstanceOf(AgentTransportError);
      expect((error as AgentTransportError).runErrorCode).toBe('agent_unreachable');
      const message = (error as Error).message;
      expect(message).toContain(expected);
      expect(message.length).toBeLessThanOrEqual('the agent answered HTTP 502: '.length + 200);
    }
  });
});

describe('an agent process killed mid-stream', () => {
  const fixture = fileURLToPath(new URL('./fixtures/sse-agent.mjs', import.meta.url));

  async function startAgent(port = 0): Promise<{ child: ChildProcess; port: number }> {
    const child = spawn(process.execPath, [fixture, String(port), 'agent-secret'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout!.setEncoding('utf8');
      child.stdout!.once('data', (d: string) => resolve(d));
      child.once('exit', (code) => reject(new Error(`agent exited with ${code}`)));
    });
    return { child, port: Number(/listening (\d+)/.exec(line)?.[1]) };
  }

  it('gets RUN_ERROR within the idle timeout, and the next send works', async () => {
    const first = await startAgent();
    const made = makeStore('sqlite');
    const store = made.store;
    const relay = createRelay({
      store,
      agent: httpAgentTransport({ url: `http://127.0.0.1:${first.port}`, credential: 'agent-secret' }),
      tokens,
      toolsBaseUrl: 'http://127.0.0.1:9',
      tools: [],
      limits: { agentIdleTimeoutMs: 5_000 },
      logger: { error() {}, warn() {} },
    });
    cleanups.push(async () => {
      await relay.close();
      await made.cleanup();
    });
    await store.createThread({ threadId: 't1', ownerId: 'u' });
    const sub = await relay.subscribe({ user: { id: 'u' }, threadId: 't1', afterSeq: 0 });
    const { runId } = await relay.send({
      user: { id: 'u' },
      threadId: 't1',
      text: 'forever',
      clientMessageId: 'c1',
    });
    let chunks = 0;
    let killedAt = 0;
    let failure: Record<string, unknown> | undefined;
    for await (const s of sub) {
      const e = JSON.parse(s.json) as Record<string, unknown>;
      if (e.type === 'TEXT_MESSAGE_CHUNK' && ++chunks === 3) {
        first.child.kill('SIGKILL');
        killedAt = Date.now();
      }
      if (e.type === 'RUN_ERROR') {
        failure = e;
        break;
      }
    }
    expect(Date.now() - killedAt).toBeLessThan(5_000);
    expect(failure).toMatchObject({ runId, code: 'agent_unreachable' });
    expect((await store.getRun(runId))?.status).toBe('failed');
    const stored = await readAll(store, 't1');
    expect(stored.at(-1)?.event).toMatchObject({ type: 'RUN_ERROR', runId });

    // The agent comes back on the same address; the thread is not stuck.
    await startAgent(first.port);
    const sub2 = await relay.subscribe({ user: { id: 'u' }, threadId: 't1', afterSeq: stored.at(-1)!.seq });
    const next = await relay.send({
      user: { id: 'u' },
      threadId: 't1',
      text: 'hello',
      clientMessageId: 'c2',
    });
    const types: string[] = [];
    for await (const s of sub2) {
      const e = JSON.parse(s.json) as { type: string; runId: string };
      expect(e.runId).toBe(next.runId);
      types.push(e.type);
      if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') break;
    }
    expect(types).toEqual(['USER_MESSAGE', 'RUN_STARTED', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
  });
});

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
