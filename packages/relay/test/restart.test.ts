import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { createRelay } from '../src/index.js';
import { openSqliteStore } from '../src/stores/sqlite.js';
import { ControlledAgent, readAll, tempDir, tokens } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it('fails the run a killed relay process left running, keeping the history, on the next start', async () => {
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  const path = join(dir.path, 'relay.db');
  const child = spawn(
    process.execPath,
    [
      '--conditions=@threadline/source',
      '--import',
      fileURLToPath(new URL('./fixtures/ts-hooks.mjs', import.meta.url)),
      fileURLToPath(new URL('./fixtures/relay-child.ts', import.meta.url)),
      path,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.once('data', (d: string) => resolve(d));
    child.once('exit', (code) => reject(new Error(`relay child exited early with ${code}`)));
  });
  const runId = /streaming (\S+)/.exec(line)?.[1];
  expect(runId).toBeDefined();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;

  // The next process on the same file.
  const store = openSqliteStore({ path });
  const agent = new ControlledAgent();
  const relay = createRelay({
    store,
    agent,
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: { error() {}, warn() {} },
  });
  cleanups.push(async () => {
    await relay.close();
    await store.close();
  });
  const before = await readAll(store, 't1');
  expect((await store.getRun(runId!))?.status).toBe('running');
  expect(before.map((e) => e.event.type)).toEqual([
    'USER_MESSAGE',
    'RUN_STARTED',
    ...before.slice(2).map(() => 'TEXT_MESSAGE_CHUNK'),
  ]);
  expect(
    before
      .slice(2)
      .map((e) => e.event.delta)
      .join(''),
  ).toBe('part 0. part 1. part 2. part 3. part 4. ');

  expect(await relay.recover()).toBe(1);
  const after = await readAll(store, 't1');
  expect(after.slice(0, before.length)).toEqual(before);
  expect(after.slice(before.length)).toEqual([
    {
      seq: before.length + 1,
      event: expect.objectContaining({ type: 'RUN_ERROR', runId, code: 'relay_restarted' }),
    },
  ]);
  expect((await store.getRun(runId!))?.status).toBe('failed');

  // The thread takes new messages again.
  await relay.send({ user: { id: 'user-a' }, threadId: 't1', text: 'again', clientMessageId: 'c2' });
  const run = await agent.nextRun(0);
  expect(run.request.threadId).toBe('t1');
});
