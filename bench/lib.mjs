// Shared helpers for the benchmark suite: a synthetic token stream, timing, and child-process servers.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/** High-resolution wall-clock milliseconds, comparable across processes on one machine. */
export const now = () => performance.timeOrigin + performance.now();

const FILLER = 'lorem ipsum dolor sit amet consectetur ';
/**
 * A delta of fixed length whose first 18 characters carry the time it was produced, so a client can measure
 * per-event latency from the text alone (peers' clients keep only the text). Events built around it are
 * about 150 bytes of JSON.
 */
export function stampedDelta() {
  return now().toFixed(3).padStart(18, '0') + FILLER;
}
export const DELTA_LENGTH = 18 + FILLER.length;
/** Reads the production time back out of a delta (or of the tail of accumulated text). */
export function deltaTime(delta) {
  return Number(delta.slice(0, 18));
}

const spawnListeners = [];
/** Calls `listener(pid)` for every server process started from now on (the scenario watchdog kills them). */
export function onServerSpawn(listener) {
  spawnListeners.push(listener);
}

/** Percentile of a numeric array (sorts in place). */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];
}

/** Node flags for the Threadline servers (relay or API side, agent side), for profiling any scenario (e.g. "--cpu-prof --cpu-prof-dir=DIR"). */
const NODE_ARGS_ENV = {
  'threadline-relay.mjs': 'BENCH_RELAY_NODE_ARGS',
  'threadline-agent.mjs': 'BENCH_AGENT_NODE_ARGS',
  'long-thread-api.mjs': 'BENCH_RELAY_NODE_ARGS',
  'long-thread-agent.mjs': 'BENCH_AGENT_NODE_ARGS',
};

/**
 * Starts `node <file> ...args` and waits for it to print `READY <json>`; returns that JSON and a stop function.
 * The child is killed on stop and when this process exits. BENCH_RELAY_NODE_ARGS and BENCH_AGENT_NODE_ARGS
 * pass node flags to the relay and the agent service.
 */
/** Children still running; one exit handler kills them all (a handler per child passed Node's listener warning). */
const running = new Set();
process.once('exit', () => {
  for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
});

export async function startServer(file, args = [], env = {}) {
  const flags = process.env[NODE_ARGS_ENV[file.split('/').pop()]];
  const nodeArgs = flags ? flags.split(' ') : [];
  const child = spawn(process.execPath, [...nodeArgs, file, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production', ...env },
  });
  const kill = () => child.exitCode === null && child.kill('SIGKILL');
  for (const listener of spawnListeners) listener(child.pid);
  running.add(child);
  child.once('exit', () => running.delete(child));
  const rl = createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    rl.on('line', (line) => {
      if (line.startsWith('READY ')) resolve(JSON.parse(line.slice(6)));
    });
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code} before it was ready`)));
  });
  const timeout = setTimeout(() => kill(), 30_000);
  try {
    const info = await ready;
    return {
      info,
      child,
      async stop() {
        clearTimeout(timeout);
        if (child.exitCode !== null) return;
        child.kill('SIGTERM');
        const t = setTimeout(kill, 3_000);
        await once(child, 'exit');
        clearTimeout(t);
      },
    };
  } finally {
    clearTimeout(timeout);
  }
}

/** Collects latencies without keeping every sample for huge runs (every k-th sample). */
export function latencyRecorder(expected) {
  const every = Math.max(1, Math.floor(expected / 20_000));
  const samples = [];
  let i = 0;
  return {
    record(sentAt) {
      if (i++ % every === 0) samples.push(now() - sentAt);
    },
    summary() {
      return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
    },
  };
}

/** Resident set size in bytes. */
export const rss = () => process.memoryUsage().rss;

/** Asks a bench server for its RSS after a full GC (servers answer GET /mem when started with --expose-gc). */
export async function serverRss(port) {
  const res = await fetch(`http://127.0.0.1:${port}/mem`);
  return Number(await res.text());
}

/**
 * Throwaway PostgreSQL and Redis servers for the cluster rows, from the relay tests' helpers
 * (packages/relay/test/servers.ts, loaded as TypeScript by Node). Returns `{ skipped }` instead when a server's
 * binaries are not installed (`bash scripts/install-servers.sh` installs them), so the rows are skipped, not failed.
 * PostgreSQL runs with its durable defaults (fsync and synchronous_commit on), as SQLite runs with synchronous=full.
 */
export async function startEngines({ postgres = true, redis = false } = {}) {
  const servers = await import('../packages/relay/test/servers.ts');
  if (postgres && !servers.postgresBinDir())
    return { skipped: 'PostgreSQL is not installed (bash scripts/install-servers.sh)' };
  if (redis && !servers.redisServerPath())
    return { skipped: 'redis-server is not installed (bash scripts/install-servers.sh)' };
  const [pg, rd] = await Promise.all([
    // BENCH_PG_DURABLE=0 (for comparison while profiling only): fsync off, what the disk's flushes cost.
    postgres ? servers.startPostgres({ durable: process.env.BENCH_PG_DURABLE !== '0' }) : null,
    redis ? servers.startRedis() : null,
  ]);
  return {
    pg,
    redis: rd,
    async stop() {
      await Promise.all([pg?.destroy(), rd?.destroy()]);
    },
  };
}
