import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EXAMPLE_ROOT, readConfig } from '../src/config.js';
import { HostError } from '../src/errors.js';
import { loadSecrets, SECRETS_FILE } from '../src/secrets.js';

describe('readConfig', () => {
  it('has defaults a newcomer can use: port 3000 on 127.0.0.1, data under the example, SQLite, demo model', () => {
    const c = readConfig({});
    expect(c.port).toBe(3000);
    expect(c.host).toBe('127.0.0.1');
    expect(c.agentPort).toBe(3001);
    expect(c.dataDir).toBe(join(EXAMPLE_ROOT, 'data'));
    expect(c.mongodbUri).toBeUndefined();
    expect(c.openaiApiKey).toBeUndefined();
    expect(c.cookieSecure).toBe(false);
    expect(c.wsConnectionsPerUser).toBe(32);
  });

  it('reads the fair-share settings, with defaults a real deployment would pick, and refuses nonsense', () => {
    expect(readConfig({})).toMatchObject({ runsPerUser: 4, runsPerMinute: 30, agentMaxRuns: 32 });
    expect(readConfig({ RUNS_PER_USER: '2', RUNS_PER_MINUTE: '10', AGENT_MAX_RUNS: '8' })).toMatchObject({
      runsPerUser: 2,
      runsPerMinute: 10,
      agentMaxRuns: 8,
    });
    for (const [key, value] of [
      ['RUNS_PER_USER', '0'],
      ['RUNS_PER_MINUTE', '1.5'],
      ['AGENT_MAX_RUNS', 'many'],
    ]) {
      expect(() => readConfig({ [key!]: value }), key).toThrow(HostError);
      expect(() => readConfig({ [key!]: value }), key).toThrow(new RegExp(key!));
    }
  });

  it('treats empty values (as a copied .env.example has) as unset', () => {
    const c = readConfig({ PORT: '', MONGODB_URI: '', OPENAI_API_KEY: ' ', COOKIE_SECURE: '' });
    expect(c.port).toBe(3000);
    expect(c.mongodbUri).toBeUndefined();
    expect(c.openaiApiKey).toBeUndefined();
  });

  it('resolves a relative DATA_DIR against the working directory', () => {
    expect(readConfig({ DATA_DIR: 'x/y' }, { cwd: '/srv/app' }).dataDir).toBe('/srv/app/x/y');
    expect(readConfig({ DATA_DIR: '/var/lib/tl' }).dataDir).toBe('/var/lib/tl');
  });

  it('turns Secure cookies on for an https PUBLIC_ORIGIN, and lets COOKIE_SECURE override', () => {
    expect(readConfig({ PUBLIC_ORIGIN: 'https://chat.example.com' }).cookieSecure).toBe(true);
    expect(readConfig({ PUBLIC_ORIGIN: 'https://chat.example.com/' }).publicOrigin).toBe(
      'https://chat.example.com',
    );
    expect(readConfig({ PUBLIC_ORIGIN: 'http://localhost:8080' }).cookieSecure).toBe(false);
    expect(readConfig({ COOKIE_SECURE: 'true' }).cookieSecure).toBe(true);
    expect(readConfig({ PUBLIC_ORIGIN: 'https://a.example', COOKIE_SECURE: 'false' }).cookieSecure).toBe(
      false,
    );
  });

  it('lists every bad setting in one error, one line each, naming the setting', () => {
    let err: unknown;
    try {
      readConfig({
        PORT: 'eighty',
        AGENT_PORT: '70000',
        MONGODB_URI: 'postgres://x',
        OPENAI_BASE_URL: 'not a url',
        PUBLIC_ORIGIN: 'https://a.example/path',
        COOKIE_SECURE: 'maybe',
        SESSION_TTL_HOURS: '0',
        WS_CONNECTIONS_PER_USER: '0',
        TOOLS_TOKEN_SECRET: 'short',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostError);
    const e = err as HostError;
    expect(e.code).toBe('invalid_config');
    const paths = e.issues?.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'PORT',
        'AGENT_PORT',
        'MONGODB_URI',
        'OPENAI_BASE_URL',
        'PUBLIC_ORIGIN',
        'COOKIE_SECURE',
        'SESSION_TTL_HOURS',
        'WS_CONNECTIONS_PER_USER',
        'TOOLS_TOKEN_SECRET',
      ]),
    );
    expect(e.message).toMatch(/PORT: PORT must be a number/);
    expect(e.message).toMatch(/TOOLS_TOKEN_SECRET: .*at least 32 characters/);
  });

  it('reads TRUST_PROXY as off, a hop count or a list of proxy addresses, and refuses "true" and bad addresses', () => {
    expect(readConfig({}).trustProxy).toBe(false);
    expect(readConfig({ TRUST_PROXY: '' }).trustProxy).toBe(false);
    expect(readConfig({ TRUST_PROXY: 'false' }).trustProxy).toBe(false);
    expect(readConfig({ TRUST_PROXY: '0' }).trustProxy).toBe(false);
    expect(readConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(readConfig({ TRUST_PROXY: ' loopback, 10.0.0.0/8 ,::1' }).trustProxy).toEqual([
      'loopback',
      '10.0.0.0/8',
      '::1',
    ]);
    expect(() => readConfig({ TRUST_PROXY: 'true' })).toThrow(/TRUST_PROXY: .*choose its own address/);
    expect(() => readConfig({ TRUST_PROXY: 'proxy.example.com' })).toThrow(
      /TRUST_PROXY: .*number of proxies/,
    );
    expect(() => readConfig({ TRUST_PROXY: '10.0.0.0/99' })).toThrow(/TRUST_PROXY/);
    expect(() => readConfig({ TRUST_PROXY: '11' })).toThrow(/at most 10 hops/);
  });

  it('reads the per-user quotas, with defaults and bounds', () => {
    expect(readConfig({})).toMatchObject({
      maxThreadsPerUser: 1000,
      messageBytesPerUserHour: 2 * 1024 * 1024,
    });
    expect(readConfig({ USER_MAX_THREADS: '20', MSG_BYTES_PER_HOUR: '65536' })).toMatchObject({
      maxThreadsPerUser: 20,
      messageBytesPerUserHour: 65536,
    });
    expect(() => readConfig({ USER_MAX_THREADS: '1001' })).toThrow(
      /USER_MAX_THREADS must be between 1 and 1000/,
    );
    expect(() => readConfig({ MSG_BYTES_PER_HOUR: '10' })).toThrow(/MSG_BYTES_PER_HOUR/);
  });

  it('reads COMPACT_AFTER_ITEMS (off when unset, 2-1000), and wants an OpenAI model name with OPENAI_API_KEY', () => {
    expect(readConfig({}).compactAfterItems).toBeUndefined();
    expect(readConfig({ COMPACT_AFTER_ITEMS: '' }).compactAfterItems).toBeUndefined();
    expect(readConfig({ COMPACT_AFTER_ITEMS: '40' }).compactAfterItems).toBe(40);
    expect(readConfig({ COMPACT_AFTER_ITEMS: '2' }).compactAfterItems).toBe(2);
    for (const bad of ['1', '1001', '2.5', 'lots'])
      expect(() => readConfig({ COMPACT_AFTER_ITEMS: bad }), bad).toThrow(/COMPACT_AFTER_ITEMS must be/);
    expect(
      readConfig({ COMPACT_AFTER_ITEMS: '40', OPENAI_API_KEY: 'sk-x', OPENAI_MODEL: 'o4-mini' })
        .compactAfterItems,
    ).toBe(40);
    expect(() =>
      readConfig({ COMPACT_AFTER_ITEMS: '40', OPENAI_API_KEY: 'sk-x', OPENAI_MODEL: 'llama-3' }),
    ).toThrow(/COMPACT_AFTER_ITEMS: COMPACT_AFTER_ITEMS needs an OpenAI model in OPENAI_MODEL/);
    // Without a key the demo model runs and its compaction is offline, whatever OPENAI_MODEL says.
    expect(readConfig({ COMPACT_AFTER_ITEMS: '40', OPENAI_MODEL: 'llama-3' }).compactAfterItems).toBe(40);
  });

  it('refuses the agent service on the API port', () => {
    expect(() => readConfig({ PORT: '4000', AGENT_PORT: '4000' })).toThrow(
      /AGENT_PORT must differ from PORT/,
    );
  });
});

describe('loadSecrets', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('generates random secrets on first start into a 0600 file and reuses them after', () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-secrets-'));
    const data = join(dir, 'data');
    const a = loadSecrets(data);
    expect(a.toolsTokenSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.agentSharedSecret).not.toBe(a.toolsTokenSecret);
    expect(statSync(join(data, SECRETS_FILE)).mode & 0o777).toBe(0o600);
    expect(loadSecrets(data)).toEqual(a);
    // A second data folder gets different secrets: nothing is a hard-coded default.
    expect(loadSecrets(join(dir, 'other')).toolsTokenSecret).not.toBe(a.toolsTokenSecret);
  });

  it('lets settings override the stored secrets', () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-secrets-'));
    const s = loadSecrets(dir, { agentSharedSecret: 'x'.repeat(40) });
    expect(s.agentSharedSecret).toBe('x'.repeat(40));
  });

  it('refuses a damaged secrets file instead of silently replacing it', () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-secrets-'));
    writeFileSync(join(dir, SECRETS_FILE), '{"toolsTokenSecret": "short"}');
    expect(() => loadSecrets(dir)).toThrow(/damaged/);
  });

  it('tightens a secrets file that others can read', () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-secrets-'));
    loadSecrets(dir);
    const file = join(dir, SECRETS_FILE);
    chmodSync(file, 0o644);
    loadSecrets(dir);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('readConfig: several instances', () => {
  const secret = 'a-shared-secret-of-at-least-32-characters';
  const issuesOf = (env: NodeJS.ProcessEnv) => {
    try {
      readConfig(env);
    } catch (e) {
      return (e as HostError).issues ?? [];
    }
    return [];
  };

  it('reads DATABASE_URL, REDIS_URL, AGENT_URL and TOOLS_BASE_URL', () => {
    const c = readConfig({
      DATABASE_URL: 'postgresql://app:pw@db:5432/app',
      REDIS_URL: 'redis://cache:6379',
      AGENT_URL: 'http://agents.internal:4000/',
      TOOLS_BASE_URL: 'http://lb.internal/',
      TOOLS_TOKEN_SECRET: secret,
      AGENT_SHARED_SECRET: secret,
    });
    expect(c).toMatchObject({
      databaseUrl: 'postgresql://app:pw@db:5432/app',
      redisUrl: 'redis://cache:6379',
      agentUrl: 'http://agents.internal:4000',
      toolsBaseUrl: 'http://lb.internal',
    });
    // SQLite, its own agent child and in-process fan-out stay the default.
    expect(readConfig({})).toMatchObject({
      databaseUrl: undefined,
      redisUrl: undefined,
      agentUrl: undefined,
      toolsBaseUrl: undefined,
    });
  });

  it('with DATABASE_URL, wants both shared secrets, one line each', () => {
    expect(issuesOf({ DATABASE_URL: 'postgres://db/app' })).toEqual([
      { path: 'TOOLS_TOKEN_SECRET', message: expect.stringMatching(/must be set when DATABASE_URL is/) },
      { path: 'AGENT_SHARED_SECRET', message: expect.stringMatching(/must be set when DATABASE_URL is/) },
    ]);
    expect(issuesOf({ DATABASE_URL: 'postgres://db/app', TOOLS_TOKEN_SECRET: secret })).toEqual([
      { path: 'AGENT_SHARED_SECRET', message: expect.stringMatching(/must be set when DATABASE_URL is/) },
    ]);
  });

  it('refuses URLs of the wrong kind and settings that do not go together', () => {
    const paths = (env: NodeJS.ProcessEnv) => issuesOf(env).map((i) => i.path);
    expect(paths({ DATABASE_URL: 'mysql://db/app' })).toEqual(['DATABASE_URL']);
    expect(paths({ REDIS_URL: 'http://cache' })).toEqual(['REDIS_URL']);
    expect(paths({ AGENT_URL: 'ftp://agents' })).toEqual(['AGENT_URL']);
    expect(paths({ TOOLS_BASE_URL: 'ws://x' })).toEqual(['TOOLS_BASE_URL']);
    const both = { TOOLS_TOKEN_SECRET: secret, AGENT_SHARED_SECRET: secret };
    expect(paths({ ...both, DATABASE_URL: 'postgres://db/app', MONGODB_URI: 'mongodb://m' })).toEqual([
      'DATABASE_URL',
    ]);
    // Redis fan-out needs a database every instance shares.
    expect(issuesOf({ REDIS_URL: 'redis://cache' })).toEqual([
      { path: 'REDIS_URL', message: expect.stringMatching(/needs a database every instance shares/) },
    ]);
    expect(paths({ ...both, REDIS_URL: 'redis://cache', DATABASE_URL: 'postgres://db/app' })).toEqual([]);
    // An agent service started elsewhere must have been given the same credential.
    expect(paths({ AGENT_URL: 'http://agents:4000' })).toEqual(['AGENT_SHARED_SECRET']);
    expect(paths({ AGENT_URL: 'http://agents:4000', AGENT_SHARED_SECRET: secret })).toEqual([]);
    // AGENT_PORT is not used with AGENT_URL, so it may equal PORT.
    expect(
      paths({ AGENT_URL: 'http://a:1', AGENT_SHARED_SECRET: secret, PORT: '80', AGENT_PORT: '80' }),
    ).toEqual([]);
  });
});

describe('readConfig: Google sign-in', () => {
  it('is off by default, on with a client id and secret, with Google as issuer and the redirect from PUBLIC_ORIGIN', () => {
    expect(readConfig({}).oidc).toBeUndefined();
    expect(readConfig({ OIDC_CLIENT_ID: 'id', OIDC_CLIENT_SECRET: 'secret' }).oidc).toEqual({
      issuer: 'https://accounts.google.com',
      clientId: 'id',
      clientSecret: 'secret',
      redirectUrl: undefined,
    });
    expect(
      readConfig({
        OIDC_CLIENT_ID: 'id',
        OIDC_CLIENT_SECRET: 'secret',
        PUBLIC_ORIGIN: 'https://chat.example.com',
      }).oidc?.redirectUrl,
    ).toBe('https://chat.example.com/auth/oidc/callback');
    expect(
      readConfig({
        OIDC_CLIENT_ID: 'id',
        OIDC_CLIENT_SECRET: 'secret',
        OIDC_ISSUER: 'http://127.0.0.1:4000',
        OIDC_REDIRECT_URL: 'https://a.example/auth/oidc/callback',
      }).oidc,
    ).toMatchObject({ issuer: 'http://127.0.0.1:4000', redirectUrl: 'https://a.example/auth/oidc/callback' });
  });

  it('refuses half a client, an http issuer off this machine, and a redirect URL the host does not serve', () => {
    const messages = (env: Record<string, string>) => {
      try {
        readConfig(env);
        return [];
      } catch (e) {
        return (e as HostError).issues?.map((i) => `${i.path}: ${i.message}`) ?? [];
      }
    };
    expect(messages({ OIDC_CLIENT_ID: 'id' })).toEqual([
      'OIDC_CLIENT_SECRET: set both OIDC_CLIENT_ID and OIDC_CLIENT_SECRET to turn Google sign-in on, or neither',
    ]);
    expect(messages({ OIDC_ISSUER: 'http://idp.example.com' })).toEqual([
      'OIDC_ISSUER: OIDC_ISSUER must be https (plain http only for a provider on 127.0.0.1 or localhost)',
    ]);
    expect(messages({ OIDC_REDIRECT_URL: 'https://a.example/callback' })).toEqual([
      'OIDC_REDIRECT_URL: OIDC_REDIRECT_URL must end in /auth/oidc/callback (the host serves the callback there)',
    ]);
  });
});

describe('.env.example and README', () => {
  const root = EXAMPLE_ROOT;
  it('.env.example is accepted as is, and lists every setting the README table documents', () => {
    const example = parseEnv(readFileSync(join(root, '.env.example'), 'utf8'));
    const c = readConfig(example);
    expect(c.port).toBe(3000);
    expect(c.dataDir).toBe(join(root, 'data'));
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const table = readme.slice(
      readme.indexOf('| setting'),
      readme.indexOf('\n\n', readme.indexOf('| setting')),
    );
    const documented = [...table.matchAll(/^\| `([A-Z_]+)`/gm)].map((m) => m[1]);
    expect(documented.length).toBeGreaterThan(10);
    expect(Object.keys(example).sort()).toEqual([...documented].sort());
  });
});
