// Throwaway PostgreSQL and Redis servers for tests: each on a free 127.0.0.1 port, in its own temp dir, started
// and stopped by the test itself (nothing depends on a server started by hand). Install the binaries with
// scripts/install-servers.sh. Every server started here is killed when the test process exits, whatever happens.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The directory of PostgreSQL's server binaries (the newest installed major version), or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'postgres')) && existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : null;
}

/** Where redis-server is, or null. */
export function redisServerPath(): string | null {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(p)) return p;
  return null;
}

const MISSING_HINT = 'run `bash scripts/install-servers.sh` (apt-get; as root) to install it';

/** The uid/gid to run PostgreSQL as: it refuses root, so as root it runs as the `postgres` OS user. */
async function postgresUser(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    throw new Error(
      'PostgreSQL refuses to run as root and there is no `postgres` OS user; ' +
        'install the Debian package `postgresql` (it creates one) or run the tests as another user',
    );
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, log: () => string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Stops a child: `signal`, then SIGKILL after 5 s. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited(child);
    clearTimeout(timer);
  }
  live.delete(child);
}

export interface TestPostgres {
  /** A connection string for the `postgres` superuser (trust authentication, loopback TCP). */
  readonly url: string;
  readonly port: number;
  /** Stops the server (fast shutdown, or `immediate` to simulate a crash); the data directory stays. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and deletes its directory. */
  destroy(): Promise<void>;
}

/**
 * Creates a new PostgreSQL cluster in a temp dir (initdb) and starts it on a free loopback port. Fails with a
 * clear message when the binaries are missing. `durable: true` keeps PostgreSQL's own defaults (fsync on,
 * synchronous_commit on: a commit is on disk before it is acknowledged), for the benchmark; tests run without fsync.
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error(`PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; ${MISSING_HINT}`);
  const user = await postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'threadline-pg-'));
  dirs.add(dir);
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const as = user ? { uid: user.uid, gid: user.gid } : {};
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' };
  try {
    await run(
      join(bin, 'initdb'),
      ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync'],
      {
        ...as,
        env,
        cwd: dir,
      },
    );
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`initdb failed: ${e.stderr || e.message}`, { cause: error });
  }
  const port = await freePort();
  let child: ChildProcess | undefined;
  let output = '';
  const start = async () => {
    output = '';
    child = spawn(
      join(bin, 'postgres'),
      // fsync off: a throwaway cluster; crash safety is PostgreSQL's, not what these tests check.
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `fsync=${options.durable ? 'on' : 'off'}`,
        '-c',
        'max_connections=200',
      ],
      { ...as, env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    live.add(child);
    const append = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    const c = child;
    await waitFor(
      `PostgreSQL on port ${port}`,
      async () => {
        if (c.exitCode !== null) throw new Error(`PostgreSQL exited with code ${c.exitCode}\n${output}`);
        return output.includes('ready to accept connections');
      },
      30_000,
      () => output,
    );
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    // SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one (no checkpoint, like a crash).
    stop: async (mode = 'fast') => {
      if (child) await stopChild(child, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    },
    start,
    destroy: async () => {
      if (child) await stopChild(child, 'SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGKILL: it loses its connections and subscriptions at once). */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/** Starts redis-server on a free loopback port, without persistence. Fails clearly when it is not installed. */
export async function startRedis(): Promise<TestRedis> {
  const bin = redisServerPath();
  if (!bin) throw new Error(`redis-server not found; ${MISSING_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'threadline-redis-'));
  dirs.add(dir);
  const port = await freePort();
  let child: ChildProcess | undefined;
  let output = '';
  const start = async () => {
    output = '';
    child = spawn(
      bin,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    live.add(child);
    const append = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    const c = child;
    await waitFor(
      `redis-server on port ${port}`,
      async () => {
        if (c.exitCode !== null) throw new Error(`redis-server exited with code ${c.exitCode}\n${output}`);
        return output.includes('Ready to accept connections');
      },
      15_000,
      () => output,
    );
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (child) await stopChild(child, 'SIGKILL');
    },
    start,
    destroy: async () => {
      if (child) await stopChild(child, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}
