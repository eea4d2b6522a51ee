import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type { WebSocket } from 'ws';
import { beforeAll, expect, it } from 'vitest';
import { browserSuite } from './helpers/browser.js';
import { scriptedBrowser } from './helpers/scripted-browser.js';
import { userSaid, type ScriptedServer, type Script } from './helpers/scripted-server.js';

const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/web-component/', import.meta.url));
const suite = browserSuite('<agent-chat> in Chromium');

suite('<agent-chat> in Chromium', () => {
  const { serve, open } = scriptedBrowser();

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
  });

  /** Opens the test page and mounts one <agent-chat> on `server`, recording its DOM events. */
  async function mount(
    server: ScriptedServer,
    extra: Record<string, string> = {},
    baseDelayMs = 30,
    maxAttempts = 5,
  ): Promise<Page> {
    const page = await open({ viewport: { width: 640, height: 720 } });
    await page.evaluate(
      ({ url, threadId, extra, baseDelayMs, maxAttempts }) => {
        window.__events = [];
        window.__types = [];
        window.__errors = [];
        window.__states = [];
        window.__finished = [];
        const el = document.createElement('agent-chat');
        el.reconnectOptions = { baseDelayMs, maxDelayMs: baseDelayMs * 4, maxAttempts };
        el.addEventListener('agent-chat:event', (e) => {
          window.__events.push(e.detail.event.seq);
          window.__types.push(e.detail.event.type);
        });
        el.addEventListener('agent-chat:error', (e) => window.__errors.push(e.detail));
        el.addEventListener('agent-chat:connection', (e) => window.__states.push(e.detail.state));
        el.addEventListener('agent-chat:run-finished', (e) =>
          window.__finished.push({ runId: e.detail.runId, ok: e.detail.ok }),
        );
        for (const [k, v] of Object.entries(extra)) el.setAttribute(k, v);
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', threadId);
        document.body.append(el);
      },
      { url: server.url, threadId: server.threadId, extra, baseDelayMs, maxAttempts },
    );
    return page;
  }

  const assistantText = (page: Page, messageId: string): Promise<string | null> =>
    page.evaluate(
      (id) =>
        document.querySelector('agent-chat')?.shadowRoot?.querySelector(`[data-message-id="${id}"] > div`)
          ?.textContent ?? null,
      messageId,
    );

  const ack = (_s: ScriptedServer, ws: WebSocket, clientMessageId: string, runId: string): void => {
    ws.send(JSON.stringify({ type: 'ack', clientMessageId, runId }));
  };

  /** A `send` handler that acks and streams run r1 at once: `n` chunks `${prefix}${i} `, then RUN_FINISHED. */
  const streamOnSend =
    (n: number, prefix: string): NonNullable<Script['onSend']> =>
    (server, msg, ws) => {
      ack(server, ws, msg.clientMessageId, 'r1');
      server.append({ type: 'RUN_STARTED', runId: 'r1' });
      for (let i = 0; i < n; i++)
        server.append({ type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: `${prefix}${i} ` });
      server.append({ type: 'RUN_FINISHED', runId: 'r1' });
    };

  /** What a relay does on `send`: ack, store the user's message, start the run. */
  const startRun = (
    server: ScriptedServer,
    ws: WebSocket,
    msg: { clientMessageId: string; text: string },
    runId: string,
    messageId: string,
  ): void => {
    ack(server, ws, msg.clientMessageId, runId);
    server.append(
      {
        type: 'USER_MESSAGE',
        runId,
        messageId,
        clientMessageId: msg.clientMessageId,
        userId: 'u-1',
        text: msg.text,
      },
      { type: 'RUN_STARTED', runId },
    );
  };

  it('renders history, live chunks, tool states, a run error with retry and a finished run (light and dark)', async () => {
    const s = await serve('t-render', {
      onRegenerate(server, msg, ws) {
        // What the relay does on `regenerate`: ack, store the new run's RUN_STARTED (no USER_MESSAGE).
        ack(server, ws, msg.clientMessageId, 'r3');
        server.append({ type: 'RUN_STARTED', runId: 'r3', regenerates: 'r2' });
        server.append({
          type: 'TOOL_CALL_STARTED',
          runId: 'r3',
          toolCallId: 'tc3',
          toolName: 'booking.create',
          label: 'Booking a table',
        });
      },
    });
    s.append(
      userSaid(1, 'What is the weather?'),
      { type: 'RUN_STARTED', runId: 'r1' },
      {
        type: 'TOOL_CALL_STARTED',
        runId: 'r1',
        toolCallId: 'tc1',
        toolName: 'weather.lookup',
        label: 'Checking the weather',
      },
      { type: 'TOOL_CALL_RESULT', runId: 'r1', toolCallId: 'tc1', toolName: 'weather.lookup', ok: true },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: 'It is **sunny** in ' },
      {
        type: 'TEXT_MESSAGE_CHUNK',
        runId: 'r1',
        messageId: 'a1',
        delta: '`Lisbon`.\n\n- warm\n- dry\n\n```js\nconst x = 1;\n```',
      },
      { type: 'STATE_CHANGED', runId: 'r1', scope: 'profile', value: { city: 'Lisbon' } },
      { type: 'RUN_FINISHED', runId: 'r1' },
      userSaid(2, 'Book a table'),
      { type: 'RUN_STARTED', runId: 'r2' },
      { type: 'HISTORY_WINDOWED', runId: 'r2', windowItems: 200 },
      { type: 'TOOL_CALL_STARTED', runId: 'r2', toolCallId: 'tc2', toolName: 'booking.create' },
      {
        type: 'TOOL_CALL_RESULT',
        runId: 'r2',
        toolCallId: 'tc2',
        toolName: 'booking.create',
        ok: false,
        error: 'no tables left',
      },
      { type: 'RUN_ERROR', runId: 'r2', message: 'The model is overloaded', code: 'model_error' },
    );
    const page = await mount(s);
    const chat = page.locator('agent-chat');

    // History.
    await expect.poll(() => assistantText(page, 'a1')).toContain('It is sunny in Lisbon.');
    expect(await chat.locator('[data-message-id="a1"] strong').textContent()).toBe('sunny');
    expect(await chat.locator('[data-message-id="a1"] li').count()).toBe(2);
    expect(await chat.locator('[data-message-id="a1"] pre code').textContent()).toBe('const x = 1;');
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual([
      'What is the weather?',
      'Book a table',
    ]);
    expect(await chat.locator('[data-tool-call-id="tc1"]').getAttribute('data-status')).toBe('done');
    expect(await chat.locator('[data-tool-call-id="tc1"]').textContent()).toContain('Checking the weather');
    expect(await chat.locator('[data-tool-call-id="tc2"]').getAttribute('data-status')).toBe('failed');
    // Words a user understands: the tool's name in words, the error's sentence; the details go to the console.
    expect(await chat.locator('[data-tool-call-id="tc2"]').textContent()).toContain(
      'Booking create did not work',
    );
    expect(await chat.locator('[data-tool-call-id="tc2"]').textContent()).not.toContain('no tables left');
    expect(await chat.locator('[part~="run-error"]').textContent()).toContain(
      'The assistant could not answer just now.',
    );
    expect(await chat.locator('[part~="run-error"]').textContent()).not.toContain('overloaded');
    expect(await chat.locator('[part~="history-divider"]').getAttribute('data-run-id')).toBe('r2');
    expect(await chat.locator('[part~="history-divider"]').textContent()).toContain('recent part');
    expect(await page.evaluate(() => window.__types.includes('STATE_CHANGED'))).toBe(true);
    expect(await chat.locator('[role="status"]').textContent()).toBe(''); // history is not announced

    // Unknown event types are skipped and garbage is reported, without breaking the stream.
    s.log.push({
      type: 'FUTURE_EVENT',
      threadId: s.threadId,
      runId: 'r2',
      ts: Date.now(),
      seq: s.log.length + 1,
    } as never);
    s.broadcastRaw(JSON.stringify({ type: 'event', event: s.log[s.log.length - 1] }));
    s.broadcastRaw('not json at all');
    await expect
      .poll(() => page.evaluate(() => window.__errors.map((e) => e.code)))
      .toContain('invalid_frame');

    // Retry the failed run: the element asks for a new answer to the same message (no second send).
    await chat.locator('[part~="run-error"] [part~="retry-button"]').click();
    await s.until(() => s.received.some((m) => m.type === 'regenerate'), 'the regenerate');
    expect(s.received.find((m) => m.type === 'regenerate')).toMatchObject({
      type: 'regenerate',
      threadId: 't-render',
    });
    expect(s.received.filter((m) => m.type === 'send')).toEqual([]);
    await expect
      .poll(() => chat.locator('[data-tool-call-id="tc3"]').getAttribute('data-status'))
      .toBe('running');
    expect(await chat.locator('[part~="stop-button"]').isVisible()).toBe(true);
    expect(await chat.locator('[part~="send-button"]').isDisabled()).toBe(true);
    const spinner = chat.locator('[data-tool-call-id="tc3"] .spinner');
    expect(await spinner.evaluate((el) => getComputedStyle(el).animationName)).toBe('spin');
    await page.emulateMedia({ reducedMotion: 'reduce' });
    expect(await spinner.evaluate((el) => getComputedStyle(el).animationName)).toBe('none');
    await page.emulateMedia({ reducedMotion: 'no-preference' });

    s.append(
      { type: 'TOOL_CALL_RESULT', runId: 'r3', toolCallId: 'tc3', toolName: 'booking.create', ok: true },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r3', messageId: 'a3', delta: 'Booked for ' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r3', messageId: 'a3', delta: '**8pm**' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r3', messageId: 'a3', delta: '.' },
      { type: 'RUN_FINISHED', runId: 'r3' },
    );
    await expect.poll(() => page.evaluate(() => window.__finished)).toContainEqual({ runId: 'r3', ok: true });
    await expect.poll(() => assistantText(page, 'a3')).toBe('Booked for 8pm.');
    expect(await chat.locator('[data-tool-call-id="tc3"]').getAttribute('data-status')).toBe('done');
    // The new answer took the failed run's place: one user message, and r2's rows are gone.
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual([
      'What is the weather?',
      'Book a table',
    ]);
    expect(await chat.locator('[data-tool-call-id="tc2"], [part~="run-error"]').count()).toBe(0);
    expect(await chat.locator('[part~="stop-button"]').count()).toBe(0);
    // Every event once, in order; the unknown one is not passed on as a contract event.
    const seqs = await page.evaluate(() => window.__events);
    expect(seqs).toEqual(s.log.filter((e) => (e.type as string) !== 'FUTURE_EVENT').map((e) => e.seq));
    // Screen readers hear the completed message, not its tokens.
    expect(await chat.locator('[role="status"]').textContent()).toContain('Assistant: Booked for **8pm**.');
    expect(await page.evaluate(() => window.__finished)).toEqual([
      { runId: 'r1', ok: true },
      { runId: 'r2', ok: false },
      { runId: 'r3', ok: true },
    ]);

    await page.emulateMedia({ colorScheme: 'light' });
    const light = await chat.evaluate((el) => getComputedStyle(el).backgroundColor);
    await chat.screenshot({ path: `${ARTIFACTS}stream-light.png`, animations: 'disabled' });
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await chat.evaluate((el) => getComputedStyle(el).backgroundColor);
    await chat.screenshot({ path: `${ARTIFACTS}stream-dark.png`, animations: 'disabled' });
    expect(light).toBe('rgb(255, 255, 255)');
    expect(dark).not.toBe(light);
    expect(existsSync(`${ARTIFACTS}stream-dark.png`)).toBe(true);
  });

  it('shows the placeholder on an empty thread, and readonly hides the send box', async () => {
    const s = await serve('t-empty');
    const page = await mount(s, { placeholder: 'Ask me anything', readonly: '' });
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    expect(await chat.locator('[part~="placeholder"]').textContent()).toBe('Ask me anything');
    expect(await chat.locator('[part~="composer"]').count()).toBe(0);
    await chat.evaluate((el) => el.removeAttribute('readonly'));
    expect(await chat.locator('textarea[aria-label="Message"]').count()).toBe(1);
    // The methods refuse with a typed error instead of sending something the server would reject.
    const refusals = await chat.evaluate((el: HTMLElementTagNameMap['agent-chat']) => {
      const out: string[] = [];
      const attempts = [
        () => el.send('   '),
        () => el.send('x'.repeat(32_001)),
        () => el.cancel(),
        () => {
          el.readonly = true;
          el.send('hi');
        },
      ];
      for (const attempt of attempts) {
        try {
          attempt();
          out.push('no error');
        } catch (err) {
          out.push(`${(err as Error).name}:${(err as { code: string }).code}`);
        }
      }
      return out;
    });
    expect(refusals).toEqual([
      'AgentChatError:invalid_message',
      'AgentChatError:invalid_message',
      'AgentChatError:no_active_run',
      'AgentChatError:readonly',
    ]);
    expect(s.received.filter((m) => m.type !== 'subscribe')).toEqual([]);
  });

  it('resumes mid-run after the server drops the socket: final text equals the log, no duplicates', async () => {
    const s = await serve('t-reconnect', {
      onSend(server, msg, ws) {
        startRun(server, ws, msg, 'r1', 'u1');
        for (let i = 0; i < 60; i++)
          server.append({ type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: `part${i} ` });
      },
    });
    s.overlap = 25; // the server replays 25 events the client already has: the client must drop them
    const page = await mount(s);
    await s.until(() => s.received.some((m) => m.type === 'subscribe'), 'subscribe');
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('connected');
    await page.evaluate(() => document.querySelector('agent-chat')?.send('stream please'));
    await expect.poll(() => page.evaluate(() => window.__events.length)).toBeGreaterThan(30);

    s.dropAll();
    for (let i = 60; i < 120; i++)
      s.append({ type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: `part${i} ` });
    s.append({ type: 'RUN_FINISHED', runId: 'r1' });

    await expect.poll(() => page.evaluate(() => window.__finished.length), { timeout: 10_000 }).toBe(1);
    const subscribes = s.received.filter((m) => m.type === 'subscribe');
    expect(subscribes.length).toBe(2);
    expect(subscribes[1]).toMatchObject({ afterSeq: expect.any(Number) });
    expect((subscribes[1] as { afterSeq: number }).afterSeq).toBeGreaterThan(30);
    expect(await page.evaluate(() => window.__states)).toContain('reconnecting');
    expect(await page.evaluate(() => window.__events)).toEqual(s.log.map((e) => e.seq));
    const expected = s.textOf('a1');
    await expect.poll(() => assistantText(page, 'a1')).toBe(expected.trim());
    const model = await page.evaluate(() =>
      document
        .querySelector('agent-chat')!
        .messages.filter((m) => m.kind === 'assistant')
        .map((m) => (m as { text: string }).text),
    );
    expect(model).toEqual([expected]);
  });

  it('keeps a slow_consumer drop recoverable but stops retrying on an auth error', async () => {
    let drops = 0;
    const s = await serve('t-errors', {
      onSubscribe(server, msg, ws) {
        if (msg.afterSeq === 0 && drops++ === 0) {
          ws.send(JSON.stringify({ type: 'event', event: server.log[0] }));
          ws.send(JSON.stringify({ type: 'error', code: 'slow_consumer', message: 'you fell behind' }));
          ws.close(1013, 'slow consumer');
          return false;
        }
        if (server.connections >= 2 && msg.afterSeq > 0 && drops === 1) {
          drops++;
          return; // default replay from afterSeq
        }
        ws.send(
          JSON.stringify({
            type: 'error',
            code: 'unauthorized',
            message: 'sign in again',
            ref: server.threadId,
          }),
        );
        ws.close(4401, 'unauthorized');
        return false;
      },
    });
    s.append(
      userSaid(1, 'hi'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: 'hello' },
      { type: 'RUN_FINISHED', runId: 'r1' },
    );
    const page = await mount(s);
    await expect.poll(() => assistantText(page, 'a1')).toBe('hello');
    const errors = await page.evaluate(() => window.__errors);
    expect(errors).toEqual([{ code: 'slow_consumer', message: 'you fell behind', fatal: false }]);
    expect(
      s.received.filter((m) => m.type === 'subscribe').map((m) => (m as { afterSeq: number }).afterSeq),
    ).toEqual([0, 1]);

    // Now an auth failure: fired once, marked fatal, and no more connection attempts.
    await page.evaluate(() => document.querySelector('agent-chat')!.reconnect());
    await expect
      .poll(() => page.evaluate(() => window.__errors.map((e) => e.code)))
      .toContain('unauthorized');
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('disconnected');
    const after = s.connections;
    await page.waitForTimeout(400); // ten times the backoff base: a retry would have happened by now
    expect(s.connections).toBe(after);
    expect((await page.evaluate(() => window.__errors)).find((e) => e.code === 'unauthorized')).toMatchObject(
      { fatal: true },
    );
    expect(await page.locator('agent-chat [part~="status"]').textContent()).toContain(
      'You were signed out. Sign in again.',
    );
    expect(await page.locator('agent-chat [part~="reconnect-button"]').isVisible()).toBe(true);
  });

  it('gives up after maxAttempts failed reconnects and offers a Reconnect button', async () => {
    const s = await serve('t-bound', {
      onConnection(_server, ws) {
        ws.terminate();
        return false;
      },
    });
    const page = await mount(s, {}, 10, 2);
    await expect
      .poll(() => page.evaluate(() => window.__errors.map((e) => e.code)))
      .toContain('reconnect_exhausted');
    expect(await page.locator('agent-chat').getAttribute('connection')).toBe('disconnected');
    expect(s.connections).toBe(3); // the first attempt and maxAttempts retries
    await page.waitForTimeout(200); // many times the 10-40 ms backoff: a further retry would show up here
    expect(s.connections).toBe(3);
    const settled = s.connections;
    expect(await page.evaluate(() => window.__states.filter((x) => x === 'reconnecting').length)).toBe(2);
    await page.locator('agent-chat [part~="reconnect-button"]').click();
    await s.until(() => s.connections > settled, 'a manual reconnect');
  });

  it('renders model output inert: no raw HTML, no handlers, no script URLs', async () => {
    const attack = [
      'Hi <img src=x onerror="window.__xss = 1"> there',
      '<script>window.__xss = 2</script>',
      '[click me](javascript:window.__xss=3) and [again](JaVaScRiPt:window.__xss=4)',
      '<a href="javascript:window.__xss=5" onclick="window.__xss=6">raw link</a>',
      '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) <iframe src="javascript:window.__xss=7"></iframe>',
      '**<svg onload="window.__xss=8">** `<b onmouseover=x>` [ok](https://example.com/a?b=1) <https://example.org>',
    ].join('\n\n');
    const s = await serve('t-xss');
    s.append(
      userSaid(1, '<img src=x onerror="window.__xss=9">'),
      { type: 'RUN_STARTED', runId: 'r1' },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: attack.slice(0, 40) },
      { type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: attack.slice(40) },
      { type: 'RUN_FINISHED', runId: 'r1' },
    );
    const page = await mount(s);
    await expect
      .poll(() => assistantText(page, 'a1'))
      .toContain('Hi <img src=x onerror="window.__xss = 1"> there');
    const chat = page.locator('agent-chat');
    for (const text of ['click me', 'again', 'raw link'])
      await chat.getByText(text, { exact: false }).first().click();
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const report = await page.evaluate(() => {
      const all: Element[] = [];
      const walk = (root: ParentNode): void => {
        for (const el of Array.from(root.querySelectorAll('*'))) {
          all.push(el);
          if (el.shadowRoot) walk(el.shadowRoot);
        }
      };
      walk(document.querySelector('agent-chat')!.shadowRoot!);
      return {
        xss: window.__xss,
        handlers: all.flatMap((el) =>
          el
            .getAttributeNames()
            .filter((n) => n.toLowerCase().startsWith('on'))
            .map((n) => `${el.tagName}[${n}]`),
        ),
        dangerous: all.filter((el) =>
          ['SCRIPT', 'IMG', 'IFRAME', 'SVG', 'OBJECT', 'EMBED'].includes(el.tagName.toUpperCase()),
        ).length,
        links: all
          .filter((el) => el.tagName === 'A')
          .map((a) => ({ href: a.getAttribute('href'), rel: a.getAttribute('rel') })),
      };
    });
    expect(report.xss).toBeUndefined();
    expect(report.handlers).toEqual([]);
    expect(report.dangerous).toBe(0);
    expect(report.links).toEqual([
      { href: 'https://example.com/a?b=1', rel: 'noopener noreferrer' },
      { href: 'https://example.org/', rel: 'noopener noreferrer' },
    ]);
    expect(await chat.locator('[part~="user-message"]').textContent()).toBe(
      '<img src=x onerror="window.__xss=9">',
    );
    expect(await chat.locator('[data-message-id="a1"] code').first().textContent()).toBe('<b onmouseover=x>');
  });

  it('renders the common Markdown subset as DOM', async () => {
    const s = await serve('t-md');
    const page = await mount(s);
    await page.waitForFunction(() => typeof window.__renderMarkdown === 'function');
    const html = await page.evaluate(() => {
      const render = (src: string): string => {
        const div = document.createElement('div');
        div.append(window.__renderMarkdown(src));
        return div.innerHTML;
      };
      return [
        render('# Title\n\nSome *em*, __strong__, ~~gone~~ and `a <b>`.\nNext line with snake_case_name.'),
        render('3. three\n4. four\n   - nested *x*\n\n> quoted **text**\n\n---'),
        render('```ts\nconst a = "<script>";\n```\nafter'),
        render('streaming ```py\n```py\nprint(1)'),
        render('see https://example.com/x?y=1, or [mail](mailto:a@b.c) or [rel](/relative)'),
      ];
    });
    expect(html).toEqual([
      '<h3>Title</h3><p>Some <em>em</em>, <strong>strong</strong>, <s>gone</s> and <code>a &lt;b&gt;</code>.<br>Next line with snake_case_name.</p>',
      '<ol start="3"><li>three</li><li><p>four</p><ul><li>nested <em>x</em></li></ul></li></ol><blockquote><p>quoted <strong>text</strong></p></blockquote><hr>',
      '<pre><code data-lang="ts">const a = "&lt;script&gt;";</code></pre><p>after</p>',
      '<p>streaming ```py</p><pre><code data-lang="py">print(1)</code></pre>',
      '<p>see <a href="https://example.com/x?y=1" target="_blank" rel="noopener noreferrer">https://example.com/x?y=1</a>, or <a href="mailto:a@b.c" target="_blank" rel="noopener noreferrer">mail</a> or rel</p>',
    ]);
  });

  it('works keyboard-only: focus the input, type, Shift+Enter, Enter to send, Tab to Stop', async () => {
    const s = await serve('t-keys', {
      onSend(server, msg, ws) {
        startRun(server, ws, msg, 'r1', 'u1');
        server.append({ type: 'TEXT_MESSAGE_CHUNK', runId: 'r1', messageId: 'a1', delta: 'Thinking' });
      },
      onCancel(server, msg) {
        server.append({
          type: 'RUN_ERROR',
          runId: msg.runId,
          message: 'Cancelled by the user',
          code: 'cancelled',
        });
      },
    });
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    const focused = (): Promise<string> =>
      page.evaluate(() => {
        let a: Element | null = document.activeElement;
        while (a?.shadowRoot?.activeElement) a = a.shadowRoot.activeElement;
        return a
          ? `${a.tagName.toLowerCase()}${a.getAttribute('part') ? `[${a.getAttribute('part')}]` : ''}`
          : '';
      });
    for (let i = 0; i < 5 && (await focused()) !== 'textarea[input]'; i++) await page.keyboard.press('Tab');
    expect(await focused()).toBe('textarea[input]');
    await page.keyboard.type('hello');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('world');
    await page.keyboard.press('Enter');
    await s.until(() => s.received.some((m) => m.type === 'send'), 'send');
    expect(s.received.find((m) => m.type === 'send')).toMatchObject({ text: 'hello\nworld' });
    expect(await chat.locator('textarea').inputValue()).toBe('');
    await expect.poll(() => assistantText(page, 'a1')).toBe('Thinking');

    // Send is disabled during the run, so the next Tab stop is Stop, with a visible focus ring.
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('button[stop-button]');
    const outline = await chat
      .locator('[part~="stop-button"]')
      .evaluate((b) => getComputedStyle(b).outlineStyle);
    expect(outline).not.toBe('none');
    await page.keyboard.press('Enter');
    await s.until(() => s.received.some((m) => m.type === 'cancel'), 'cancel');
    expect(s.received.find((m) => m.type === 'cancel')).toEqual({ type: 'cancel', runId: 'r1' });
    await expect.poll(() => chat.locator('[part~="run-error"]').textContent()).toContain('Stopped.');
    expect(await chat.locator('[part~="stop-button"]').count()).toBe(0);
    expect(await chat.locator('[part~="send-button"]').isDisabled()).toBe(true); // empty input
    await chat.locator('textarea').focus();
    await page.keyboard.type('again');
    expect(await chat.locator('[part~="send-button"]').isDisabled()).toBe(false);
    expect(await chat.locator('[part~="messages"]').getAttribute('aria-label')).toBe('Conversation');
  });

  it('marks refused or unconfirmed sends as failed and retries them with the same clientMessageId', async () => {
    let sends = 0;
    const s = await serve('t-retry-send', {
      onSend(server, msg, ws) {
        sends++;
        if (sends === 1)
          ws.send(
            JSON.stringify({
              type: 'error',
              code: 'rate_limited',
              message: 'slow down',
              ref: msg.clientMessageId,
            }),
          );
        else if (sends === 2)
          server.dropAll(); // lost before the ack
        else {
          startRun(server, ws, msg, 'r1', 'u1');
          server.append({ type: 'RUN_FINISHED', runId: 'r1' });
        }
      },
    });
    const page = await mount(s);
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    await page.evaluate(() => document.querySelector('agent-chat')!.send('hello'));
    await expect
      .poll(() => chat.locator('[part~="send-error"]').textContent())
      .toContain('You are sending messages too fast.');
    expect(await page.evaluate(() => window.__errors)).toEqual([
      { code: 'rate_limited', message: 'slow down', ref: expect.any(String), fatal: false },
    ]);
    await chat.locator('[part~="send-error"] [part~="retry-button"]').click();
    await expect
      .poll(() => chat.locator('[part~="send-error"]').textContent())
      .toContain('The connection dropped before it was confirmed.');
    await expect.poll(() => chat.getAttribute('connection')).toBe('connected');
    await chat.locator('[part~="send-error"] [part~="retry-button"]').click();
    await expect.poll(() => page.evaluate(() => window.__finished.length)).toBe(1);
    const ids = s.received
      .filter((m) => m.type === 'send')
      .map((m) => (m as { clientMessageId: string }).clientMessageId);
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(1);
    // The DOM catches up on the next animation frame after the event.
    await expect.poll(() => chat.locator('[part~="user-message"]').getAttribute('data-status')).toBe('sent');
    expect(await chat.locator('[part~="user-message"]').count()).toBe(1);
    expect(await chat.locator('[part~="send-error"]').count()).toBe(0);
  });

  it('bounds the unprocessed-frame backlog: overflow reconnects and resumes without losing a chunk', async () => {
    const N = 3_000;
    const s = await serve('t-backlog', {
      onSend: streamOnSend(N, 'c'),
    });
    const page = await mount(s, {}, 5);
    await page.evaluate(() => {
      const el = document.querySelector('agent-chat')!;
      el.limits = { maxQueuedFrames: 200 };
      el.reconnectOptions = { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 50 };
    });
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('connected');
    await page.evaluate(() => document.querySelector('agent-chat')!.send('go'));
    await expect.poll(() => page.evaluate(() => window.__finished.length), { timeout: 20_000 }).toBe(1);
    expect(await page.evaluate(() => window.__errors.map((e) => e.code))).toContain('frame_backlog');
    expect(s.received.filter((m) => m.type === 'subscribe').length).toBeGreaterThan(2);
    expect(await page.evaluate(() => window.__events)).toEqual(s.log.map((e) => e.seq));
    await expect.poll(() => assistantText(page, 'a1')).toBe(s.textOf('a1').trim());
  });

  it('uses a page-supplied transport instead of a WebSocket', async () => {
    const s = await serve('t-unused');
    const page = await mount(s);
    const text = await page.evaluate(async () => {
      const el = document.createElement('agent-chat');
      const sent: string[] = [];
      el.transport = {
        connect(listener) {
          setTimeout(() => listener.open(), 0);
          return {
            send(m) {
              sent.push(m.type);
              if (m.type !== 'subscribe') return;
              const base = { threadId: 't-custom', runId: 'r1', ts: Date.now() };
              const frames = [
                { ...base, seq: 1, type: 'RUN_STARTED' },
                { ...base, seq: 2, type: 'TEXT_MESSAGE_CHUNK', messageId: 'a1', delta: 'via SSE' },
                { ...base, seq: 3, type: 'RUN_FINISHED' },
              ];
              setTimeout(
                () => frames.forEach((event) => listener.message(JSON.stringify({ type: 'event', event }))),
                0,
              );
            },
            close() {},
          };
        },
      };
      el.setAttribute('thread-id', 't-custom');
      const done = new Promise((r) => el.addEventListener('agent-chat:run-finished', r));
      document.body.append(el);
      await done;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return { sent, text: el.shadowRoot!.querySelector('[data-message-id="a1"] > div')!.textContent };
    });
    expect(text).toEqual({ sent: ['subscribe'], text: 'via SSE' });
  });

  it('streams 10,000 chunks to completion without losing a character', async () => {
    const N = 10_000;
    const s = await serve('t-stress', {
      onSend: streamOnSend(N, 'w'),
    });
    const page = await mount(s);
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('connected');
    const started = Date.now();
    await page.evaluate(() => {
      window.__longTasks.length = 0; // count only the stream, not page start-up
      document.querySelector('agent-chat')!.send('go');
    });
    await expect.poll(() => page.evaluate(() => window.__finished.length), { timeout: 20_000 }).toBe(1);
    const expected = s.textOf('a1');
    await expect.poll(() => assistantText(page, 'a1'), { timeout: 10_000 }).toBe(expected.trim());
    const elapsed = Date.now() - started;
    const supported = await page.evaluate(() => PerformanceObserver.supportedEntryTypes.includes('longtask'));
    expect(supported).toBe(true); // otherwise the figure below would be meaningless
    const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
    console.log(
      `[figure] 10,000 chunks rendered in ${elapsed} ms; longest main-thread task ${Math.round(longest)} ms (target < 50 ms)`,
    );
    expect(expected.split(' ').filter(Boolean).length).toBe(N);
    expect(await page.evaluate(() => window.__events.length)).toBe(N + 2);
  });
});
