import {
  createFakeOpenAIServer,
  type FakeOpenAIServer,
  type FakeTurn,
} from '@threadline/agent-runner/testing';
import type { SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenIssuer } from '@threadline/tools-kit';
import WebSocket from 'ws';
import { TOKEN_ISSUER } from '../src/host.js';
import { Client } from './helpers.js';
import { childPids, ensureBuilt, isAlive, spawnUserHost, startUserHost, type UserHost } from './user-host.js';

// Tool approvals end to end: `node dist/main.js` (relay, tools, SQLite) with its real agent service process, the
// fake OpenAI server as the model, real WebSockets. The model calls `profile.clear` (needs approval) for
// "forget me" and `profile.patch` for "call me Ada".
beforeAll(() => ensureBuilt(), 240_000);

let callN = 0;
function respond(request: { body: Record<string, unknown> }): FakeTurn {
  const input = (request.body.input as Record<string, unknown>[] | undefined) ?? [];
  const last = input.at(-1);
  if (last?.type === 'function_call_output') {
    const rejected = JSON.stringify(last.output).includes('rejected');
    return {
      type: 'text',
      text: rejected ? 'OK, I kept your profile.' : 'Done.',
      usage: { input: 11, output: 4 },
    };
  }
  const users = input.filter((i) => i.role === 'user');
  const said = JSON.stringify(users.at(-1)?.content ?? '');
  if (said.includes('forget me'))
    return {
      type: 'tool_call',
      calls: [{ name: 'profile_clear', arguments: {}, callId: `call_clear_${++callN}` }],
      usage: { input: 20, output: 5 },
    };
  if (said.includes('call me Ada'))
    return {
      type: 'tool_call',
      calls: [{ name: 'profile_patch', arguments: { displayName: 'Ada' }, callId: `call_patch_${++callN}` }],
    };
  return { type: 'text', text: 'Hello.' };
}

function env(fake: FakeOpenAIServer, extra: Record<string, string> = {}): Record<string, string> {
  return {
    OPENAI_API_KEY: 'sk-test-fake',
    OPENAI_BASE_URL: fake.baseURL,
    OPENAI_MODEL: 'gpt-test-model',
    THREADLINE_TRACING_ENDPOINT: fake.tracesEndpoint,
    TOOLS_TOKEN_SECRET: 'approvals-tools-token-secret-0123456789abcdef',
    AGENT_SHARED_SECRET: 'approvals-agent-shared-secret-0123456789abcdef',
    ...extra,
  };
}

/** One signed-in browser tab: a cookie and a WebSocket that records every server message. */
class Tab {
  readonly messages: ServerMessage[] = [];
  #waiters: { test(m: ServerMessage): boolean; resolve(m: ServerMessage): void }[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as ServerMessage;
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => (w.test(m) ? (w.resolve(m), false) : true));
    });
  }
  static async open(base: string, client: Client): Promise<Tab> {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
      headers: { origin: base, cookie: client.cookie! },
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new Tab(ws);
  }
  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }
  waitFor(test: (m: ServerMessage) => boolean, timeoutMs = 20_000): Promise<ServerMessage> {
    const found = this.messages.find(test);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out; got ${JSON.stringify(this.messages.slice(-5))}`)),
        timeoutMs,
      );
      this.#waiters.push({
        test,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }
  event(type: string, runId?: string): Promise<SequencedAgentEvent> {
    return this.waitFor(
      (m) => m.type === 'event' && m.event.type === type && (runId === undefined || m.event.runId === runId),
    ).then((m) => (m as { event: SequencedAgentEvent }).event);
  }
  error(code: string): Promise<ServerMessage> {
    return this.waitFor((m) => m.type === 'error' && m.code === code);
  }
  close(): void {
    this.ws.terminate();
  }
}

async function user(base: string, name: string) {
  const client = new Client(base);
  expect((await client.signup(name)).status).toBe(201);
  return client;
}

async function newThread(client: Client): Promise<string> {
  return (await client.req('POST', '/api/threads', { json: {} })).json.threadId as string;
}

async function log(client: Client, threadId: string): Promise<SequencedAgentEvent[]> {
  return (await client.req('GET', `/api/threads/${threadId}/events?afterSeq=0`)).json
    .events as SequencedAgentEvent[];
}

/** Seqs 1..n with no gap, one terminal event per run. */
function expectWholeLog(events: SequencedAgentEvent[]): void {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  const terminals = new Map<string, number>();
  for (const e of events)
    if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR')
      terminals.set(e.runId, (terminals.get(e.runId) ?? 0) + 1);
  for (const n of terminals.values()) expect(n).toBe(1);
}

/** Sends "call me Ada" and waits for its run to finish, so the profile has something to clear. */
async function nameAda(tab: Tab, threadId: string): Promise<void> {
  tab.send({ type: 'send', threadId, text: 'please call me Ada', clientMessageId: `ada-${threadId}` });
  const ack = (await tab.waitFor((m) => m.type === 'ack' && m.clientMessageId === `ada-${threadId}`)) as {
    runId: string;
  };
  await tab.event('RUN_FINISHED', ack.runId);
}

/** Sends "forget me" and waits for the pause. */
async function forgetMe(tab: Tab, threadId: string, id = `forget-${threadId}`) {
  tab.send({ type: 'send', threadId, text: 'forget me please', clientMessageId: id });
  const ack = (await tab.waitFor((m) => m.type === 'ack' && m.clientMessageId === id)) as { runId: string };
  const request = (await tab.event('TOOL_APPROVAL_REQUESTED', ack.runId)) as Extract<
    SequencedAgentEvent,
    { type: 'TOOL_APPROVAL_REQUESTED' }
  >;
  return { runId: ack.runId, request };
}

describe('tool approvals through the host, its agent process and the fake OpenAI server', () => {
  let fake: FakeOpenAIServer;
  let host: UserHost;
  let base: string;
  beforeAll(async () => {
    fake = await createFakeOpenAIServer({ respond });
    host = await startUserHost(env(fake));
    base = `http://127.0.0.1:${new URL(host.url).port}`;
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
    await fake?.close();
  });

  it('approve: the run pauses, the tool runs only after Approve, the answer streams, RUN_FINISHED has the usage', async () => {
    const ada = await user(base, 'approver');
    const tab = await Tab.open(base, ada);
    const threadId = await newThread(ada);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await nameAda(tab, threadId);
    const { runId, request } = await forgetMe(tab, threadId);
    expect(request).toMatchObject({ toolName: 'profile.clear', args: '{}' });
    const ttl = Date.parse(request.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(23 * 3600_000);
    // Paused: no terminal, the tool has not run.
    expect((await ada.req('GET', '/api/me')).json.profile).toMatchObject({ displayName: 'Ada' });

    tab.send({ type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true });
    const finished = await tab.event('RUN_FINISHED', runId);
    expect(finished).toMatchObject({
      usage: { inputTokens: 31, outputTokens: 9, totalTokens: 40, requests: 2 },
    });
    expect((await ada.req('GET', '/api/me')).json.profile).toEqual({});
    // Per-thread totals: the "call me Ada" run reported 1 + 11 input and 1 + 4 output tokens, this one 31 + 9.
    expect((await ada.req('GET', `/api/threads/${threadId}/usage`)).json).toEqual({
      usage: { inputTokens: 43, outputTokens: 14, totalTokens: 57, runs: 2 },
    });
    const events = await log(ada, threadId);
    expectWholeLog(events);
    const run = events.filter((e) => e.runId === runId).map((e) => e.type);
    expect(run).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TOOL_CALL_STARTED',
      'TOOL_APPROVAL_REQUESTED',
      'TOOL_APPROVAL_RESOLVED',
      'STATE_CHANGED',
      'TOOL_CALL_RESULT',
      ...run.slice(7, -1).map(() => 'TEXT_MESSAGE_CHUNK'),
      'RUN_FINISHED',
    ]);
    expect(events.find((e) => e.type === 'TOOL_APPROVAL_RESOLVED')).toMatchObject({
      approved: true,
      decidedBy: expect.any(String),
    });
    tab.close();
  });

  it('reject: the model is told and answers, the tool never runs (the profile is unchanged)', async () => {
    const bob = await user(base, 'rejecter');
    const tab = await Tab.open(base, bob);
    const threadId = await newThread(bob);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await nameAda(tab, threadId);
    const { runId, request } = await forgetMe(tab, threadId);
    tab.send({
      type: 'approve',
      threadId,
      runId,
      toolCallId: request.toolCallId,
      approved: false,
      reason: 'keep my name',
    });
    await tab.event('RUN_FINISHED', runId);
    expect((await bob.req('GET', '/api/me')).json.profile).toEqual({ displayName: 'Ada' });
    const events = (await log(bob, threadId)).filter((e) => e.runId === runId);
    expect(events.find((e) => e.type === 'TOOL_CALL_RESULT')).toMatchObject({ ok: false });
    expect(events.some((e) => e.type === 'STATE_CHANGED')).toBe(false);
    const text = events.map((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? e.delta : '')).join('');
    expect(text).toBe('OK, I kept your profile.');
    expect(JSON.stringify(fake.requests.at(-1)?.body)).toContain('keep my name');
    tab.close();
  });

  it("refuses a direct POST /tools/profile.clear with the run's own act-as token unless the owner approved that call", async () => {
    const eve = await user(base, 'direct-caller');
    const tab = await Tab.open(base, eve);
    const threadId = await newThread(eve);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    // An earlier run of the thread whose profile.clear the owner approved.
    const earlier = await forgetMe(tab, threadId, 'forget-earlier');
    const earlierCall = earlier.request.toolCallId;
    tab.send({ type: 'approve', threadId, runId: earlier.runId, toolCallId: earlierCall, approved: true });
    await tab.event('RUN_FINISHED', earlier.runId);
    await nameAda(tab, threadId);
    const { runId, request } = await forgetMe(tab, threadId);
    const userId = (await log(eve, threadId)).find((e) => e.type === 'USER_MESSAGE')!.userId;
    // What the agent service holds for the paused run: a valid act-as token allowing profile.clear.
    const token = await createTokenIssuer({
      secret: env(fake).TOOLS_TOKEN_SECRET!,
      issuer: TOKEN_ISSUER,
    }).issue({ userId, threadId, runId, tools: ['profile.clear'] });
    const direct = async (key?: string) => {
      const res = await fetch(`${base}/tools/profile.clear`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          ...(key !== undefined ? { 'idempotency-key': key } : {}),
        },
        body: JSON.stringify({ threadId, input: {} }),
      });
      const body = (await res.json()) as { error?: { code: string } };
      return `${res.status} ${body.error?.code ?? 'ok'}`;
    };
    // No call id; the pending call not yet decided; a call id the log never approved; another run's approved call.
    expect([
      await direct(),
      await direct(request.toolCallId),
      await direct('call_not_pending'),
      await direct(earlierCall),
    ]).toEqual(Array(4).fill('403 approval_required'));
    expect((await eve.req('GET', '/api/me')).json.profile).toEqual({ displayName: 'Ada' });
    // The owner's Approve still lets the agent's call through.
    tab.send({ type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true });
    await tab.event('RUN_FINISHED', runId);
    expect((await eve.req('GET', '/api/me')).json.profile).toEqual({});
    expectWholeLog(await log(eve, threadId));
    tab.close();
  });

  it("refuses the attacker's frames with a code and writes nothing: another user, a call not pending, malformed, send while paused, a second decision, after cancel", async () => {
    const owner = await user(base, 'owner');
    const mallory = await user(base, 'mallory');
    const tab = await Tab.open(base, owner);
    const evil = await Tab.open(base, mallory);
    const threadId = await newThread(owner);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    const { runId, request } = await forgetMe(tab, threadId);
    const before = await log(owner, threadId);
    const decide = { type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true };

    evil.send(decide);
    await evil.error('not_found');
    tab.send({ ...decide, toolCallId: 'call_not_pending' });
    await tab.error('approval_not_pending');
    tab.send({ ...decide, approved: 'yes' });
    await tab.error('invalid_message');
    tab.send({ ...decide, reason: 'x'.repeat(1001) });
    await tab.waitFor(
      (m) =>
        m.type === 'error' &&
        m.code === 'invalid_message' &&
        tab.messages.filter((x) => x.type === 'error' && x.code === 'invalid_message').length === 2,
    );
    tab.send({ type: 'send', threadId, text: 'another thing', clientMessageId: 'while-paused' });
    await tab.error('run_awaiting_approval');
    expect(await log(owner, threadId)).toEqual(before);

    // The run was not affected: a rejection still goes through; then a different decision is refused, the same
    // one again is answered like the first and writes nothing.
    tab.send({ ...decide, approved: false });
    await tab.event('RUN_FINISHED', runId);
    const decided = await log(owner, threadId);
    tab.send({ ...decide, approved: true });
    await tab.error('approval_already_decided');
    const errorsBefore = tab.messages.filter((m) => m.type === 'error').length;
    tab.send({ ...decide, approved: false });
    // A cancel of the ended run is a no-op; waiting for its (absent) answer: a subscribe round trip.
    tab.send({ type: 'subscribe', threadId, afterSeq: decided.at(-1)!.seq });
    await new Promise((r) => setTimeout(r, 300));
    expect(tab.messages.filter((m) => m.type === 'error').length).toBe(errorsBefore);
    expect(await log(owner, threadId)).toEqual(decided);

    // Decision after cancel.
    const second = await forgetMe(tab, threadId, 'forget-2');
    tab.send({ type: 'cancel', runId: second.runId });
    expect(await tab.event('RUN_ERROR', second.runId)).toMatchObject({ code: 'cancelled' });
    const cancelled = await log(owner, threadId);
    tab.send({ ...decide, runId: second.runId, toolCallId: second.request.toolCallId });
    await tab.waitFor(
      (m) => m.type === 'error' && m.code === 'approval_not_pending' && m.ref === second.runId,
    );
    expect(await log(owner, threadId)).toEqual(cancelled);
    expectWholeLog(cancelled);
    tab.close();
    evil.close();
  });

  it('survives an agent-service SIGKILL and restart between the pause and the decision', async () => {
    const carol = await user(base, 'carol');
    const tab = await Tab.open(base, carol);
    const threadId = await newThread(carol);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await nameAda(tab, threadId);
    const { runId, request } = await forgetMe(tab, threadId);
    const [agentPid] = childPids(host.child.pid!);
    expect(agentPid).toBeDefined();
    process.kill(agentPid!, 'SIGKILL');
    await expect.poll(() => isAlive(agentPid!), { timeout: 10_000 }).toBe(false);
    await expect
      .poll(async () => (await fetch(`${base}/healthz`)).status, { timeout: 30_000, interval: 100 })
      .toBe(200);
    tab.send({ type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true });
    await tab.event('RUN_FINISHED', runId);
    expect((await carol.req('GET', '/api/me')).json.profile).toEqual({});
    expectWholeLog(await log(carol, threadId));
    tab.close();
  });
});

describe('tool approvals across a host restart, and their expiry', () => {
  let fake: FakeOpenAIServer;
  beforeAll(async () => {
    fake = await createFakeOpenAIServer({ respond });
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('a paused run survives a killed host (relay) process; the next one resumes it on Approve', async () => {
    const first = await startUserHost(env(fake));
    const base1 = `http://127.0.0.1:${new URL(first.url).port}`;
    const dave = await user(base1, 'dave');
    const tab = await Tab.open(base1, dave);
    const threadId = await newThread(dave);
    tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
    await nameAda(tab, threadId);
    const { runId, request } = await forgetMe(tab, threadId);
    tab.close();
    const agents = childPids(first.child.pid!);
    const exited = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await exited;
    for (const pid of agents) if (isAlive(pid)) process.kill(pid, 'SIGKILL');

    const second = spawnUserHost(env(fake), first.dataDir);
    try {
      const m = await second.waitForOutput(/Open\s+(http:\/\/localhost:\d+)/);
      const base2 = `http://127.0.0.1:${new URL(m[1]!).port}`;
      const again = new Client(base2);
      again.cookie = dave.cookie;
      // The pending request is still there (a reload replays it from the log) and the thread still refuses sends.
      const replay = await log(again, threadId);
      expect(replay.at(-1)).toMatchObject({ type: 'TOOL_APPROVAL_REQUESTED', runId });
      const tab2 = await Tab.open(base2, again);
      tab2.send({ type: 'subscribe', threadId, afterSeq: 0 });
      tab2.send({ type: 'send', threadId, text: 'hello?', clientMessageId: 'after-restart' });
      await tab2.error('run_awaiting_approval');
      tab2.send({ type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true });
      await tab2.event('RUN_FINISHED', runId);
      expect((await again.req('GET', '/api/me')).json.profile).toEqual({});
      const events = await log(again, threadId);
      expectWholeLog(events);
      expect(events.filter((e) => e.runId === runId && e.type === 'RUN_STARTED')).toHaveLength(1);
      tab2.close();
    } finally {
      await second.stop();
    }
  }, 90_000);

  it('ends a run nobody decides on with RUN_ERROR approval_expired (APPROVAL_TTL_MS)', async () => {
    const host = await startUserHost(env(fake, { APPROVAL_TTL_MS: '1500' }));
    try {
      const base = `http://127.0.0.1:${new URL(host.url).port}`;
      const erin = await user(base, 'erin');
      const tab = await Tab.open(base, erin);
      const threadId = await newThread(erin);
      tab.send({ type: 'subscribe', threadId, afterSeq: 0 });
      const { runId, request } = await forgetMe(tab, threadId);
      expect(Date.parse(request.expiresAt) - Date.now()).toBeLessThanOrEqual(1500);
      expect(await tab.event('RUN_ERROR', runId)).toMatchObject({ code: 'approval_expired' });
      tab.send({ type: 'approve', threadId, runId, toolCallId: request.toolCallId, approved: true });
      await tab.error('approval_not_pending');
      expectWholeLog(await log(erin, threadId));
      tab.close();
    } finally {
      await host.stop();
    }
  }, 60_000);
});
