import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventSchemas } from '@ag-ui/core/schemas';
import type { AgentEvent, SequencedAgentEvent } from '@threadline/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgUiHandler, toNodeListener } from '../src/browser/ag-ui.js';
import type { AgUiHandlerOptions } from '../src/browser/ag-ui.js';
import type { RelayOptions } from '../src/index.js';
import { makeRelay } from './helpers.js';
import type { ControlledRun, Harness } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

async function setup(options: Partial<AgUiHandlerOptions> = {}, relayOptions: Partial<RelayOptions> = {}) {
  h = await makeRelay('memory', relayOptions);
  await h.store.createThread({ threadId: 't1', ownerId: 'ada' });
  await h.store.createThread({ threadId: 't2', ownerId: 'bob' });
  const handler = createAgUiHandler(h.relay, {
    authenticate: (request) => {
      const user = request.headers.get('x-user');
      return user ? { id: user } : null;
    },
    logger: { error() {} },
    ...options,
  });
  return { ...h, handler };
}

/** A RunAgentInput as HttpAgent sends it. */
function input(text: string, id = 'u1', extra: Record<string, unknown> = {}) {
  return {
    threadId: 't1',
    runId: 'agui-run-1',
    state: {},
    messages: [{ id, role: 'user', content: text }],
    tools: [],
    context: [],
    forwardedProps: {},
    ...extra,
  };
}

function post(body: unknown, headers: Record<string, string> = { 'x-user': 'ada' }): Request {
  return new Request('http://relay.test/ag-ui', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Reads SSE frames off a response as they come. */
class SseReader {
  readonly events: Record<string, unknown>[] = [];
  readonly comments: string[] = [];
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new TextDecoder();
  #buffer = '';
  done = false;
  constructor(response: Response) {
    this.#reader = response.body!.getReader();
  }
  /** Reads until `pred` holds for the events so far, or the stream ends. */
  async until(pred: (events: Record<string, unknown>[]) => boolean): Promise<Record<string, unknown>[]> {
    while (!pred(this.events) && !this.done) {
      const { done, value } = await this.#reader.read();
      if (done) {
        this.done = true;
        break;
      }
      this.#buffer += this.#decoder.decode(value, { stream: true });
      const blocks = this.#buffer.split('\n\n');
      this.#buffer = blocks.pop() ?? '';
      for (const block of blocks) {
        if (block.startsWith(':')) this.comments.push(block);
        else if (block.startsWith('data: ')) this.events.push(JSON.parse(block.slice(6)));
        else throw new Error(`unexpected SSE block ${JSON.stringify(block)}`);
      }
    }
    return this.events;
  }
  all() {
    return this.until(() => false);
  }
  cancel() {
    return this.#reader.cancel();
  }
}

async function log(threadId = 't1'): Promise<SequencedAgentEvent[]> {
  return (await h!.store.read(threadId, { afterSeq: 0, limit: 1000 })).map((e) => JSON.parse(e.json));
}

const toolCall = (run: ControlledRun, args?: string): AgentEvent => ({
  type: 'TOOL_CALL_STARTED',
  threadId: run.request.threadId,
  runId: run.request.runId,
  ts: Date.now(),
  toolCallId: 'call_1',
  toolName: 'profile.patch',
  ...(args !== undefined ? { args } : {}),
});
const toolResult = (run: ControlledRun): AgentEvent => ({
  type: 'TOOL_CALL_RESULT',
  threadId: run.request.threadId,
  runId: run.request.runId,
  ts: Date.now(),
  toolCallId: 'call_1',
  toolName: 'profile.patch',
  ok: true,
});

describe('AG-UI handler', () => {
  it('sends the last user message through the relay and streams the run as AG-UI events', async () => {
    const { handler, agent, relay } = await setup();
    const watcher = await relay.subscribe({ user: { id: 'ada' }, threadId: 't1', afterSeq: 0 });
    const response = await handler(
      post(
        input('call me Ada', 'u2', {
          messages: [
            { id: 'old', role: 'user', content: 'earlier, only on the client' },
            { id: 'a0', role: 'assistant', content: 'hello' },
            {
              id: 'u2',
              role: 'user',
              content: [
                { type: 'text', text: 'call me' },
                { type: 'text', text: 'Ada' },
              ],
            },
          ],
        }),
      ),
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const sse = new SseReader(response);
    const run = await agent.nextRun(0);
    expect(run.request.message).toBe('call me\nAda');
    run.push(run.started(), toolCall(run, '{"displayName":"Ada"}'), toolResult(run), run.chunk('Done, '));
    // Live: the client sees the text before the run ends.
    await sse.until((events) => events.some((e) => e.type === 'TEXT_MESSAGE_CONTENT'));
    run.push(run.chunk('Ada.'), run.finished());
    const events = await sse.all();
    for (const e of events) expect(EventSchemas.safeParse(e).success, JSON.stringify(e)).toBe(true);
    expect(events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'MESSAGES_SNAPSHOT',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'TOOL_CALL_START',
      'TOOL_CALL_ARGS',
      'TOOL_CALL_END',
      'TOOL_CALL_RESULT',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_FINISHED',
    ]);
    expect(events[0]).toMatchObject({
      threadId: 't1',
      runId: 'agui-run-1',
      metadata: { threadlineRunId: run.request.runId },
    });
    // The thread had nothing before; the new message follows the snapshot as a user text message.
    expect(events[1]).toMatchObject({ messages: [] });
    expect(events.slice(2, 5)).toMatchObject([
      { type: 'TEXT_MESSAGE_START', messageId: 'u2', role: 'user' },
      { type: 'TEXT_MESSAGE_CONTENT', messageId: 'u2', delta: 'call me\nAda' },
      { type: 'TEXT_MESSAGE_END', messageId: 'u2' },
    ]);
    expect(events.find((e) => e.type === 'TOOL_CALL_ARGS')).toMatchObject({
      toolCallId: 'call_1',
      delta: '{"displayName":"Ada"}',
    });
    expect(events.at(-1)).toMatchObject({ threadId: 't1', runId: 'agui-run-1' });
    // The run is an ordinary relay run: stored, sequenced, and seen by other subscribers of the thread.
    const stored = await log();
    expect(stored.filter((e) => e.type !== 'TEXT_MESSAGE_CHUNK').map((e) => e.type)).toEqual([
      'USER_MESSAGE',
      'RUN_STARTED',
      'TOOL_CALL_STARTED',
      'TOOL_CALL_RESULT',
      'RUN_FINISHED',
    ]);
    expect(stored.flatMap((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? [e.delta] : [])).join('')).toBe(
      'Done, Ada.',
    );
    expect(stored[2]).toMatchObject({ type: 'TOOL_CALL_STARTED', args: '{"displayName":"Ada"}' });
    expect(stored[0]).toMatchObject({ clientMessageId: 'u2', userId: 'ada', text: 'call me\nAda' });
    const seen: string[] = [];
    for await (const e of watcher) {
      seen.push(JSON.parse(e.json).type);
      if (seen.at(-1) === 'RUN_FINISHED') break;
    }
    expect(seen).toEqual(stored.map((e) => e.type));
    expect(relay.subscribers).toBe(0);
  });

  it('ends the stream with outcome interrupt when the run pauses for a tool approval', async () => {
    const { handler, agent } = await setup();
    const sse = new SseReader(await handler(post(input('forget me'))));
    const run = await agent.nextRun(0);
    run.push(run.started(), {
      type: 'TOOL_APPROVAL_REQUESTED',
      threadId: 't1',
      runId: run.request.runId,
      ts: Date.now(),
      toolCallId: 'call_9',
      toolName: 'profile.clear',
      args: '{}',
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
    });
    run.end();
    const events = await sse.all();
    for (const e of events) expect(EventSchemas.safeParse(e).success, JSON.stringify(e)).toBe(true);
    expect(events.at(-2)).toMatchObject({ type: 'CUSTOM', name: 'threadline.tool_approval_requested' });
    expect(events.at(-1)).toMatchObject({
      type: 'RUN_FINISHED',
      runId: 'agui-run-1',
      outcome: {
        type: 'interrupt',
        interrupts: [{ id: 'call_9', toolCallId: 'call_9', reason: 'tool_approval' }],
      },
    });
  });

  it('opens each run with a snapshot of the thread before it, including messages sent from elsewhere', async () => {
    const { handler, agent, relay } = await setup();
    // A first run from another client (e.g. an <agent-chat> tab).
    await relay.send({
      user: { id: 'ada' },
      threadId: 't1',
      text: 'hi from a tab',
      clientMessageId: 'tab-1',
    });
    const first = await agent.nextRun(0);
    first.push(first.started(), first.chunk('Hello tab.', 'm_tab'), first.finished());
    await first.end();
    await waitFor(async () => (await log()).some((e) => e.type === 'RUN_FINISHED'));
    const sse = new SseReader(await handler(post(input('and hi from AG-UI'))));
    const run = await agent.nextRun(1);
    run.push(run.started(), run.chunk('Hello again.', 'm2'), run.finished());
    const events = await sse.all();
    expect(events[1]).toEqual({
      type: 'MESSAGES_SNAPSHOT',
      timestamp: expect.any(Number),
      messages: [
        { id: 'tab-1', role: 'user', content: 'hi from a tab' },
        { id: 'm_tab', role: 'assistant', content: 'Hello tab.' },
      ],
    });
  });

  it('bounds the snapshot by messages and by bytes, keeping the newest', async () => {
    const { handler, agent, relay } = await setup({ maxSnapshotMessages: 3 });
    for (let i = 0; i < 3; i++) {
      await relay.send({ user: { id: 'ada' }, threadId: 't1', text: `m${i}`, clientMessageId: `c${i}` });
      const run = await agent.nextRun(i);
      run.push(run.started(), run.chunk(`r${i}`, `a${i}`), run.finished());
      await waitFor(async () => (await log()).filter((e) => e.type === 'RUN_FINISHED').length === i + 1);
    }
    let sse = new SseReader(await handler(post(input('last'))));
    let run = await agent.nextRun(3);
    run.push(run.started(), run.finished());
    let events = await sse.all();
    expect((events[1]!.messages as { id: string }[]).map((m) => m.id)).toEqual(['a1', 'c2', 'a2']);

    await h!.cleanup();
    const bytes = await setup({ maxSnapshotBytes: 200 });
    await bytes.relay.send({
      user: { id: 'ada' },
      threadId: 't1',
      text: 'x'.repeat(300),
      clientMessageId: 'big',
    });
    const big = await bytes.agent.nextRun(0);
    big.push(big.started(), big.finished());
    await waitFor(async () => (await log()).some((e) => e.type === 'RUN_FINISHED'));
    sse = new SseReader(await bytes.handler(post(input('small'))));
    run = await bytes.agent.nextRun(1);
    run.push(run.started(), run.finished());
    events = await sse.all();
    expect(events[1]!.messages).toEqual([]);
  });

  it('streams the first run again for a retry with the same message id, starting nothing', async () => {
    const { handler, agent } = await setup();
    const sse = new SseReader(await handler(post(input('once'))));
    const run = await agent.nextRun(0);
    run.push(run.started(), run.chunk('Only once.'), run.finished());
    const first = await sse.all();
    const again = await new SseReader(
      await handler(post(input('once', 'u1', { runId: 'agui-run-2' }))),
    ).all();
    expect(agent.runs).toHaveLength(1);
    expect(again.map((e) => e.type)).toEqual(first.map((e) => e.type));
    expect(again[0]).toMatchObject({ runId: 'agui-run-2', metadata: { threadlineRunId: run.request.runId } });
    expect((await log()).filter((e) => e.type === 'USER_MESSAGE')).toHaveLength(1);
  });

  it('opens a run that failed before the agent answered, and maps cancel to outcome cancelled', async () => {
    const { handler, agent, relay } = await setup();
    let sse = new SseReader(await handler(post(input('fails'))));
    let run = await agent.nextRun(0);
    run.fail(new Error('boom'));
    let events = await sse.all();
    expect(events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'MESSAGES_SNAPSHOT',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_ERROR',
    ]);
    expect(events[5]).toMatchObject({ code: 'internal_error' });

    sse = new SseReader(await handler(post(input('cancel me', 'u2'))));
    run = await agent.nextRun(1);
    run.push(run.started(), run.chunk('Work'));
    await sse.until((e) => e.some((x) => x.type === 'TEXT_MESSAGE_CONTENT'));
    await relay.cancel({ user: { id: 'ada' }, runId: run.request.runId });
    events = await sse.all();
    expect(events.slice(-2)).toMatchObject([
      { type: 'TEXT_MESSAGE_END' },
      { type: 'RUN_FINISHED', runId: 'agui-run-1', outcome: { type: 'cancelled' } },
    ]);
  });

  it('refuses without a user (401), a thread that is not the user’s (404) and a busy thread (409)', async () => {
    const { handler, agent, relay } = await setup();
    const unauth = await handler(post(input('hi'), {}));
    expect(unauth.status).toBe(401);
    expect(await unauth.json()).toMatchObject({ error: { code: 'unauthorized' } });
    const foreign = await handler(post({ ...input('hi'), threadId: 't2' }));
    expect(foreign.status).toBe(404);
    expect(await foreign.json()).toMatchObject({ error: { code: 'not_found' } });
    const missing = await handler(post({ ...input('hi'), threadId: 'nope' }));
    expect(missing.status).toBe(404);
    expect(await log('t2')).toEqual([]);

    const busy = new SseReader(await handler(post(input('first'))));
    const run = await agent.nextRun(0);
    const second = await handler(post(input('second', 'u2')));
    expect(second.status).toBe(409);
    expect(await second.json()).toMatchObject({ error: { code: 'run_active' } });
    run.push(run.started(), run.finished());
    await busy.all();
    expect(relay.subscribers).toBe(0);
  });

  it('answers bad requests with 4xx and a code, never 500', async () => {
    const { handler, agent } = await setup({ maxBodyBytes: 1024 });
    const cases: [Request, number, string][] = [
      [new Request('http://relay.test/ag-ui', { headers: { 'x-user': 'ada' } }), 405, 'method_not_allowed'],
      [post('{"threadId":', { 'x-user': 'ada' }), 400, 'invalid_json'],
      [post('[]'), 400, 'invalid_input'],
      [post({ ...input('hi'), threadId: 'bad id!' }), 400, 'invalid_input'],
      [post({ ...input('hi'), messages: 'no' }), 400, 'invalid_input'],
      [post({ ...input('hi'), runId: '' }), 400, 'invalid_input'],
      [post(input('hi', 'has spaces')), 400, 'invalid_input'],
      [
        post({ ...input('hi'), messages: [{ id: 'a1', role: 'assistant', content: 'no user' }] }),
        400,
        'invalid_input',
      ],
      [
        post({
          ...input('hi'),
          messages: [
            { id: 'u1', role: 'user', content: [{ type: 'image', source: { type: 'url', value: 'x' } }] },
          ],
        }),
        400,
        'invalid_input',
      ],
      [post(input('')), 400, 'invalid_message'],
      [post(input('x'.repeat(1100))), 413, 'payload_too_large'],
      [
        new Request('http://relay.test/ag-ui', {
          method: 'POST',
          headers: { 'x-user': 'ada', 'content-type': 'text/plain' },
          body: JSON.stringify(input('hi')),
        }),
        415,
        'unsupported_media_type',
      ],
    ];
    for (const [request, status, code] of cases) {
      const response = await handler(request);
      const body = await response.json();
      expect([response.status, body.error.code], JSON.stringify(body)).toEqual([status, code]);
    }
    expect(agent.runs).toHaveLength(0);
    expect(await log()).toEqual([]);
  });

  it('gives up on a body that does not arrive within bodyTimeoutMs (408)', async () => {
    const { handler } = await setup({ bodyTimeoutMs: 50 });
    const stalled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"threadId":"t1",'));
      },
    });
    const response = await handler(
      new Request('http://relay.test/ag-ui', {
        method: 'POST',
        headers: { 'x-user': 'ada', 'content-type': 'application/json' },
        body: stalled,
        duplex: 'half',
      } as RequestInit),
    );
    expect(response.status).toBe(408);
    expect(await response.json()).toMatchObject({ error: { code: 'request_timeout' } });
  });

  it('sends heartbeat comments while the run is quiet', async () => {
    const { handler, agent } = await setup({ heartbeatMs: 20 });
    const sse = new SseReader(await handler(post(input('slow'))));
    const run = await agent.nextRun(0);
    run.push(run.started());
    await sse.until(() => sse.comments.length >= 2);
    expect(sse.comments.slice(0, 2)).toEqual([': keep-alive', ': keep-alive']);
    run.push(run.finished());
    expect((await sse.all()).at(-1)).toMatchObject({ type: 'RUN_FINISHED' });
  });

  it('leaves the run going when the client goes away, or cancels it with cancelOnDisconnect', async () => {
    for (const cancelOnDisconnect of [false, true]) {
      const { handler, agent, relay } = await setup({ cancelOnDisconnect });
      const sse = new SseReader(await handler(post(input('going away'))));
      const run = await agent.nextRun(0);
      run.push(run.started());
      await sse.until((e) => e.length >= 2);
      await sse.cancel();
      await waitFor(async () => relay.subscribers === 0);
      if (cancelOnDisconnect) {
        await waitFor(async () => (await log()).some((e) => e.type === 'RUN_ERROR'));
        expect((await log()).at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'cancelled' });
      } else {
        expect(relay.activeRuns).toBe(1);
        run.push(run.finished());
        await waitFor(async () => (await log()).some((e) => e.type === 'RUN_FINISHED'));
      }
      await h!.cleanup();
      h = undefined;
    }
  });

  it('ends the stream with RUN_ERROR slow_consumer when the client falls behind the bound', async () => {
    const { handler, agent } = await setup({}, { limits: { maxBufferedEvents: 4 } });
    const response = await handler(post(input('flood')));
    const run = await agent.nextRun(0);
    run.push(run.started());
    const sse = new SseReader(response);
    await sse.until((e) => e.length >= 2);
    // The client reads nothing while the run writes far more than the subscriber may buffer.
    for (let i = 0; i < 40; i++) run.push(run.chunk(`${i} `, `m${i}`));
    run.push(run.finished());
    await waitFor(async () => (await log()).some((e) => e.type === 'RUN_FINISHED'));
    const events = await sse.all();
    expect(events.at(-1)).toMatchObject({ type: 'RUN_ERROR', code: 'slow_consumer' });
  });

  it('serves Node http through toNodeListener, streaming and with the body limits', async () => {
    const { handler, agent } = await setup({ maxBodyBytes: 2048 });
    const server = createServer(toNodeListener(handler));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ag-ui`;
    try {
      const headers = { 'content-type': 'application/json', 'x-user': 'ada' };
      const response = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(input('over node')),
      });
      expect(response.status).toBe(200);
      const sse = new SseReader(response);
      const run = await agent.nextRun(0);
      run.push(run.started(), run.chunk('Hi.'));
      await sse.until((e) => e.some((x) => x.type === 'TEXT_MESSAGE_CONTENT'));
      run.push(run.finished());
      expect((await sse.all()).at(-1)).toMatchObject({ type: 'RUN_FINISHED' });
      const big = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(input('x'.repeat(4096))),
      });
      expect(big.status).toBe(413);
      expect(await big.json()).toMatchObject({ error: { code: 'payload_too_large' } });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('refuses options that are out of range', async () => {
    h = await makeRelay('memory');
    const authenticate = () => null;
    expect(() => createAgUiHandler(h!.relay, { authenticate, maxBodyBytes: 1 })).toThrow(/maxBodyBytes/);
    expect(() => createAgUiHandler(h!.relay, { authenticate, heartbeatMs: -1 })).toThrow(/heartbeatMs/);
    expect(() => createAgUiHandler(h!.relay, {} as AgUiHandlerOptions)).toThrow(/authenticate/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
