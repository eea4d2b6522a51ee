import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  createRunFinishedEvent,
  createRunStartedEvent,
  createTextMessageChunkEvent,
} from '@threadline/contracts';
import type { AgentEvent, RunRequest, ServerMessage } from '@threadline/contracts';
import { inProcessAgentTransport } from '@threadline/relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { readConfig } from '../src/config.js';
import { startHost, type Host } from '../src/host.js';
import { loadSecrets } from '../src/secrets.js';
import { Client } from './helpers.js';

// PATCH and DELETE /api/threads/:threadId and titles from the first message, against the whole host in process
// (real HTTP and WebSocket on 127.0.0.1, real SQLite files). The agent answers "hold" by staying open until the
// run is cancelled, anything else with one short chunk.
let host: Host;
let dir: string;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-threads-'));
  const config = readConfig({ PORT: '0', AGENT_PORT: '0', DATA_DIR: dir });
  async function* answer(
    request: RunRequest,
    { signal }: { signal: AbortSignal },
  ): AsyncGenerator<AgentEvent> {
    const ids = { threadId: request.threadId, runId: request.runId };
    yield createRunStartedEvent(ids);
    if (request.text === 'hold') {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      return;
    }
    yield createTextMessageChunkEvent({ ...ids, messageId: `m_${request.runId}`, delta: 'ok' });
    yield createRunFinishedEvent(ids);
  }
  host = await startHost({
    config,
    secrets: loadSecrets(dir),
    agent: inProcessAgentTransport({ run: answer }),
    logger: { error: () => {}, warn: () => {} },
  });
  base = `http://127.0.0.1:${host.port}`;
});
afterAll(async () => {
  await host?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A browser-protocol socket that keeps what it gets. */
async function socket(cookie: string | undefined): Promise<{
  ws: WebSocket;
  next(pred: (m: ServerMessage) => boolean): Promise<ServerMessage>;
  send(m: unknown): void;
}> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
    headers: { origin: base, ...(cookie ? { cookie } : {}) },
  });
  const got: ServerMessage[] = [];
  let waiters: { pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as ServerMessage;
    got.push(m);
    waiters = waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    next: (pred) => {
      const seen = got.find(pred);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    send: (m) => ws.send(JSON.stringify(m)),
  };
}

const ended = (runId: string) => (m: ServerMessage) =>
  m.type === 'event' &&
  (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR') &&
  m.event.runId === runId;

/** Rows the host's SQLite store still holds for a thread, read from the file itself. */
function rowsOf(threadId: string): Record<string, number> {
  const db = new DatabaseSync(join(dir, 'threadline.db'), { readOnly: true });
  try {
    const count = (sql: string) => (db.prepare(sql).get(threadId) as { n: number }).n;
    return {
      threads: count('SELECT count(*) AS n FROM threads WHERE thread_id = ?'),
      // Two queries, not one with ?1 twice: on Node 22.18 node:sqlite fails to bind that ("column index out of range").
      events:
        count('SELECT count(*) AS n FROM events WHERE thread_id = ?') +
        count('SELECT count(*) AS n FROM event_tail WHERE thread_id = ?'),
      runs: count('SELECT count(*) AS n FROM runs WHERE thread_id = ?'),
      sessionItems: count('SELECT count(*) AS n FROM session_items WHERE thread_id = ?'),
    };
  } finally {
    db.close();
  }
}

async function userWithThread(name: string, title?: string): Promise<{ c: Client; threadId: string }> {
  const c = new Client(base);
  expect((await c.signup(name)).status).toBe(201);
  const t = await c.req('POST', '/api/threads', { json: title === undefined ? {} : { title } });
  expect(t.status).toBe(201);
  return { c, threadId: t.json.threadId as string };
}

async function lastSeq(c: Client, threadId: string): Promise<number> {
  return (await c.req('GET', `/api/threads/${threadId}`)).json.lastSeq as number;
}

/** Sends a message over a socket and waits for its run to end; returns the run id. */
async function converse(c: Client, threadId: string, text: string): Promise<string> {
  const s = await socket(c.cookie);
  s.send({ type: 'subscribe', threadId, afterSeq: await lastSeq(c, threadId) });
  s.send({ type: 'send', threadId, text, clientMessageId: `c_${Math.random().toString(36).slice(2)}` });
  const ack = await s.next((m) => m.type === 'ack');
  const runId = (ack as { runId: string }).runId;
  await s.next(ended(runId));
  s.ws.close();
  return runId;
}

describe('titles', () => {
  it('an untitled thread gets its title from the first message, once', async () => {
    const { c, threadId } = await userWithThread('titler');
    expect((await c.req('GET', `/api/threads/${threadId}`)).json.title).toBe('');
    await converse(
      c,
      threadId,
      'Could you help me plan a three day walking trip around Lisbon with good food and views',
    );
    const title = (await c.req('GET', `/api/threads/${threadId}`)).json.title as string;
    expect(title).toBe('Could you help me plan a three day walking trip around…');
    await converse(c, threadId, 'Something else entirely');
    expect((await c.req('GET', `/api/threads/${threadId}`)).json.title).toBe(title);
    const listed = (await c.req('GET', '/api/threads')).json.threads as { threadId: string; title: string }[];
    expect(listed.find((t) => t.threadId === threadId)?.title).toBe(title);
  });
});

describe('PATCH /api/threads/:threadId', () => {
  it('renames the thread for its owner', async () => {
    const { c, threadId } = await userWithThread('renamer', 'Old');
    const r = await c.req('PATCH', `/api/threads/${threadId}`, { json: { title: '  New name  ' } });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ threadId, title: 'New name' });
    expect((await c.req('GET', `/api/threads/${threadId}`)).json.title).toBe('New name');
  });

  it('refuses bad titles with invalid_input and changes nothing', async () => {
    const { c, threadId } = await userWithThread('badtitles', 'Keep');
    for (const body of [
      {},
      { title: '' },
      { title: '   ' },
      { title: 5 },
      { title: 'x'.repeat(201) },
      { title: 'a', x: 1 },
    ]) {
      const r = await c.req('PATCH', `/api/threads/${threadId}`, { json: body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.code).toBe('invalid_input');
    }
    const r = await c.req('PATCH', `/api/threads/${threadId}`, {
      body: '{"title": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(400);
    expect((await c.req('GET', `/api/threads/${threadId}`)).json.title).toBe('Keep');
  });

  it("answers another user's rename like a missing thread, and the title stays", async () => {
    const { c: owner, threadId } = await userWithThread('victim-rename', 'Private');
    const attacker = new Client(base);
    await attacker.signup('attacker-rename');
    const r = await attacker.req('PATCH', `/api/threads/${threadId}`, { json: { title: 'pwned' } });
    const missing = await attacker.req('PATCH', '/api/threads/thr_doesnotexist0000', {
      json: { title: 'x' },
    });
    expect(r.status).toBe(404);
    expect(r.json).toEqual(missing.json);
    expect((await owner.req('GET', `/api/threads/${threadId}`)).json.title).toBe('Private');
    // Signed out, or from another site: refused before anything.
    expect(
      (await new Client(base).req('PATCH', `/api/threads/${threadId}`, { json: { title: 'x' } })).status,
    ).toBe(401);
    const evil = new Client(base, 'https://evil.example');
    evil.cookie = owner.cookie;
    expect((await evil.req('PATCH', `/api/threads/${threadId}`, { json: { title: 'x' } })).status).toBe(403);
    expect((await owner.req('GET', `/api/threads/${threadId}`)).json.title).toBe('Private');
  });
});

describe('DELETE /api/threads/:threadId', () => {
  it("answers another user's delete like a missing thread, and deletes nothing", async () => {
    const { c: owner, threadId } = await userWithThread('victim-delete', 'Mine');
    await converse(owner, threadId, 'hello');
    const before = rowsOf(threadId);
    expect(before.events).toBeGreaterThan(0);
    const attacker = new Client(base);
    await attacker.signup('attacker-delete');
    const r = await attacker.req('DELETE', `/api/threads/${threadId}`);
    const missing = await attacker.req('DELETE', '/api/threads/thr_doesnotexist0000');
    expect(r.status).toBe(404);
    expect(r.json).toEqual(missing.json);
    expect((await attacker.req('DELETE', '/api/threads/not%20an%20id')).status).toBe(404);
    const evil = new Client(base, 'https://evil.example');
    evil.cookie = owner.cookie;
    expect((await evil.req('DELETE', `/api/threads/${threadId}`)).status).toBe(403);
    expect(rowsOf(threadId)).toEqual(before);
    expect((await owner.req('GET', `/api/threads/${threadId}/events`)).json.events.length).toBe(
      before.events,
    );
  });

  it('refuses while a run is going (409 run_active); then removes the whole log and tells open pages', async () => {
    const { c, threadId } = await userWithThread('deleter', 'Doomed');
    await converse(c, threadId, 'first');
    const watcher = await socket(c.cookie); // an open page of the thread
    watcher.send({ type: 'subscribe', threadId, afterSeq: 0 });
    const s = await socket(c.cookie);
    s.send({ type: 'send', threadId, text: 'hold', clientMessageId: 'c_hold' });
    const { runId } = (await s.next((m) => m.type === 'ack')) as { runId: string };
    await watcher.next(
      (m) => m.type === 'event' && m.event.type === 'RUN_STARTED' && m.event.runId === runId,
    );

    const busy = await c.req('DELETE', `/api/threads/${threadId}`);
    expect(busy.status).toBe(409);
    expect(busy.json.error.code).toBe('run_active');
    expect(rowsOf(threadId).threads).toBe(1);

    s.send({ type: 'cancel', runId });
    await watcher.next(ended(runId));
    const gone = await c.req('DELETE', `/api/threads/${threadId}`);
    expect(gone.status).toBe(204);
    const frame = await watcher.next((m) => m.type === 'error');
    expect(frame).toMatchObject({ type: 'error', code: 'thread_deleted', ref: threadId });
    expect(rowsOf(threadId)).toEqual({ threads: 0, events: 0, runs: 0, sessionItems: 0 });
    expect((await c.req('GET', `/api/threads/${threadId}`)).status).toBe(404);
    expect((await c.req('GET', `/api/threads/${threadId}/events`)).status).toBe(404);
    expect((await c.req('DELETE', `/api/threads/${threadId}`)).status).toBe(404);
    const listed = (await c.req('GET', '/api/threads')).json.threads as { threadId: string }[];
    expect(listed.map((t) => t.threadId)).not.toContain(threadId);
    watcher.ws.close();
    s.ws.close();
  });
});

describe('pages', () => {
  it('answers a missing thread or an unknown page with the not-found page (HTML), and JSON to API calls', async () => {
    const { c } = await userWithThread('pages');
    for (const path of ['/threads/thr_doesnotexist0000', '/no/such/page']) {
      const r = await c.req('GET', path, { headers: { accept: 'text/html' } });
      expect(r.status).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^text\/html/);
      expect(r.text).toContain('href="/threads"');
    }
    const api = await c.req('GET', '/api/threads/thr_doesnotexist0000', { headers: { accept: 'text/html' } });
    expect(api.status).toBe(404);
    expect(api.json.error.code).toBe('not_found');
  });

  it('sends a signed-out visitor of a thread to sign in with the way back, and only ever back to this site', async () => {
    const { c, threadId } = await userWithThread('returner');
    const anon = new Client(base);
    const r = await anon.req('GET', `/threads/${threadId}`);
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe(`/?next=${encodeURIComponent(`/threads/${threadId}`)}`);
    // Signed in, the sign-in page forwards to `next` when it is a path here, else to the thread list.
    const go = async (next: string) =>
      (await c.req('GET', `/?next=${encodeURIComponent(next)}`)).headers.get('location');
    expect(await go(`/threads/${threadId}`)).toBe(`/threads/${threadId}`);
    expect(await go('/threads?x=1')).toBe('/threads?x=1');
    for (const evil of [
      '//evil.example',
      '//evil.example/threads',
      'https://evil.example/',
      'http:evil.example',
      '/\\evil.example',
      '\\\\evil.example',
      '/\t/evil.example',
      '/\n/evil.example',
      'javascript:alert(1)',
      'evil.example',
      '',
      '/'.padEnd(3000, 'a'),
    ]) {
      expect(await go(evil), JSON.stringify(evil)).toBe('/threads');
    }
  });
});
