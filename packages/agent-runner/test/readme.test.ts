// The README's quick start, run as written (examples/quickstart.mjs is the README's block, verbatim): a child
// process serving the agent, asked for a run over HTTP with history behind a real tools router.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SECRET, collectSse } from './helpers.js';
import { startToolsServer, type ToolsServer } from './tools-server.js';

const example = new URL('../examples/quickstart.mjs', import.meta.url);
let child: ChildProcess | undefined;
let tools: ToolsServer | undefined;
afterAll(async () => {
  child?.kill('SIGKILL');
  await tools?.close();
});

describe('README quick start', () => {
  it('is the README block, verbatim', () => {
    const source = readFileSync(example, 'utf8');
    expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(source);
  });

  it('serves runs with the offline demo model and stops on SIGTERM', async () => {
    tools = await startToolsServer();
    const env: NodeJS.ProcessEnv = { ...process.env, THREADLINE_AGENT_SECRET: SECRET, PORT: '0' };
    delete env.OPENAI_API_KEY;
    const proc = spawn(process.execPath, [fileURLToPath(example)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /listening on (http:\/\/[^\s]+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      proc.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      proc.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    const res = await fetch(`${url}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        threadId: 't1',
        runId: 'r1',
        user: { id: 'u1' },
        message: 'hello there',
        tools: await tools.toolsRef({ userId: 'u1', threadId: 't1', runId: 'r1' }),
      }),
    });
    expect(res.status).toBe(200);
    const { events } = await collectSse(res);
    expect(events[0]?.type).toBe('RUN_STARTED');
    expect(events.at(-1)?.type).toBe('RUN_FINISHED');
    expect(events.some((e) => e.type === 'TEXT_MESSAGE_CHUNK')).toBe(true);
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
