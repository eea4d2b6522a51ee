// The tool manifest is kept between runs and revalidated with the router's ETag: counted transfers over real
// HTTP, a changed tool set or redeployed tool definitions reach the next run, and the cache's bound is hit.
import { z } from 'zod';
import { ManifestCache, defineTool, type ToolDefinition } from '@threadline/tools-kit';
import type { RunRequest } from '@threadline/contracts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentRunnerOptions } from '../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';
import { collect, fakeOpenAIRunner, terminalOf } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

const tool = (name: string, description: string): ToolDefinition =>
  defineTool({
    name,
    description,
    input: z.strictObject({}),
    output: z.strictObject({ ok: z.boolean() }),
    handler: () => ({ ok: true }),
  }) as ToolDefinition;

let fake: FakeOpenAIServer;
let tools: ToolsServer;

beforeAll(async () => {
  fake = await createFakeOpenAIServer({ respond: () => ({ type: 'text', text: 'ok' }) });
  tools = await startToolsServer({ tools: [tool('alpha', 'Alpha v1'), tool('beta', 'Beta v1')] });
});
afterAll(async () => {
  await fake.close();
  await tools.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  tools.sent.length = 0;
  tools.replaceTools([tool('alpha', 'Alpha v1'), tool('beta', 'Beta v1')]);
});

const makeRunner = (options: Partial<AgentRunnerOptions> = {}) => fakeOpenAIRunner(fake.baseURL, options);

async function request(toolNames?: string[]): Promise<RunRequest> {
  const runId = `run-${Math.random().toString(36).slice(2)}`;
  const threadId = 'thread-manifest';
  return {
    threadId,
    runId,
    user: { id: 'user-1' },
    text: 'hi',
    tools: await tools.toolsRef({ userId: 'user-1', threadId, runId }, toolNames),
  };
}

const manifestReads = () => tools.sent.filter((s) => s.call.startsWith('GET /tools?'));
/** Manifest answers that carried a body (200); a 304 carries none. */
const transfers = () => manifestReads().filter((s) => s.bytes > 0).length;
/** The tool descriptions the last model request offered. */
const offered = () =>
  ((fake.requests.at(-1)!.body.tools ?? []) as { description?: string }[])
    .map((t) => t.description)
    .filter((d) => d && !d.startsWith('session') && /^(Alpha|Beta|Gamma)/.test(d))
    .sort();

async function runOnce(runner: ReturnType<typeof makeRunner>, toolNames?: string[]) {
  const events = await collect(runner.run(await request(toolNames)));
  expect(terminalOf(events).type).toBe('RUN_FINISHED');
}

describe('the tool manifest is kept between runs and revalidated', () => {
  it('five runs on one tool set transfer the manifest once; the others get 304 and still offer the tools', async () => {
    const runner = makeRunner();
    for (let i = 0; i < 5; i++) {
      await runOnce(runner);
      expect(offered()).toEqual(['Alpha v1', 'Beta v1']);
    }
    expect(manifestReads()).toHaveLength(5);
    expect(transfers()).toBe(1);
  });

  it('without a cache (manifestCache: false) every run transfers the manifest', async () => {
    const runner = makeRunner({ tuning: { manifestCache: false } });
    for (let i = 0; i < 3; i++) await runOnce(runner);
    expect(transfers()).toBe(3);
  });

  it('a token with another tool set gets its own manifest, never the kept one of a wider token', async () => {
    const runner = makeRunner();
    await runOnce(runner);
    expect(offered()).toEqual(['Alpha v1', 'Beta v1']);
    await runOnce(runner, ['alpha', ...builtinNames()]);
    expect(offered()).toEqual(['Alpha v1']);
    expect(transfers()).toBe(2);
    // Both are kept now: going back and forth transfers nothing more.
    await runOnce(runner);
    await runOnce(runner, ['alpha', ...builtinNames()]);
    expect(offered()).toEqual(['Alpha v1']);
    expect(transfers()).toBe(2);
  });

  it('redeployed tools with the same names (new definitions) reach the next run', async () => {
    const runner = makeRunner();
    await runOnce(runner);
    await runOnce(runner);
    expect(transfers()).toBe(1);
    tools.replaceTools([tool('alpha', 'Alpha v2'), tool('beta', 'Beta v1')]);
    await runOnce(runner);
    expect(offered()).toEqual(['Alpha v2', 'Beta v1']);
    expect(transfers()).toBe(2);
    tools.replaceTools([tool('alpha', 'Alpha v2'), tool('beta', 'Beta v1'), tool('gamma', 'Gamma v1')]);
    await runOnce(runner);
    expect(offered()).toEqual(['Alpha v2', 'Beta v1', 'Gamma v1']);
    expect(transfers()).toBe(3);
  });

  it('the cache holds at most maxEntries scopes, least recently used dropped first', async () => {
    const cache = new ManifestCache({ maxEntries: 2 });
    const runner = makeRunner({ tuning: { manifestCache: cache } });
    const a = ['alpha', ...builtinNames()];
    const b = ['beta', ...builtinNames()];
    await runOnce(runner, a);
    await runOnce(runner, b);
    await runOnce(runner, a); // hit: a becomes the most recent
    expect(transfers()).toBe(2);
    await runOnce(runner); // a third scope evicts b
    expect(cache.size).toBe(2);
    expect(transfers()).toBe(3);
    await runOnce(runner, a); // still kept
    expect(transfers()).toBe(3);
    await runOnce(runner, b); // evicted: transferred again
    expect(transfers()).toBe(4);
    expect(cache.size).toBe(2);
  });

  it('refuses a cache bound outside 1..10000', () => {
    for (const bad of [0, -1, 1.5, 10_001])
      expect(() => new ManifestCache({ maxEntries: bad })).toThrow(/maxEntries/);
  });
});

function builtinNames(): string[] {
  return tools.router.toolNames.filter((n) => n !== 'alpha' && n !== 'beta' && n !== 'gamma');
}
