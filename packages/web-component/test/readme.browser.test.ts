// The README's quick start, run as written: the relay's quick start (a child process: SQLite, the offline demo
// model, WebSockets) and examples/quickstart.mjs serving examples/quickstart.html (the README's page, verbatim)
// with the built bundle. Chromium opens the page at http://localhost:3000/#<thread>, the origin the relay
// accepts; requests to that address are answered by the page server on its free port, and the page's endpoint
// port is the relay's free port (both 0 here, so parallel test files never collide).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, expect, it } from 'vitest';
import { browserSuite, launchChromium } from './helpers/browser.js';

const PAGE = new URL('../examples/quickstart.html', import.meta.url);
const PAGE_SERVER = fileURLToPath(new URL('../examples/quickstart.mjs', import.meta.url));
const RELAY = fileURLToPath(new URL('../../relay/examples/quickstart.mjs', import.meta.url));
const BUNDLE = new URL('../dist/agent-chat.js', import.meta.url);
const SECRET = 'a-secret-of-at-least-32-bytes-long';
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** Starts `script` with `env` and resolves the first match of `pattern` in its output. */
function start(script: string, env: NodeJS.ProcessEnv, pattern: RegExp, children: ChildProcess[]) {
  const proc = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: 'pipe' });
  children.push(proc);
  let out = '';
  return new Promise<RegExpExecArray>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = pattern.exec(out);
      if (m) resolve(m);
    });
    proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out}`)));
  });
}

browserSuite('README quick start')('README quick start', () => {
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'agent-chat-readme-'));
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the page and the commands the README gives', () => {
    expect(README).toContain(readFileSync(PAGE, 'utf8'));
    expect(README).toContain(`PORT=3100 TOOLS_SECRET=${SECRET} node packages/relay/examples/quickstart.mjs`);
    expect(README).toContain('node packages/web-component/examples/quickstart.mjs');
    expect(readFileSync(PAGE, 'utf8')).toContain('endpoint="ws://127.0.0.1:3100/ws"');
  });

  it('chats with the relay of the relay quick start: a message in, a streamed answer out', async () => {
    expect(existsSync(BUNDLE), 'dist/agent-chat.js: run `npm run build -w @threadline/web-component`').toBe(
      true,
    );
    const env = { PORT: '0', TOOLS_SECRET: SECRET, DB: join(dir, 'threadline.db'), OPENAI_API_KEY: '' };
    const [[, threadId, wsUrl], [, pageUrl]] = await Promise.all([
      start(RELAY, env, /thread (\S+): (ws:\/\/\S+)/, children),
      start(PAGE_SERVER, { PORT: '0' }, /on (http:\/\/localhost:\d+\/)/, children),
    ]);
    // The page comes from a route, which Chromium cannot place on loopback, so its Local Network Access check
    // would block the socket to 127.0.0.1 that a page really served from localhost may open.
    browser = await launchChromium(['--disable-features=LocalNetworkAccessChecks']);
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error('page error:', err.message));
    await page.route('http://localhost:3000/**', async (route) => {
      const response = await route.fetch({
        url: route.request().url().replace('http://localhost:3000/', pageUrl!),
      });
      const body = (await response.text()).replace('ws://127.0.0.1:3100/ws', wsUrl!);
      await route.fulfill({ response, body });
    });
    await page.goto(`http://localhost:3000/#${encodeURIComponent(threadId!)}`);
    const chat = page.locator('agent-chat');
    await expect.poll(() => chat.getAttribute('connection'), { timeout: 15_000 }).toBe('connected');
    await chat.locator('textarea').fill('hello');
    await chat.locator('textarea').press('Enter');
    const answer = chat.locator('[part~="assistant-message"]');
    await expect.poll(() => answer.getAttribute('aria-busy'), { timeout: 30_000 }).toBe('false');
    expect(await answer.textContent()).toContain('hello');
    expect(await chat.locator('[part~="user-message"]').allTextContents()).toEqual(['hello']);
  }, 60_000);
});
