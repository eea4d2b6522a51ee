import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type { WebSocket } from 'ws';
import { beforeAll, expect, it } from 'vitest';
import { browserSuite } from './helpers/browser.js';
import { scriptedBrowser } from './helpers/scripted-browser.js';
import { userSaid, type ScriptedServer } from './helpers/scripted-server.js';

// The chat's own controls (composer, message actions, words), at desktop and mobile sizes, light and dark.
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/web-component/ui/', import.meta.url));
const suite = browserSuite('<agent-chat> controls in Chromium');
const LIMIT = 32_000;

const SIZES = { desktop: { width: 1280, height: 800 }, mobile: { width: 390, height: 844 } } as const;

suite('<agent-chat> controls in Chromium', () => {
  const env = scriptedBrowser();
  const { serve } = env;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
  });

  /** Mounts one <agent-chat> filling the page, with clipboard access, and waits until it is connected. */
  async function mount(server: ScriptedServer, size: keyof typeof SIZES = 'desktop'): Promise<Page> {
    const page = await env.open({
      viewport: SIZES[size],
      permissions: ['clipboard-read', 'clipboard-write'],
    });
    await page.addStyleTag({
      content: 'body { margin: 0 } agent-chat { width: auto; --agent-chat-height: 100vh; border-radius: 0 }',
    });
    await page.evaluate(
      ({ url, threadId }) => {
        window.__errors = [];
        const el = document.createElement('agent-chat');
        el.reconnectOptions = { baseDelayMs: 30, maxDelayMs: 120, maxAttempts: 5 };
        el.addEventListener('agent-chat:error', (e) => window.__errors.push(e.detail));
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', threadId);
        document.body.append(el);
      },
      { url: server.url, threadId: server.threadId },
    );
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('connected');
    return page;
  }

  /** Screenshots of the page at both sizes in light and dark; returns their paths. */
  async function shoot(page: Page, name: string): Promise<string[]> {
    const paths: string[] = [];
    for (const [size, viewport] of Object.entries(SIZES)) {
      await page.setViewportSize(viewport);
      for (const colorScheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme });
        const path = `${ARTIFACTS}${name}-${size}-${colorScheme}.png`;
        await page.screenshot({ path, animations: 'disabled' });
        paths.push(path);
      }
    }
    await page.setViewportSize(SIZES.desktop);
    await page.emulateMedia({ colorScheme: 'light' });
    return paths;
  }

  /** The focused element inside shadow roots, as `tag[part]`. */
  const focused = (page: Page): Promise<string> =>
    page.evaluate(() => {
      let a: Element | null = document.activeElement;
      while (a?.shadowRoot?.activeElement) a = a.shadowRoot.activeElement;
      return a
        ? `${a.tagName.toLowerCase()}${a.getAttribute('part') ? `[${a.getAttribute('part')}]` : ''}`
        : '';
    });

  const ack = (ws: WebSocket, clientMessageId: string, runId: string): void =>
    ws.send(JSON.stringify({ type: 'ack', clientMessageId, runId }));

  /** What a relay does on `send`: ack, store the user's message, start the run. */
  const startRun = (
    server: ScriptedServer,
    ws: WebSocket,
    msg: { clientMessageId: string; text: string },
    runId: string,
  ): void => {
    ack(ws, msg.clientMessageId, runId);
    server.append(
      {
        type: 'USER_MESSAGE',
        runId,
        messageId: `u-${runId}`,
        clientMessageId: msg.clientMessageId,
        userId: 'u-1',
        text: msg.text,
      },
      { type: 'RUN_STARTED', runId },
    );
  };

  it('composer: focused on open, grows then scrolls, Enter sends, Shift+Enter adds a line, refuses over the limit', async () => {
    const sent: string[] = [];
    const s = await serve('t-composer', {
      onSend(server, msg, ws) {
        sent.push(msg.text);
        startRun(server, ws, msg, `r${sent.length}`);
        server.append({ type: 'RUN_FINISHED', runId: `r${sent.length}` });
      },
    });
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    const input = chat.locator('textarea');
    expect(await focused(page)).toBe('textarea[input]');

    const height = (): Promise<number> => input.evaluate((t) => t.getBoundingClientRect().height);
    const one = await height();
    for (let i = 1; i <= 5; i++) {
      await page.keyboard.type(`line ${i}`);
      await page.keyboard.press('Shift+Enter');
    }
    await page.keyboard.type('line 6');
    const six = await height();
    expect(six).toBeGreaterThan(one * 3); // all six lines in view, not one
    expect(await input.evaluate((t) => t.scrollHeight - t.clientHeight)).toBeLessThanOrEqual(1);
    for (let i = 7; i <= 20; i++) {
      await page.keyboard.press('Shift+Enter');
      await page.keyboard.type(`line ${i}`);
    }
    const twenty = await height();
    expect(twenty).toBeGreaterThan(six);
    expect(twenty).toBeLessThan(SIZES.desktop.height / 3); // bounded...
    expect(await input.evaluate((t) => t.scrollHeight > t.clientHeight + 10)).toBe(true); // ...then it scrolls
    await page.keyboard.press('Enter');
    await expect.poll(() => sent.length).toBe(1);
    expect(sent[0]).toBe(Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join('\n'));
    expect(await input.inputValue()).toBe('');
    expect(await height()).toBeLessThanOrEqual(one + 1); // shrinks back after sending

    // Far from the limit: no counter. Near it: a counter. Over it: a visible refusal, nothing cut, nothing sent.
    await input.fill('a'.repeat(LIMIT * 0.8));
    expect(await chat.locator('[part~="counter"]').count()).toBe(0);
    await input.fill('a'.repeat(LIMIT - 100));
    expect(await chat.locator('[part~="counter"]').textContent()).toBe('31,900 / 32,000');
    expect(await chat.locator('[part~="counter"]').getAttribute('data-over')).toBeNull();
    await input.fill('a'.repeat(LIMIT + 50));
    const note = chat.locator('[part~="composer-note"]');
    expect(await note.textContent()).toBe('Too long by 50 characters. Shorten it to send.');
    expect(await chat.locator('[part~="counter"]').getAttribute('data-over')).toBe('');
    expect(await chat.locator('[part~="send-button"]').isDisabled()).toBe(true);
    expect(await input.getAttribute('aria-invalid')).toBe('true');
    await input.focus();
    await page.keyboard.press('Enter');
    await expect
      .poll(() => note.textContent())
      .toBe('Not sent. Too long by 50 characters. Shorten it to send.');
    expect(await chat.locator('[role="status"]').textContent()).toContain('Too long by 50 characters');
    expect((await input.inputValue()).length).toBe(LIMIT + 50); // the draft is kept whole
    await page.waitForTimeout(100);
    expect(sent).toHaveLength(1);
    await shoot(page, 'composer-over-limit');

    // Back at the limit exactly: it sends all of it.
    await page.keyboard.press('End');
    for (let i = 0; i < 50; i++) await page.keyboard.press('Backspace');
    expect(await note.textContent()).toBe('');
    await page.keyboard.press('Enter');
    await expect.poll(() => sent.length).toBe(2);
    expect(sent[1]).toHaveLength(LIMIT);
  });
  it('working indicator: shown from send until the first event of the answer, also after a reload', async () => {
    const s = await serve('t-working', {
      onSend(server, msg, ws) {
        startRun(server, ws, msg, `r${server.received.filter((m) => m.type === 'send').length}`);
      },
    });
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    const working = chat.locator('[part~="working"]');
    expect(await working.count()).toBe(0);
    await page.keyboard.type('What is the weather in Lisbon?');
    await page.keyboard.press('Enter');
    await expect.poll(() => working.count()).toBe(1);
    expect(await chat.locator('[role="status"]').textContent()).toContain('Working on it');
    await s.until(() => s.log.some((e) => e.type === 'RUN_STARTED'), 'the run');
    await page.waitForTimeout(100); // acked and started, still no answer: still working
    expect(await working.count()).toBe(1);
    const dot = working.locator('.dots i').first();
    expect(await dot.evaluate((el) => getComputedStyle(el).animationName)).toBe('pulse');
    await page.emulateMedia({ reducedMotion: 'reduce' }); // the dots stand still
    expect(await dot.evaluate((el) => getComputedStyle(el).animationName)).toBe('none');
    await page.emulateMedia({ reducedMotion: 'no-preference' });
    await shoot(page, 'working');
    // A reload before the first event shows it too (the run is active and the last row is its message).
    const again = await env.browser.newPage({ viewport: SIZES.desktop });
    await again.goto(env.pages.url);
    await again.evaluate(
      ({ url, threadId }) => {
        const el = document.createElement('agent-chat');
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', threadId);
        document.body.append(el);
      },
      { url: s.url, threadId: s.threadId },
    );
    await expect.poll(() => again.locator('agent-chat [part~="working"]').count()).toBe(1);
    s.append({
      type: 'TOOL_CALL_STARTED',
      runId: 'r1',
      toolCallId: 'tc1',
      toolName: 'weather.lookup',
      label: 'Checking the weather',
    });
    await expect.poll(() => working.count()).toBe(0);
    await expect.poll(() => again.locator('agent-chat [part~="working"]').count()).toBe(0);
    await again.close();
    s.append(
      { type: 'TOOL_CALL_RESULT', runId: 'r1', toolCallId: 'tc1', toolName: 'weather.lookup', ok: true },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: 'Sunny.' },
      { type: 'RUN_FINISHED', runId: 'r1' },
    );
    await expect.poll(() => chat.locator('[part~="assistant-message"]').count()).toBe(1);
    // A run that fails before any answer ends the indicator too.
    await chat.locator('textarea').focus();
    await page.keyboard.type('And tomorrow?');
    await page.keyboard.press('Enter');
    await expect.poll(() => working.count()).toBe(1);
    await s.until(() => s.log.filter((e) => e.type === 'RUN_STARTED').length === 2, 'the second run');
    s.append({ type: 'RUN_ERROR', runId: 'r2', message: 'model overloaded', code: 'model_error' });
    await expect.poll(() => working.count()).toBe(0);
  });
  it('message actions: copy an answer and a code block, times on hover or focus, a jump-to-latest button', async () => {
    const s = await serve('t-actions');
    const answer = 'Here is the script:\n\n```sh\nnpm run build\n```\n\nRun it **twice**.';
    for (let i = 1; i <= 12; i++) {
      s.append(
        userSaid(i, `Question ${i}`),
        { type: 'RUN_STARTED', runId: `r${i}` },
        {
          type: 'TEXT_MESSAGE_CHUNK',
          runId: `r${i}`,
          messageId: `a${i}`,
          delta: i === 12 ? answer : `Answer ${i}.\n\nA second paragraph to take some room.`,
        },
        { type: 'RUN_FINISHED', runId: `r${i}` },
      );
    }
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    const last = chat.locator('[data-message-id="a12"]').locator('..');
    await expect.poll(() => last.locator('[part~="copy-button"]').count()).toBe(1);
    const clipboard = (): Promise<string> => page.evaluate(() => navigator.clipboard.readText());

    // Copy the answer: its Markdown source goes to the clipboard, the button says so, screen readers hear it.
    await last.locator('[part~="copy-button"]').click();
    expect(await clipboard()).toBe(answer);
    expect(await last.locator('[part~="copy-button"]').textContent()).toContain('Copied');
    expect(await chat.locator('[role="status"]').textContent()).toBe('Copied to the clipboard.');
    await expect
      .poll(() => last.locator('[part~="copy-button"]').textContent(), { timeout: 3_000 })
      .toContain('Copy');
    // Copy one code block.
    await last.locator('[part~="code-copy-button"]').click();
    expect(await clipboard()).toBe('npm run build');

    // Times: hidden until the row is hovered or focused, and always in the accessibility tree.
    const time = chat.locator('[data-message-id="a11"]').locator('..').locator('time');
    const opacity = (): Promise<string> => time.evaluate((t) => getComputedStyle(t).opacity);
    await chat.locator('textarea').hover();
    expect(await opacity()).toBe('0');
    expect(await time.getAttribute('datetime')).toMatch(/^\d{4}-\d\d-\d\dT/);
    await chat.locator('[data-message-id="a11"]').hover();
    expect(await opacity()).toBe('1');
    await chat.locator('textarea').hover();
    await chat.locator('[data-message-id="a11"]').locator('..').locator('[part~="copy-button"]').focus();
    expect(await opacity()).toBe('1');

    // Scrolled up: a button brings the latest back; keyboard only.
    const jump = chat.locator('[part~="jump-button"]');
    expect(await jump.count()).toBe(0);
    await chat.locator('[part~="messages"]').focus();
    await page.keyboard.press('Home');
    await expect.poll(() => jump.count()).toBe(1);
    await chat.locator('[data-message-id="a2"]').hover();
    await shoot(page, 'actions-scrolled-up');
    await chat.locator('[part~="messages"]').focus();
    await page.keyboard.press('Shift+Tab'); // it comes just before the conversation
    expect(await focused(page)).toBe('button[jump-button]');
    await page.keyboard.press('Enter');
    await expect.poll(() => jump.count()).toBe(0);
    const atBottom = await chat
      .locator('[part~="messages"]')
      .evaluate((l) => l.scrollHeight - l.scrollTop - l.clientHeight < 2);
    expect(atBottom).toBe(true);
    expect(await focused(page)).toBe('section[messages]');
    await last.hover();
    await shoot(page, 'actions-bottom');
  });
  it('words: tool calls and errors in words a user understands, technical detail in the console only', async () => {
    const s = await serve('t-words');
    s.append(
      userSaid(1, 'Call me Ada'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TOOL_CALL_STARTED', runId: 'r1', toolCallId: 'tc1', toolName: 'profile.patch' },
      { type: 'TOOL_CALL_RESULT', runId: 'r1', toolCallId: 'tc1', toolName: 'profile.patch', ok: true },
      {
        type: 'TOOL_CALL_STARTED',
        runId: 'r1',
        toolCallId: 'tc2',
        toolName: 'profile.patch',
        label: 'Updating your profile',
      },
      {
        type: 'TOOL_CALL_RESULT',
        runId: 'r1',
        toolCallId: 'tc2',
        toolName: 'profile.patch',
        ok: false,
        error: 'displayName: must not be empty',
      },
      { type: 'TOOL_CALL_STARTED', runId: 'r1', toolCallId: 'tc3', toolName: 'getWeatherForecast' },
    );
    const page = await mount(s);
    const logged: string[] = [];
    page.on('console', (m) => logged.push(m.text()));
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.locator('[part~="tool-call"]').count()).toBe(3);
    expect(await chat.locator('[part~="tool-call"]').allInnerTexts()).toEqual([
      '✓\nProfile patch\n, done', // ", done" is for screen readers only
      '✕\nUpdating your profile did not work',
      'Get weather forecast…',
    ]);
    // The run then fails the way the relay reports a dropped agent.
    s.append({
      type: 'RUN_ERROR',
      runId: 'r1',
      code: 'agent_stream_ended',
      message: 'the connection to the agent dropped mid-stream: aborted',
    });
    await expect.poll(() => chat.locator('[part~="run-error"]').count()).toBe(1);
    expect(await chat.locator('[part~="run-error"]').innerText()).toContain('The answer was interrupted.');
    expect(await chat.locator('[data-tool-call-id="tc3"]').innerText()).toContain(
      'Get weather forecast did not work',
    );
    // A send the server refuses, and an unknown code from a newer server.
    await page.keyboard.type('Again');
    await page.keyboard.press('Enter');
    await s.until(() => s.received.some((m) => m.type === 'send'), 'the send');
    const send = s.received.find((m) => m.type === 'send') as { clientMessageId: string };
    s.broadcastRaw(
      JSON.stringify({
        type: 'error',
        code: 'rate_limited',
        message: 'rate limit 10/min exceeded',
        ref: send.clientMessageId,
      }),
    );
    await expect.poll(() => chat.locator('[part~="send-error"]').count()).toBe(1);
    expect(await chat.locator('[part~="send-error"]').innerText()).toContain(
      'Not sent. You are sending messages too fast. Wait a moment.',
    );
    const visible = await chat.evaluate(
      (el) => (el.shadowRoot!.querySelector('.viewport') as HTMLElement).innerText,
    );
    for (const internal of [
      'mid-stream',
      'aborted',
      'profile.patch',
      'displayName',
      'rate limit 10/min',
      'agent_',
    ])
      expect(visible).not.toContain(internal);
    // The details are in the console for developers.
    await expect
      .poll(() => logged.join('\n'))
      .toContain('the connection to the agent dropped mid-stream: aborted');
    expect(logged.join('\n')).toContain('rate limit 10/min exceeded');
    await shoot(page, 'words');
  });
  it('keyboard only: every new control is reachable, shows focus, works with Enter, and is announced', async () => {
    const s = await serve('t-keyboard');
    s.append(
      userSaid(1, 'How do I list files?'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: 'Use:\n\n```sh\nls -la\n```' },
      { type: 'RUN_FINISHED', runId: 'r1' },
    );
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.locator('[part~="copy-button"]').count()).toBe(2);
    expect(await focused(page)).toBe('textarea[input]');
    const clipboard = (): Promise<string> => page.evaluate(() => navigator.clipboard.readText());
    const ring = (): Promise<string> =>
      page.evaluate(() => {
        let a: Element | null = document.activeElement;
        while (a?.shadowRoot?.activeElement) a = a.shadowRoot.activeElement;
        return a ? getComputedStyle(a).outlineStyle : 'none';
      });
    const status = chat.locator('[role="status"]');

    // Backwards from the composer: the last answer's Regenerate and Copy, the code block's Copy, the user's Copy,
    // the conversation.
    await page.keyboard.press('Shift+Tab');
    expect(await focused(page)).toBe('button[regenerate-button]');
    expect(await ring()).not.toBe('none');
    await page.keyboard.press('Shift+Tab');
    expect(await focused(page)).toBe('button[copy-button]');
    expect(await ring()).not.toBe('none');
    await page.keyboard.press('Enter');
    await expect.poll(clipboard).toBe('Use:\n\n```sh\nls -la\n```');
    expect(await status.textContent()).toBe('Copied to the clipboard.');
    await page.keyboard.press('Shift+Tab');
    expect(await focused(page)).toBe('button[code-copy-button]');
    expect(await ring()).not.toBe('none');
    await page.keyboard.press('Enter');
    await expect.poll(clipboard).toBe('ls -la');
    await page.keyboard.press('Shift+Tab');
    expect(await focused(page)).toBe('button[copy-button]');
    const userRow = chat.locator('[part~="user-message"]').locator('..');
    // Hidden until focused: now it and the time show.
    expect(await userRow.locator('[part~="copy-button"]').evaluate((b) => getComputedStyle(b).opacity)).toBe(
      '1',
    );
    expect(await userRow.locator('time').evaluate((t) => getComputedStyle(t).opacity)).toBe('1');
    await page.keyboard.press('Space');
    await expect.poll(clipboard).toBe('How do I list files?');
    await page.keyboard.press('Shift+Tab');
    expect(await focused(page)).toBe('section[messages]');
    await shoot(page, 'keyboard');
  });
  it('Retry after an error fires a cancelable agent-chat:regenerate; a page that cancels it gets no second send', async () => {
    const s = await serve('t-regenerate');
    s.append(
      userSaid(1, 'Plan my trip'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'RUN_ERROR', runId: 'r1', code: 'model_error', message: 'upstream 503' },
    );
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    await page.evaluate(() => {
      (window as unknown as { __regen: unknown[] }).__regen = [];
      document.querySelector('agent-chat')!.addEventListener('agent-chat:regenerate', (e) => {
        (window as unknown as { __regen: unknown[] }).__regen.push(e.detail);
        e.preventDefault();
      });
    });
    await chat.locator('[part~="run-error"] [part~="retry-button"]').click();
    expect(await page.evaluate(() => (window as unknown as { __regen: unknown[] }).__regen)).toEqual([
      { runId: 'r1', text: 'Plan my trip', clientMessageId: 'c1' },
    ]);
    await page.waitForTimeout(100);
    expect(s.received.filter((m) => m.type === 'send' || m.type === 'regenerate')).toEqual([]);
    expect(await chat.locator('[part~="user-message"]').count()).toBe(1);
  });

  it('a regenerate the server refuses says why in the chat, where a refused send does, until the next run starts', async () => {
    const refusals = ['run_active', 'nothing_to_regenerate'];
    const s = await serve('t-regen-refused', {
      onRegenerate: (server, msg, ws) => {
        const code = refusals.shift();
        if (code) {
          ws.send(
            JSON.stringify({ type: 'error', code, message: `refused: ${code}`, ref: msg.clientMessageId }),
          );
          return;
        }
        ack(ws, msg.clientMessageId, 'r2');
        server.append(
          { type: 'RUN_STARTED', runId: 'r2', regenerates: 'r1' },
          { type: 'TEXT_MESSAGE_CHUNK', runId: 'r2', messageId: 'm2', delta: 'Day one: Rome.' },
          { type: 'RUN_FINISHED', runId: 'r2' },
        );
      },
    });
    s.append(
      userSaid(1, 'Plan my trip'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'm1', delta: 'Day one: Paris.' },
      { type: 'RUN_FINISHED', runId: 'r1' },
    );
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    const notes = () => chat.locator('[part~="send-error"]').allTextContents();
    await chat.locator('[part~="regenerate-button"]').click();
    await expect.poll(notes).toEqual(['The assistant is still answering. Wait for it or stop it.']);
    const regenerates = s.received.filter((m) => m.type === 'regenerate');
    expect(await page.evaluate(() => window.__errors)).toEqual([
      expect.objectContaining({ code: 'run_active', ref: regenerates[0]!.clientMessageId, fatal: false }),
    ]);
    // A page's own regenerate() is refused the same way; the newest reason replaces the last one.
    await page.evaluate(() => document.querySelector('agent-chat')!.regenerate());
    await expect.poll(notes).toEqual(['There is no message to answer again.']);
    // Nothing else changed: the answer stays, one user message, no "Not sent." on it.
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['Plan my trip']);
    expect(
      (await chat.locator('[part~="assistant-message"]').allTextContents()).map((t) => t.trim()),
    ).toEqual(['Day one: Paris.']);
    const [shot] = await shoot(page, 'regenerate-refused');
    expect(shot).toBeDefined();
    // The next regenerate is taken: its run starts, and the refusal goes.
    await chat.locator('[part~="regenerate-button"]').click();
    await expect
      .poll(async () =>
        (await chat.locator('[part~="assistant-message"]').allTextContents()).map((t) => t.trim()),
      )
      .toEqual(['Day one: Rome.']);
    expect(await notes()).toEqual([]);
  });

  it('Retry after an error sends one regenerate frame; the new run replaces the failed one under the same message', async () => {
    const s = await serve('t-retry', {
      onRegenerate: (server, msg, ws) => {
        ack(ws, msg.clientMessageId, 'r2');
        // The relay stores the new run's RUN_STARTED at once; the answer comes later.
        server.append({ type: 'RUN_STARTED', runId: 'r2', regenerates: 'r1' });
      },
    });
    s.append(
      userSaid(1, 'Plan my trip'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'm1', delta: 'Day one: ' },
      { type: 'RUN_ERROR', runId: 'r1', code: 'model_error', message: 'upstream 503' },
    );
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    await chat.locator('[part~="run-error"] [part~="retry-button"]').focus();
    await page.keyboard.press('Enter');
    await s.until(() => s.received.some((m) => m.type === 'regenerate'), 'a regenerate frame');
    // The failed answer and its error are gone; the message shows once, with the working indicator under it.
    await expect.poll(() => chat.locator('[part~="working"]').count()).toBe(1);
    expect(await chat.locator('[part~="assistant-message"], [part~="run-error"]').count()).toBe(0);
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['Plan my trip']);
    await shoot(page, 'regenerate-working');
    s.append(
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r2', messageId: 'm2', delta: 'Day one: Rome.' },
      { type: 'RUN_FINISHED', runId: 'r2' },
    );
    await expect
      .poll(async () =>
        (await chat.locator('[part~="assistant-message"]').allTextContents()).map((t) => t.trim()),
      )
      .toEqual(['Day one: Rome.']);
    expect(await chat.locator('[part~="working"]').count()).toBe(0);
    expect(s.received.filter((m) => m.type === 'send')).toEqual([]);
    expect(s.received.filter((m) => m.type === 'regenerate')).toEqual([
      { type: 'regenerate', threadId: 't-retry', clientMessageId: expect.any(String) },
    ]);
    expect(await chat.locator('[part~="user-message"]').count()).toBe(1);
    await shoot(page, 'regenerate-done');
  });
});
