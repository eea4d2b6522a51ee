import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '@threadline/agent-runner/testing';
import type { SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Client } from './helpers.js';
import { childPids, EXAMPLE_DIR, ensureBuilt, startUserHost, type UserHost } from './user-host.js';

// `node dist/main.js` as a user runs it, without a browser: settings are validated, and with OPENAI_API_KEY the
// agent process really talks to an OpenAI endpoint (here a local server speaking the OpenAI wire format).
beforeAll(() => ensureBuilt(), 240_000);

describe('starting the host', () => {
  it('refuses bad settings with one line per problem and exit code 1', () => {
    const r = spawnSync(process.execPath, [join(EXAMPLE_DIR, 'dist/main.js')], {
      env: { PATH: process.env.PATH, PORT: 'eighty', MONGODB_URI: 'mysql://x', TOOLS_TOKEN_SECRET: 'short' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Invalid settings:');
    expect(r.stderr).toContain('  - PORT: PORT must be a number');
    expect(r.stderr).toContain('  - MONGODB_URI: MONGODB_URI must start with mongodb:// or mongodb+srv://');
    expect(r.stderr).toContain('  - TOOLS_TOKEN_SECRET: TOOLS_TOKEN_SECRET must be at least 32 characters');
  });

  it('with DATABASE_URL, refuses to start without shared TOOLS_TOKEN_SECRET and AGENT_SHARED_SECRET, one line each', () => {
    const r = spawnSync(process.execPath, [join(EXAMPLE_DIR, 'dist/main.js')], {
      env: { PATH: process.env.PATH, DATABASE_URL: 'postgres://app@127.0.0.1:9/app' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      'Invalid settings:',
      expect.stringMatching(
        /^ {2}- TOOLS_TOKEN_SECRET: TOOLS_TOKEN_SECRET must be set when DATABASE_URL is: every instance must use the same one/,
      ),
      expect.stringMatching(
        /^ {2}- AGENT_SHARED_SECRET: AGENT_SHARED_SECRET must be set when DATABASE_URL is: every instance must use the same one/,
      ),
    ]);
  });

  it('with a DATABASE_URL nobody answers on, stops with one clear line instead of hanging', () => {
    const secret = 'a-shared-secret-of-at-least-32-characters';
    const dataDir = mkdtempSync(join(tmpdir(), 'tl-nodb-'));
    const r = spawnSync(process.execPath, [join(EXAMPLE_DIR, 'dist/main.js')], {
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        AGENT_PORT: '0',
        DATABASE_URL: 'postgres://app:pw@127.0.0.1:9/app',
        TOOLS_TOKEN_SECRET: secret,
        AGENT_SHARED_SECRET: secret,
        AGENT_URL: 'http://127.0.0.1:9',
        DATA_DIR: dataDir,
      },
      encoding: 'utf8',
      timeout: 30_000,
    });
    rmSync(dataDir, { recursive: true, force: true });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^Cannot open PostgreSQL at postgres:\/\/app:\*\*\*@127\.0\.0\.1:9\/app \(DATABASE_URL\): .*unavailable/m,
    );
    expect(r.stderr).not.toContain(':pw@');
  });

  describe('with COMPACT_AFTER_ITEMS and the demo model', () => {
    let host: UserHost;
    beforeAll(async () => {
      host = await startUserHost({ COMPACT_AFTER_ITEMS: '2', DEMO_MODEL_DELAY_MS: '0' });
    }, 60_000);
    afterAll(async () => {
      expect(await host?.stop()).toBe(0);
    });

    it('the agent process compacts a thread past the threshold: HISTORY_WINDOWED reason compacted in its log', async () => {
      const port = new URL(host.url).port;
      const base = `http://127.0.0.1:${port}`;
      const c = new Client(base);
      await c.signup('compact-user');
      const threadId = (await c.req('POST', '/api/threads', { json: {} })).json.threadId as string;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: base, cookie: c.cookie! } });
      const messages: ServerMessage[] = [];
      let onEnd: (() => void) | undefined;
      ws.on('message', (d) => {
        const m = JSON.parse(String(d)) as ServerMessage;
        messages.push(m);
        if (m.type === 'event' && (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR'))
          onEnd?.();
      });
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq: 0 }));
      for (const [i, text] of ['one', 'two', 'three'].entries()) {
        const ended = new Promise<void>((resolve) => (onEnd = resolve));
        ws.send(JSON.stringify({ type: 'send', threadId, text, clientMessageId: `c${i}` }));
        await ended;
      }
      ws.close();
      const events = (await c.req('GET', `/api/threads/${threadId}/events`)).json
        .events as SequencedAgentEvent[];
      const runs = events.filter((e) => e.type === 'RUN_STARTED').map((e) => e.runId);
      expect(runs).toHaveLength(3);
      expect(events.filter((e) => e.type === 'RUN_ERROR')).toEqual([]);
      // The first two runs' answers reach the threshold of 2; the third run starts from the summary.
      expect(events.filter((e) => e.type === 'HISTORY_WINDOWED').map((e) => [e.runId, e.reason])).toEqual([
        [runs[2], 'compacted'],
      ]);
    });
  });

  describe('with OPENAI_API_KEY', () => {
    let fake: FakeOpenAIServer;
    let host: UserHost;
    beforeAll(async () => {
      fake = await createFakeOpenAIServer({
        respond: () => ({ type: 'text', text: 'Hello from the OpenAI endpoint.' }),
      });
      host = await startUserHost({
        OPENAI_API_KEY: 'sk-test-fake',
        OPENAI_BASE_URL: fake.baseURL,
        OPENAI_MODEL: 'gpt-test-model',
        // Traces go to the fake server too, never to the internet.
        THREADLINE_TRACING_ENDPOINT: fake.tracesEndpoint,
        // Host secrets and unrelated credentials the agent process has no use for.
        TOOLS_TOKEN_SECRET: 'host-only-tools-token-secret-0123456789abcdef',
        BILLING_DATABASE_URL: 'postgres://admin:hunter2@db.internal/app',
        CLOUD_ACCESS_TOKEN: 'cloud-token-the-agent-must-not-see',
      });
    }, 60_000);
    afterAll(async () => {
      expect(await host?.stop()).toBe(0);
      await fake?.close();
    });

    it('prints the model in use, and the agent process answers through the configured OpenAI endpoint', async () => {
      expect(host.output()).toMatch(/Model\s+gpt-test-model \(OpenAI\)/);
      expect(host.output()).toMatch(/Store\s+SQLite in /);
      const port = new URL(host.url).port;
      const base = `http://127.0.0.1:${port}`;
      const c = new Client(base);
      await c.signup('openai-user');
      const threadId = (await c.req('POST', '/api/threads', { json: {} })).json.threadId as string;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: base, cookie: c.cookie! } });
      const messages: ServerMessage[] = [];
      const done = new Promise<void>((resolve, reject) => {
        ws.on('message', (d) => {
          const m = JSON.parse(String(d)) as ServerMessage;
          messages.push(m);
          if (m.type === 'event' && (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR'))
            resolve();
        });
        ws.on('error', reject);
      });
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq: 0 }));
      ws.send(JSON.stringify({ type: 'send', threadId, text: 'hi', clientMessageId: 'c1' }));
      await done;
      ws.close();
      const events = messages.flatMap((m) => (m.type === 'event' ? [m.event] : []));
      expect(events.at(-1)?.type).toBe('RUN_FINISHED');
      const text = events.map((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? e.delta : '')).join('');
      expect(text).toBe('Hello from the OpenAI endpoint.');
      expect(fake.requests.length).toBeGreaterThan(0);
      expect(fake.requests[0]!.body.model).toBe('gpt-test-model');
      expect(fake.requests[0]!.headers.authorization).toBe('Bearer sk-test-fake');
    });

    it('gives the agent process only the environment it needs, none of the host secrets', () => {
      const [agentPid] = childPids(host.child.pid!);
      expect(agentPid).toBeDefined();
      // The live process's environment as the kernel holds it.
      const names = readFileSync(`/proc/${agentPid}/environ`, 'utf8')
        .split('\0')
        .filter((kv) => kv !== '')
        .map((kv) => kv.slice(0, kv.indexOf('=')));
      for (const needed of [
        'PATH',
        'AGENT_PORT',
        'AGENT_SHARED_SECRET',
        'OPENAI_API_KEY',
        'OPENAI_BASE_URL',
        'OPENAI_MODEL',
        'THREADLINE_TRACING_ENDPOINT',
      ])
        expect(names, needed).toContain(needed);
      for (const secret of [
        'TOOLS_TOKEN_SECRET',
        'BILLING_DATABASE_URL',
        'CLOUD_ACCESS_TOKEN',
        'DATA_DIR',
        'PORT',
      ])
        expect(names, secret).not.toContain(secret);
    });
  });
});
