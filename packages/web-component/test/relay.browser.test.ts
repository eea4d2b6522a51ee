import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { attachWebSocketServer, createRelay, type Relay } from '@threadline/relay';
import { createMemoryStore, type MemoryStore } from '@threadline/relay/memory';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { browserSuite, launchChromium } from './helpers/browser.js';
import { PageServer } from './helpers/page-server.js';

// <agent-chat> against the real relay (@threadline/relay with its memory store and WebSocket transport) in a
// real Chromium: same origin page + socket, cookie auth at upgrade, a scripted in-process agent.
const suite = browserSuite('<agent-chat> against the relay');
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/web-component/relay/', import.meta.url));

/** The agent: streams `chunks` chunks, optionally pausing half-way until the test opens `gate`. */
class ScriptedAgent {
  chunks = 40;
  gate: Promise<void> | undefined;
  readonly requests: RunRequest[] = [];

  async *run(request: RunRequest, { signal }: { signal: AbortSignal }): AsyncIterable<AgentEvent> {
    this.requests.push(request);
    const base = { threadId: request.threadId, runId: request.runId };
    const ts = (): number => Date.now();
    yield { type: 'RUN_STARTED', ...base, ts: ts() };
    yield {
      type: 'TOOL_CALL_STARTED',
      ...base,
      ts: ts(),
      toolCallId: `${request.runId}-t`,
      toolName: 'profile.read',
    };
    yield {
      type: 'TOOL_CALL_RESULT',
      ...base,
      ts: ts(),
      toolCallId: `${request.runId}-t`,
      toolName: 'profile.read',
      ok: true,
    };
    for (let i = 0; i < this.chunks; i++) {
      if (signal.aborted) return;
      if (i === this.chunks / 2 && this.gate) await this.gate;
      yield {
        type: 'TEXT_MESSAGE_CHUNK',
        ...base,
        ts: ts(),
        messageId: `${request.runId}-m`,
        delta: `${request.message}-${i} `,
      };
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    yield { type: 'RUN_FINISHED', ...base, ts: ts() };
  }
}

suite('<agent-chat> against the relay', () => {
  let browser: Browser;
  let pages: PageServer;
  let relay: Relay;
  let store: MemoryStore;
  let ws: { close(): Promise<void> };
  const agent = new ScriptedAgent();
  const upgraded = new Set<Socket>();
  let upgrades = 0;
  let context: BrowserContext | undefined;

  beforeAll(async () => {
    store = createMemoryStore();
    relay = createRelay({
      store,
      agent,
      tokens: { issue: async ({ runId }) => `token-${runId}` },
      toolsBaseUrl: 'http://127.0.0.1:9/tools',
      tools: [],
    });
    [pages, browser] = await Promise.all([
      PageServer.start((server: Server) => {
        server.on('upgrade', (_req, socket: Socket) => {
          upgrades++;
          upgraded.add(socket);
          socket.on('close', () => upgraded.delete(socket));
        });
        ws = attachWebSocketServer(server, relay, {
          authenticate: async (req) => {
            const user = /(?:^|;\s*)user=([\w-]+)/.exec(req.headers.cookie ?? '')?.[1];
            return user ? { id: user } : null;
          },
          allowedOrigins: (origin) => origin === pages.origin,
          path: '/ws',
          logger: { error() {}, warn() {} },
        });
      }),
      launchChromium(),
    ]);
    await store.createThread({ threadId: 't-alice', ownerId: 'alice' });
    await store.createThread({ threadId: 't-bob', ownerId: 'bob' });
    await mkdir(ARTIFACTS, { recursive: true });
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
    agent.gate = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await ws?.close();
    await relay?.close();
    await pages?.close();
    await store?.close();
  });

  async function open(user: string | undefined, threadId: string, maxAttempts = 5): Promise<Page> {
    context = await browser.newContext();
    if (user) await context.addCookies([{ name: 'user', value: user, url: pages.url }]);
    const page = await context.newPage();
    await page.goto(pages.url);
    await page.waitForFunction(() => customElements.get('agent-chat') !== undefined);
    await page.evaluate(
      ({ url, threadId, maxAttempts }) => {
        window.__events = [];
        window.__errors = [];
        window.__finished = [];
        const el = document.createElement('agent-chat');
        el.reconnectOptions = { baseDelayMs: 20, maxDelayMs: 80, maxAttempts };
        el.addEventListener('agent-chat:event', (e) => window.__events.push(e.detail.event.seq));
        el.addEventListener('agent-chat:error', (e) => window.__errors.push(e.detail));
        el.addEventListener('agent-chat:run-finished', (e) => window.__finished.push(e.detail));
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', threadId);
        document.body.append(el);
      },
      { url: `${pages.url.replace('http', 'ws')}ws`, threadId, maxAttempts },
    );
    return page;
  }

  async function logText(threadId: string, runId: string): Promise<{ seqs: number[]; text: string }> {
    const events = (await store.read(threadId, { afterSeq: 0, limit: 10_000 })).map((e) => ({
      seq: e.seq,
      event: JSON.parse(e.json) as { type: string; runId: string; delta?: string },
    }));
    return {
      seqs: events.map((e) => e.seq),
      text: events
        .filter((e) => e.event.type === 'TEXT_MESSAGE_CHUNK' && e.event.runId === runId)
        .map((e) => e.event.delta)
        .join(''),
    };
  }

  const shownText = (page: Page): Promise<string[]> =>
    page.evaluate(() =>
      Array.from(
        document
          .querySelector('agent-chat')!
          .shadowRoot!.querySelectorAll('[part~="assistant-message"] > div'),
        (d) => d.textContent ?? '',
      ),
    );

  it('sends, streams a run, survives a dropped socket mid-run, and replays the thread after a reload', async () => {
    let open1!: () => void;
    agent.gate = new Promise((r) => (open1 = r));
    const page = await open('alice', 't-alice');
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    await chat.locator('textarea').fill('hello');
    await chat.locator('textarea').press('Enter');
    // Half the answer arrives, then the socket dies while the agent keeps going.
    await expect.poll(async () => (await shownText(page))[0]?.split(' ').length ?? 0).toBeGreaterThan(10);
    expect(await chat.locator('[part~="tool-call"]').getAttribute('data-status')).toBe('done');
    const before = upgrades;
    expect(upgraded.size).toBe(1);
    for (const s of upgraded) s.destroy();
    open1();
    await expect.poll(() => page.evaluate(() => window.__finished.length), { timeout: 10_000 }).toBe(1);
    expect(upgrades).toBe(before + 1); // it reconnected once, on its own
    const runId = agent.requests[0]!.runId;
    const log = await logText('t-alice', runId);
    expect(log.text).toBe(Array.from({ length: 40 }, (_, i) => `hello-${i} `).join(''));
    await expect.poll(() => shownText(page)).toEqual([log.text.trim()]);
    expect(await page.evaluate(() => window.__events)).toEqual(log.seqs);
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['hello']);

    // A fresh page replays the whole thread from the log: the user's message and the answer, once each.
    const again = await open('alice', 't-alice');
    await expect.poll(() => shownText(again)).toEqual([log.text.trim()]);
    expect(await again.locator('agent-chat [part~="user-message"]').allTextContents()).toEqual(['hello']);
    expect(await again.evaluate(() => window.__events)).toEqual(log.seqs);
  });

  /** The rows the element shows, as `part[:run id]`, and how many frames of each type it sent. */
  const rows = (page: Page): Promise<string[]> =>
    page.evaluate(() =>
      Array.from(
        document
          .querySelector('agent-chat')!
          .shadowRoot!.querySelectorAll(
            '[part~="user-message"], [part~="assistant-message"], [part~="run-error"], [part~="tool-call"]',
          ),
        (el) => {
          const part = el.getAttribute('part')!.split(' ').pop()!;
          const id = el.getAttribute('data-message-id') ?? el.getAttribute('data-run-id');
          return id ? `${part}:${id}` : part;
        },
      ),
    );
  const storedTypes = async (threadId: string): Promise<string[]> =>
    (await store.read(threadId, { afterSeq: 0, limit: 10_000 })).map(
      (e) => (JSON.parse(e.json) as { type: string }).type,
    );

  it('Regenerate on the last answer (keyboard): one new answer in its place, no second user bubble, same after a reload', async () => {
    await store.createThread({ threadId: 't-regen', ownerId: 'alice' });
    agent.chunks = 6;
    const first = agent.requests.length;
    const page = await open('alice', 't-regen');
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    await chat.locator('textarea').fill('Plan a trip');
    await chat.locator('textarea').press('Enter');
    await expect.poll(() => page.evaluate(() => window.__finished.length)).toBe(1);
    const run1 = agent.requests[first]!.runId;
    // The event fires as the element applies RUN_FINISHED; its rows follow on the next animation frame, which a
    // loaded machine can delay (CI once read the DOM in between and saw only the user's bubble).
    await expect.poll(() => rows(page)).toEqual(['user-message', 'tool-call', `assistant-message:${run1}-m`]);
    await page.screenshot({ path: `${ARTIFACTS}regenerate-before.png` });

    // Keyboard only: from the composer, one step back is the last answer's Regenerate.
    await chat.locator('textarea').focus();
    await page.keyboard.press('Shift+Tab');
    const focusedPart = await page.evaluate(
      () => document.querySelector('agent-chat')!.shadowRoot!.activeElement?.getAttribute('part') ?? '',
    );
    expect(focusedPart).toBe('regenerate-button');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.evaluate(() => window.__finished.length)).toBe(2);
    const run2 = agent.requests[first + 1]!;
    expect(run2).toMatchObject({ message: 'Plan a trip', regenerates: run1 });
    await expect
      .poll(() => rows(page))
      .toEqual(['user-message', 'tool-call', `assistant-message:${run2.runId}-m`]);
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['Plan a trip']);
    expect((await storedTypes('t-regen')).filter((t) => t === 'USER_MESSAGE')).toHaveLength(1);
    expect(await page.evaluate(() => window.__errors)).toEqual([]);
    await page.screenshot({ path: `${ARTIFACTS}regenerate-after.png` });

    // A fresh page replays the log to the same view: the old answer is not shown.
    const again = await open('alice', 't-regen');
    await expect
      .poll(() => rows(again))
      .toEqual(['user-message', 'tool-call', `assistant-message:${run2.runId}-m`]);
    agent.chunks = 40;
  });

  it('Retry after Stop starts a new answer in place of the stopped one, without a second user bubble', async () => {
    await store.createThread({ threadId: 't-retry', ownerId: 'alice' });
    let release!: () => void;
    agent.gate = new Promise((r) => (release = r));
    const first = agent.requests.length;
    const page = await open('alice', 't-retry');
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    await chat.locator('textarea').fill('Write a poem');
    await chat.locator('textarea').press('Enter');
    await expect.poll(async () => (await shownText(page))[0]?.length ?? 0).toBeGreaterThan(0);
    await chat.locator('[part~="stop-button"]').click();
    await expect.poll(() => page.evaluate(() => window.__finished.length)).toBe(1);
    const run1 = agent.requests[first]!.runId;
    await expect.poll(() => chat.locator('[part~="run-error"]').getAttribute('data-code')).toBe('cancelled');
    await page.screenshot({ path: `${ARTIFACTS}retry-after-stop-before.png` });
    agent.gate = undefined;
    release();

    await chat.locator('[part~="run-error"] [part~="retry-button"]').click();
    await expect.poll(() => page.evaluate(() => window.__finished.length)).toBe(2);
    const run2 = agent.requests[first + 1]!;
    expect(run2).toMatchObject({ message: 'Write a poem', regenerates: run1 });
    await expect
      .poll(() => rows(page))
      .toEqual(['user-message', 'tool-call', `assistant-message:${run2.runId}-m`]);
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['Write a poem']);
    await expect.poll(() => shownText(page)).toEqual([(await logText('t-retry', run2.runId)).text.trim()]);
    expect((await storedTypes('t-retry')).filter((t) => t === 'USER_MESSAGE')).toHaveLength(1);
    await page.screenshot({ path: `${ARTIFACTS}retry-after-stop-after.png` });
    const again = await open('alice', 't-retry');
    await expect
      .poll(() => rows(again))
      .toEqual(['user-message', 'tool-call', `assistant-message:${run2.runId}-m`]);
  });

  it("stops retrying when subscribing to another user's thread, and reports the code", async () => {
    const page = await open('alice', 't-bob');
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('disconnected');
    const errors = await page.evaluate(() => window.__errors);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ fatal: true });
    expect(['not_found', 'forbidden']).toContain(errors[0]!.code);
    expect(await page.evaluate(() => window.__events)).toEqual([]);
  });

  it('treats a refused upgrade (no session) as a failed connection, bounded by maxAttempts', async () => {
    // Browsers do not expose the HTTP status of a refused upgrade, so the element cannot tell 401 from a
    // network error: it retries within its bound, then reports reconnect_exhausted.
    const page = await open(undefined, 't-alice', 2);
    await expect
      .poll(() => page.evaluate(() => window.__errors.map((e) => e.code)))
      .toEqual(['reconnect_exhausted']);
    expect(await page.locator('agent-chat').getAttribute('connection')).toBe('disconnected');
  });
});
