import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { HostError } from './errors.js';

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
  RUNS_PER_USER: count('RUNS_PER_USER', 4, 1_000),
  RUNS_PER_MINUTE: count('RUNS_PER_MINUTE', 30, 100_000),
  AGENT_MAX_RUNS: count('AGENT_MAX_RUNS', 32, 10_000),
  TOOLS_TOKEN_SECRET: secret('TOOLS_TOKEN_SECRET'),
  AGENT_SHARED_SECRET: secret('AGENT_SHARED_SECRET'),
});

/** The host's validated settings. Secrets not given here are generated into `dataDir` by {@link loadSecrets}. */
export interface HostConfig {
  port: number;
  host: string;
  agentPort: number;
  dataDir: string;
  mongodbUri: string | undefined;
  mongodbDb: string;
  openaiApiKey: string | undefined;
  openaiModel: string;
  openaiBaseUrl: string | undefined;
  publicOrigin: string | undefined;
  cookieSecure: boolean;
  sessionTtlMs: number;
  /** Runs one user may have in progress at once. */
  runsPerUser: number;
  /** Runs one user may start per minute. */
  runsPerMinute: number;
  /** Runs the agent service takes at once; more wait in the relay's fair queue. */
  agentMaxRuns: number;
  toolsTokenSecret: string | undefined;
  agentSharedSecret: string | undefined;
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
  if (e.PORT !== 0 && e.PORT === e.AGENT_PORT) {
    const msg = 'AGENT_PORT must differ from PORT (the agent service is a separate process)';
    throw new HostError('invalid_config', `Invalid settings:\n  - AGENT_PORT: ${msg}`, {
      issues: [{ path: 'AGENT_PORT', message: msg }],
    });
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
    openaiApiKey: e.OPENAI_API_KEY,
    openaiModel: e.OPENAI_MODEL,
    openaiBaseUrl: e.OPENAI_BASE_URL,
    publicOrigin,
    cookieSecure,
    sessionTtlMs: e.SESSION_TTL_HOURS * 3_600_000,
    runsPerUser: e.RUNS_PER_USER,
    runsPerMinute: e.RUNS_PER_MINUTE,
    agentMaxRuns: e.AGENT_MAX_RUNS,
    toolsTokenSecret: e.TOOLS_TOKEN_SECRET,
    agentSharedSecret: e.AGENT_SHARED_SECRET,
  };
}
