import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { ToolRouter, TokenIssuer } from '../src/index.js';

const exampleUrl = new URL('../examples/quickstart.mjs', import.meta.url);
let server: Server | undefined;
afterAll(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

describe('README quickstart', () => {
  it('is shown verbatim in the README and is under 20 lines', () => {
    const source = readFileSync(exampleUrl, 'utf8').trim();
    expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(source);
    expect(source.split('\n').length).toBeLessThan(20);
  });

  it('runs: a scoped, validated tool over HTTP', async () => {
    process.env.TOOLS_SECRET = 'readme-example-secret-of-at-least-32-bytes';
    process.env.PORT = '0';
    const mod = (await import(exampleUrl.href)) as {
      server: Server;
      tokens: TokenIssuer;
      router: ToolRouter;
    };
    server = mod.server;
    if (!server.listening) await new Promise((r) => server?.once('listening', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
    const token = await mod.tokens.issue({
      userId: 'u1',
      threadId: 't1',
      runId: 'r1',
      tools: mod.router.toolNames,
    });
    const send = (threadId: string, input: unknown) =>
      fetch(`${base}/tools/notes.add`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ threadId, input }),
      });
    expect(await (await send('t1', { text: 'hello' })).json()).toEqual({ ok: true, data: { count: 1 } });
    expect((await send('t1', { text: '' })).status).toBe(400);
    expect((await send('t2', { text: 'x' })).status).toBe(403);
  });
});
