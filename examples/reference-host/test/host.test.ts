import { createDemoCompactionClient } from '@threadline/agent-runner';
import { createRunFinishedEvent, createRunStartedEvent } from '@threadline/contracts';
import type { AgentEvent, RunRequest, SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import { inProcessAgentTransport } from '@threadline/relay';
import { createTokenIssuer } from '@threadline/tools-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TOKEN_ISSUER, type Host } from '../src/host.js';
import { Client } from './helpers.js';
import { demoRunner, startInProcessHost, type InProcessHost } from './in-process-host.js';

// The whole API in process (in-process-host.ts), with the agent runner in process on the offline demo model.
let running: InProcessHost;
let host: Host;
let base: string;
let secret: string;
const holds = new Map<string, () => void>();
/** The act-as token each run was started with, as the agent received it. */
const runTokens = new Map<string, string>();

beforeAll(async () => {
  const runner = demoRunner();
  // Messages starting with "window" run with a history window of 1 item, so a short thread is already windowed.
  const windowed = demoRunner(0, { tuning: { historyItems: 1 } });
  // Messages starting with "compact" run with compaction after 2 non-user items (the offline demo compaction).
  const compacting = demoRunner(0, {
    compaction: { afterItems: 2, model: 'gpt-4.1-mini', client: createDemoCompactionClient() },
  });
  // A message "hold" starts a run that stays open until released or cancelled (the seam is the agent
  // transport), so cancel can be tried on a run that is really in progress.
  // "hold-fail" does the same and then fails (the relay ends the run with RUN_ERROR).
  async function* hold(request: RunRequest, { signal }: { signal: AbortSignal }): AsyncGenerator<AgentEvent> {
    const ids = { threadId: request.threadId, runId: request.runId };
    runTokens.set(request.runId, request.tools.token);
    yield createRunStartedEvent(ids);
    await new Promise<void>((resolve) => {
      holds.set(request.runId, resolve);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    if (request.text === 'hold-fail') throw new Error('the agent broke');
    if (!signal.aborted) yield createRunFinishedEvent(ids);
  }
  const agent = inProcessAgentTransport({
    run: (request, options) =>
      request.text.startsWith('hold')
        ? hold(request, options)
        : (request.text.startsWith('window')
            ? windowed
            : request.text.startsWith('compact')
              ? compacting
              : runner
          ).run(request, options),
  });
  running = await startInProcessHost(agent);
  ({ host, base } = running);
  secret = running.secrets.toolsTokenSecret;
});
afterAll(() => running?.close());

/** A browser-protocol WebSocket client that keeps every message it gets. */
class WsClient {
  readonly messages: ServerMessage[] = [];
  #waiters: { pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as ServerMessage;
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }
  static open(cookie: string | undefined, origin = base): Promise<WsClient> {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
      headers: { origin, ...(cookie ? { cookie } : {}) },
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }
  /** Opens a socket the server is expected to refuse; resolves to how it was refused. */
  static refusal(cookie: string | undefined, origin = base): Promise<string> {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
      headers: { origin, ...(cookie ? { cookie } : {}) },
    });
    let firstError = '';
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as ServerMessage;
      if (!firstError && m.type === 'error') firstError = m.code;
    });
    return new Promise((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => resolve(`HTTP ${res.statusCode}`));
      ws.once('close', (code) => resolve(`close ${code} ${firstError}`.trim()));
      ws.once('error', reject);
    });
  }
  send(m: unknown) {
    this.ws.send(JSON.stringify(m));
  }
  next(pred: (m: ServerMessage) => boolean, timeoutMs = 10_000): Promise<ServerMessage> {
    const seen = this.messages.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`no matching message; got ${JSON.stringify(this.messages.slice(-5))}`)),
        timeoutMs,
      );
      this.#waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }
  events(): SequencedAgentEvent[] {
    return this.messages.flatMap((m) => (m.type === 'event' ? [m.event] : []));
  }
  close() {
    this.ws.close();
  }
}

const finished = (runId: string) => (m: ServerMessage) =>
  m.type === 'event' &&
  (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR') &&
  m.event.runId === runId;

async function userWithThread(name: string) {
  const c = new Client(base);
  expect((await c.signup(name)).status).toBe(201);
  const threadId = (await c.req('POST', '/api/threads', { json: { title: `${name}'s thread` } })).json
    .threadId as string;
  return { c, threadId };
}

describe('host: a run over the WebSocket', () => {
  it('streams a reply, runs the profile tool for "call me Ada", and keeps the log for REST', async () => {
    const { c, threadId } = await userWithThread('ada');
    const ws = await WsClient.open(c.cookie);
    ws.send({ type: 'subscribe', threadId, afterSeq: 0 });
    ws.send({ type: 'send', threadId, text: 'hello there', clientMessageId: 'cm1' });
    const ack = await ws.next((m) => m.type === 'ack');
    expect(ack.type === 'ack' && ack.clientMessageId).toBe('cm1');
    const runId = ack.type === 'ack' ? ack.runId : '';
    const end = await ws.next(finished(runId));
    expect(end.type === 'event' && end.event.type).toBe('RUN_FINISHED');
    const text = ws
      .events()
      .filter((e) => e.type === 'TEXT_MESSAGE_CHUNK' && e.runId === runId)
      .map((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? e.delta : ''))
      .join('');
    expect(text).toContain('You said: "hello there"');

    ws.send({ type: 'send', threadId, text: 'call me Ada', clientMessageId: 'cm2' });
    const ack2 = await ws.next((m) => m.type === 'ack' && m.clientMessageId === 'cm2');
    const run2 = ack2.type === 'ack' ? ack2.runId : '';
    await ws.next(finished(run2));
    const types = ws
      .events()
      .filter((e) => e.runId === run2)
      .map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining([
        'USER_MESSAGE',
        'RUN_STARTED',
        'TOOL_CALL_STARTED',
        'TOOL_CALL_RESULT',
        'STATE_CHANGED',
        'RUN_FINISHED',
      ]),
    );
    const state = ws.events().find((e) => e.type === 'STATE_CHANGED');
    expect(state?.type === 'STATE_CHANGED' && state.scope).toBe('profile');
    expect(state?.type === 'STATE_CHANGED' && state.value).toMatchObject({ displayName: 'Ada' });
    const result = ws.events().find((e) => e.type === 'TOOL_CALL_RESULT');
    expect(result?.type === 'TOOL_CALL_RESULT' && result.ok).toBe(true);
    expect((await c.req('GET', '/api/me')).json.profile).toMatchObject({ displayName: 'Ada' });

    // The REST log is the same log the socket streamed.
    const rest = (await c.req('GET', `/api/threads/${threadId}/events`)).json.events as SequencedAgentEvent[];
    expect(rest.map((e) => e.seq)).toEqual(ws.events().map((e) => e.seq));
    ws.close();
  });
});

describe('host: a long thread', () => {
  it('a run that saw only part of the history writes HISTORY_WINDOWED to the log, and a new socket replays it', async () => {
    const { c, threadId } = await userWithThread('longthread');
    const ws = await WsClient.open(c.cookie);
    ws.send({ type: 'subscribe', threadId, afterSeq: 0 });
    const runIds: string[] = [];
    for (const [i, text] of ['window one', 'window two'].entries()) {
      ws.send({ type: 'send', threadId, text, clientMessageId: `w${i}` });
      const ack = await ws.next((m) => m.type === 'ack' && m.clientMessageId === `w${i}`);
      const runId = ack.type === 'ack' ? ack.runId : '';
      runIds.push(runId);
      await ws.next(finished(runId));
    }
    ws.close();
    const windowedIn = (events: SequencedAgentEvent[]) =>
      events.filter((e) => e.type === 'HISTORY_WINDOWED').map((e) => e.runId);
    // The first run saw the whole (empty) thread; the second read the newest 1 of its 2 earlier items.
    expect(windowedIn(ws.events())).toEqual([runIds[1]]);
    const rest = (await c.req('GET', `/api/threads/${threadId}/events`)).json.events as SequencedAgentEvent[];
    expect(rest.find((e) => e.type === 'HISTORY_WINDOWED')).toMatchObject({
      runId: runIds[1],
      windowItems: 1,
    });
    const replay = await WsClient.open(c.cookie);
    replay.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await replay.next(finished(runIds[1]!));
    expect(windowedIn(replay.events())).toEqual([runIds[1]]);
    expect(replay.events().map((e) => e.seq)).toEqual(rest.map((e) => e.seq));
    replay.close();
  });
});

describe('host: a compacted thread', () => {
  it('the run after a compaction writes HISTORY_WINDOWED reason compacted to the log, and a new socket replays it', async () => {
    const { c, threadId } = await userWithThread('compactthread');
    const ws = await WsClient.open(c.cookie);
    ws.send({ type: 'subscribe', threadId, afterSeq: 0 });
    const runIds: string[] = [];
    for (const [i, text] of ['compact one', 'compact two', 'compact three'].entries()) {
      ws.send({ type: 'send', threadId, text, clientMessageId: `k${i}` });
      const ack = await ws.next((m) => m.type === 'ack' && m.clientMessageId === `k${i}`);
      const runId = ack.type === 'ack' ? ack.runId : '';
      runIds.push(runId);
      await ws.next(finished(runId));
    }
    ws.close();
    // The second run's two answers reached the threshold; the third run answered from the summary.
    const compactedIn = (events: SequencedAgentEvent[]) =>
      events.filter((e) => e.type === 'HISTORY_WINDOWED').map((e) => [e.runId, e.reason]);
    expect(compactedIn(ws.events())).toEqual([[runIds[2], 'compacted']]);
    const rest = (await c.req('GET', `/api/threads/${threadId}/events`)).json.events as SequencedAgentEvent[];
    expect(compactedIn(rest)).toEqual([[runIds[2], 'compacted']]);
    const replay = await WsClient.open(c.cookie);
    replay.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await replay.next(finished(runIds[2]!));
    expect(compactedIn(replay.events())).toEqual([[runIds[2], 'compacted']]);
    expect(replay.events().map((e) => e.seq)).toEqual(rest.map((e) => e.seq));
    replay.close();
  });
});

describe('host: WebSocket boundary', () => {
  it('refuses a socket without a valid session (error unauthorized, close 4401) or from another origin (403)', async () => {
    const { c } = await userWithThread('wsauth');
    // A browser cannot read an HTTP 401 on an upgrade, so the host closes with 4401 and says why.
    expect(await WsClient.refusal(undefined)).toBe('close 4401 unauthorized');
    expect(await WsClient.refusal('tl_session=forged')).toBe('close 4401 unauthorized');
    expect(await WsClient.refusal(c.cookie, 'https://evil.example')).toBe('HTTP 403');
  });

  it("signing out closes that session's open sockets, not the user's other sessions", async () => {
    const { c, threadId } = await userWithThread('wslogout');
    const other = new Client(base);
    expect(
      (
        await other.req('POST', '/api/auth/login', {
          json: { username: 'wslogout', password: 'correct horse battery' },
        })
      ).status,
    ).toBe(200);
    const mine = await WsClient.open(c.cookie);
    const theirs = await WsClient.open(other.cookie);
    const closed = new Promise<void>((resolve) => mine.ws.once('close', () => resolve()));
    const cookie = c.cookie;

    expect((await c.req('POST', '/api/auth/logout')).status).toBe(204);
    // An open socket must not outlive its session: otherwise a signed-out tab could still start runs.
    await closed;
    expect(await WsClient.refusal(cookie)).toBe('close 4401 unauthorized');
    // The same user's other session (another browser) keeps its socket.
    theirs.send({ type: 'subscribe', threadId, afterSeq: 0 });
    theirs.send({ type: 'send', threadId, text: 'still here', clientMessageId: 'w1' });
    const ack = await theirs.next((m) => m.type === 'ack');
    await theirs.next(finished(ack.type === 'ack' ? ack.runId : ''));
    theirs.close();
  });

  it('lets one user hold 32 sockets, refuses the 33rd with too_many_connections (others still connect)', async () => {
    const greedy = await userWithThread('wsgreedy');
    const other = await userWithThread('wsother');
    // The attacker opens sockets as fast as it can (in the report, one user took all 10,000).
    const mine = await Promise.all(Array.from({ length: 32 }, () => WsClient.open(greedy.c.cookie)));
    const refusal = await Promise.race([
      WsClient.refusal(greedy.c.cookie),
      new Promise((r) => setTimeout(() => r('the 33rd socket stayed open'), 5_000)),
    ]);
    expect(refusal).toBe('close 1013 too_many_connections');
    const theirs = await WsClient.open(other.c.cookie);
    theirs.send({ type: 'subscribe', threadId: other.threadId, afterSeq: 0 });
    theirs.send({ type: 'send', threadId: other.threadId, text: 'still served', clientMessageId: 'g1' });
    const ack = await theirs.next((m) => m.type === 'ack');
    await theirs.next(finished(ack.type === 'ack' ? ack.runId : ''));
    // Closing one of the attacker's sockets frees its slot (once the server has seen the close).
    const gone = new Promise((r) => mine[0]!.ws.once('close', r));
    mine[0]!.ws.close();
    await gone;
    let again: WsClient | undefined;
    for (let i = 0; i < 50 && !again; i++) {
      const ws = await WsClient.open(greedy.c.cookie);
      // A refused socket opens too (to be told why); an accepted one answers a request.
      ws.send({ type: 'cancel', runId: 'probe' });
      const first = await ws.next((m) => m.type === 'error');
      if (first.type === 'error' && first.code === 'not_found') again = ws;
      else expect(first.type === 'error' && first.code).toBe('too_many_connections');
    }
    expect(again?.ws.readyState).toBe(WebSocket.OPEN);
    for (const ws of [...mine.slice(1), again!, theirs]) ws.close();
  });

  it('answers upgrades on paths other than /ws with 404 instead of leaving them hanging', async () => {
    const { c } = await userWithThread('wspath');
    const ws = new WebSocket(`${base.replace('http', 'ws')}/elsewhere`, {
      headers: { origin: base, cookie: c.cookie! },
    });
    const status = await new Promise<number | undefined>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode));
      ws.once('error', () => resolve(undefined));
    });
    expect(status).toBe(404);
  });

  it('another user can neither subscribe to, send to, nor cancel runs of a thread by frame', async () => {
    const owner = await userWithThread('owner1');
    const attacker = await userWithThread('attacker1');
    const ws = await WsClient.open(attacker.c.cookie);
    ws.send({ type: 'subscribe', threadId: owner.threadId, afterSeq: 0 });
    const e1 = await ws.next((m) => m.type === 'error');
    expect(e1.type === 'error' && e1.code).toBe('not_found');
    ws.send({ type: 'send', threadId: owner.threadId, text: 'hi', clientMessageId: 'x1' });
    const e2 = await ws.next((m) => m.type === 'error' && m.ref === 'x1');
    expect(e2.type === 'error' && e2.code).toBe('not_found');
    // Nothing was written to the owner's thread.
    expect((await owner.c.req('GET', `/api/threads/${owner.threadId}/events`)).json.events).toEqual([]);

    // The owner starts a run that stays in progress; the attacker's cancel for its id does nothing.
    const ownerWs = await WsClient.open(owner.c.cookie);
    ownerWs.send({ type: 'subscribe', threadId: owner.threadId, afterSeq: 0 });
    ownerWs.send({ type: 'send', threadId: owner.threadId, text: 'hold', clientMessageId: 'o1' });
    const ack = await ownerWs.next((m) => m.type === 'ack');
    const runId = ack.type === 'ack' ? ack.runId : '';
    await ownerWs.next((m) => m.type === 'event' && m.event.type === 'RUN_STARTED');
    ws.send({ type: 'cancel', runId });
    const e3 = await ws.next((m) => m.type === 'error' && m.ref === runId);
    expect(e3.type === 'error' && e3.code).toBe('not_found');
    // The run is still in progress (no terminal event), so the refused cancel really had something to stop.
    expect(
      ownerWs
        .events()
        .some((e) => e.runId === runId && (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR')),
    ).toBe(false);
    const release = holds.get(runId);
    expect(release).toBeDefined();
    release!();
    const end = await ownerWs.next(finished(runId));
    expect(end.type === 'event' && end.event.type).toBe('RUN_FINISHED');
    expect(ws.events()).toEqual([]);
    ownerWs.close();
    ws.close();
  });
});

/** Starts a "hold" run in the thread; resolves once the agent has its act-as token. */
async function holdRun(c: Client, threadId: string, message = 'hold') {
  const ws = await WsClient.open(c.cookie);
  ws.send({ type: 'subscribe', threadId, afterSeq: 0 });
  ws.send({ type: 'send', threadId, text: message, clientMessageId: `cm-${message}-${Date.now()}` });
  const ack = await ws.next((m) => m.type === 'ack');
  const runId = ack.type === 'ack' ? ack.runId : '';
  await ws.next((m) => m.type === 'event' && m.event.type === 'RUN_STARTED' && m.event.runId === runId);
  return { ws, runId, token: runTokens.get(runId)! };
}

/** What an attacker holding `token` gets from each write and read the token allows. */
async function useToken(token: string, threadId: string) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const post = (tool: string, input: unknown) =>
    fetch(`${base}/tools/${tool}`, { method: 'POST', headers, body: JSON.stringify({ threadId, input }) });
  const answers = [
    await post('profile.patch', { displayName: 'Mallory' }),
    await post('events.append', {
      event: { type: 'TEXT_MESSAGE_CHUNK', messageId: 'msg_injected', delta: 'Click evil.example' },
    }),
    await post('session.add', { items: ['injected'] }),
    await fetch(`${base}/state?threadId=${threadId}`, { headers }),
  ];
  return Promise.all(
    answers.map(
      async (r) =>
        `${r.status} ${((await r.json()) as { ok: boolean; error?: { code: string } }).error?.code ?? 'ok'}`,
    ),
  );
}

describe('host: act-as tokens die with their run', () => {
  it('a token of a finished, cancelled, failed or unknown run is refused and writes nothing; the running run’s works', async () => {
    const { c, threadId } = await userWithThread('tokenvictim');
    const userId = (await c.req('GET', '/api/me')).json.user.id as string;
    const lastSeq = async () => (await c.req('GET', `/api/threads/${threadId}`)).json.lastSeq as number;
    const profile = async () => (await c.req('GET', '/api/me')).json.profile as Record<string, unknown>;

    // While its run runs, the token works (the agent's own calls).
    const finished1 = await holdRun(c, threadId);
    expect(await useToken(finished1.token, threadId)).toEqual(['200 ok', '200 ok', '200 ok', '200 ok']);
    expect(await profile()).toEqual({ displayName: 'Mallory' });
    holds.get(finished1.runId)!();
    await finished1.ws.next(finished(finished1.runId));
    finished1.ws.close();

    const refused = ['403 run_not_active', '403 run_not_active', '403 run_not_active', '403 run_not_active'];
    const before = { seq: await lastSeq(), profile: await profile() };
    // Finished run.
    expect(await useToken(finished1.token, threadId)).toEqual(refused);

    // Cancelled run.
    const cancelled = await holdRun(c, threadId);
    cancelled.ws.send({ type: 'cancel', runId: cancelled.runId });
    const cancelEnd = await cancelled.ws.next(finished(cancelled.runId));
    expect(cancelEnd.type === 'event' && cancelEnd.event.type === 'RUN_ERROR' && cancelEnd.event.code).toBe(
      'cancelled',
    );
    cancelled.ws.close();
    const afterCancel = await lastSeq();
    expect(await useToken(cancelled.token, threadId)).toEqual(refused);

    // Failed run.
    const failed = await holdRun(c, threadId, 'hold-fail');
    holds.get(failed.runId)!();
    const failEnd = await failed.ws.next(finished(failed.runId));
    expect(failEnd.type === 'event' && failEnd.event.type).toBe('RUN_ERROR');
    failed.ws.close();
    const afterFail = await lastSeq();
    expect(await useToken(failed.token, threadId)).toEqual(refused);

    // A validly signed token naming a run that never existed.
    const unknown = await createTokenIssuer({ secret, issuer: TOKEN_ISSUER }).issue({
      userId,
      threadId,
      runId: 'run_never_started',
      tools: ['profile.patch', 'events.append', 'session.add', 'state.get'],
    });
    expect(await useToken(unknown, threadId)).toEqual(refused);

    // Nothing the refused calls tried reached the store.
    expect(await profile()).toEqual(before.profile);
    expect(await lastSeq()).toBe(afterFail);
    expect(afterFail).toBeGreaterThan(afterCancel);
    const events = (await c.req('GET', `/api/threads/${threadId}/events?afterSeq=0`)).json.events as {
      type: string;
      delta?: string;
    }[];
    expect(
      events.filter((e) => e.type === 'TEXT_MESSAGE_CHUNK' && e.delta === 'Click evil.example'),
    ).toHaveLength(
      1, // the one appended while its run was running
    );
    expect(before.seq).toBeGreaterThan(0);
  });
});

describe('host: tool endpoints', () => {
  it('refuses calls without a token, and a token for one thread opens no other', async () => {
    const a = await userWithThread('tooluser-a');
    const b = await userWithThread('tooluser-b');
    const noToken = await fetch(`${base}/state?threadId=${a.threadId}`);
    expect(noToken.status).toBe(401);
    const userA = (await a.c.req('GET', '/api/me')).json.user.id as string;
    // The token of a real run in progress (tokens of ended or unknown runs are refused outright).
    const run = await holdRun(a.c, a.threadId);
    const token = run.token;
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const own = await fetch(`${base}/state?threadId=${a.threadId}`, { headers: auth });
    expect(own.status).toBe(200);
    const other = await fetch(`${base}/state?threadId=${b.threadId}`, { headers: auth });
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('thread_mismatch');
    const patchOther = await fetch(`${base}/tools/profile.patch`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ threadId: b.threadId, input: { displayName: 'Mallory' } }),
    });
    expect(patchOther.status).toBe(403);
    expect((await b.c.req('GET', '/api/me')).json.profile).toEqual({});
    // A token signed with another secret is refused.
    const forged = await createTokenIssuer({ secret: 'x'.repeat(43), issuer: TOKEN_ISSUER }).issue({
      userId: userA,
      threadId: a.threadId,
      runId: 'r1',
      tools: ['profile.patch'],
    });
    const r = await fetch(`${base}/state?threadId=${a.threadId}`, {
      headers: { authorization: `Bearer ${forged}` },
    });
    expect(r.status).toBe(401);
    holds.get(run.runId)!();
    await run.ws.next(finished(run.runId));
    run.ws.close();
  });

  it("holds one user to RUNS_PER_USER runs at once (too_many_runs), and the store's health says ok", async () => {
    const c = new Client(base);
    expect((await c.signup('greedy')).status).toBe(201);
    const threads: string[] = [];
    for (let i = 0; i < 5; i++)
      threads.push((await c.req('POST', '/api/threads', { json: {} })).json.threadId as string);
    const ws = await WsClient.open(c.cookie);
    const answer = (id: string) => (m: ServerMessage) =>
      (m.type === 'ack' && m.clientMessageId === id) || (m.type === 'error' && m.ref === id);
    const runIds: string[] = [];
    for (let i = 0; i < 4; i++) {
      ws.send({ type: 'send', threadId: threads[i], text: 'hold', clientMessageId: `g${i}` });
      const m = await ws.next(answer(`g${i}`));
      expect(m.type).toBe('ack');
      if (m.type === 'ack') runIds.push(m.runId);
    }
    ws.send({ type: 'send', threadId: threads[4], text: 'hold', clientMessageId: 'g4' });
    expect(await ws.next(answer('g4'))).toMatchObject({ type: 'error', code: 'too_many_runs' });
    for (const runId of runIds) ws.send({ type: 'cancel', runId });
    // Once they ended, the user's share is free again.
    for (let i = 0; host.relay.activeRuns > 0 && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    ws.send({ type: 'send', threadId: threads[4], text: 'hello', clientMessageId: 'g5' });
    expect(await ws.next(answer('g5'))).toMatchObject({ type: 'ack' });
    ws.close();
    expect(host.storeHealth()).toMatchObject({ status: 'ok', unterminatedRuns: 0 });
  });

  it('reports health with the store in use', async () => {
    const r = await fetch(`${base}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok', store: 'sqlite' });
  });
});
