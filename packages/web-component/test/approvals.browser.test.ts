import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type { WebSocket } from 'ws';
import { expect, it } from 'vitest';
import { browserSuite } from './helpers/browser.js';
import { scriptedBrowser } from './helpers/scripted-browser.js';
import type { ScriptedServer, Script } from './helpers/scripted-server.js';

const suite = browserSuite('<agent-chat> tool approvals in Chromium');
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/web-component/approvals/', import.meta.url));

suite('<agent-chat> tool approvals in Chromium', () => {
  const env = scriptedBrowser();

  /**
   * A relay stand-in: `send` starts a run that asks to approve `profile.clear`; `approve` stores the decision
   * (the log carries it to every tab), then the run goes on and finishes.
   */
  async function serve(threadId: string, refuseFirstDecisionWith?: string): Promise<ScriptedServer> {
    let n = 0;
    let refuse = refuseFirstDecisionWith;
    const script: Script = {
      onSend(server, msg, ws: WebSocket) {
        const runId = `r${++n}`;
        ws.send(JSON.stringify({ type: 'ack', clientMessageId: msg.clientMessageId, runId }));
        server.append(
          {
            type: 'USER_MESSAGE',
            runId,
            messageId: `u${n}`,
            clientMessageId: msg.clientMessageId,
            userId: 'u-1',
            text: msg.text,
          },
          { type: 'RUN_STARTED', runId },
          { type: 'TOOL_CALL_STARTED', runId, toolCallId: `call${n}`, toolName: 'profile.clear' },
          {
            type: 'TOOL_APPROVAL_REQUESTED',
            runId,
            toolCallId: `call${n}`,
            toolName: 'profile.clear',
            args: '{"keep":["theme"]}',
            expiresAt: new Date(Date.now() + 60_000).toISOString(),
          },
        );
      },
      onApprove(server, msg, ws: WebSocket) {
        if (refuse) {
          // As the relay refuses a decision it does not store: an error frame naming the run.
          ws.send(JSON.stringify({ type: 'error', code: refuse, message: 'refused', ref: msg.runId }));
          refuse = undefined;
          return;
        }
        server.append(
          {
            type: 'TOOL_APPROVAL_RESOLVED',
            runId: msg.runId,
            toolCallId: msg.toolCallId,
            approved: msg.approved,
            decidedBy: 'u-1',
          },
          {
            type: 'TOOL_CALL_RESULT',
            runId: msg.runId,
            toolCallId: msg.toolCallId,
            toolName: 'profile.clear',
            ok: msg.approved,
          },
          {
            type: 'TEXT_MESSAGE_CHUNK',
            runId: msg.runId,
            messageId: `a-${msg.runId}`,
            delta: msg.approved ? 'Cleared.' : 'Kept.',
          },
          { type: 'RUN_FINISHED', runId: msg.runId },
        );
      },
    };
    return env.serve(threadId, script);
  }

  async function open(server: ScriptedServer): Promise<Page> {
    const page = await env.open({ viewport: { width: 640, height: 720 } });
    await page.evaluate(
      ({ url, threadId }) => {
        const el = document.createElement('agent-chat');
        el.setAttribute('endpoint', url);
        el.setAttribute('thread-id', threadId);
        document.body.append(el);
      },
      { url: server.url, threadId: server.threadId },
    );
    await expect.poll(() => page.locator('agent-chat').getAttribute('connection')).toBe('connected');
    return page;
  }

  const send = async (page: Page, text: string) => {
    const chat = page.locator('agent-chat');
    await chat.locator('textarea').fill(text);
    await chat.locator('textarea').press('Enter');
  };
  const live = (page: Page) => page.locator('agent-chat').locator('[role="status"]').textContent();

  it('shows the pending call with its arguments; Approve by mouse sends the decision; a second tab follows at once', async () => {
    const s = await serve('t-approve');
    const page = await open(s);
    const chat = page.locator('agent-chat');
    await send(page, 'forget me');
    const tool = chat.locator('[data-tool-call-id="call1"]');
    await expect.poll(() => tool.getAttribute('data-approval')).toBe('pending');
    expect(await tool.textContent()).toContain('Profile clear: needs your approval');
    expect(await tool.locator('[part="approval-args"]').textContent()).toBe(
      '{\n  "keep": [\n    "theme"\n  ]\n}',
    );
    await expect.poll(() => live(page)).toContain('needs your approval');

    // A second tab (a reload is the same: the log replays) shows the same pending call.
    const second = await open(s);
    const tool2 = second.locator('agent-chat').locator('[data-tool-call-id="call1"]');
    await expect.poll(() => tool2.locator('[part="approve-button"]').count()).toBe(1);

    await tool.locator('[part="approve-button"]').click();
    await s.until(() => s.received.some((m) => m.type === 'approve'), 'approve');
    expect(s.received.find((m) => m.type === 'approve')).toEqual({
      type: 'approve',
      threadId: 't-approve',
      runId: 'r1',
      toolCallId: 'call1',
      approved: true,
    });
    await expect.poll(() => tool.getAttribute('data-status')).toBe('done');
    expect(await tool.locator('button').count()).toBe(0);
    // The other tab got the decision from the log at once: no buttons left there either.
    await expect.poll(() => tool2.getAttribute('data-status')).toBe('done');
    expect(await tool2.locator('button').count()).toBe(0);
    expect(await tool2.getAttribute('data-approval')).toBe('approved');
  });

  it('works by keyboard only: Tab to Reject, Enter; the call shows as rejected and the answer streams', async () => {
    const s = await serve('t-reject');
    const page = await open(s);
    const chat = page.locator('agent-chat');
    await send(page, 'forget me');
    const tool = chat.locator('[data-tool-call-id="call1"]');
    await expect.poll(() => tool.getAttribute('data-approval')).toBe('pending');
    const focused = (): Promise<string> =>
      page.evaluate(() => {
        let a: Element | null = document.activeElement;
        while (a?.shadowRoot?.activeElement) a = a.shadowRoot.activeElement;
        return a?.getAttribute('part') ?? a?.tagName.toLowerCase() ?? '';
      });
    await chat.locator('textarea').focus();
    for (let i = 0; i < 12 && (await focused()) !== 'reject-button'; i++)
      await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('reject-button');
    await page.keyboard.press('Enter');
    await s.until(() => s.received.some((m) => m.type === 'approve'), 'approve');
    expect(s.received.find((m) => m.type === 'approve')).toMatchObject({
      approved: false,
      toolCallId: 'call1',
    });
    await expect.poll(() => tool.getAttribute('data-approval')).toBe('rejected');
    // The decision shows at once; "was rejected" once the call's result (ok: false) arrives after it.
    await expect.poll(() => tool.textContent()).toContain('was rejected');
    await expect.poll(() => chat.locator('[data-message-id="a-r1"]').textContent()).toContain('Kept.');
    await expect.poll(() => live(page)).toMatch(/Rejected\.|Assistant: Kept\./);
  });

  it('says under the call why a decision was refused, keeps Approve and Reject, and clears it once one is taken', async () => {
    const s = await serve('t-refused', 'too_many_runs');
    const page = await open(s);
    const chat = page.locator('agent-chat');
    await send(page, 'forget me');
    const tool = chat.locator('[data-tool-call-id="call1"]');
    await tool.locator('[part="approve-button"]').click();
    const why = tool.locator('[part="approval-error"]');
    await expect
      .poll(() => why.textContent())
      .toBe('You have too many answers in progress. Wait for one to end.');
    expect(await live(page)).toContain('too many answers in progress');
    expect(await tool.getAttribute('data-approval')).toBe('pending');
    expect(await tool.locator('[part="approve-button"]').count()).toBe(1);
    await mkdir(ARTIFACTS, { recursive: true });
    for (const [width, height, colorScheme] of [
      [640, 720, 'light'],
      [640, 720, 'dark'],
      [390, 844, 'light'],
      [390, 844, 'dark'],
    ] as const) {
      await page.setViewportSize({ width, height });
      // The test page gives the element 560 px; on a phone it takes the width of the screen, as a page would.
      if (width < 560) await page.addStyleTag({ content: 'agent-chat { width: auto }' });
      await page.emulateMedia({ colorScheme });
      await page.screenshot({ path: `${ARTIFACTS}approval-refused-${width}-${colorScheme}.png` });
    }
    await tool.locator('[part="approve-button"]').click();
    await expect.poll(() => tool.getAttribute('data-approval')).toBe('approved');
    await expect.poll(() => chat.locator('[data-message-id="a-r1"]').textContent()).toContain('Cleared.');
    expect(await why.count()).toBe(0);
  });
});
