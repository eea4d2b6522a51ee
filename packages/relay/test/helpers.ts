// Shared test seams: a controllable in-process agent, a token issuer, real stores, and a real ws client.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEvent, JsonValue, RunRequest, TextMessageChunkEvent } from '@threadline/contracts';
import { MemoryToolStore, type ToolStore } from '@threadline/tools-kit';
import { WebSocket } from 'ws';
import { createRelay } from '../src/index.js';
import type { AgentTransport, Relay, RelayOptions } from '../src/index.js';
import { attachWebSocketServer, type WebSocketServerOptions } from '../src/browser/ws-server.js';
import { MemoryStore } from '../src/stores/memory.js';
import { openSqliteStore } from '../src/stores/sqlite.js';
import type { DeleteThreadResult, EventStore } from '../src/stores/store.js';

/**
 * The relay's memory store with tools-kit's MemoryToolStore beside it, as one object implementing both ports
 * (as the SQLite, PostgreSQL and MongoDB stores do in one database): deleting a thread clears its session.
 */
export class MemoryStoreWithTools extends MemoryStore implements ToolStore {
  readonly tools = new MemoryToolStore();
  getProfile = (userId: string) => this.tools.getProfile(userId);
  patchProfile = (userId: string, patch: Record<string, JsonValue>) => this.tools.patchProfile(userId, patch);
  getSessionItems = (threadId: string, limit?: number) => this.tools.getSessionItems(threadId, limit);
  addSessionItems = (threadId: string, items: readonly JsonValue[]) =>
    this.tools.addSessionItems(threadId, items);
  popSessionItem = (threadId: string) => this.tools.popSessionItem(threadId);
  clearSession = (threadId: string) => this.tools.clearSession(threadId);
  getIdempotent = (key: string) => this.tools.getIdempotent(key);
  putIdempotent = (key: string, value: JsonValue) => this.tools.putIdempotent(key, value);
  getRunState = (threadId: string, runId: string) => this.tools.getRunState(threadId, runId);
  putRunState = (threadId: string, runId: string, state: string) =>
    this.tools.putRunState(threadId, runId, state);
  deleteRunState = (threadId: string, runId: string) => this.tools.deleteRunState(threadId, runId);

  override async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    const result = await super.deleteThread(threadId);
    if (result === 'deleted') await this.tools.clearSession(threadId);
    return result;
  }
}

/** One run the controlled agent received: push events into it, end it, or fail it. */
export interface ControlledRun {
  request: RunRequest;
  signal: AbortSignal;
  push(...events: AgentEvent[]): void;
  end(): void;
  fail(error: unknown): void;
  /** Helpers that build this run's events. */
  started(): AgentEvent;
  chunk(delta: string, messageId?: string): TextMessageChunkEvent;
  finished(): AgentEvent;
}

/** An agent transport the test drives by hand, run by run. */
export class ControlledAgent implements AgentTransport {
  readonly runs: ControlledRun[] = [];
  readonly cancelled: string[] = [];
  #waiters: ((run: ControlledRun) => void)[] = [];

  run(request: RunRequest, { signal }: { signal: AbortSignal }): AsyncIterable<AgentEvent> {
    const queue: AgentEvent[] = [];
    let ended = false;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const base = { threadId: request.threadId, runId: request.runId };
    const run: ControlledRun = {
      request,
      signal,
      push: (...events) => {
        queue.push(...events);
        poke();
      },
      end: () => {
        ended = true;
        poke();
      },
      fail: (error) => {
        failure = error;
        poke();
      },
      started: () => ({ type: 'RUN_STARTED', ...base, ts: Date.now() }),
      chunk: (delta, messageId = 'm1') => ({
        type: 'TEXT_MESSAGE_CHUNK' as const,
        ...base,
        ts: Date.now(),
        messageId,
        delta,
      }),
      finished: () => ({ type: 'RUN_FINISHED', ...base, ts: Date.now() }),
    };
    signal.addEventListener('abort', poke);
    this.runs.push(run);
    for (const w of this.#waiters.splice(0)) w(run);
    return (async function* () {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (failure !== undefined) throw failure;
        if (ended || signal.aborted) return;
        await new Promise<void>((r) => (wake = r));
      }
    })();
  }

  async cancel(runId: string): Promise<void> {
    this.cancelled.push(runId);
  }

  /** Resolves with the next run started (or the n-th overall, if already there). */
  nextRun(index = this.runs.length): Promise<ControlledRun> {
    const existing = this.runs[index];
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve) => {
      const check = () => {
        const r = this.runs[index];
        if (r) resolve(r);
        else this.#waiters.push(check);
      };
      this.#waiters.push(check);
    });
  }
}

export const tokens = {
  issued: [] as { userId: string; threadId: string; runId: string; tools: string[] }[],
  async issue(input: { userId: string; threadId: string; runId: string; tools: string[] }): Promise<string> {
    tokens.issued.push(input);
    return `test-token.${input.runId}`;
  },
};

/** A temp dir removed by the returned function. */
export function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'threadline-relay-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export type StoreKind = 'memory' | 'sqlite';

/** A real store with its tool storage: memory (with a MemoryToolStore), or SQLite on a file in a temp dir. */
export function makeStore(kind: StoreKind): {
  store: EventStore & ToolStore;
  cleanup(): Promise<void>;
  path?: string;
} {
  if (kind === 'memory') {
    const store = new MemoryStoreWithTools();
    return { store, cleanup: () => store.close() };
  }
  const dir = tempDir();
  const path = join(dir.path, 'relay.db');
  const store = openSqliteStore({ path, synchronous: 'normal' });
  return {
    store,
    path,
    cleanup: async () => {
      await store.close();
      dir.remove();
    },
  };
}

export interface Harness {
  store: EventStore & ToolStore;
  agent: ControlledAgent;
  relay: Relay;
  cleanup(): Promise<void>;
}

export async function makeRelay(kind: StoreKind, overrides: Partial<RelayOptions> = {}): Promise<Harness> {
  const { store, cleanup } = makeStore(kind);
  const agent = new ControlledAgent();
  const relay = createRelay({
    store,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9/api',
    tools: ['profile.patch'],
    logger: { error() {}, warn() {} },
    ...overrides,
  });
  return {
    store,
    agent,
    relay,
    cleanup: async () => {
      await relay.close();
      await cleanup();
    },
  };
}

export const ORIGIN = 'http://app.test';

/** A relay behind a real HTTP server with the ws transport; users authenticate with an `x-user` header. */
export async function makeWsHarness(
  kind: StoreKind,
  overrides: Partial<RelayOptions> = {},
  wsOptions: Partial<WebSocketServerOptions> = {},
): Promise<Harness & { url: string; server: Server; closeWs(): Promise<void> }> {
  const h = await makeRelay(kind, overrides);
  const server = createServer((_req, res) => res.writeHead(404).end());
  const ws = attachWebSocketServer(server, h.relay, {
    authenticate: async (req: IncomingMessage) => {
      const user = req.headers['x-user'];
      return typeof user === 'string' && user !== '' ? { id: user } : null;
    },
    allowedOrigins: [ORIGIN],
    path: '/ws',
    logger: { error() {}, warn() {} },
    ...wsOptions,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`;
  return {
    ...h,
    url,
    server,
    closeWs: () => ws.close(),
    cleanup: async () => {
      await ws.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await h.cleanup();
    },
  };
}

/**
 * Listens on a free port of 127.0.0.1 and registers closing the server (and its open connections) in
 * `cleanups`; returns its http:// base URL.
 */
export async function listenLocal(server: Server, cleanups: (() => Promise<void> | void)[]): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A real ws client that records every server message and can wait for one. */
export class TestClient {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: { predicate(m: Record<string, unknown>): boolean; resolve(m: Record<string, unknown>): void }[] =
    [];

  constructor(url: string, user: string | null, origin: string = ORIGIN) {
    const headers: Record<string, string> = { origin };
    if (user !== null) headers['x-user'] = user;
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as Record<string, unknown>;
      this.messages.push(message);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.predicate(message)) return true;
        w.resolve(message);
        return false;
      });
    });
  }

  static async connect(url: string, user: string | null, origin?: string): Promise<TestClient> {
    const client = new TestClient(url, user, origin);
    await client.opened;
    return client;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Waits for a message matching `predicate` (already received ones count). */
  waitFor(predicate: (m: Record<string, unknown>) => boolean, from = 0): Promise<Record<string, unknown>> {
    const found = this.messages.slice(from).find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.#waiters.push({ predicate, resolve }));
  }

  events(): Record<string, unknown>[] {
    return this.messages.filter((m) => m.type === 'event').map((m) => m.event as Record<string, unknown>);
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closed;
    this.ws.terminate();
    return this.closed;
  }
}

/** Reads a thread's whole stored log. */
export async function readAll(
  store: EventStore,
  threadId: string,
): Promise<{ seq: number; event: Record<string, unknown> }[]> {
  const out: { seq: number; event: Record<string, unknown> }[] = [];
  let after = 0;
  for (;;) {
    const page = await store.read(threadId, { afterSeq: after, limit: 1000 });
    for (const e of page) out.push({ seq: e.seq, event: JSON.parse(e.json) as Record<string, unknown> });
    if (page.length < 1000) return out;
    after = page[page.length - 1]!.seq;
  }
}

/** Waits until `check` is true, polling on timers (for states with no event to await, e.g. store writes). */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A relay on a MemoryStore reaching the agent through `agent`, with thread `t1` owned by `u`; `cleanups`
 * gets what closes both.
 */
export async function relayThrough(
  agent: AgentTransport,
  cleanups: (() => Promise<void> | void)[],
  limits: RelayOptions['limits'] = {},
): Promise<{ relay: Relay; store: MemoryStore }> {
  const store = new MemoryStore();
  const relay = createRelay({
    store,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    limits,
    logger: { error() {}, warn() {} },
  });
  cleanups.push(async () => {
    await relay.close();
    await store.close();
  });
  await store.createThread({ threadId: 't1', ownerId: 'u' });
  return { relay, store };
}

/** Sends `text` on thread `t1` as `u` and collects that run's stored events up to its terminal one. */
export async function runToEnd(
  relay: Relay,
  text = 'go',
  clientMessageId = 'c1',
): Promise<Record<string, unknown>[]> {
  const sub = await relay.subscribe({ user: { id: 'u' }, threadId: 't1', afterSeq: 0 });
  const { runId } = await relay.send({ user: { id: 'u' }, threadId: 't1', text, clientMessageId });
  const out: Record<string, unknown>[] = [];
  for await (const s of sub) {
    const e = JSON.parse(s.json) as Record<string, unknown>;
    if (e.runId !== runId) continue;
    out.push(e);
    if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') break;
  }
  return out;
}

/** One SSE `data:` line for the run the relay posted in `body` (its threadId and runId filled in). */
export const sseEvent = (body: string, e: Partial<AgentEvent> & { type: string }): string => {
  const r = JSON.parse(body) as { threadId: string; runId: string };
  return `data: ${JSON.stringify({ threadId: r.threadId, runId: r.runId, ts: 1, ...e })}\n\n`;
};

/** Malformed agent streams (SSE chunks for the run posted in `body`) and the RUN_ERROR code each must end in. */
export const BAD_AGENT_STREAMS: [string, (body: string) => string[], string][] = [
  [
    'a line that is not JSON',
    (body: string) => [sseEvent(body, { type: 'RUN_STARTED' }), 'data: {not json\n\n'],
    'agent_stream_invalid',
  ],
  [
    'an event off the contract',
    (body: string) => [sseEvent(body, { type: 'TEXT_MESSAGE_CHUNK', delta: 'x' })],
    'agent_stream_invalid',
  ],
  [
    'an unknown SSE field',
    (body: string) => [sseEvent(body, { type: 'RUN_STARTED' }), 'foo: bar\n\n'],
    'agent_stream_invalid',
  ],
  [
    'an unknown SSE event type',
    (body: string) => ['event: surprise\n', sseEvent(body, { type: 'RUN_STARTED' })],
    'agent_stream_invalid',
  ],
  [
    'another thread’s event',
    (body: string) => [sseEvent(body, { type: 'RUN_STARTED', threadId: 'other' })],
    'agent_stream_invalid',
  ],
  [
    'an event larger than the bound',
    (body: string) => [`data: "${'x'.repeat(1 << 20)}"\n\n`, sseEvent(body, { type: 'RUN_STARTED' })],
    'agent_stream_invalid',
  ],
  [
    'a stream that ends before the run does',
    (body: string) => [sseEvent(body, { type: 'RUN_STARTED' })],
    'agent_stream_ended',
  ],
];

/** One run a {@link CappedHttpAgent} took: its request and the SSE response the test finishes. */
export interface CappedRun {
  request: RunRequest;
  /** Writes RUN_FINISHED and ends the response (its place is freed first, as an agent service does). */
  finish(): void;
}

/**
 * A real HTTP agent service on 127.0.0.1 with a cap on runs at once, like `serveAgent`'s
 * `maxConcurrentRuns`: a run over the cap gets 429 with Retry-After; a taken run streams RUN_STARTED and stays
 * open until the test finishes it (or the relay hangs up).
 */
export class CappedHttpAgent {
  readonly taken: CappedRun[] = [];
  /** POSTs answered 429. */
  refused = 0;
  active = 0;
  #waiters: (() => void)[] = [];
  readonly server: Server;
  url = '';

  constructor(
    readonly cap: number,
    readonly retryAfterSeconds = 1,
  ) {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.method === 'DELETE') return void res.writeHead(204).end();
        if (this.active >= this.cap) {
          this.refused++;
          res.writeHead(429, {
            'content-type': 'application/json',
            'retry-after': String(this.retryAfterSeconds),
          });
          res.end('{"error":{"code":"too_many_runs","message":"At most N runs at once; retry shortly."}}');
          this.#poke();
          return;
        }
        const request = JSON.parse(body) as RunRequest;
        const ids = { threadId: request.threadId, runId: request.runId };
        this.active++;
        let open = true;
        const free = () => {
          if (!open) return;
          open = false;
          this.active--;
        };
        res.on('close', free);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ type: 'RUN_STARTED', ...ids, ts: Date.now() })}\n\n`);
        this.taken.push({
          request,
          finish: () => {
            free();
            res.end(`data: ${JSON.stringify({ type: 'RUN_FINISHED', ...ids, ts: Date.now() })}\n\n`);
          },
        });
        this.#poke();
      });
    });
  }

  async start(cleanups: (() => Promise<void> | void)[]): Promise<this> {
    this.url = await listenLocal(this.server, cleanups);
    return this;
  }

  /** Resolves once `check` holds, re-checked after every request the agent answers. */
  async until(check: () => boolean): Promise<void> {
    while (!check()) await new Promise<void>((r) => this.#waiters.push(r));
  }

  /** The taken run of `threadId`, once there is one. */
  async runOf(threadId: string): Promise<CappedRun> {
    await this.until(() => this.taken.some((r) => r.request.threadId === threadId));
    return this.taken.find((r) => r.request.threadId === threadId)!;
  }

  #poke(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
