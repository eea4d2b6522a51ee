import { createServer, request as httpRequest, ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { generateKeyPair, SignJWT } from 'jose';
import {
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  createTextMessageChunkEvent,
  type AgentEvent,
} from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createAgentServer,
  serveAgent,
  type AgentServerOptions,
  type AgentRunner,
  type ServedAgent,
  type ServeAgentOptions,
} from '../src/index.js';
import { SECRET, collectSse, controlledRunner, readSse, runRequest, silent } from './helpers.js';

let served: ServedAgent | undefined;
afterEach(async () => {
  await served?.close({ deadlineMs: 0 });
  served = undefined;
});

async function start(runner: AgentRunner, options: Partial<ServeAgentOptions> = {}) {
  served = await serveAgent(runner, {
    auth: { sharedSecret: SECRET },
    logger: silent,
    doctor: false,
    ...options,
  });
  return served;
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(`${url}/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });

async function until(cond: () => boolean) {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('agent HTTP service: auth', () => {
  it('rejects missing, wrong and malformed shared-secret credentials with 401 before any work', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    for (const auth of [
      undefined,
      `Bearer ${SECRET}x`,
      `Bearer ${SECRET.slice(0, -1)}`,
      `Basic ${SECRET}`,
      `Bearer  ${SECRET}`,
      SECRET,
      'Bearer ',
    ]) {
      const res = await fetch(`${url}/runs`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(auth !== undefined ? { authorization: auth } : {}),
        },
        body: 'x'.repeat(1_000_000), // a huge bad body must not be read: 401, not 413
      });
      expect(res.status, String(auth)).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
    for (const path of ['/healthz', '/runs/x']) {
      const res = await fetch(`${url}${path}`, { method: path === '/healthz' ? 'GET' : 'DELETE' });
      expect(res.status).toBe(401);
    }
    expect(c.started).toHaveLength(0);
  });

  it('refuses a shared secret shorter than 32 bytes at creation', async () => {
    await expect(
      serveAgent(controlledRunner().runner, {
        auth: { sharedSecret: 'short' },
        logger: silent,
        doctor: false,
      }),
    ).rejects.toMatchObject({
      code: 'invalid_options',
    });
  });

  it('accepts only JWTs with the right key, audience, issuer, algorithm and expiry', async () => {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA');
    const other = await generateKeyPair('EdDSA');
    const c = controlledRunner();
    const { url } = await start(c.runner, { auth: { jwt: { publicKey, issuer: 'api' } } });
    const sign = (claims: { aud?: string; iss?: string; exp?: number }, key = privateKey) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA' })
        .setAudience(claims.aud ?? 'threadline-agent')
        .setIssuer(claims.iss ?? 'api')
        .setIssuedAt()
        .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 60)
        .sign(key);
    const health = (token: string) =>
      fetch(`${url}/healthz`, { headers: { authorization: `Bearer ${token}` } });
    expect((await health(await sign({}))).status).toBe(200);
    expect((await health(await sign({ aud: 'threadline-tools' }))).status).toBe(401);
    expect((await health(await sign({ iss: 'someone-else' }))).status).toBe(401);
    expect((await health(await sign({ exp: Math.floor(Date.now() / 1000) - 120 }))).status).toBe(401);
    expect((await health(await sign({}, other.privateKey))).status).toBe(401);
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setAudience('threadline-agent')
      .setIssuer('api')
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(SECRET));
    expect((await health(hs)).status).toBe(401);
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ aud: 'threadline-agent', iss: 'api', exp: 9e9 })).toString('base64url')}.`;
    expect((await health(unsigned)).status).toBe(401);
  });
});

describe('agent HTTP service: requests', () => {
  it('answers 400 with the parse issues for a bad run request, 415 for a non-JSON type, 413 over the size bound', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { maxBodyBytes: 2048 });
    const bad = await post(url, { ...runRequest(), threadId: 'bad id!', extra: 1 });
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: { code: string; issues: { path: string }[] } };
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['threadId']));
    const notJson = await post(url, '{nope');
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { code: 'invalid_json' } });
    const wrongType = await post(url, runRequest(), { 'content-type': 'text/plain' });
    expect(wrongType.status).toBe(415);
    const big = await post(url, runRequest({ message: 'x'.repeat(3000) }));
    expect(big.status).toBe(413);
    expect((await fetch(`${url}/nope`, { headers: { authorization: `Bearer ${SECRET}` } })).status).toBe(404);
    expect((await fetch(`${url}/runs`, { headers: { authorization: `Bearer ${SECRET}` } })).status).toBe(405);
    expect(c.started).toHaveLength(0);
  });

  it('streams contract events as SSE and sends heartbeats while the run is quiet', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { heartbeatMs: 20 });
    const res = await post(url, runRequest());
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const seen: { event?: AgentEvent; comment?: string }[] = [];
    for await (const item of readSse(res)) {
      seen.push(item);
      if (seen.filter((s) => s.comment === 'ping').length === 2) c.release.resolve();
    }
    expect(seen.filter((s) => s.event).map((s) => s.event!.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_CHUNK',
      'RUN_FINISHED',
    ]);
    expect(seen.filter((s) => s.comment === 'ping').length).toBeGreaterThanOrEqual(2);
  });

  it('answers 429 with Retry-After at the concurrency bound and 409 for a runId already running', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { maxConcurrentRuns: 1, retryAfterSeconds: 3 });
    const request = runRequest();
    const first = await post(url, request);
    const stream = readSse(first);
    await stream.next();
    const second = await post(url, runRequest());
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('3');
    expect(await second.json()).toMatchObject({ error: { code: 'too_many_runs' } });
    c.release.resolve();
    for await (const _ of stream) void _;
    await until(() => c.started.length === 1);
    const again = await post(url, runRequest());
    expect(again.status).toBe(200);
    await collectSse(again);
  });

  it('rejects a second run with the same runId with 409', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    const request = runRequest();
    const first = await post(url, request);
    const stream = readSse(first);
    await stream.next();
    const dup = await post(url, request);
    expect(dup.status).toBe(409);
    c.release.resolve();
    for await (const _ of stream) void _;
  });

  it('cancels a run on DELETE /runs/:runId with RUN_ERROR cancelled', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner);
    const request = runRequest();
    const res = await post(url, request);
    const stream = readSse(res);
    await stream.next();
    expect(
      (await fetch(`${url}/runs/nope`, { method: 'DELETE', headers: { authorization: `Bearer ${SECRET}` } }))
        .status,
    ).toBe(404);
    const del = await fetch(`${url}/runs/${request.runId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(del.status).toBe(202);
    const rest: AgentEvent[] = [];
    for await (const item of stream) if (item.event) rest.push(item.event);
    expect(rest.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'cancelled' });
    expect(c.started[0]!.signal.aborted).toBe(true);
  });

  it('answers 404, not 500, for a DELETE whose run id is not valid percent-encoding', async () => {
    const { url } = await start(controlledRunner().runner);
    const res = await fetch(`${url}/runs/%E0%A4%A`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });

  it('answers an unparsable request target with 401, or 404 once authenticated, never 500', async () => {
    const { port } = await start(controlledRunner().runner);
    // fetch cannot send such a target, so write the request line by hand.
    const statusOf = (authorization: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(
            `GET http://[x/healthz HTTP/1.1\r\nHost: a\r\n${authorization}Connection: close\r\n\r\n`,
          );
        });
        let head = '';
        socket.on('data', (d: Buffer) => (head += d.toString('latin1')));
        socket.on('end', () => resolve(head.split('\r\n')[0] ?? ''));
        socket.on('error', reject);
      });
    expect(await statusOf('')).toBe('HTTP/1.1 401 Unauthorized');
    expect(await statusOf(`Authorization: Bearer ${SECRET}\r\n`)).toBe('HTTP/1.1 404 Not Found');
  });

  it('cancels the run when the client disconnects', async () => {
    const c = controlledRunner();
    const s = await start(c.runner);
    const controller = new AbortController();
    const res = await post(s.url, runRequest(), {}, controller.signal);
    const stream = readSse(res);
    await stream.next();
    const aborted = new Promise<unknown>((r) =>
      c.started[0]!.signal.addEventListener('abort', () => r(c.started[0]!.signal.reason)),
    );
    controller.abort();
    expect(await aborted).toMatchObject({ code: 'aborted' });
    await until(() => s.port > 0 && c.started.length === 1);
  });

  it('shuts down gracefully: finished runs complete, stuck runs get RUN_ERROR shutdown at the deadline, new runs get 503', async () => {
    const c = controlledRunner();
    const s = await start(c.runner);
    const res = await post(s.url, runRequest());
    const stream = readSse(res);
    await stream.next();
    const closing = s.close({ deadlineMs: 150 });
    await new Promise((r) => setTimeout(r, 20));
    const late = await post(s.url, runRequest()).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);
    const rest: AgentEvent[] = [];
    for await (const item of stream) if (item.event) rest.push(item.event);
    expect(rest.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'shutdown' });
    await closing;
    served = undefined;
  });

  it('lets a run that ends before the shutdown deadline finish normally', async () => {
    const c = controlledRunner();
    const s = await start(c.runner);
    const res = await post(s.url, runRequest());
    const stream = readSse(res);
    await stream.next();
    const closing = s.close({ deadlineMs: 5000 });
    setTimeout(() => c.release.resolve(), 30);
    const rest: AgentEvent[] = [];
    for await (const item of stream) if (item.event) rest.push(item.event);
    expect(rest.at(-1)).toMatchObject({ type: 'RUN_FINISHED' });
    await closing;
    served = undefined;
  });
});

describe('agent HTTP service: bounds', () => {
  it('answers 408 when the run request body arrives too slowly', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { bodyTimeoutMs: 50 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${url}/runs`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${SECRET}`,
          'content-type': 'application/json',
          'content-length': '500',
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
        req.destroy();
      });
      req.on('error', reject);
      req.write('{"threadId":'); // and never the rest
    });
    expect(status).toBe(408);
    expect(c.started).toHaveLength(0);
  });

  it('cancels the run of a client that stops reading, after writeStallTimeoutMs', async () => {
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
    const { url } = await start(flood, { writeStallTimeoutMs: 100 });
    const req = httpRequest(`${url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    });
    req.on('response', (res) => res.pause()); // never read
    req.on('error', () => {});
    req.end(JSON.stringify(runRequest()));
    await until(() => signals.length === 1);
    const reason = await new Promise<unknown>((r) => {
      if (signals[0]!.aborted) r(signals[0]!.reason);
      signals[0]!.addEventListener('abort', () => r(signals[0]!.reason));
    });
    expect(reason).toMatchObject({ code: 'aborted', message: 'The client stopped reading.' });
    req.destroy();
  });
});

/**
 * Runs `runner` behind an HTTP server whose responses record every `write()` the service makes, and returns the
 * body writes of one run (`write()` and a final `end(chunk)`). What a reader receives is no measure of batching: Node releases differ in how they
 * coalesce writes made in the same tick into one socket chunk (24.22 merges them, 22 does not).
 */
async function writtenBatches(runner: AgentRunner, options: Partial<AgentServerOptions>): Promise<string[]> {
  const writes: string[] = [];
  class RecordingResponse extends ServerResponse {
    override write(chunk: unknown, ...rest: unknown[]): boolean {
      writes.push(String(chunk));
      return (super.write as (...args: unknown[]) => boolean)(chunk, ...rest);
    }
    override end(...args: unknown[]): this {
      if (typeof args[0] === 'string' && args[0] !== '') writes.push(args[0]);
      return (super.end as (...a: unknown[]) => this)(...args);
    }
  }
  const agent = createAgentServer(runner, { auth: { sharedSecret: SECRET }, logger: silent, ...options });
  const server = createServer({ ServerResponse: RecordingResponse }, agent.handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const { events } = await collectSse(await post(`http://127.0.0.1:${port}`, runRequest()));
    expect(events.at(-1)?.type).toBe('RUN_FINISHED');
    return writes;
  } finally {
    await agent.close({ deadlineMs: 0 });
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('agent HTTP service: write batching', () => {
  it('writes events that arrive together in batches no larger than maxWriteBatchBytes, in order', async () => {
    const delta = 'x'.repeat(100);
    const burst: AgentRunner = {
      async *run(request) {
        const base = { threadId: request.threadId, runId: request.runId };
        yield createRunStartedEvent(base);
        for (let i = 0; i < 300; i++) yield createTextMessageChunkEvent({ ...base, messageId: 'm', delta });
        yield createRunFinishedEvent(base);
      },
    };
    const writes = await writtenBatches(burst, { maxWriteBatchBytes: 4096 });
    const event = `data: ${JSON.stringify(createTextMessageChunkEvent({ threadId: 'thread-1', runId: 'run-x', messageId: 'm', delta }))}\n\n`;
    // A batch is written once it reaches the bound, so it exceeds it by less than one event.
    for (const w of writes) expect(w.length).toBeLessThan(4096 + event.length + 64);
    // 302 events of ~200 bytes in batches of ~4 KiB: about 15 writes; one write per event would be 302.
    expect(writes.length).toBeGreaterThan(10);
    expect(writes.length).toBeLessThan(30);
    // The batches that reached the bound hold many events each: only the last one may be short.
    for (const w of writes.slice(0, -1)) expect(w.length).toBeGreaterThanOrEqual(4096);
    const events = writes
      .join('')
      .split('\n\n')
      .filter((b) => b.startsWith('data: '))
      .map((b) => JSON.parse(b.slice(6)) as AgentEvent);
    expect(events).toHaveLength(302);
    expect(events[0]!.type).toBe('RUN_STARTED');
    expect(events.at(-1)!.type).toBe('RUN_FINISHED');
  });

  it('writes an event at once when the runner waits after it (no waiting for a fuller batch)', async () => {
    const c = controlledRunner();
    const { url } = await start(c.runner, { heartbeatMs: 60_000 });
    const res = await post(url, runRequest());
    const stream = readSse(res);
    // The runner now waits for `release`: both events must already be on the wire.
    expect((await stream.next()).value?.event?.type).toBe('RUN_STARTED');
    expect((await stream.next()).value?.event?.type).toBe('TEXT_MESSAGE_CHUNK');
    c.release.resolve();
    const rest: AgentEvent[] = [];
    for await (const item of stream) if (item.event) rest.push(item.event);
    expect(rest.map((e) => e.type)).toEqual(['RUN_FINISHED']);
  });
});
