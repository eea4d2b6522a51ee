import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '@threadline/agent-runner/testing';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { browserSuite, launchChromium } from '../../../packages/web-component/test/helpers/browser.js';
import { childPids, ensureBuilt, isAlive, REPO_ROOT, startUserHost, type UserHost } from './user-host.js';

/** How long a UI expectation may take to come true (vitest's poll default of 1 s is shorter than a run). */
const WAIT = { timeout: 15_000, interval: 50 };
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'reference-host');

// The end-to-end: the host started as a user starts it (node dist/main.js, a separate agent process, SQLite in a
// temp folder, the offline demo model), driven by a real Chromium, with trace export pointed at a local ingest
// server (the fake OpenAI server's /v1/traces/ingest) so the tracing path is the real one.
browserSuite('reference host in a real browser')('reference host in a real browser', () => {
  let host: UserHost;
  let ingest: FakeOpenAIServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let threadUrl: string;
  let threadId: string;
  const consoleProblems: string[] = [];

  beforeAll(async () => {
    ensureBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    ingest = await createFakeOpenAIServer();
    host = await startUserHost({
      THREADLINE_TRACING_ENDPOINT: ingest.tracesEndpoint,
      OPENAI_TRACING_API_KEY: 'sk-test-local-ingest',
      // Slow enough that a run is visibly streamed (and can be interrupted), fast enough for the time budget.
      DEMO_MODEL_DELAY_MS: '25',
    });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleProblems.push(m.text());
    });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    const agentPids = host ? childPids(host.child.pid!) : [];
    const code = await host?.stop();
    await ingest?.close();
    // Ctrl-C stops both processes cleanly.
    expect(code).toBe(0);
    for (const pid of agentPids) expect(isAlive(pid)).toBe(false);
  });

  const chat = (p: Page) => p.locator('agent-chat');
  const assistant = (p: Page) => chat(p).locator('[part~="assistant-message"]');
  async function send(p: Page, text: string) {
    await chat(p).locator('[part~="input"]').fill(text);
    await chat(p).locator('[part~="send-button"]').click();
  }
  /** Records, in the page, every contract event the element reports. */
  async function recordEvents(p: Page) {
    await p.evaluate(() => {
      const w = window as unknown as { tlEvents: { type: string; runId: string; seq: number }[] };
      w.tlEvents = [];
      document.querySelector('agent-chat')!.addEventListener('agent-chat:event', (e) => {
        w.tlEvents.push((e as CustomEvent).detail.event);
      });
    });
  }
  const events = (p: Page) =>
    p.evaluate(
      () =>
        (window as unknown as { tlEvents: { type: string; runId: string; seq: number; delta?: string }[] })
          .tlEvents,
    );

  it('signs up, creates a thread, and streams a reply', async () => {
    await page.goto(host.url);
    await page.fill('#username', 'ada');
    await page.fill('#password', 'correct horse battery');
    await page.click('#signup');
    await page.waitForURL(`${host.url}/threads`);
    await page.fill('#thread-title', 'First thread');
    await page.click('#new-thread button');
    await page.waitForURL(/\/threads\/thr_/);
    threadUrl = page.url();
    threadId = threadUrl.split('/').pop()!;
    await expect
      .poll(() => chat(page).locator('[part~="status"]').getAttribute('data-state'), WAIT)
      .toBe('connected');
    await recordEvents(page);

    await send(page, 'hello there');
    // Streaming: the message is visible while the run is still going, then complete.
    await assistant(page).first().waitFor();
    await page.screenshot({ path: join(ARTIFACTS, '1-streaming.png') });
    await expect.poll(() => assistant(page).first().textContent(), WAIT).toContain('You said: "hello there"');
    await expect
      .poll(async () => (await events(page)).some((e) => e.type === 'RUN_FINISHED'), WAIT)
      .toBe(true);
    const chunks = (await events(page)).filter((e) => e.type === 'TEXT_MESSAGE_CHUNK');
    expect(chunks.length).toBeGreaterThan(3);
    await page.screenshot({ path: join(ARTIFACTS, '2-streamed.png') });
  });

  it('runs the profile tool for "call me Ada" and updates the profile panel without a reload', async () => {
    expect(await page.locator('#profile dd[data-key="displayName"]').count()).toBe(0);
    await send(page, 'call me Ada');
    const tool = chat(page).locator('[part~="tool-call"]');
    await expect.poll(() => tool.first().getAttribute('data-status'), WAIT).toBe('done');
    await expect
      .poll(() => page.locator('#profile dd[data-key="displayName"]').textContent(), WAIT)
      .toBe('Ada');
    await expect.poll(() => assistant(page).nth(1).textContent(), WAIT).toContain('updated your profile');
    // Still the same document: the panel changed through the STATE_CHANGED event, not a navigation.
    expect(
      await page.evaluate(() => (window as unknown as { tlEvents?: unknown[] }).tlEvents !== undefined),
    ).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, '3-profile-updated.png') });
  });

  it('shows the whole history after a reload', async () => {
    await page.reload();
    await expect.poll(() => chat(page).locator('[part~="user-message"]').count(), WAIT).toBe(2);
    await expect.poll(() => assistant(page).count(), WAIT).toBe(2);
    expect(await assistant(page).first().textContent()).toContain('You said: "hello there"');
    expect(await chat(page).locator('[part~="tool-call"]').count()).toBe(1);
    expect(await page.locator('#profile dd[data-key="displayName"]').textContent()).toBe('Ada');
    await page.screenshot({ path: join(ARTIFACTS, '4-after-reload.png') });
  });

  it('on a phone-sized screen shows the profile and the send box without scrolling', async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 375, height: 700 });
    await phone.goto(threadUrl);
    await expect.poll(() => assistant(phone).count(), WAIT).toBe(2);
    const layout = await phone.evaluate(() => ({
      viewport: innerHeight,
      page: document.documentElement.scrollHeight,
      profile: document.querySelector('#profile dd[data-key="displayName"]')!.getBoundingClientRect().bottom,
      input: document
        .querySelector('agent-chat')!
        .shadowRoot!.querySelector('textarea')!
        .getBoundingClientRect().bottom,
    }));
    expect(layout.page).toBeLessThanOrEqual(layout.viewport);
    expect(layout.profile).toBeLessThanOrEqual(layout.viewport);
    expect(layout.input).toBeLessThanOrEqual(layout.viewport);
    await phone.screenshot({ path: join(ARTIFACTS, '4b-phone.png') });
    await phone.close();
  });

  it('streams a new run into two pages on the same thread', async () => {
    const second = await context.newPage();
    await second.goto(threadUrl);
    await expect
      .poll(() => chat(second).locator('[part~="status"]').getAttribute('data-state'), WAIT)
      .toBe('connected');
    await expect.poll(() => assistant(second).count(), WAIT).toBe(2);
    await recordEvents(page);
    await recordEvents(second);
    await send(page, 'both tabs please');
    for (const p of [page, second]) {
      await expect.poll(() => assistant(p).nth(2).textContent(), WAIT).toContain('both tabs please');
      await expect
        .poll(async () => (await events(p)).some((e) => e.type === 'RUN_FINISHED'), WAIT)
        .toBe(true);
    }
    // Both saw the same live chunks, in the same order.
    const a = (await events(page)).filter((e) => e.type === 'TEXT_MESSAGE_CHUNK').map((e) => e.seq);
    const b = (await events(second)).filter((e) => e.type === 'TEXT_MESSAGE_CHUNK').map((e) => e.seq);
    expect(a.length).toBeGreaterThan(1);
    expect(b).toEqual(a);
    await second.screenshot({ path: join(ARTIFACTS, '5-second-page.png') });
    await second.close();
  });

  it('keeps a run going while its tab is closed, and shows it whole when the thread is reopened', async () => {
    await recordEvents(page);
    await send(page, 'finish this without me');
    await expect
      .poll(async () => (await events(page)).some((e) => e.type === 'TEXT_MESSAGE_CHUNK'), WAIT)
      .toBe(true);
    await page.close();
    page = await context.newPage();
    await page.goto(threadUrl);
    await expect.poll(() => assistant(page).last().textContent(), WAIT).toContain('"finish this without me"');
    await expect
      .poll(() => assistant(page).last().textContent(), WAIT)
      .toContain('update your profile with a tool.');
    expect(await chat(page).locator('[part~="run-error"]').count()).toBe(0);
  });

  it('shows the run error when the agent process dies mid-run, and works again after it restarts', async () => {
    const [agentPid] = childPids(host.child.pid!);
    expect(agentPid).toBeDefined();
    await recordEvents(page);
    const mark = host.output().length;
    await send(page, 'a message the agent will not finish');
    await expect
      .poll(async () => (await events(page)).some((e) => e.type === 'TEXT_MESSAGE_CHUNK'), WAIT)
      .toBe(true);
    process.kill(agentPid!, 'SIGKILL');
    const runError = chat(page).locator('[part~="run-error"]');
    await runError.first().waitFor({ timeout: 15_000 });
    expect(await runError.first().getAttribute('data-code')).toMatch(/^agent_/);
    await page.screenshot({ path: join(ARTIFACTS, '6-agent-killed.png') });

    // The host restarts its agent process by itself.
    await host.waitForOutput(/listening on http:\/\/127\.0\.0\.1:\d+/, mark, 20_000);
    expect(childPids(host.child.pid!)).not.toContain(agentPid);
    await recordEvents(page);
    await send(page, 'are you back');
    await expect.poll(() => assistant(page).last().textContent(), WAIT).toContain('are you back');
    await expect
      .poll(async () => (await events(page)).some((e) => e.type === 'RUN_FINISHED'), WAIT)
      .toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, '7-after-restart.png') });
  });

  it('signs out, refuses a wrong password with a generic message, and signs back in to the thread list', async () => {
    await page.click('#logout');
    await page.waitForURL(`${host.url}/`);
    await page.fill('#username', 'ada');
    await page.fill('#password', 'not the password');
    await page.click('#login');
    await expect
      .poll(() => page.locator('#auth-error').textContent(), WAIT)
      .toBe('Wrong username or password.');
    await page.fill('#password', 'correct horse battery');
    await page.click('#login');
    await page.waitForURL(`${host.url}/threads`);
    await expect.poll(() => page.locator('#threads a').first().textContent(), WAIT).toBe('First thread');
    await page.screenshot({ path: join(ARTIFACTS, '8-thread-list.png') });
  });

  it("a sign-out in another tab ends this tab's chat and sends it to sign-in", async () => {
    await page.goto(threadUrl);
    await expect
      .poll(() => chat(page).locator('[part~="status"]').getAttribute('data-state'), WAIT)
      .toBe('connected');
    const other = await context.newPage();
    await other.goto(`${host.url}/threads`);
    await other.click('#logout');
    await other.waitForURL(`${host.url}/`);
    // The host closes the signed-out session's socket; the page finds the session gone instead of retrying.
    await page.waitForURL(`${host.url}/?signed-out&next=${encodeURIComponent(new URL(threadUrl).pathname)}`, {
      timeout: WAIT.timeout,
    });
    expect(await page.locator('#auth-error').textContent()).toContain('You were signed out');
    await page.screenshot({ path: join(ARTIFACTS, '9-signed-out-elsewhere.png') });
    await other.close();
    await page.fill('#username', 'ada');
    await page.fill('#password', 'correct horse battery');
    await page.click('#login');
    // Back on the thread it was on.
    await page.waitForURL(threadUrl);
  });

  it('exported one trace per finished run to the ingest endpoint, grouped by the thread', async () => {
    const log = await page.evaluate(async (id) => {
      const r = await fetch(`/api/threads/${id}/events`);
      return (await r.json()) as { events: { type: string; runId: string; traceId?: string }[] };
    }, threadId);
    const finished = log.events.filter((e) => e.type === 'RUN_FINISHED');
    // hello, call me Ada, both tabs, closed tab, are you back (the interrupted run ended in RUN_ERROR).
    expect(finished.length).toBe(5);
    const isTrace = (i: Record<string, unknown>) => i.object === 'trace';
    await ingest.waitForTraceItems(
      (items) => finished.every((f) => items.some((i) => isTrace(i) && i.id === f.traceId)),
      20_000,
    );
    const traces = ingest.traceItems().filter(isTrace);
    for (const f of finished) {
      expect(f.traceId).toMatch(/^trace_/);
      const mine = traces.filter((t) => (t.metadata as { runId?: string } | undefined)?.runId === f.runId);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ id: f.traceId, group_id: threadId });
    }
    expect(consoleProblems.filter((m) => /Content Security Policy/i.test(m))).toEqual([]);
    // No page asks for something the host does not serve (e.g. /favicon.ico).
    expect(consoleProblems.filter((m) => /status of 404/.test(m))).toEqual([]);
  });

  it('carries a message of astral characters at the exact limit end to end, and refuses one unit more at every layer', async () => {
    // 16,000 emoji are 32,000 UTF-16 code units (LIMITS.maxMessageLength) but 16,000 code points: every layer
    // must count the same unit, or the host stores what the element then refuses to show.
    const atLimit = '\u{1F600}'.repeat(16_000);
    const created = await page.evaluate(async () => {
      const r = await fetch('/api/threads', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'Astral' }),
      });
      return (await r.json()) as { threadId: string };
    });
    await page.goto(`${host.url}/threads/${created.threadId}`);
    await expect
      .poll(() => chat(page).locator('[part~="status"]').getAttribute('data-state'), WAIT)
      .toBe('connected');
    await recordEvents(page);
    await send(page, atLimit);
    await expect
      .poll(async () => (await events(page)).some((e) => e.type === 'RUN_FINISHED'), WAIT)
      .toBe(true);
    const userText = () => chat(page).locator('[part~="user-message"]').first().textContent();
    expect((await userText())?.trim()).toBe(atLimit);
    // After a reload the stored USER_MESSAGE passes the element's guard and shows again.
    await page.reload();
    await expect.poll(async () => (await userText())?.trim().length, WAIT).toBe(32_000);
    await page.screenshot({ path: join(ARTIFACTS, '10-astral-at-limit.png') });

    const over = `${atLimit}a`;
    // The element refuses it before sending,
    const elementCode = await page.evaluate((text) => {
      try {
        (document.querySelector('agent-chat') as unknown as { send(t: string): string }).send(text);
        return 'sent';
      } catch (err) {
        return (err as { code?: string }).code;
      }
    }, over);
    expect(elementCode).toBe('invalid_message');
    // and the relay refuses the same frame sent past the element, with the same code; nothing is stored.
    const before = await page.evaluate(
      async (id) => ((await (await fetch(`/api/threads/${id}`)).json()) as { lastSeq: number }).lastSeq,
      created.threadId,
    );
    const relayCode = await page.evaluate(
      ({ id, text }) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`);
          ws.onopen = () =>
            ws.send(JSON.stringify({ type: 'send', threadId: id, text, clientMessageId: 'over-1' }));
          ws.onmessage = (m) => {
            const frame = JSON.parse(String(m.data)) as { type: string; code?: string };
            if (frame.type === 'error') {
              resolve(frame.code ?? '');
              ws.close();
            }
          };
        }),
      { id: created.threadId, text: over },
    );
    expect(relayCode).toBe('invalid_message');
    const after = await page.evaluate(
      async (id) => ((await (await fetch(`/api/threads/${id}`)).json()) as { lastSeq: number }).lastSeq,
      created.threadId,
    );
    expect(after).toBe(before);
  });
});
