import { HttpAgent } from '@ag-ui/client';
import type { BaseEvent, Message } from '@ag-ui/core';
import { toAgUiMessages } from '@threadline/contracts';
import type { SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import { inProcessAgentTransport } from '@threadline/relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Client, rawRequest } from './helpers.js';
import { demoRunner, startInProcessHost, type InProcessHost } from './in-process-host.js';

// The real @ag-ui/client HttpAgent (its runAgent applies AG-UI's own event checks, verifyEvents) against the
// whole host in process: real HTTP on 127.0.0.1, real SQLite files, the agent runner on the offline demo model.
let running: InProcessHost;
let base: string;

beforeAll(async () => {
  // A small delay, so the run is in progress long enough to be watched live.
  running = await startInProcessHost(inProcessAgentTransport(demoRunner(2)));
  base = running.base;
});
afterAll(() => running?.close());

async function userWithThread(name: string) {
  const c = new Client(base);
  expect((await c.signup(name)).status).toBe(201);
  const threadId = (await c.req('POST', '/api/threads', { json: { title: `${name}'s thread` } })).json
    .threadId as string;
  return { c, threadId };
}

/** An HttpAgent on the host's AG-UI route, signed in as `c` (cookie) from the host's own page (Origin). */
function agentFor(c: Client, threadId: string): HttpAgent {
  return new HttpAgent({
    url: `${base}/api/ag-ui`,
    threadId,
    headers: { cookie: c.cookie ?? '', origin: base },
  });
}

/** Runs one user message through `agent`, keeping every AG-UI event it applied. */
async function say(agent: HttpAgent, id: string, text: string, runId = `agui-${id}`) {
  agent.addMessage({ id, role: 'user', content: text });
  const events: BaseEvent[] = [];
  await agent.runAgent({ runId }, { onEvent: ({ event }) => void events.push(event) });
  return events;
}

async function threadLog(c: Client, threadId: string): Promise<SequencedAgentEvent[]> {
  const page = (await c.req('GET', `/api/threads/${threadId}/events`)).json;
  expect(page.hasMore).toBe(false);
  return page.events as SequencedAgentEvent[];
}

/** A browser-protocol WebSocket, like an <agent-chat> tab, subscribed to one thread from its start. */
async function watch(c: Client, threadId: string) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`, {
    headers: { origin: base, cookie: c.cookie! },
  });
  const events: SequencedAgentEvent[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as ServerMessage;
    if (m.type === 'event') events.push(m.event);
  });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq: 0 }));
  return { ws, events };
}

describe('POST /api/ag-ui with the real HttpAgent', () => {
  it('runs the agent with a tool call; the messages match the thread log and a tab sees the run live', async () => {
    const { c, threadId } = await userWithThread('ada');
    const tab = await watch(c, threadId);
    const agent = agentFor(c, threadId);
    let tabAtFinish: SequencedAgentEvent[] = [];
    agent.subscribe({ onRunFinishedEvent: () => void (tabAtFinish = [...tab.events]) });
    const events = await say(agent, 'u-1', 'Please call me Ada');

    const log = await threadLog(c, threadId);
    const runId = log.find((e) => e.type === 'RUN_STARTED')!.runId;
    expect(log.at(-1)).toMatchObject({ type: 'RUN_FINISHED', runId });
    expect(log[0]).toMatchObject({
      type: 'USER_MESSAGE',
      clientMessageId: 'u-1',
      text: 'Please call me Ada',
    });
    const call = log.find((e) => e.type === 'TOOL_CALL_STARTED')!;
    expect(call).toMatchObject({ toolName: 'profile.patch' });
    expect(JSON.parse((call as { args: string }).args)).toEqual({ displayName: 'Ada' });

    // What the client holds is the thread's log, read independently of the bridge…
    const text = log.flatMap((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? [e.delta] : [])).join('');
    const chunk = log.find((e) => e.type === 'TEXT_MESSAGE_CHUNK')!;
    expect(agent.messages).toEqual([
      { id: 'u-1', role: 'user', content: 'Please call me Ada' },
      {
        id: call.toolCallId,
        role: 'assistant',
        toolCalls: [
          {
            id: call.toolCallId,
            type: 'function',
            function: { name: 'profile.patch', arguments: (call as { args: string }).args },
          },
        ],
      },
      { id: `${call.toolCallId}:result`, role: 'tool', toolCallId: call.toolCallId, content: '{"ok":true}' },
      { id: (chunk as { messageId: string }).messageId, role: 'assistant', content: text },
    ] satisfies Message[]);
    // …and what the bridge makes of it.
    expect(agent.messages).toEqual(toAgUiMessages(log));

    // The AG-UI stream: the client's runId, the relay's run in metadata, the arguments as TOOL_CALL_ARGS.
    expect(events[0]).toMatchObject({
      type: 'RUN_STARTED',
      runId: 'agui-u-1',
      metadata: { threadlineRunId: runId },
    });
    expect(events.find((e) => e.type === 'TOOL_CALL_ARGS')).toMatchObject({
      toolCallId: call.toolCallId,
      delta: (call as { args: string }).args,
    });
    expect(events.some((e) => e.type === 'CUSTOM')).toBe(true); // the profile change, as threadline.state_changed

    // The tab saw the same run, from the same log, while it was running.
    expect(tabAtFinish.some((e) => e.type === 'RUN_STARTED' && e.runId === runId)).toBe(true);
    await expect.poll(() => tab.events.length).toBe(log.length);
    expect(tab.events).toEqual(log);
    tab.ws.close();
    expect((await c.req('GET', '/api/me')).json.profile).toMatchObject({ displayName: 'Ada' });
  });

  it('keeps client and log in step over several runs, and gives a new client the whole thread', async () => {
    const { c, threadId } = await userWithThread('grace');
    const agent = agentFor(c, threadId);
    await say(agent, 'g-1', 'hello there');
    await say(agent, 'g-2', 'call me Grace');
    await say(agent, 'g-3', 'what is my name?');
    const log = await threadLog(c, threadId);
    expect(log.filter((e) => e.type === 'RUN_FINISHED')).toHaveLength(3);
    expect(agent.messages).toEqual(toAgUiMessages(log));
    expect(agent.messages.filter((m) => m.role === 'user').map((m) => m.id)).toEqual(['g-1', 'g-2', 'g-3']);

    // A fresh client that knows nothing of the thread gets its history in the run's MESSAGES_SNAPSHOT.
    const fresh = agentFor(c, threadId);
    await say(fresh, 'g-4', 'thanks');
    expect(fresh.messages).toEqual(toAgUiMessages(await threadLog(c, threadId)));
    expect(fresh.messages[0]).toEqual({ id: 'g-1', role: 'user', content: 'hello there' });

    // A retry of a message already sent starts nothing and replays its run.
    const retry = agentFor(c, threadId);
    await say(retry, 'g-4', 'thanks', 'agui-retry');
    expect((await threadLog(c, threadId)).filter((e) => e.type === 'USER_MESSAGE')).toHaveLength(4);
  });

  it('refuses a foreign thread (404), no session (401), a bad body (400) and a foreign page (403)', async () => {
    const owner = await userWithThread('owner');
    const other = await userWithThread('mallory');
    await expect(say(agentFor(other.c, owner.threadId), 'm-1', 'hi')).rejects.toMatchObject({ status: 404 });
    await expect(say(agentFor(new Client(base), owner.threadId), 'm-2', 'hi')).rejects.toMatchObject({
      status: 401,
    });
    expect(await threadLog(owner.c, owner.threadId)).toEqual([]);

    const url = `${base}/api/ag-ui`;
    const send = (headers: Record<string, string>, body: string) =>
      rawRequest(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          ...headers,
        },
        body,
      });
    const cookie = owner.c.cookie!;
    const valid = JSON.stringify({
      threadId: owner.threadId,
      runId: 'r1',
      messages: [{ id: 'x1', role: 'user', content: 'hi' }],
    });
    const cases: [Record<string, string>, string, number, string][] = [
      [{}, valid, 401, 'unauthorized'],
      [{ cookie }, '{"threadId":', 400, 'invalid_json'],
      [
        { cookie },
        JSON.stringify({ threadId: owner.threadId, runId: 'r1', messages: [] }),
        400,
        'invalid_input',
      ],
      [{ cookie }, JSON.stringify({ threadId: owner.threadId }), 400, 'invalid_input'],
      [{ cookie, 'content-type': 'text/plain' }, valid, 415, 'unsupported_media_type'],
      [{ cookie, origin: 'https://evil.example' }, valid, 403, 'cross_origin'],
    ];
    for (const [headers, body, status, code] of cases) {
      const res = await send(headers, body);
      expect([res.status, JSON.parse(res.text).error.code], res.text).toEqual([status, code]);
    }
    expect(await threadLog(owner.c, owner.threadId)).toEqual([]);
  });
});
