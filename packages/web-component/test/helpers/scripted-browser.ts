import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { launchChromium } from './browser.js';
import { PageServer } from './page-server.js';
import { ScriptedServer, type Script } from './scripted-server.js';

/** What a browser suite against scripted relays gets from {@link scriptedBrowser}. */
export interface ScriptedBrowser {
  /** Chromium, launched before the suite. */
  readonly browser: Browser;
  /** The test page with the element's bundle, served before the suite. */
  readonly pages: PageServer;
  /** Starts a scripted relay for one thread; it closes after the test. */
  serve(threadId: string, script?: Script): Promise<ScriptedServer>;
  /**
   * A new tab on the test page, once `<agent-chat>` is defined, printing the page's uncaught errors. The test's
   * tabs share one context, made with `options` by the first call; it closes after the test.
   */
  open(options?: BrowserContextOptions): Promise<Page>;
}

/**
 * Sets up the calling suite (call it inside the suite's `describe`): Chromium and the test page before it, each
 * test's context and scripted relays closed after that test, and everything closed after the suite.
 */
export function scriptedBrowser(): ScriptedBrowser {
  let browser: Browser | undefined;
  let pages: PageServer | undefined;
  let context: BrowserContext | undefined;
  const servers: ScriptedServer[] = [];
  beforeAll(async () => {
    [pages, browser] = await Promise.all([PageServer.start(), launchChromium()]);
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await browser?.close();
    await pages?.close();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('scriptedBrowser(): used before the suite started');
    return value;
  };
  return {
    get browser() {
      return ready(browser);
    },
    get pages() {
      return ready(pages);
    },
    async serve(threadId, script = {}) {
      const s = await ScriptedServer.start(threadId, script);
      servers.push(s);
      return s;
    },
    async open(options) {
      context ??= await ready(browser).newContext(options);
      const page = await context.newPage();
      page.on('pageerror', (err) => console.error('page error:', err.message));
      await page.goto(ready(pages).url);
      await page.waitForFunction(() => customElements.get('agent-chat') !== undefined);
      return page;
    },
  };
}
