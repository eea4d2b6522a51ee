import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentProcess, agentEnvironment } from '../src/agent-process.js';

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

describe('agentEnvironment', () => {
  it("keeps what the agent needs and drops the host's secrets and everything else", () => {
    const env = agentEnvironment(
      {
        PATH: '/usr/bin',
        HOME: '/home/app',
        NODE_ENV: 'production',
        OPENAI_API_KEY: 'sk-from-shell',
        OPENAI_TRACING_API_KEY: 'sk-traces',
        OPENAI_AGENTS_DISABLE_TRACING: '1',
        THREADLINE_TRACING_ENDPOINT: 'http://127.0.0.1:9/traces',
        DEMO_MODEL_DELAY_MS: '5',
        HTTPS_PROXY: 'http://proxy:3128',
        TOOLS_TOKEN_SECRET: 'x'.repeat(40),
        AGENT_SHARED_SECRET: 'stale-from-shell',
        MONGODB_URI: 'mongodb://admin:pw@db/threadline',
        DATABASE_URL: 'postgres://admin:pw@db/app',
        AWS_SECRET_ACCESS_KEY: 'aws',
        DATA_DIR: '/var/lib/threadline',
        PORT: '3000',
      },
      {
        AGENT_PORT: '3001',
        AGENT_SHARED_SECRET: 'y'.repeat(43),
        OPENAI_API_KEY: undefined,
        OPENAI_MODEL: 'gpt-4.1-mini',
      },
    );
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/home/app',
      NODE_ENV: 'production',
      OPENAI_TRACING_API_KEY: 'sk-traces',
      OPENAI_AGENTS_DISABLE_TRACING: '1',
      THREADLINE_TRACING_ENDPOINT: 'http://127.0.0.1:9/traces',
      DEMO_MODEL_DELAY_MS: '5',
      HTTPS_PROXY: 'http://proxy:3128',
      AGENT_PORT: '3001',
      AGENT_SHARED_SECRET: 'y'.repeat(43),
      OPENAI_MODEL: 'gpt-4.1-mini',
    });
  });
});
