import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { browserSuite, launchChromium } from '../../../packages/web-component/test/helpers/browser.js';
import { EXAMPLE_DIR, ensureBuilt, REPO_ROOT, startUserHost, type UserHost } from './user-host.js';

// The chat page's layout in a real Chromium against the host started as a user starts it (node dist/main.js,
// the agent process, SQLite, the offline demo model): the thread sidebar, switching threads while a run streams,
// titles from the first message, rename and delete (mouse and keyboard only), nothing overflowing at 320 px with
// a 200-character title, the not-found page and the return to the page you were on after signing in again.
const WAIT = { timeout: 15_000, interval: 50 };
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'reference-host', 'layout');
/** Set THREADLINE_UPDATE_DOCS=1 to refresh the README's screenshot from this run. */
const DOCS_SHOT = join(EXAMPLE_DIR, 'docs', 'layout.png');
const DESKTOP = { width: 1280, height: 800 };
const MOBILE = { width: 390, height: 844 };
const LONG_TITLE = `${'A very long thread title that keeps going '.repeat(5)}`.slice(0, 199) + '!';

browserSuite('reference host layout')('reference host layout in a real browser', () => {
  let host: UserHost;
  let browser: Browser;
  let desktop: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    ensureBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    // Slow enough that a run is still streaming while the user switches threads.
    host = await startUserHost({ DEMO_MODEL_DELAY_MS: '40' });
    browser = await launchChromium();
    desktop = await browser.newContext({ viewport: DESKTOP });
    page = await desktop.newPage();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    expect(await host?.stop()).toBe(0);
  });

  const chat = (p: Page) => p.locator('agent-chat');
  const assistant = (p: Page) => chat(p).locator('[part~="assistant-message"]');
  const sidebarLinks = (p: Page) => p.locator('#threads .thread-link');
  async function connected(p: Page) {
    await expect
      .poll(() => chat(p).locator('[part~="status"]').getAttribute('data-state'), WAIT)
      .toBe('connected');
  }
  async function send(p: Page, text: string) {
    await chat(p).locator('[part~="input"]').fill(text);
    await chat(p).locator('[part~="send-button"]').click();
  }
  /** Starts a thread with the sidebar's New thread button and waits for its page. */
  async function newThread(p: Page) {
    const before = p.url();
    await p.click('#sidebar-new');
    await p.waitForURL((u) => u.href !== before && /\/threads\/thr_/.test(u.href));
    await connected(p);
  }
  /** Opens a thread by clicking its link in the sidebar and waits for its page. */
  async function openFromSidebar(p: Page, text: string) {
    const before = p.url();
    await sidebarLinks(p).filter({ hasText: text }).click();
    await p.waitForURL((u) => u.href !== before && /\/threads\/thr_/.test(u.href));
  }
  const threadIdOf = (p: Page) => new URL(p.url()).pathname.split('/').pop()!;
  /** The rows the host's SQLite store holds for a thread, read from its file. */
  function storeRows(threadId: string): { threads: number; events: number; runs: number } {
    const db = new DatabaseSync(join(host.dataDir, 'threadline.db'), { readOnly: true });
    try {
      const n = (sql: string) => (db.prepare(sql).get(threadId) as { n: number }).n;
      return {
        threads: n('SELECT count(*) AS n FROM threads WHERE thread_id = ?'),
        // Two queries: on Node 22.18 node:sqlite fails to bind ?1 used twice.
        events:
          n('SELECT count(*) AS n FROM events WHERE thread_id = ?') +
          n('SELECT count(*) AS n FROM event_tail WHERE thread_id = ?'),
        runs: n('SELECT count(*) AS n FROM runs WHERE thread_id = ?'),
      };
    } finally {
      db.close();
    }
  }
  /** Nothing wider than the viewport, and the given element fully inside it. */
  async function fits(p: Page, selector: string) {
    return p.evaluate((sel) => {
      const el = document.querySelector(sel)!.getBoundingClientRect();
      return {
        scrollX: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        bodyScrollX: document.body.scrollWidth - document.body.clientWidth,
        inside: el.left >= 0 && el.right <= innerWidth && el.top >= 0 && el.bottom <= innerHeight,
      };
    }, selector);
  }
  async function inputBox(p: Page) {
    return p.evaluate(() => {
      const r = document
        .querySelector('agent-chat')!
        .shadowRoot!.querySelector('textarea')!
        .getBoundingClientRect();
      return { bottom: r.bottom, right: r.right, viewportH: innerHeight, viewportW: innerWidth };
    });
  }

  it('desktop: a new thread is titled from its first message, shown in the sidebar and the header', async () => {
    await page.goto(host.url);
    await page.fill('#username', 'lena');
    await page.fill('#password', 'correct horse battery');
    await page.click('#signup');
    await page.waitForURL(`${host.url}/threads`);
    await page.click('#new-thread button'); // no title
    await page.waitForURL(/\/threads\/thr_/);
    await connected(page);
    expect(await page.locator('#thread-title').textContent()).toBe('New thread');
    await send(page, 'Plan a relaxed weekend in Porto with good food and a river walk on Sunday');
    await expect
      .poll(() => page.locator('#thread-title').textContent(), WAIT)
      .toBe('Plan a relaxed weekend in Porto with good food and a river…');
    await expect
      .poll(() => page.locator('#threads [aria-current] .thread-link').textContent(), WAIT)
      .toBe('Plan a relaxed weekend in Porto with good food and a river…');
    await expect.poll(() => assistant(page).first().textContent(), WAIT).toContain('river walk on Sunday');
  });

  it('desktop: switches threads in the sidebar while a run streams in another, and the run completes', async () => {
    const first = page.url();
    await page.click('#sidebar-new');
    await page.waitForURL((u) => u.href !== first && /\/threads\/thr_/.test(u.href));
    const second = page.url();
    await connected(page);
    // The demo model repeats up to 200 characters of the message, 4 characters per 40 ms.
    const long = `Tell me a long story ${'about rivers and bridges '.repeat(6)}END-OF-MESSAGE`;
    await send(page, long);
    await assistant(page).first().waitFor();
    // Mid-stream: the answer is not complete yet when we leave.
    expect(await assistant(page).first().textContent()).not.toContain('call me Ada');
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-streaming.png') });
    await sidebarLinks(page).filter({ hasText: 'Plan a relaxed weekend' }).click();
    await page.waitForURL(first);
    await connected(page);
    await expect.poll(() => assistant(page).count(), WAIT).toBe(1);
    expect(await page.locator('#threads [aria-current] .thread-link').textContent()).toContain(
      'Plan a relaxed weekend',
    );
    await sidebarLinks(page).filter({ hasText: 'Tell me a long story' }).click();
    await page.waitForURL(second);
    // The demo answer ends with "…with a tool.": the run finished while we were away.
    await expect.poll(() => assistant(page).first().textContent(), WAIT).toContain('with a tool.');
    expect(await assistant(page).first().textContent()).toContain('END-OF-MESSAGE');
    await chat(page).locator('[part~="stop-button"]').waitFor({ state: 'hidden' });
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-layout.png') });
    if (process.env.THREADLINE_UPDATE_DOCS === '1') {
      mkdirSync(join(EXAMPLE_DIR, 'docs'), { recursive: true });
      copyFileSync(join(ARTIFACTS, 'desktop-layout.png'), DOCS_SHOT);
    }
  });

  it('keyboard only: renames and deletes a thread from the sidebar, with a confirm', async () => {
    // A third thread to delete, then back on the first one.
    await newThread(page);
    await send(page, 'Throwaway question');
    // The run has ended (a finished answer gets its Regenerate button), so the thread can be deleted.
    await expect.poll(() => chat(page).locator('[part~="regenerate-button"]').count(), WAIT).toBe(1);
    const doomed = threadIdOf(page);
    await openFromSidebar(page, 'Plan a relaxed weekend');
    await connected(page);
    const active = threadIdOf(page);

    // Tab from the New thread button to the active thread's Rename button.
    await page.locator('#sidebar-new').focus();
    const focusedLabel = () => page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? '');
    for (let i = 0; i < 20 && !(await focusedLabel()).startsWith('Rename “Plan a relaxed'); i++)
      await page.keyboard.press('Tab');
    expect(await focusedLabel()).toMatch(/^Rename “Plan a relaxed/);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.evaluate(() => document.activeElement?.tagName), WAIT).toBe('INPUT');
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.type('Porto weekend');
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.locator('#threads [aria-current] .thread-link').textContent(), WAIT)
      .toBe('Porto weekend');
    expect(await page.locator('#thread-title').textContent()).toBe('Porto weekend');
    expect(await focusedLabel()).toBe('Rename “Porto weekend”');
    // Escape leaves a rename without saving.
    await page.keyboard.press('Enter');
    await page.keyboard.type('not this');
    await page.keyboard.press('Escape');
    expect(await page.locator('#threads [aria-current] .thread-link').textContent()).toBe('Porto weekend');

    // Delete the throwaway thread: Tab to its Delete button; the confirm opens on Cancel.
    for (let i = 0; i < 30 && !(await focusedLabel()).startsWith('Delete “Throwaway'); i++)
      await page.keyboard.press('Tab');
    expect(await focusedLabel()).toBe('Delete “Throwaway question”');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#confirm-delete').getAttribute('open'), WAIT).toBe('');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel');
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-confirm-delete.png') });
    await page.keyboard.press('Escape'); // nothing deleted
    expect(storeRows(doomed).threads).toBe(1);
    expect(await focusedLabel()).toBe('Delete “Throwaway question”');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#confirm-delete').getAttribute('open'), WAIT).toBe('');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Delete');
    await page.keyboard.press('Enter');
    await expect.poll(() => sidebarLinks(page).filter({ hasText: 'Throwaway' }).count(), WAIT).toBe(0);
    expect(storeRows(doomed)).toEqual({ threads: 0, events: 0, runs: 0 });
    expect(threadIdOf(page)).toBe(active);
  });

  it('a page open on a thread deleted elsewhere says so', async () => {
    await newThread(page);
    await send(page, 'Soon to be deleted');
    await expect.poll(() => chat(page).locator('[part~="regenerate-button"]').count(), WAIT).toBe(1);
    const doomed = threadIdOf(page);
    const other = await desktop.newPage();
    await other.goto(`${host.url}/threads`);
    // Rename and delete show on hover (or keyboard focus).
    await other.locator(`#threads [data-thread-id="${doomed}"]`).hover();
    await other.locator(`#threads [data-thread-id="${doomed}"] .delete`).click();
    await other.locator('#confirm-delete button[value="delete"]').click();
    await expect.poll(() => other.locator(`#threads [data-thread-id="${doomed}"]`).count(), WAIT).toBe(0);
    await expect.poll(() => page.locator('#thread-gone').isVisible(), WAIT).toBe(true);
    expect(await page.locator('#thread-gone').textContent()).toContain('This thread was deleted.');
    await expect.poll(() => page.locator(`#threads [data-thread-id="${doomed}"]`).count(), WAIT).toBe(0);
    expect(storeRows(doomed)).toEqual({ threads: 0, events: 0, runs: 0 });
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-thread-deleted.png') });
    await other.close();
    await page.click('#thread-gone a');
    await page.waitForURL(`${host.url}/threads`);
  });

  it('deletes when the confirm is reopened before the cancelled one has closed (no stale close event)', async () => {
    // Cancel, then open the confirm again in the same task: the first close event arrives while the dialog is open
    // again. It must not be taken for the answer to the second opening, whose Delete must still delete.
    await newThread(page);
    const doomed = threadIdOf(page);
    await page.goto(`${host.url}/threads`); // the thread list has the same sidebar
    const row = page.locator(`#threads [data-thread-id="${doomed}"]`);
    await expect.poll(() => row.count(), WAIT).toBe(1);
    await row.hover();
    await page.evaluate((id) => {
      const del = document.querySelector<HTMLButtonElement>(`#threads [data-thread-id="${id}"] .delete`)!;
      const dialog = document.getElementById('confirm-delete') as HTMLDialogElement;
      del.click();
      dialog.close('');
      del.click();
    }, doomed);
    await page.locator('#confirm-delete button[value="delete"]').click();
    await expect.poll(() => row.count(), WAIT).toBe(0);
    expect(storeRows(doomed)).toEqual({ threads: 0, events: 0, runs: 0 });
  });

  it('a 200-character title: no sideways scroll at 320 px, Sign out and the message box in view; desktop too', async () => {
    await openFromSidebar(page, 'Porto weekend');
    const id = threadIdOf(page);
    const r = await page.evaluate(
      async ([threadId, title]) =>
        (
          await fetch(`/api/threads/${threadId}`, {
            method: 'PATCH',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ title }),
          })
        ).status,
      [id, LONG_TITLE],
    );
    expect(r).toBe(200);
    expect(LONG_TITLE).toHaveLength(200);
    for (const [name, size] of [
      ['desktop', DESKTOP],
      ['mobile', MOBILE],
      ['320', { width: 320, height: 640 }],
    ] as const) {
      await page.setViewportSize(size);
      await page.goto(`${host.url}/threads/${id}`);
      await connected(page);
      const f = await fits(page, '#logout');
      expect(f, name).toEqual({ scrollX: 0, bodyScrollX: 0, inside: true });
      const box = await inputBox(page);
      expect(box.bottom, name).toBeLessThanOrEqual(box.viewportH);
      expect(box.right, name).toBeLessThanOrEqual(box.viewportW);
      await page.screenshot({ path: join(ARTIFACTS, `long-title-${name}.png`) });
      // The thread list page too.
      await page.goto(`${host.url}/threads`);
      await page.locator('#threads .thread-link').first().waitFor();
      expect(await fits(page, '#logout'), `${name} list`).toEqual({
        scrollX: 0,
        bodyScrollX: 0,
        inside: true,
      });
    }
    await page.setViewportSize(DESKTOP);
  });

  it('mobile: the sidebar folds into a menu that opens, switches threads and closes with Escape', async () => {
    const phone = await browser.newContext({ viewport: MOBILE, storageState: await desktop.storageState() });
    const p = await phone.newPage();
    await p.goto(`${host.url}/threads`);
    await openFromSidebar(p, 'Tell me a long story');
    await connected(p);
    expect(await p.locator('#sidebar').isVisible()).toBe(false);
    const menu = p.locator('#menu');
    // A run streams here while the user switches to another thread through the menu and back.
    const streaming = p.url();
    await send(p, `Another long one ${'with rivers and bridges '.repeat(6)}PHONE-END`);
    await expect.poll(() => assistant(p).count(), WAIT).toBe(2);
    expect(await assistant(p).nth(1).textContent()).not.toContain('with a tool.');
    await menu.click();
    await openFromSidebar(p, 'A very long thread title');
    await connected(p);
    await expect.poll(() => assistant(p).count(), WAIT).toBe(1);
    await menu.click();
    await openFromSidebar(p, 'Tell me a long story');
    expect(p.url()).toBe(streaming);
    await expect.poll(() => assistant(p).nth(1).textContent(), WAIT).toContain('with a tool.');
    expect(await assistant(p).nth(1).textContent()).toContain('PHONE-END');
    await connected(p);
    expect(await menu.isVisible()).toBe(true);
    expect(await menu.getAttribute('aria-expanded')).toBe('false');
    await menu.click();
    await expect.poll(() => p.locator('#sidebar').isVisible(), WAIT).toBe(true);
    expect(await menu.getAttribute('aria-expanded')).toBe('true');
    // Focus moved into the list, on the open thread.
    expect(await p.evaluate(() => document.activeElement?.getAttribute('aria-current'))).toBe('page');
    // The drawer slides in (0.15 s): once it has stopped, it lies fully on screen from the left edge.
    await p.waitForFunction(() => document.getAnimations().length === 0);
    expect((await p.locator('#sidebar').boundingBox())?.x).toBe(0);
    await p.screenshot({ path: join(ARTIFACTS, 'mobile-menu-open.png') });
    await p.keyboard.press('Escape');
    await expect.poll(() => p.locator('#sidebar').isVisible(), WAIT).toBe(false);
    expect(await p.evaluate(() => document.activeElement?.id)).toBe('menu');
    // Keyboard: open the menu with Enter and follow a link.
    await p.keyboard.press('Enter');
    await expect.poll(() => p.locator('#sidebar').isVisible(), WAIT).toBe(true);
    const before = p.url();
    await sidebarLinks(p).filter({ hasText: 'A very long thread title' }).click();
    await p.waitForURL((u) => u.href !== before);
    await connected(p);
    expect(await p.locator('#sidebar').isVisible()).toBe(false);
    expect(await fits(p, '#logout')).toEqual({ scrollX: 0, bodyScrollX: 0, inside: true });
    await p.screenshot({ path: join(ARTIFACTS, 'mobile-chat.png') });
    await phone.close();
  });

  it('dark mode: the same layout in dark colours', async () => {
    const dark = await browser.newContext({
      viewport: DESKTOP,
      colorScheme: 'dark',
      storageState: await desktop.storageState(),
    });
    const p = await dark.newPage();
    await p.goto(`${host.url}/threads`);
    await openFromSidebar(p, 'Tell me a long story');
    await connected(p);
    await expect.poll(() => assistant(p).count(), WAIT).toBe(2);
    const bg = await p.evaluate(() => getComputedStyle(document.querySelector('#sidebar')!).backgroundColor);
    // A dark sidebar: every channel of its background is low.
    const channels = bg
      .match(/\d+(\.\d+)?/g)!
      .slice(0, 3)
      .map(Number);
    for (const c of channels) expect(c).toBeLessThan(80);
    await p.screenshot({ path: join(ARTIFACTS, 'desktop-dark.png') });
    await dark.close();
  });

  it('a missing thread or an unknown page shows a not-found page with a way back', async () => {
    const res = await page.goto(`${host.url}/threads/thr_doesnotexist000000`);
    expect(res?.status()).toBe(404);
    expect(await page.locator('h1').textContent()).toBe('Nothing here');
    await page.screenshot({ path: join(ARTIFACTS, 'not-found.png') });
    await page.click('#back');
    await page.waitForURL(`${host.url}/threads`);
    const unknown = await page.goto(`${host.url}/no/such/page`);
    expect(unknown?.status()).toBe(404);
    expect(await page.locator('#back').getAttribute('href')).toBe('/threads');
    // Not for API calls: they keep their JSON error.
    const api = await page.evaluate(async () => (await fetch('/api/nope')).headers.get('content-type'));
    expect(api).toContain('application/json');
  });

  it('after "You were signed out" and signing in again, returns to the thread you were on', async () => {
    await page.goto(`${host.url}/threads`);
    await openFromSidebar(page, 'Tell me a long story');
    const threadUrl = page.url();
    await connected(page);
    const other = await desktop.newPage();
    await other.goto(`${host.url}/threads`);
    await other.click('#logout');
    await other.waitForURL(`${host.url}/`);
    await other.close();
    await page.waitForURL(/\/\?signed-out&next=/, { timeout: WAIT.timeout });
    expect(await page.locator('#auth-error').textContent()).toContain('You were signed out');
    await page.fill('#username', 'lena');
    await page.fill('#password', 'correct horse battery');
    await page.click('#login');
    await page.waitForURL(threadUrl);
    await connected(page);
    // Opening a thread's address while signed out comes back to it too.
    await page.click('#logout');
    await page.waitForURL(`${host.url}/`);
    await page.goto(threadUrl);
    await page.waitForURL(/\/\?next=/);
    await page.fill('#username', 'lena');
    await page.fill('#password', 'correct horse battery');
    await page.click('#login');
    await page.waitForURL(threadUrl);
  });

  it('refuses to return to another site after sign-in (open redirect)', async () => {
    for (const next of [
      '//evil.example/x',
      'https://evil.example/',
      '/\\evil.example',
      '/\t/evil.example',
      'javascript:alert(1)',
    ]) {
      await page.click('#logout');
      await page.waitForURL(`${host.url}/`);
      await page.goto(`${host.url}/?next=${encodeURIComponent(next)}`);
      await page.fill('#username', 'lena');
      await page.fill('#password', 'correct horse battery');
      await page.click('#login');
      await page.waitForURL(`${host.url}/threads`);
      // Signed in, the server's own redirect from the sign-in page refuses it too.
      const res = await page.request.get(`${host.url}/?next=${encodeURIComponent(next)}`, {
        maxRedirects: 0,
      });
      expect(res.status(), next).toBe(303);
      expect(res.headers().location, next).toBe('/threads');
    }
    const ok = await page.request.get(`${host.url}/?next=${encodeURIComponent('/threads/thr_x?a=1')}`, {
      maxRedirects: 0,
    });
    expect(ok.headers().location).toBe('/threads/thr_x?a=1');
  });
});
