import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentProcess } from '../src/agent-process.js';

const entry = fileURLToPath(new URL('./fixtures/fake-agent.mjs', import.meta.url));
const quiet = { log: () => {}, error: () => {} };
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('AgentProcess', () => {
  let p: AgentProcess | undefined;
  afterEach(async () => {
    await p?.stop();
    p = undefined;
  });

  it('starts the child, restarts it when killed, and stops it for good', async () => {
    p = new AgentProcess({
      entry,
      env: { ...process.env, FAKE_MODE: 'ok' },
      logger: quiet,
      restartDelayMs: 10,
    });
    const ready = await p.start();
    expect(ready.url).toBe('http://127.0.0.1:1');
    const first = p.pid!;
    expect(alive(first)).toBe(true);
    const restarted = new Promise((resolve) => p!.once('ready', resolve));
    process.kill(first, 'SIGKILL');
    await restarted;
    expect(p.state).toBe('running');
    expect(p.pid).not.toBe(first);
    const second = p.pid!;
    await p.stop();
    expect(alive(second)).toBe(false);
    expect(p.state).toBe('stopped');
  });

  it('gives up after maxRestarts crashes within the window', async () => {
    p = new AgentProcess({
      entry,
      env: { ...process.env, FAKE_MODE: 'crash-after-ready' },
      logger: quiet,
      maxRestarts: 2,
      restartDelayMs: 5,
    });
    let exits = 0;
    const failed = new Promise<void>((resolve) => {
      p!.on('exit', () => {
        exits += 1;
        if (p!.state === 'failed') resolve();
      });
    });
    await p.start();
    await failed;
    // The first start plus exactly two restarts.
    expect(exits).toBe(3);
  });

  it('fails start when the child never reports ready within readyTimeoutMs', async () => {
    p = new AgentProcess({
      entry,
      env: { ...process.env, FAKE_MODE: 'never-ready' },
      logger: quiet,
      readyTimeoutMs: 300,
      maxRestarts: 0,
    });
    await expect(p.start()).rejects.toThrow(/did not start within 300 ms/);
  });
});
