// httpAgentTransport with `http2: true` against a real node:http2 agent on 127.0.0.1: one session carries every
// run, the same strict SSE parsing as over HTTP/1.1, and a session that dies is replaced by the next run.
import { spawn } from 'node:child_process';
import { createServer as createHttp1Server } from 'node:http';
import { constants as h2, createServer } from 'node:http2';
import type { Http2Server, Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { AgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentTransportError, RelayError, httpAgentTransport } from '../src/index.js';
import { BAD_AGENT_STREAMS, readAll, relayThrough, runToEnd, sseEvent as ev } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface SeenRequest {
  method: string;
  path: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: string;
}

interface H2Agent {
  url: string;
  server: Http2Server;
  requests: SeenRequest[];
  /** Every session (connection) the server accepted, in order. */
  sessions: Http2Session[];
  /** The server side of every POST stream, with how it closed. */
  streams: { stream: ServerHttp2Stream; aborted: boolean; closed: boolean }[];
}

/** A real HTTP/2 (h2c) agent on 127.0.0.1 whose POST handler the test writes; DELETE answers 204. */
async function h2Agent(
  handler: (stream: ServerHttp2Stream, body: string, headers: IncomingHttpHeaders) => void,
): Promise<H2Agent> {
  const agent: Omit<H2Agent, 'url'> = { server: createServer(), requests: [], sessions: [], streams: [] };
  agent.server.on('session', (session) => {
    agent.sessions.push(session);
    session.on('error', () => {});
  });
  agent.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (body += d));
    stream.on('end', () => {
      const method = String(headers[':method']);
      agent.requests.push({
        method,
        path: String(headers[':path']),
        auth: headers.authorization,
        contentType: headers['content-type'],
        body,
      });
      if (method === 'DELETE') return void stream.respond({ ':status': 204 }, { endStream: true });
      const seen = { stream, aborted: false, closed: false };
      agent.streams.push(seen);
      stream.once('aborted', () => (seen.aborted = true));
      stream.once('close', () => (seen.closed = true));
      handler(stream, body, headers);
    });
  });
  await new Promise<void>((r) => agent.server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of agent.sessions) s.destroy();
        agent.server.close(() => r());
      }),
  );
  return { ...agent, url: `http://127.0.0.1:${(agent.server.address() as AddressInfo).port}` };
}

function sse(stream: ServerHttp2Stream, chunks: string[]): void {
  stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
  for (const c of chunks) stream.write(c);
  stream.end();
}
/** A short successful run: RUN_STARTED, two chunks, RUN_FINISHED. */
const reply = (stream: ServerHttp2Stream, body: string) =>
  sse(stream, [
    ev(body, { type: 'RUN_STARTED' }),
    ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: 'hel' }),
    ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: 'lo' }),
    ev(body, { type: 'RUN_FINISHED' }),
  ]);

function transportFor(url: string, extra: { connectTimeoutMs?: number } = {}) {
  const transport = httpAgentTransport({
    url,
    credential: () => 'agent-secret',
    http2: true,
    connectTimeoutMs: 2_000,
    ...extra,
  });
  cleanups.push(() => transport.close());
  return transport;
}

const relayOver = (url: string, limits = {}) => relayThrough(transportFor(url), cleanups, limits);

const runRequest = (runId = 'r1') => ({
  threadId: 't1',
  runId,
  user: { id: 'u' },
  text: 'm',
  tools: { baseUrl: 'http://127.0.0.1:9', token: 'x' },
});

/** Runs the transport on its own; returns the events it yielded and the error it ended with, if any. */
async function drive(
  transport: ReturnType<typeof transportFor>,
  runId = 'r1',
  signal = new AbortController().signal,
): Promise<{ events: AgentEvent[]; error?: unknown }> {
  const events: AgentEvent[] = [];
  try {
    for await (const e of transport.run(runRequest(runId), { signal })) events.push(e);
    return { events };
  } catch (error) {
    return { events, error };
  }
}

/** The transport's run as an iterator the test pulls by hand. */
function iterate(
  transport: ReturnType<typeof transportFor>,
  signal: AbortSignal,
  runId = 'r1',
): AsyncIterator<AgentEvent> {
  return transport.run(runRequest(runId), { signal })[Symbol.asyncIterator]();
}

/** Collects unhandled rejections and uncaught exceptions while a test runs. */
function watchUnhandled(): unknown[] {
  const seen: unknown[] = [];
  const onError = (e: unknown) => seen.push(e);
  process.on('unhandledRejection', onError);
  process.on('uncaughtException', onError);
  cleanups.push(() => {
    process.off('unhandledRejection', onError);
    process.off('uncaughtException', onError);
  });
  return seen;
}

describe('httpAgentTransport over HTTP/2', () => {
  it('refuses an http2 option that is not a boolean, or http2 with fetch, with code invalid_options', () => {
    for (const options of [
      { url: 'http://127.0.0.1:1', credential: 'x', http2: 'yes' as unknown as boolean },
      { url: 'http://127.0.0.1:1', credential: 'x', http2: 1 as unknown as boolean },
      { url: 'http://127.0.0.1:1', credential: 'x', http2: true, fetch },
    ]) {
      let error: unknown;
      try {
        httpAgentTransport(options);
      } catch (e) {
        error = e;
      }
      expect(error, String(options.http2)).toBeInstanceOf(RelayError);
      expect((error as RelayError).code).toBe('invalid_options');
    }
    expect(() =>
      httpAgentTransport({ url: 'http://127.0.0.1:1', credential: 'x', http2: false, fetch }),
    ).not.toThrow();
    expect(() =>
      httpAgentTransport({ url: 'http://127.0.0.1:1', credential: 'x', http2: true }),
    ).not.toThrow();
  });

  it('says it is multiplexed (every run on one connection) only with http2: true', () => {
    expect(httpAgentTransport({ url: 'http://127.0.0.1:1', credential: 'x', http2: true }).multiplexed).toBe(
      true,
    );
    expect(httpAgentTransport({ url: 'http://127.0.0.1:1', credential: 'x' }).multiplexed).toBe(false);
  });

  it('posts the run with the credential and parses a strict SSE stream split anywhere', async () => {
    const agent = await h2Agent((stream, body) => {
      const text =
        ': ping\n\n' +
        ev(body, { type: 'RUN_STARTED' }).replace(/\n\n$/, '\r\n\r\n') +
        'event: message\nid: 1\n' +
        ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: 'héllo 🌍' }) +
        ev(body, { type: 'RUN_FINISHED' }).replace('"type"', '\ndata: "type"');
      // Bytes one at a time (one DATA frame each), so lines and UTF-8 sequences are cut everywhere.
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream; charset=utf-8' });
      const bytes = Buffer.from(text);
      let i = 0;
      const tick = () => {
        if (stream.destroyed) return;
        if (i >= bytes.length) return void stream.end();
        stream.write(bytes.subarray(i, i + 1));
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
    expect(agent.requests[0]).toMatchObject({
      method: 'POST',
      path: '/runs',
      auth: 'Bearer agent-secret',
      contentType: 'application/json',
    });
    expect(JSON.parse(agent.requests[0]!.body)).toMatchObject({
      threadId: 't1',
      text: 'go',
      user: { id: 'u' },
    });
    expect(agent.sessions).toHaveLength(1);
  });

  it.each(BAD_AGENT_STREAMS)('turns %s into RUN_ERROR', async (_name, chunks, code) => {
    const agent = await h2Agent((stream, body) => sse(stream, chunks(body)));
    const { relay, store } = await relayOver(agent.url);
    const events = await runToEnd(relay);
    expect(events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code });
    expect((await readAll(store, 't1')).at(-1)?.event).toMatchObject({ type: 'RUN_ERROR', code });
    if (code === 'agent_stream_invalid') {
      // The agent is told to stop over the same session: DELETE /runs/:runId.
      await until(() => agent.requests.some((r) => r.method === 'DELETE'));
      expect(agent.requests.find((r) => r.method === 'DELETE')).toMatchObject({
        path: `/runs/${events[0]!.runId as string}`,
        auth: 'Bearer agent-secret',
      });
      expect(agent.sessions).toHaveLength(1);
    }
  });

  it('reports unreachable agents, HTTP errors and wrong content types with their codes', async () => {
    const refused = await h2Agent(() => {});
    await new Promise<void>((r) => refused.server.close(() => r()));
    const down = (await runToEnd((await relayOver(refused.url)).relay)).at(-1);
    expect(down).toMatchObject({ code: 'agent_unreachable' });
    expect(String(down?.message)).toMatch(/ECONNREFUSED/);

    const failing = await h2Agent((stream) => {
      stream.respond({ ':status': 503, 'content-type': 'text/plain' });
      stream.end('overloaded '.repeat(10_000));
    });
    const failed = (await runToEnd((await relayOver(failing.url)).relay)).at(-1);
    expect(failed).toMatchObject({ code: 'agent_unreachable' });
    expect(String(failed?.message)).toMatch(/HTTP 503: overloaded/);
    expect(String(failed?.message).length).toBeLessThan(400);

    const html = await h2Agent((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'text/html' });
      stream.end('<html>');
    });
    const wrongType = (await runToEnd((await relayOver(html.url)).relay)).at(-1);
    expect(wrongType).toMatchObject({ code: 'agent_stream_invalid' });
    expect(String(wrongType?.message)).toMatch(/text\/html/);

    // An agent that only speaks HTTP/1.1 refuses the HTTP/2 preface: unreachable, not a hang or a crash.
    const http1 = createHttp1Server((_req, res) => res.end());
    await new Promise<void>((r) => http1.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => http1.close(() => r())));
    const http1Url = `http://127.0.0.1:${(http1.address() as AddressInfo).port}`;
    expect((await runToEnd((await relayOver(http1Url)).relay)).at(-1)).toMatchObject({
      code: 'agent_unreachable',
    });
  });

  it('fails a run whose session the agent destroys mid-stream as agent_unreachable; the next run gets a new session', async () => {
    const unhandled = watchUnhandled();
    const agent = await h2Agent((stream, body) => {
      if (JSON.parse(body).text === 'die') {
        stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
        stream.write(ev(body, { type: 'RUN_STARTED' }));
        stream.write(ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: 'half' }), () =>
          stream.session?.destroy(),
        );
      } else reply(stream, body);
    });
    const { relay } = await relayOver(agent.url);
    const died = await runToEnd(relay, 'die', 'c1');
    expect(died.map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_ERROR',
    ]);
    expect(died.at(-1)).toMatchObject({ code: 'agent_unreachable' });
    expect(String(died.at(-1)?.message)).toMatch(/dropped mid-stream/);

    const next = await runToEnd(relay, 'again', 'c2');
    expect(next.at(-1)).toMatchObject({ type: 'RUN_FINISHED' });
    expect(next.map((e) => e.delta ?? '').join('')).toBe('hello');
    expect(agent.sessions).toHaveLength(2);
    expect(unhandled).toEqual([]);
  });

  it('opens a new session for the next run after the agent sends GOAWAY, with no unhandled errors', async () => {
    const unhandled = watchUnhandled();
    const agent = await h2Agent(reply);
    const transport = transportFor(agent.url);
    expect((await drive(transport, 'r1')).events.at(-1)?.type).toBe('RUN_FINISHED');
    expect(agent.sessions).toHaveLength(1);

    // The agent goes away between runs: GOAWAY, then the connection closes.
    const first = agent.sessions[0]!;
    const gone = new Promise((r) => first.once('close', r));
    first.close();
    await gone;
    const second = await drive(transport, 'r2');
    expect(second.error).toBeUndefined();
    expect(second.events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(agent.sessions).toHaveLength(2);

    // A GOAWAY that crosses the next request: either the run goes to a new session, or its stream is refused
    // (never processed) and sent again once. Both end in a finished run.
    agent.sessions[1]!.goaway(h2.NGHTTP2_NO_ERROR, 0);
    const crossed = await drive(transport, 'r3');
    expect(crossed.error).toBeUndefined();
    expect(crossed.events.at(-1)?.type).toBe('RUN_FINISHED');
    expect(agent.sessions).toHaveLength(3);
    expect(unhandled).toEqual([]);
  });

  it('sends a refused stream again once, and reports a second refusal as agent_unreachable', async () => {
    let refuse = 1;
    const agent = await h2Agent((stream, body) => {
      if (refuse-- > 0) stream.close(h2.NGHTTP2_REFUSED_STREAM);
      else reply(stream, body);
    });
    const transport = transportFor(agent.url);
    const retried = await drive(transport, 'r1');
    expect(retried.error).toBeUndefined();
    expect(retried.events.at(-1)?.type).toBe('RUN_FINISHED');
    expect(agent.requests.filter((r) => r.method === 'POST')).toHaveLength(2);

    refuse = 2;
    const refused = await drive(transport, 'r2');
    expect(refused.error).toBeInstanceOf(AgentTransportError);
    expect((refused.error as AgentTransportError).runErrorCode).toBe('agent_unreachable');
    expect(String((refused.error as Error).message)).toMatch(/REFUSED_STREAM/);
    expect(agent.requests.filter((r) => r.method === 'POST')).toHaveLength(4);
    expect(agent.sessions).toHaveLength(1);
  });

  it('reuses one session for sequential runs', async () => {
    const agent = await h2Agent(reply);
    const { relay } = await relayOver(agent.url);
    for (let i = 1; i <= 3; i++) {
      const events = await runToEnd(relay, `run ${i}`, `c${i}`);
      expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED' });
    }
    expect(agent.requests.filter((r) => r.method === 'POST')).toHaveLength(3);
    expect(agent.sessions).toHaveLength(1);
  });

  it('cancels the stream when the run is aborted, before or after the response, and DELETEs over HTTP/2', async () => {
    const agent = await h2Agent((stream, body) => {
      if (JSON.parse(body).runId === 'silent') return; // never answers
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
      stream.write(ev(body, { type: 'RUN_STARTED' }));
    });
    const transport = transportFor(agent.url);

    // After the response: abort while the agent is still streaming.
    const controller = new AbortController();
    const iterator = iterate(transport, controller.signal, 'live');
    expect((await iterator.next()).value).toMatchObject({ type: 'RUN_STARTED' });
    const pending = iterator.next();
    controller.abort(new Error('user cancelled'));
    await expect(pending).rejects.toThrow();
    await until(() => agent.streams[0]?.closed === true);
    expect(agent.streams[0]).toMatchObject({ aborted: true });
    expect(agent.streams[0]!.stream.rstCode).toBe(h2.NGHTTP2_CANCEL);

    // Before the response: the agent has not answered yet.
    const early = new AbortController();
    const silent = drive(transport, 'silent', early.signal);
    await until(() => agent.streams.length === 2);
    early.abort(new Error('user cancelled'));
    expect((await silent).error).toBeDefined();
    await until(() => agent.streams[1]!.closed);
    expect(agent.streams[1]!.stream.rstCode).toBe(h2.NGHTTP2_CANCEL);

    await transport.cancel!('live');
    expect(agent.requests.find((r) => r.method === 'DELETE')).toMatchObject({
      path: '/runs/live',
      auth: 'Bearer agent-secret',
    });
    expect(agent.sessions).toHaveLength(1);
  });

  it('carries 500 concurrent runs over one session, every run with all its events in order', async () => {
    const perRun = 10;
    const agent = await h2Agent((stream, body) => {
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
      stream.write(ev(body, { type: 'RUN_STARTED' }));
      // One event per turn on every stream, so the runs' frames interleave on the connection.
      let i = 0;
      const tick = () => {
        if (stream.destroyed) return;
        if (i === perRun) return void stream.end(ev(body, { type: 'RUN_FINISHED' }));
        stream.write(ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta: `${i++},` }));
        setImmediate(tick);
      };
      setImmediate(tick);
    });
    const transport = transportFor(agent.url, { connectTimeoutMs: 20_000 });
    const results = await Promise.all(Array.from({ length: 500 }, (_, n) => drive(transport, `r${n}`)));
    const expected = Array.from({ length: perRun }, (_, i) => `${i},`).join('');
    for (const [n, { events, error }] of results.entries()) {
      expect(error, `run r${n}`).toBeUndefined();
      expect(events[0]).toMatchObject({ type: 'RUN_STARTED', runId: `r${n}` });
      expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId: `r${n}` });
      expect(events.length).toBe(perRun + 2);
      expect(events.map((e) => ('delta' in e ? e.delta : '')).join('')).toBe(expected);
    }
    expect(agent.requests).toHaveLength(500);
    expect(agent.sessions).toHaveLength(1);
  });

  it('lets the agent send at most the stream window ahead of a run that is not read', async () => {
    const events = 256;
    const delta = 'x'.repeat(16_000); // about 16 KB an event, 4 MB in all
    let flushed = 0;
    const agent = await h2Agent((stream, body) => {
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
      stream.write(ev(body, { type: 'RUN_STARTED' }));
      // One event at a time: each write completes once its bytes went out, which flow control allows only
      // within the window the relay opened.
      let i = 0;
      const pump = () => {
        if (stream.destroyed) return;
        if (i++ === events) return void stream.end(ev(body, { type: 'RUN_FINISHED' }));
        const text = ev(body, { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', delta });
        stream.write(text, () => {
          flushed += Buffer.byteLength(text);
          pump();
        });
      };
      pump();
    });
    const transport = transportFor(agent.url);
    const iterator = iterate(transport, new AbortController().signal);
    expect((await iterator.next()).value).toMatchObject({ type: 'RUN_STARTED' });
    // Nothing is read now: the agent's writes stop at the 256 KiB stream window (plus frames in flight).
    await until(() => flushed >= 128 << 10);
    await new Promise((r) => setTimeout(r, 200));
    expect(flushed).toBeLessThan((256 + 64) << 10);
    expect(agent.streams[0]!.closed).toBe(false);
    // Reading again releases the rest, in order.
    let chunks = 0;
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      if (next.value.type === 'TEXT_MESSAGE_CHUNK') chunks++;
      else expect(next.value.type).toBe('RUN_FINISHED');
    }
    expect(chunks).toBe(events);
  });

  it('holds the process open while a run streams, and lets it exit once the session is idle', async () => {
    let release: (() => void) | undefined;
    const agent = await h2Agent((stream, body) => {
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
      stream.write(ev(body, { type: 'RUN_STARTED' }));
      release = () => stream.end(ev(body, { type: 'RUN_FINISHED' }));
    });
    const child = spawn(
      process.execPath,
      [
        '--conditions=@threadline/source',
        '--import',
        fileURLToPath(new URL('./fixtures/ts-hooks.mjs', import.meta.url)),
        fileURLToPath(new URL('./fixtures/h2-run-child.ts', import.meta.url)),
        agent.url,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (output += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await until(() => output.includes('RUN_STARTED'), 20_000);
    // Mid-run the open stream keeps the child alive (an unref'd session would let it exit here, unfinished).
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull();
    release!();
    // After the run the session stays connected (the agent does not close it), yet the child exits by itself.
    const exitCode = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r('still running after 10 s'), 10_000)),
    ]);
    expect(exitCode).toBe(0);
    expect(output).toBe('RUN_STARTED\nRUN_FINISHED\n');
    expect(agent.sessions).toHaveLength(1);
  });

  it('replaces a session that stops answering: its ping times out within the connect timeout', async () => {
    // A TCP peer that accepts and never answers, not even the HTTP/2 preface.
    const sockets: Socket[] = [];
    const blackHole = createTcpServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      socket.resume();
    });
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          blackHole.close(() => r());
        }),
    );
    const url = `http://127.0.0.1:${(blackHole.address() as AddressInfo).port}`;
    const transport = transportFor(url, { connectTimeoutMs: 200 });
    const first = await drive(transport, 'r1');
    expect((first.error as AgentTransportError).runErrorCode).toBe('agent_unreachable');
    expect(String((first.error as Error).message)).toMatch(/no response within 200 ms/);
    expect(sockets).toHaveLength(1);
    // The unanswered ping destroys the session (closing its socket); the next run connects anew.
    await until(() => sockets[0]!.closed);
    const second = await drive(transport, 'r2');
    expect((second.error as AgentTransportError).runErrorCode).toBe('agent_unreachable');
    expect(sockets).toHaveLength(2);
  });
});

async function until(check: () => boolean, withinMs = 5_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
