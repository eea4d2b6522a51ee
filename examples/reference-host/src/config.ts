import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { z } from 'zod';
import { HostError } from './errors.js';
import { GOOGLE_ISSUER, isLoopbackHttp } from './oidc.js';

/** The example's own folder (one level above src/ or dist/), where `data/` and `public/` live. */
export const EXAMPLE_ROOT = fileURLToPath(new URL('..', import.meta.url));

const unset = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const port = (what: string, fallback: number) =>
  z.preprocess(
    unset,
    z.coerce
      .number({ error: `${what} must be a number` })
      .int(`${what} must be a whole number`)
      .min(0, `${what} must be between 0 and 65535`)
      .max(65535, `${what} must be between 0 and 65535`)
      .default(fallback),
  );
const bool = (what: string) =>
  z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() : v),
    z.enum(['true', 'false', '1', '0', ''], { error: `${what} must be true or false` }),
  );
const count = (what: string, fallback: number, max: number) =>
  z.preprocess(
    unset,
    z.coerce
      .number({ error: `${what} must be a number` })
      .int(`${what} must be a whole number`)
      .min(1, `${what} must be between 1 and ${max}`)
      .max(max, `${what} must be between 1 and ${max}`)
      .default(fallback),
  );
const secret = (what: string) =>
  z.preprocess(
    unset,
    z
      .string()
      .min(32, `${what} must be at least 32 characters (or leave it unset to generate one)`)
      .optional(),
  );

const EnvSchema = z.object({
  PORT: port('PORT', 3000),
  HOST: z.preprocess(unset, z.string().min(1).max(255).default('127.0.0.1')),
  AGENT_PORT: port('AGENT_PORT', 3001),
  DATA_DIR: z.preprocess(unset, z.string().min(1).optional()),
  MONGODB_URI: z.preprocess(
    unset,
    z
      .string()
      .regex(/^mongodb(\+srv)?:\/\/\S+$/, 'MONGODB_URI must start with mongodb:// or mongodb+srv://')
      .optional(),
  ),
  DATABASE_URL: z.preprocess(
    unset,
    z
      .string()
      .regex(/^postgres(ql)?:\/\/\S+$/, 'DATABASE_URL must start with postgres:// or postgresql://')
      .optional(),
  ),
  REDIS_URL: z.preprocess(
    unset,
    z
      .string()
      .regex(/^rediss?:\/\/\S+$/, 'REDIS_URL must start with redis:// or rediss://')
      .optional(),
  ),
  AGENT_URL: z.preprocess(
    unset,
    z.url({ protocol: /^https?$/, error: 'AGENT_URL must be an http(s) URL' }).optional(),
  ),
  TOOLS_BASE_URL: z.preprocess(
    unset,
    z.url({ protocol: /^https?$/, error: 'TOOLS_BASE_URL must be an http(s) URL' }).optional(),
  ),
  MONGODB_DB: z.preprocess(
    unset,
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,63}$/, 'MONGODB_DB must be 1-63 letters, digits, _ or -')
      .default('threadline'),
  ),
  OPENAI_API_KEY: z.preprocess(unset, z.string().min(1).optional()),
  OPENAI_MODEL: z.preprocess(
    unset,
    z
      .string()
      .regex(/^[A-Za-z0-9._:/-]{1,100}$/, 'OPENAI_MODEL must be a model name such as gpt-4.1-mini')
      .default('gpt-4.1-mini'),
  ),
  OPENAI_BASE_URL: z.preprocess(
    unset,
    z.url({ protocol: /^https?$/, error: 'OPENAI_BASE_URL must be an http(s) URL' }).optional(),
  ),
  PUBLIC_ORIGIN: z.preprocess(
    unset,
    z
      .url({
        protocol: /^https?$/,
        error: 'PUBLIC_ORIGIN must be an origin such as https://chat.example.com',
      })
      .refine((u) => new URL(u).origin === u.replace(/\/$/, ''), {
        error: 'PUBLIC_ORIGIN must be an origin only (scheme, host, port), without a path',
      })
      .optional(),
  ),
  COOKIE_SECURE: bool('COOKIE_SECURE').optional(),
  SESSION_TTL_HOURS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'SESSION_TTL_HOURS must be a number' })
      .int('SESSION_TTL_HOURS must be a whole number')
      .min(1, 'SESSION_TTL_HOURS must be between 1 and 8760')
      .max(8760, 'SESSION_TTL_HOURS must be between 1 and 8760')
      .default(168),
  ),
  WS_CONNECTIONS_PER_USER: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'WS_CONNECTIONS_PER_USER must be a number' })
      .int('WS_CONNECTIONS_PER_USER must be a whole number')
      .min(1, 'WS_CONNECTIONS_PER_USER must be between 1 and 10000')
      .max(10_000, 'WS_CONNECTIONS_PER_USER must be between 1 and 10000')
      .default(32),
  ),
  RUNS_PER_USER: count('RUNS_PER_USER', 4, 1_000),
  RUNS_PER_MINUTE: count('RUNS_PER_MINUTE', 30, 100_000),
  AGENT_MAX_RUNS: count('AGENT_MAX_RUNS', 32, 10_000),
  TOOLS_TOKEN_SECRET: secret('TOOLS_TOKEN_SECRET'),
  AGENT_SHARED_SECRET: secret('AGENT_SHARED_SECRET'),
  AGENT_WAIT_MS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'AGENT_WAIT_MS must be a number' })
      .int('AGENT_WAIT_MS must be a whole number')
      .min(0, 'AGENT_WAIT_MS must be between 0 and 600000')
      .max(600_000, 'AGENT_WAIT_MS must be between 0 and 600000')
      .default(10_000),
  ),
  APPROVAL_TTL_MS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'APPROVAL_TTL_MS must be a number' })
      .int('APPROVAL_TTL_MS must be a whole number')
      .min(1_000, 'APPROVAL_TTL_MS must be between 1000 and 604800000')
      .max(604_800_000, 'APPROVAL_TTL_MS must be between 1000 and 604800000')
      .default(86_400_000),
  ),
  TRUST_PROXY: z.preprocess(unset, z.string().optional()),
  USER_MAX_THREADS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'USER_MAX_THREADS must be a number' })
      .int('USER_MAX_THREADS must be a whole number')
      .min(1, 'USER_MAX_THREADS must be between 1 and 1000')
      .max(1000, 'USER_MAX_THREADS must be between 1 and 1000')
      .default(1000),
  ),
  RETENTION_DAYS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'RETENTION_DAYS must be a number' })
      .int('RETENTION_DAYS must be a whole number')
      .min(1, 'RETENTION_DAYS must be between 1 and 36500')
      .max(36_500, 'RETENTION_DAYS must be between 1 and 36500')
      .optional(),
  ),
  COMPACT_AFTER_ITEMS: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'COMPACT_AFTER_ITEMS must be a number' })
      .int('COMPACT_AFTER_ITEMS must be a whole number')
      .min(2, 'COMPACT_AFTER_ITEMS must be between 2 and 1000')
      .max(1000, 'COMPACT_AFTER_ITEMS must be between 2 and 1000')
      .optional(),
  ),
  MSG_BYTES_PER_HOUR: z.preprocess(
    unset,
    z.coerce
      .number({ error: 'MSG_BYTES_PER_HOUR must be a number' })
      .int('MSG_BYTES_PER_HOUR must be a whole number')
      .min(1024, 'MSG_BYTES_PER_HOUR must be between 1024 and 1073741824')
      .max(1024 ** 3, 'MSG_BYTES_PER_HOUR must be between 1024 and 1073741824')
      .default(2 * 1024 * 1024),
  ),
  OIDC_ISSUER: z.preprocess(
    unset,
    z
      .url({
        protocol: /^https?$/,
        error: 'OIDC_ISSUER must be an https URL such as https://accounts.google.com',
      })
      .refine((u) => u.startsWith('https://') || isLoopbackHttp(u), {
        error: 'OIDC_ISSUER must be https (plain http only for a provider on 127.0.0.1 or localhost)',
      })
      .default(GOOGLE_ISSUER),
  ),
  OIDC_CLIENT_ID: z.preprocess(unset, z.string().max(512).optional()),
  OIDC_CLIENT_SECRET: z.preprocess(unset, z.string().max(512).optional()),
  OIDC_REDIRECT_URL: z.preprocess(
    unset,
    z
      .url({
        protocol: /^https?$/,
        error: 'OIDC_REDIRECT_URL must be an http(s) URL such as https://chat.example.com/auth/oidc/callback',
      })
      .refine((u) => new URL(u).pathname === '/auth/oidc/callback', {
        error: 'OIDC_REDIRECT_URL must end in /auth/oidc/callback (the host serves the callback there)',
      })
      .optional(),
  ),
});

const TRUST_PROXY_HELP =
  'TRUST_PROXY must be the number of proxies in front of the host (e.g. 1) or a comma-separated list of ' +
  'their addresses or subnets (e.g. 127.0.0.1, 10.0.0.0/8, loopback)';

/**
 * Reads TRUST_PROXY into a value for Express's `trust proxy` setting: off (`false`), a hop count, or a list of
 * proxy addresses/subnets (checked by Express itself). `true` (trust every hop) is refused: the client address
 * would then be whatever the client wrote first in X-Forwarded-For.
 */
function parseTrustProxy(raw: string | undefined): { value: false | number | string[] } | { error: string } {
  const v = raw?.trim().toLowerCase();
  if (v === undefined || v === '' || v === 'false' || v === '0') return { value: false };
  if (v === 'true') {
    return {
      error: `${TRUST_PROXY_HELP}; "true" would let any client choose its own address through X-Forwarded-For`,
    };
  }
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    return hops <= 10 ? { value: hops } : { error: `${TRUST_PROXY_HELP}; at most 10 hops` };
  }
  const list = raw!
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  try {
    // Express compiles (and so validates) the list when it is set.
    express().set('trust proxy', list);
  } catch {
    return { error: TRUST_PROXY_HELP };
  }
  return { value: list };
}

/** The host's validated settings. Secrets not given here are generated into `dataDir` by {@link loadSecrets}. */
export interface HostConfig {
  port: number;
  host: string;
  agentPort: number;
  dataDir: string;
  mongodbUri: string | undefined;
  mongodbDb: string;
  /** PostgreSQL (DATABASE_URL): threads, events, runs, users and sessions shared by every instance. */
  databaseUrl: string | undefined;
  /** Redis (REDIS_URL): live fan-out of events between instances. */
  redisUrl: string | undefined;
  /** An agent service (or a load-balanced pool) to use instead of starting one as a child process. */
  agentUrl: string | undefined;
  /** Where the agent reaches this host's tool endpoints (TOOLS_BASE_URL). Default: this instance's address. */
  toolsBaseUrl: string | undefined;
  openaiApiKey: string | undefined;
  openaiModel: string;
  openaiBaseUrl: string | undefined;
  publicOrigin: string | undefined;
  cookieSecure: boolean;
  sessionTtlMs: number;
  /** Open WebSockets one user may hold (all tabs and devices). */
  wsConnectionsPerUser: number;
  /** Runs one user may have in progress at once. */
  runsPerUser: number;
  /** Runs one user may start per minute. */
  runsPerMinute: number;
  /** Runs the agent service takes at once; more wait in the relay's fair queue. */
  agentMaxRuns: number;
  toolsTokenSecret: string | undefined;
  agentSharedSecret: string | undefined;
  /** How long a message waits for an agent service that is starting or restarting (AGENT_WAIT_MS). */
  agentWaitMs: number;
  /** How long a tool call waits for the user's approval before its run ends (APPROVAL_TTL_MS, default 24 h). */
  approvalTtlMs: number;
  /**
   * Express's `trust proxy` (TRUST_PROXY): which proxies' X-Forwarded-For to believe when taking the client
   * address that per-address limits count by. `false` (default): the socket's address.
   */
  trustProxy: false | number | string[];
  /** Most threads one user may own (USER_MAX_THREADS). */
  maxThreadsPerUser: number;
  /** Bytes of message text (UTF-8) one user may send per hour (MSG_BYTES_PER_HOUR). */
  messageBytesPerUserHour: number;
  /**
   * "Continue with Google" (OIDC_*): on when OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are set. `redirectUrl`
   * undefined: PUBLIC_ORIGIN (else this host on localhost) + /auth/oidc/callback.
   */
  oidc:
    { issuer: string; clientId: string; clientSecret: string; redirectUrl: string | undefined } | undefined;
  /** Threads idle for more days than this are removed, when set (RETENTION_DAYS; unset: kept forever). */
  retentionDays: number | undefined;
  /**
   * The agent process compacts a thread's history once a run's view of it holds this many items besides user
   * messages (COMPACT_AFTER_ITEMS, 2-1000; unset: off). With the demo model the compaction is offline.
   */
  compactAfterItems: number | undefined;
}

/**
 * Reads and validates the host's settings from `env`. Throws one {@link HostError} (`invalid_config`) that
 * lists every bad setting, one line each, so a user fixes them all in one go.
 *
 * @example
 * const config = readConfig(process.env);
 */
export function readConfig(env: NodeJS.ProcessEnv, options: { cwd?: string } = {}): HostConfig {
  const r = EnvSchema.safeParse(env);
  if (!r.success) {
    const issues = r.error.issues.map((i) => ({ path: String(i.path[0] ?? ''), message: i.message }));
    const lines = issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n');
    throw new HostError('invalid_config', `Invalid settings:\n${lines}`, { issues });
  }
  const e = r.data;
  // Settings that are each valid but not together: all reported at once, one line each.
  const issues: { path: string; message: string }[] = [];
  if (e.PORT !== 0 && e.PORT === e.AGENT_PORT && e.AGENT_URL === undefined) {
    issues.push({
      path: 'AGENT_PORT',
      message: 'AGENT_PORT must differ from PORT (the agent service is a separate process)',
    });
  }
  const trustProxy = parseTrustProxy(e.TRUST_PROXY);
  if ('error' in trustProxy) issues.push({ path: 'TRUST_PROXY', message: trustProxy.error });
  if (e.DATABASE_URL !== undefined && e.MONGODB_URI !== undefined) {
    issues.push({ path: 'DATABASE_URL', message: 'set DATABASE_URL or MONGODB_URI, not both' });
  }
  if (e.REDIS_URL !== undefined && e.DATABASE_URL === undefined && e.MONGODB_URI === undefined) {
    issues.push({
      path: 'REDIS_URL',
      message:
        'REDIS_URL needs a database every instance shares (DATABASE_URL): with SQLite each instance has its own',
    });
  }
  if (e.DATABASE_URL !== undefined) {
    // Generated per-instance secrets would break a cluster: a tool token minted on one instance would be
    // refused on another, and each instance would present a different credential to the agent service.
    for (const name of ['TOOLS_TOKEN_SECRET', 'AGENT_SHARED_SECRET'] as const) {
      if (e[name] === undefined) {
        issues.push({
          path: name,
          message: `${name} must be set when DATABASE_URL is: every instance must use the same one (e.g. \`openssl rand -base64 32\`)`,
        });
      }
    }
  } else if (e.AGENT_URL !== undefined && e.AGENT_SHARED_SECRET === undefined) {
    issues.push({
      path: 'AGENT_SHARED_SECRET',
      message:
        'AGENT_SHARED_SECRET must be set when AGENT_URL is: the agent service must be started with the same one',
    });
  }
  if ((e.OIDC_CLIENT_ID === undefined) !== (e.OIDC_CLIENT_SECRET === undefined)) {
    issues.push({
      path: e.OIDC_CLIENT_ID === undefined ? 'OIDC_CLIENT_ID' : 'OIDC_CLIENT_SECRET',
      message: 'set both OIDC_CLIENT_ID and OIDC_CLIENT_SECRET to turn Google sign-in on, or neither',
    });
  }
  if (
    e.COMPACT_AFTER_ITEMS !== undefined &&
    e.OPENAI_API_KEY !== undefined &&
    !/^(?:ft:)?(?:gpt-|o\d)/i.test(e.OPENAI_MODEL)
  ) {
    issues.push({
      path: 'COMPACT_AFTER_ITEMS',
      message:
        'COMPACT_AFTER_ITEMS needs an OpenAI model in OPENAI_MODEL (gpt-*, o*): compaction calls its compact endpoint',
    });
  }
  if (issues.length > 0) {
    const lines = issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n');
    throw new HostError('invalid_config', `Invalid settings:\n${lines}`, { issues });
  }
  const cwd = options.cwd ?? process.cwd();
  const dataDir =
    e.DATA_DIR === undefined
      ? resolve(EXAMPLE_ROOT, 'data')
      : isAbsolute(e.DATA_DIR)
        ? e.DATA_DIR
        : resolve(cwd, e.DATA_DIR);
  const publicOrigin = e.PUBLIC_ORIGIN?.replace(/\/$/, '');
  const cookieSecure =
    e.COOKIE_SECURE === undefined || e.COOKIE_SECURE === ''
      ? publicOrigin?.startsWith('https://') === true
      : e.COOKIE_SECURE === 'true' || e.COOKIE_SECURE === '1';
  return {
    port: e.PORT,
    host: e.HOST,
    agentPort: e.AGENT_PORT,
    dataDir,
    mongodbUri: e.MONGODB_URI,
    mongodbDb: e.MONGODB_DB,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    agentUrl: e.AGENT_URL?.replace(/\/+$/, ''),
    toolsBaseUrl: e.TOOLS_BASE_URL?.replace(/\/+$/, ''),
    openaiApiKey: e.OPENAI_API_KEY,
    openaiModel: e.OPENAI_MODEL,
    openaiBaseUrl: e.OPENAI_BASE_URL,
    publicOrigin,
    cookieSecure,
    sessionTtlMs: e.SESSION_TTL_HOURS * 3_600_000,
    wsConnectionsPerUser: e.WS_CONNECTIONS_PER_USER,
    runsPerUser: e.RUNS_PER_USER,
    runsPerMinute: e.RUNS_PER_MINUTE,
    agentMaxRuns: e.AGENT_MAX_RUNS,
    toolsTokenSecret: e.TOOLS_TOKEN_SECRET,
    agentSharedSecret: e.AGENT_SHARED_SECRET,
    agentWaitMs: e.AGENT_WAIT_MS,
    approvalTtlMs: e.APPROVAL_TTL_MS,
    trustProxy: 'value' in trustProxy ? trustProxy.value : false,
    maxThreadsPerUser: e.USER_MAX_THREADS,
    messageBytesPerUserHour: e.MSG_BYTES_PER_HOUR,
    oidc:
      e.OIDC_CLIENT_ID !== undefined && e.OIDC_CLIENT_SECRET !== undefined
        ? {
            issuer: e.OIDC_ISSUER,
            clientId: e.OIDC_CLIENT_ID,
            clientSecret: e.OIDC_CLIENT_SECRET,
            redirectUrl:
              e.OIDC_REDIRECT_URL ?? (publicOrigin ? `${publicOrigin}/auth/oidc/callback` : undefined),
          }
        : undefined,
    retentionDays: e.RETENTION_DAYS,
    compactAfterItems: e.COMPACT_AFTER_ITEMS,
  };
}
