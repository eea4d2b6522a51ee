import { request as httpRequest } from 'node:http';
import {
  connect as connectH2,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
} from 'node:http2';
import { connect as connectTcp, type Socket } from 'node:net';
import {
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  createTextMessageChunkEvent,
  parseEvent,
  type AgentEvent,
  type RunRequest,
} from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { serveAgent, type AgentRunner, type ServedAgent, type ServeAgentOptions } from '../src/index.js';
import { SECRET, collectSse, controlledRunner, deferred, readSse, runRequest, silent } from './helpers.js';

const served: ServedAgent[] = [];
const sessions: ClientHttp2Session[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(served.splice(0).map((s) => s.close({ deadlineMs: 0 })));
});

async function start(runner: AgentRunner, options: Partial<ServeAgentOptions> = {}) {
  const s = await serveAgent(runner, {
    auth: { sharedSecret: SECRET },
    logger: silent,
    doctor: false,
    ...options,
  });
  served.push(s);
  return s;
}

/** An HTTP/2 session (h2c, prior knowledge) to the service. */
function session(url: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = connectH2(url);
    sessions.push(s);
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => {}); // a test that expects a session error listens itself
      resolve(s);
    });
    s.once('error', reject);
  });
}

interface H2Reply {
  status: number;
  headers: IncomingHttpHeaders & IncomingHttpStatusHeader;
  stream: ClientHttp2Stream;
}

/** Sends one HTTP/2 request on the session and resolves with its response headers; the body stays unread. */
function h2(
  s: ClientHttp2Session,
  method: string,
  path: string,
  {
    body,
    headers = {},
    auth = `Bearer ${SECRET}`,
  }: { body?: unknown; headers?: Record<string, string>; auth?: string | null } = {},
): Promise<H2Reply> {
  const stream = s.request({
    ':method': method,
    ':path': path,
    ...(auth !== null ? { authorization: auth } : {}),
    ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...headers,
  });
  stream.on('error', () => {}); // resets are asserted through the outcome, never thrown
  if (body === undefined) stream.end();
  else stream.end(typeof body === 'string' ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    stream.once('response', (h) => resolve({ status: Number(h[':status']), headers: h, stream }));
    stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
  });
}

const postRun = (s: ClientHttp2Session, request: unknown, headers?: Record<string, string>) =>
  h2(s, 'POST', '/runs', { body: request, ...(headers ? { headers } : {}) });

async function textOf(stream: ClientHttp2Stream): Promise<string> {
  stream.setEncoding('utf8');
  let text = '';
  for await (const chunk of stream) text += chunk as string;
  return text;
}

/** SSE events of an HTTP/2 response stream, validated against the contract, as they arrive. */
async function* eventsOf(stream: ClientHttp2Stream): AsyncGenerator<AgentEvent> {
  stream.setEncoding('utf8');
  let buffer = '';
  for await (const chunk of stream) {
    buffer += chunk as string;
    let idx: number;
    while ((idx = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, idx);
      buffer = buffer.slice(idx + 2);
      if (block.startsWith('data: ')) yield parseEvent(JSON.parse(block.slice(6)));
    }
  }
}

async function allEvents(stream: ClientHttp2Stream): Promise<AgentEvent[]> {
  const out: AgentEvent[] = [];
  for await (const e of eventsOf(stream)) out.push(e);
  return out;
}

async function until(cond: () => boolean) {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** A raw TCP connection to the service. */
function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1', () => resolve(socket));
    sockets.push(socket);
    socket.once('error', reject);
  });
}

/** Everything the server sends on a raw socket until it closes, and how long after `from` it closed. */
function untilClosed(socket: Socket, from: number): Promise<{ text: string; afterMs: number }> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => {});
    socket.once('close', () => resolve({ text, afterMs: Date.now() - from }));
  });
}

describe('agent service over HTTP/2 (h2c)', () => {
  it('streams the same SSE bytes over HTTP/2 as over HTTP/1.1', async () => {
    const ts = 1_700_000_000_000;
    const scripted: AgentRunner = {
      async *run(request) {
        const base = { threadId: request.threadId, runId: request.runId, ts };
        yield createRunStartedEvent(base);
        for (const delta of ['Hel', 'lo ', 'there']) {
          await new Promise((r) => setImmediate(r));
          yield createTextMessageChunkEvent({ ...base, messageId: 'm1', delta });
        }
        yield createRunFinishedEvent(base);
      },
    };
    const { url } = await start(scripted);
    const request = runRequest({ runId: 'run-same-bytes' });
    const overH1 = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
      const req = httpRequest(`${url}/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }),
        );
      });
      req.on('error', reject);
      req.end(JSON.stringify(request));
    });
    const s = await session(url);
    const reply = await postRun(s, request);
    const overH2 = {
      status: reply.status,
      type: String(reply.headers['content-type']),
      body: await textOf(reply.stream),
    };
    expect(overH2.status).toBe(200);
    expect(overH2.type).toMatch(/^text\/event-stream/);
    expect(reply.headers.connection).toBeUndefined();
    expect(overH2).toEqual(overH1);
    const events = overH2.body
      .split('\n\n')
      .filter((b) => b.startsWith('data: '))
      .map((b) => parseEvent(JSON.parse(b.slice(6))));
    expect(events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
  });

  it('answers 401 without or with a wrong credential, before reading the body', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    const s = await session(url);
    for (const auth of [null, `Bearer ${SECRET}x`, 'Bearer ']) {
      // A body larger than maxBodyBytes must not be read: 401, not 413.
      const reply = await h2(s, 'POST', '/runs', { auth, body: 'x'.repeat(1_000_000) });
      expect(reply.status, String(auth)).toBe(401);
      expect(reply.headers['www-authenticate']).toBe('Bearer');
      expect(JSON.parse(await textOf(reply.stream))).toMatchObject({ error: { code: 'unauthorized' } });
    }
    const health = await h2(s, 'GET', '/healthz', { auth: null });
    expect(health.status).toBe(401);
    expect(c.started).toHaveLength(0);
    // The session outlives the refusals.
    const ok = await h2(s, 'GET', '/healthz');
    expect(ok.status).toBe(200);
    expect(JSON.parse(await textOf(ok.stream))).toMatchObject({ ok: true, activeRuns: 0 });
  });

  it('answers 400 and 415 with a JSON error body and code, and no connection header', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    const s = await session(url);
    const bad = await postRun(s, { ...runRequest(), threadId: 'bad id!' });
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toBe('application/json');
    expect(bad.headers.connection).toBeUndefined();
    const badBody = JSON.parse(await textOf(bad.stream)) as {
      error: { code: string; issues: { path: string }[] };
    };
    expect(badBody.error.code).toBe('invalid_request');
    expect(badBody.error.issues.map((i) => i.path)).toContain('threadId');
    const notJson = await postRun(s, '{nope');
    expect(notJson.status).toBe(400);
    expect(JSON.parse(await textOf(notJson.stream))).toMatchObject({ error: { code: 'invalid_json' } });
    const wrongType = await postRun(s, runRequest(), { 'content-type': 'text/plain' });
    expect(wrongType.status).toBe(415);
    expect(JSON.parse(await textOf(wrongType.stream))).toMatchObject({
      error: { code: 'unsupported_media_type' },
    });
    const missing = await h2(s, 'GET', '/nope');
    expect(missing.status).toBe(404);
    expect(JSON.parse(await textOf(missing.stream))).toMatchObject({ error: { code: 'not_found' } });
    expect(c.started).toHaveLength(0);
  });

  it('answers 429 too_many_runs with Retry-After at maxConcurrentRuns, on the same session', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { maxConcurrentRuns: 1, retryAfterSeconds: 4 });
    const s = await session(url);
    const first = await postRun(s, runRequest());
    expect(first.status).toBe(200);
    const events = eventsOf(first.stream);
    expect((await events.next()).value).toMatchObject({ type: 'RUN_STARTED' });
    const refused = await Promise.all(Array.from({ length: 5 }, () => postRun(s, runRequest())));
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.headers['retry-after']).toBe('4');
      expect(JSON.parse(await textOf(r.stream))).toMatchObject({ error: { code: 'too_many_runs' } });
    }
    c.release.resolve();
    const rest: AgentEvent[] = [];
    for await (const e of events) rest.push(e);
    expect(rest.map((e) => e.type)).toEqual(['TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
    expect(c.started).toHaveLength(1);
  });

  it('cancels a run on DELETE /runs/:runId sent on the same session', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    const s = await session(url);
    const request = runRequest();
    const run = await postRun(s, request);
    const events = eventsOf(run.stream);
    await events.next();
    const del = await h2(s, 'DELETE', `/runs/${request.runId}`);
    expect(del.status).toBe(202);
    expect(JSON.parse(await textOf(del.stream))).toEqual({ ok: true });
    const rest: AgentEvent[] = [];
    for await (const e of events) rest.push(e);
    expect(rest.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'cancelled' });
    expect(c.started[0]!.signal.aborted).toBe(true);
  });

  it('aborts the run of a stream the client cancels, and only that one', async () => {
    const c = controlledRunner();
    const served = await start(c.runner);
    const s = await session(served.url);
    const doomedRequest = runRequest();
    const keptRequest = runRequest();
    const doomed = await postRun(s, doomedRequest);
    const kept = await postRun(s, keptRequest);
    const keptEvents = eventsOf(kept.stream);
    expect((await keptEvents.next()).value).toMatchObject({ type: 'RUN_STARTED' });
    await until(() => c.started.length === 2);
    const signalOf = (request: RunRequest) =>
      c.started.find((r) => r.request.runId === request.runId)!.signal;
    const doomedSignal = signalOf(doomedRequest);
    const reason = new Promise<unknown>((r) =>
      doomedSignal.addEventListener('abort', () => r(doomedSignal.reason), { once: true }),
    );
    doomed.stream.close(constants.NGHTTP2_CANCEL);
    expect(await reason).toMatchObject({ code: 'aborted', message: 'The client disconnected.' });
    await until(() => served.activeRuns() === 1);
    expect(signalOf(keptRequest).aborted).toBe(false);
    c.release.resolve();
    const rest: AgentEvent[] = [];
    for await (const e of keptEvents) rest.push(e);
    expect(rest.map((e) => e.type)).toEqual(['TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
    expect(s.closed || s.destroyed).toBe(false);
  });

  it('carries 200 concurrent runs on one session, every event in order', async () => {
    const runs = 200;
    const steps = 20;
    const allStarted = deferred();
    let started = 0;
    const stepper: AgentRunner = {
      async *run(request) {
        const base = { threadId: request.threadId, runId: request.runId };
        if (++started === runs) allStarted.resolve();
        yield createRunStartedEvent(base);
        await allStarted.promise; // every run is open at once before any streams its text
        for (let i = 0; i < steps; i++) {
          yield createTextMessageChunkEvent({ ...base, messageId: 'm', delta: String(i) });
          if (i % 3 === 0) await new Promise((r) => setImmediate(r));
        }
        yield createRunFinishedEvent(base);
      },
    };
    const served = await start(stepper, { maxConcurrentRuns: runs });
    const s = await session(served.url);
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, served.activeRuns())), 1);
    const results = await Promise.all(
      Array.from({ length: runs }, async (_, n) => {
        const request = runRequest({ runId: `run-many-${n}` });
        const reply = await postRun(s, request);
        expect(reply.status).toBe(200);
        return { request, events: await allEvents(reply.stream) };
      }),
    );
    clearInterval(watch);
    for (const { request, events } of results) {
      expect(events[0]).toMatchObject({ type: 'RUN_STARTED', runId: request.runId });
      expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId: request.runId });
      const deltas = events.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK').map((e) => e.delta);
      expect(deltas).toEqual(Array.from({ length: steps }, (_, i) => String(i)));
    }
    expect(started).toBe(runs);
    expect(peak).toBeGreaterThan(1);
    expect(served.activeRuns()).toBe(0);
  });

  it('serves HTTP/1.1 and HTTP/2 clients on the same port at the same time', async () => {
    const c = controlledRunner();
    const served = await start(c.runner);
    const overH1 = await fetch(`${served.url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify(runRequest()),
    });
    expect(overH1.status).toBe(200);
    const s = await session(served.url);
    const overH2 = await postRun(s, runRequest());
    expect(overH2.status).toBe(200);
    const h2Events = allEvents(overH2.stream);
    const h1Events = collectSse(overH1);
    await until(() => served.activeRuns() === 2);
    c.release.resolve();
    const [a, b] = await Promise.all([h1Events, h2Events]);
    expect(a.events.map((e) => e.type)).toEqual(['RUN_STARTED', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
    expect(b.map((e) => e.type)).toEqual(['RUN_STARTED', 'TEXT_MESSAGE_CHUNK', 'RUN_FINISHED']);
  });

  it('cancels the run of an HTTP/2 client that stops reading, after writeStallTimeoutMs; the session lives on', async () => {
    const signals: AbortSignal[] = [];
    const flood: AgentRunner = {
      async *run(request, { signal } = {}) {
        signals.push(signal!);
        const base = { threadId: request.threadId, runId: request.runId };
        yield createRunStartedEvent(base);
        const delta = 'z'.repeat(32_000);
        while (!signal!.aborted) yield createTextMessageChunkEvent({ ...base, messageId: 'm', delta });
        yield createRunErrorEvent({ ...base, code: 'aborted', message: 'stopped' });
      },
    };
    const served = await start(flood, { writeStallTimeoutMs: 100 });
    const s = await session(served.url);
    const stalled = await postRun(s, runRequest());
    stalled.stream.pause(); // never read: HTTP/2 flow control stops the server's writes
    await until(() => signals.length === 1);
    const reason = await new Promise<unknown>((r) => {
      if (signals[0]!.aborted) r(signals[0]!.reason);
      signals[0]!.addEventListener('abort', () => r(signals[0]!.reason));
    });
    expect(reason).toMatchObject({ code: 'aborted', message: 'The client stopped reading.' });
    await until(() => served.activeRuns() === 0);
    const health = await h2(s, 'GET', '/healthz');
    expect(health.status).toBe(200);
    expect(JSON.parse(await textOf(health.stream))).toMatchObject({ ok: true, activeRuns: 0 });
  });
});

describe('agent service: protocol detection', () => {
  it('closes a connection that sends nothing, or only part of the HTTP/2 preface, after bodyTimeoutMs', async () => {
    const served = await start(controlledRunner().runner, { bodyTimeoutMs: 200 });
    const decided = await session(served.url); // said "HTTP/2" at once: the bound no longer applies to it
    const silentSocket = await tcp(served.port);
    const partial = await tcp(served.port);
    const from = Date.now();
    const closedSilent = untilClosed(silentSocket, from);
    const closedPartial = untilClosed(partial, from);
    partial.write('P');
    const [a, b] = await Promise.all([closedSilent, closedPartial]);
    for (const r of [a, b]) {
      expect(r.text).toBe('');
      expect(r.afterMs).toBeGreaterThanOrEqual(150);
    }
    // The session that opened with the preface outlived the bound, and new connections are served.
    expect((await h2(decided, 'GET', '/healthz')).status).toBe(200);
    const s = await session(served.url);
    expect((await h2(s, 'GET', '/healthz')).status).toBe(200);
  });

  it('serves HTTP/1.1 whose first chunk is a single byte that could start the preface', async () => {
    const served = await start(controlledRunner().runner, { bodyTimeoutMs: 2000 });
    const socket = await tcp(served.port);
    const closed = untilClosed(socket, Date.now());
    socket.write('P');
    await new Promise((r) => setTimeout(r, 20));
    socket.write(
      `OST /nope HTTP/1.1\r\nhost: a\r\nauthorization: Bearer ${SECRET}\r\nconnection: close\r\n\r\n`,
    );
    const { text } = await closed;
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 404 Not Found');
  });

  it('answers garbage with HTTP/1.1 400 and a bad HTTP/2 session with a close, never a crash', async () => {
    const served = await start(controlledRunner().runner, { bodyTimeoutMs: 2000 });
    const garbage = await tcp(served.port);
    const closedGarbage = untilClosed(garbage, Date.now());
    garbage.write(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]));
    const { text } = await closedGarbage;
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request'); // node:http's parser answers it
    // The HTTP/2 preface followed by bytes that are no HTTP/2 frame: the session ends (GOAWAY), nothing else.
    const badFrames = await tcp(served.port);
    const closedFrames = untilClosed(badFrames, Date.now());
    badFrames.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(64, 0xff)]));
    await closedFrames;
    const s = await session(served.url);
    expect((await h2(s, 'GET', '/healthz')).status).toBe(200);
    expect(
      (await fetch(`${served.url}/healthz`, { headers: { authorization: `Bearer ${SECRET}` } })).status,
    ).toBe(200);
  });

  it('with http2: false speaks HTTP/1.1 only: an HTTP/2 client fails', async () => {
    const c = controlledRunner();
    const served = await start(c.runner, { http2: false });
    const failure = await new Promise<unknown>((resolve) => {
      const s = connectH2(served.url);
      sessions.push(s);
      s.on('error', resolve);
      const stream = s.request({ ':path': '/healthz', authorization: `Bearer ${SECRET}` });
      stream.on('error', resolve);
      stream.on('response', () => resolve(new Error('unexpected HTTP/2 response')));
      stream.end();
    });
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).not.toBe('unexpected HTTP/2 response');
    const res = await fetch(`${served.url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify(runRequest()),
    });
    expect(res.status).toBe(200);
    const stream = readSse(res);
    await stream.next();
    c.release.resolve();
    for await (const _ of stream) void _;
    expect(c.started).toHaveLength(1);
  });
});

describe('agent service: close() over both protocols', () => {
  it('ends runs at the deadline, then HTTP/2 sessions and HTTP/1.1 connections, and resolves', async () => {
    const c = controlledRunner();
    const served = await start(c.runner);
    const s = await session(served.url);
    const sessionClosed = new Promise<void>((r) => s.once('close', () => r()));
    const goaway = new Promise<number>((r) => s.once('goaway', (code: number) => r(code)));
    const run = await postRun(s, runRequest());
    const events = allEvents(run.stream);
    // An idle keep-alive HTTP/1.1 connection.
    const socket = await tcp(served.port);
    const socketClosed = untilClosed(socket, Date.now());
    let head = '';
    socket.on('data', (d: Buffer) => (head += d.toString('latin1')));
    socket.write(`GET /healthz HTTP/1.1\r\nhost: a\r\nauthorization: Bearer ${SECRET}\r\n\r\n`);
    await until(() => c.started.length === 1 && head.includes('"ok":true'));
    await served.close({ deadlineMs: 50 });
    expect((await events).at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'shutdown' });
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR);
    await sessionClosed;
    const { text } = await socketClosed;
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    await expect(tcp(served.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
