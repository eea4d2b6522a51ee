// The README's quick start, run as written (examples/quickstart.mjs is the README's block, verbatim): a child
// process with a SQLite file, the tool router, an in-process agent on the demo model and the ws transport; a
// real WebSocket client subscribes to the thread it created and sends a message.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TestClient, tempDir } from './helpers.js';

const example = new URL('../examples/quickstart.mjs', import.meta.url);
let child: ChildProcess | undefined;
let client: TestClient | undefined;
const dir = tempDir();
afterAll(async () => {
  await client?.close();
  child?.kill('SIGKILL');
  dir.remove();
});

describe('README quick start', () => {
  it('is the README block, verbatim', () => {
    const source = readFileSync(example, 'utf8');
    expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(source);
  });

  it('creates its thread, then streams a run to a subscribed browser socket', async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: '0',
      DB: join(dir.path, 'threadline.db'),
      TOOLS_SECRET: 'quick-start-secret-of-at-least-32-bytes!',
    };
    delete env.OPENAI_API_KEY;
    const proc = spawn(process.execPath, [fileURLToPath(example)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let out = '';
    const [, threadId, url] = await new Promise<RegExpExecArray>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /thread (\S+): (ws:\/\/\S+)/.exec(out);
        if (m) resolve(m);
      });
      proc.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      proc.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    client = await TestClient.connect(url!, null, 'http://localhost:3000');
    client.send({ type: 'subscribe', threadId, afterSeq: 0 });
    client.send({ type: 'send', threadId, text: 'hello', clientMessageId: 'm1' });
    await client.waitFor((m) => m.type === 'ack');
    await client.waitFor((m) => m.type === 'event' && (m.event as { type: string }).type === 'RUN_FINISHED');
    const types = client.events().map((e) => e.type);
    expect(types[0]).toBe('USER_MESSAGE');
    expect(types).toContain('RUN_STARTED');
    expect(types).toContain('TEXT_MESSAGE_CHUNK');
    expect(client.events().map((e) => e.seq)).toEqual(types.map((_, i) => i + 1));
  });
});
