import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { doctor, formatDoctorReport } from '../src/index.js';
import { runCli } from '../src/cli-main.js';

const KEY = 'sk-test-0123456789abcdef';
const codes = (env: NodeJS.ProcessEnv, options?: Parameters<typeof doctor>[1]) =>
  doctor(env, options)
    .findings.filter((f) => f.level === 'error' || f.level === 'warning')
    .map((f) => f.code);

describe('doctor', () => {
  it('is ok with a key and nothing else set', () => {
    const report = doctor({ OPENAI_API_KEY: KEY });
    expect(report.ok).toBe(true);
    expect(codes({ OPENAI_API_KEY: KEY })).toEqual([]);
    expect(formatDoctorReport(report)).toMatch(/can reach the OpenAI dashboard/);
  });

  it('fails with no key at all, and says the demo model is in use', () => {
    const report = doctor({});
    expect(report.ok).toBe(false);
    expect(report.findings.map((f) => f.code)).toEqual(expect.arrayContaining(['no_api_key', 'demo_model']));
    expect(formatDoctorReport(report)).toMatch(/will NOT reach[\s\S]*OPENAI_API_KEY/);
  });

  it('fails when tracing is disabled by OPENAI_AGENTS_DISABLE_TRACING', () => {
    expect(codes({ OPENAI_API_KEY: KEY, OPENAI_AGENTS_DISABLE_TRACING: '1' })).toEqual([
      'tracing_disabled_env',
    ]);
    expect(codes({ OPENAI_API_KEY: KEY, OPENAI_AGENTS_DISABLE_TRACING: 'false' })).toEqual([]);
  });

  it('fails under NODE_ENV=test', () => {
    expect(doctor({ OPENAI_API_KEY: KEY, NODE_ENV: 'test' }).ok).toBe(false);
    expect(codes({ OPENAI_API_KEY: KEY, NODE_ENV: 'test' })).toEqual(['tracing_disabled_node_env_test']);
  });

  it('fails for a non-OpenAI base URL without a separate tracing key, warns with one', () => {
    const env = { OPENAI_API_KEY: 'gsk-other-provider', OPENAI_BASE_URL: 'https://llm.example.com/v1' };
    expect(codes(env)).toEqual(expect.arrayContaining(['non_openai_base_url', 'non_openai_base_url_spans']));
    expect(doctor(env).ok).toBe(false);
    const fixed = { ...env, OPENAI_TRACING_API_KEY: KEY };
    expect(doctor(fixed).ok).toBe(true);
    expect(codes(fixed)).toEqual(['non_openai_base_url_spans']);
    expect(codes({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: 'https://api.openai.com/v1' })).toEqual([]);
  });

  it('warns that organization/project settings are not sent by the exporter', () => {
    expect(codes({ OPENAI_API_KEY: KEY, OPENAI_PROJECT_ID: 'proj_1' })).toEqual([
      'organization_project_not_sent',
    ]);
    expect(codes({ OPENAI_API_KEY: KEY, OPENAI_ORG_ID: 'org_1' })).toEqual(['organization_project_not_sent']);
  });

  it('warns when the exporter endpoint is overridden (env or option)', () => {
    expect(codes({ OPENAI_API_KEY: KEY, THREADLINE_TRACING_ENDPOINT: 'http://127.0.0.1:9/ingest' })).toEqual([
      'endpoint_overridden',
    ]);
    expect(codes({ OPENAI_API_KEY: KEY }, { tracing: { endpoint: 'http://127.0.0.1:9/ingest' } })).toEqual([
      'endpoint_overridden',
    ]);
    expect(
      codes({ OPENAI_API_KEY: KEY }, { tracing: { endpoint: 'https://api.openai.com/v1/traces/ingest' } }),
    ).toEqual([]);
  });

  it('fails when tracing is turned off in the options, and flags odd keys', () => {
    expect(codes({ OPENAI_API_KEY: KEY }, { tracing: { disabled: true } })).toEqual([
      'tracing_disabled_option',
    ]);
    expect(codes({ OPENAI_API_KEY: 'not-a-key' })).toEqual(['key_format']);
  });
});

describe('threadline-agent CLI', () => {
  const capture = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
  };

  it('doctor exits 1 on a blocking problem and 0 when fine', async () => {
    const bad = capture();
    expect(await runCli(['doctor'], { NODE_ENV: 'test' }, bad.io)).toBe(1);
    expect(bad.out.join('\n')).toMatch(/NODE_ENV=test/);
    const good = capture();
    expect(await runCli(['doctor', '--json'], { OPENAI_API_KEY: KEY }, good.io)).toBe(0);
    expect(JSON.parse(good.out.join('\n'))).toMatchObject({ ok: true });
  });

  it('prints usage for an unknown command and refuses serve without a strong secret', async () => {
    const c = capture();
    expect(await runCli(['bogus'], {}, c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/Usage/);
    const s = capture();
    expect(await runCli(['serve'], { THREADLINE_AGENT_SECRET: 'short' }, s.io)).toBe(2);
    expect(s.err.join('\n')).toMatch(/32 bytes/);
    const p = capture();
    const secret = 'x'.repeat(32);
    expect(
      await runCli(['serve'], { THREADLINE_AGENT_SECRET: secret, THREADLINE_AGENT_PORT: 'eighty' }, p.io),
    ).toBe(2);
    expect(p.err.join('\n')).toMatch(/THREADLINE_AGENT_PORT must be a port number/);
  });
});

describe('threadline-agent doctor from the repository root', () => {
  // The workspace bin is build output, so `npm ci` cannot link it; `npm test` and `npm start` link it after the
  // build (scripts/bootstrap.mjs). `--no` keeps npx off the registry: a missing link fails here, not with a 404.
  it('runs the workspace bin through npx, as the README says', () => {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    const r = spawnSync('npx', ['--no', 'threadline-agent', 'doctor'], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stdout).toMatch(/^threadline-agent doctor: traces will NOT reach the OpenAI dashboard/);
    expect(r.stdout).toContain('(no_api_key)');
    expect(r.status).toBe(1);
  });
});
