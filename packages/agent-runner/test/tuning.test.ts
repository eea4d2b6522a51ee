// createRunner's `tuning` option, the deprecated top-level spellings it replaces (kept for one release), and the
// deprecated names kept next to the new ones.
import { ManifestCache, createToolClient } from '@threadline/tools-kit';
import { describe, expect, it } from 'vitest';
import {
  AgentMemory,
  AgentRunnerError,
  DEFAULT_AGENT_RUNNER_TUNING,
  ToolSession,
  createDemoModelProvider,
  createRunner,
  type AgentRunner,
  type AgentRunnerOptions,
  type AgentRunnerTuning,
  type CreateRunnerOptions,
  type Runner,
} from '../src/index.js';
import { resolveTuning } from '../src/runner-options.js';

const base: AgentRunnerOptions = { modelProvider: createDemoModelProvider(), tracing: false, env: {} };
const cache = new ManifestCache({ maxEntries: 3 });
const values: AgentRunnerTuning = {
  maxTurns: 3,
  toolTimeoutMs: 1234,
  historyItems: 7,
  manifestCache: cache,
  approvalTtlMs: 60_000,
};
const keys = Object.keys(values) as (keyof AgentRunnerTuning)[];

describe('createRunner tuning', () => {
  it('defaults: 10 turns, 30 s per tool call, 200 history items, 24 h approvals, a cache per runner', () => {
    const a = resolveTuning({}, {});
    expect(a).toMatchObject({
      maxTurns: 10,
      toolTimeoutMs: 30_000,
      historyItems: 200,
      approvalTtlMs: 86_400_000,
    });
    expect(a).toMatchObject(DEFAULT_AGENT_RUNNER_TUNING);
    expect(a.manifestCache).toBeInstanceOf(ManifestCache);
    expect(resolveTuning({}, {}).manifestCache).not.toBe(a.manifestCache);
    expect(resolveTuning({}, { THREADLINE_HISTORY_ITEMS: '42' }).historyItems).toBe(42);
  });

  it.each(keys)('%s works under tuning and, deprecated, at the top level, with the same result', (key) => {
    const viaTuning = resolveTuning({ tuning: { [key]: values[key] } }, {});
    const viaTopLevel = resolveTuning({ [key]: values[key] } as AgentRunnerOptions, {});
    expect(viaTuning[key]).toBe(values[key]);
    expect(viaTopLevel[key]).toBe(values[key]);
    expect(createRunner({ ...base, tuning: { [key]: values[key] } })).toHaveProperty('run');
    expect(createRunner({ ...base, [key]: values[key] } as AgentRunnerOptions)).toHaveProperty('run');
  });

  it('a key under tuning wins over its deprecated top-level spelling, and over env', () => {
    const t = resolveTuning(
      { maxTurns: 2, historyItems: 5, tuning: { maxTurns: 4, historyItems: 6 } },
      {
        THREADLINE_HISTORY_ITEMS: '9',
      },
    );
    expect(t).toMatchObject({ maxTurns: 4, historyItems: 6 });
    expect(resolveTuning({ historyItems: 5 }, { THREADLINE_HISTORY_ITEMS: '9' }).historyItems).toBe(5);
  });

  it('manifestCache: false turns the cache off in both spellings', () => {
    expect(resolveTuning({ tuning: { manifestCache: false } }, {}).manifestCache).toBe(false);
    expect(resolveTuning({ manifestCache: false }, {}).manifestCache).toBe(false);
  });

  const bad: [keyof AgentRunnerTuning, unknown][] = [
    ['maxTurns', 0],
    ['maxTurns', 1001],
    ['toolTimeoutMs', 0],
    ['toolTimeoutMs', 1.5],
    ['historyItems', 0],
    ['historyItems', 1001],
    ['approvalTtlMs', 0],
    ['approvalTtlMs', 7 * 24 * 60 * 60 * 1000 + 1],
    ['approvalTtlMs', '1h'],
    ['manifestCache', 'yes'],
    ['manifestCache', null],
  ];
  it.each(bad)('refuses %s = %s with invalid_options, in both spellings, naming the option', (key, value) => {
    const check = (options: unknown, name: string) => {
      let error: unknown;
      try {
        createRunner(options as AgentRunnerOptions);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(AgentRunnerError);
      expect(error).toMatchObject({ code: 'invalid_options' });
      expect((error as Error).message).toContain(`createRunner: ${name} must be`);
    };
    check({ ...base, tuning: { [key]: value } }, `tuning.${key}`);
    check({ ...base, [key]: value }, key);
  });

  it('refuses a tuning that is not an object', () => {
    expect(() => createRunner({ ...base, tuning: 5 as never })).toThrow(
      expect.objectContaining({ code: 'invalid_options', message: 'createRunner: tuning must be an object' }),
    );
  });
});

describe('deprecated names', () => {
  it('Runner and CreateRunnerOptions are the AgentRunner types; ToolSession is AgentMemory', () => {
    const options: CreateRunnerOptions = base;
    const runner: Runner = createRunner(options);
    const same: AgentRunner = runner;
    expect(same).toBe(runner);
    expect(ToolSession).toBe(AgentMemory);
    const client = createToolClient({ baseUrl: 'http://127.0.0.1:9', token: 't', threadId: 't1' });
    const memory: ToolSession = new ToolSession(client, 't1', { historyItems: 5 });
    expect(memory).toBeInstanceOf(AgentMemory);
  });
});
