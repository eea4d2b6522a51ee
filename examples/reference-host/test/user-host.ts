import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The example's folder and the repository root. */
export const EXAMPLE_DIR = fileURLToPath(new URL('..', import.meta.url));
export const REPO_ROOT = join(EXAMPLE_DIR, '..', '..');

const BUILT = [
  join(EXAMPLE_DIR, 'dist/main.js'),
  join(EXAMPLE_DIR, 'dist/agent.js'),
  join(REPO_ROOT, 'packages/web-component/dist/agent-chat.js'),
  join(REPO_ROOT, 'packages/relay/dist/index.js'),
  join(REPO_ROOT, 'packages/relay/dist/postgres.js'),
  join(REPO_ROOT, 'packages/relay/dist/redis.js'),
  join(REPO_ROOT, 'packages/tools-kit/dist/index.js'),
  join(REPO_ROOT, 'packages/agent-runner/dist/index.js'),
  join(REPO_ROOT, 'packages/contracts/dist/index.js'),
];

/** Builds the workspace when any built file the host needs is missing (the root `npm test` builds first). */
export function ensureBuilt(): void {
  if (BUILT.every((f) => existsSync(f))) return;
  execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
}

/** The live process tree of the host: its children's pids, read from /proc (Linux). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Fields after the command name (which may contain spaces) start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The host started the way a user starts it: `node dist/main.js` with settings in the environment. */
export interface UserHost {
  url: string;
  child: ChildProcess;
  dataDir: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves when the output matches `re` at or after character `from`. */
  waitForOutput(re: RegExp, from?: number, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Sends SIGINT (Ctrl-C) and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts the host as {@link startUserHost} does, with an empty data folder, and resolves once it is open. */
export async function startUserHost(env: Record<string, string> = {}): Promise<UserHost> {
  const host = spawnUserHost(env);
  const m = await host.waitForOutput(/Open\s+(http:\/\/localhost:\d+)/);
  return { ...host, url: m[1]! };
}

/**
 * Spawns `node dist/main.js` without waiting for it to be ready (`url` is empty until the caller knows it).
 * `dataDir` reuses a folder (a restart of an earlier host); by default a new temp folder is made.
 */
export function spawnUserHost(env: Record<string, string> = {}, dataDir?: string): UserHost {
  const ownDir = dataDir === undefined;
  dataDir ??= mkdtempSync(join(tmpdir(), 'tl-e2e-'));
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // A user's shell has none of vitest's settings (NODE_ENV=test would switch the SDK's tracing off).
    if (k === 'NODE_ENV' || k.startsWith('VITEST') || k.startsWith('OPENAI_') || k.startsWith('THREADLINE_'))
      continue;
    base[k] = v;
  }
  const child = spawn(process.execPath, [join(EXAMPLE_DIR, 'dist/main.js')], {
    // Run from the data folder so a developer's examples/reference-host/.env cannot leak into the test.
    cwd: dataDir,
    env: { ...base, PORT: '0', AGENT_PORT: '0', DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForOutput = (re: RegExp, from = 0, timeoutMs = 30_000) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const m = new RegExp(re.source, re.flags).exec(out.slice(from));
        if (m) {
          done();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${re} in host output:\n${out}`));
      }, timeoutMs);
      const onExit = () => {
        done();
        reject(new Error(`host exited while waiting for ${re}:\n${out}`));
      };
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
        child.off('exit', onExit);
      };
      listeners.add(check);
      child.once('exit', onExit);
      check();
    });

  return {
    url: '',
    child,
    dataDir,
    output: () => out,
    waitForOutput,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      const code = await exited;
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}
