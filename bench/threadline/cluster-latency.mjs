// Two relay instances on one PostgreSQL with Redis fan-out (throwaway servers on loopback), one agent service:
// runs stream through instance A (paced, started together) while every thread has one subscriber on A (the
// socket that sent) and one on B, whose events reach it through Redis. Both sides measure the same chunks' added
// latency; seqs are checked on both. Two levels: the issue's 100 runs at 50 events/s each, and 100 runs at a rate
// this machine carries. Beside each: a probe committing one row to the same PostgreSQL every 20 ms (the floor of
// any stored event's latency on this machine at that moment), every process's CPU and the load average. Skipped
// when PostgreSQL or Redis is not installed.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import pg from 'pg';
import { latencyRecorder, percentile, startEngines } from '../lib.mjs';
import { connect, streamRun } from '../servers/threadline-client.mjs';
import { DELTA_LENGTH, deltaTime } from '../lib.mjs';

/** Follows `threadId` from `afterSeq` on `ws` (subscribe only) until a RUN_FINISHED; counts seq gaps. */
function followRun(ws, { threadId, afterSeq, onChunk }) {
  return new Promise((resolve, reject) => {
    let lastSeq = afterSeq;
    let gaps = 0;
    const onMessage = (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'error') return reject(new Error(`${message.code}: ${message.message}`));
      if (message.type !== 'event' || message.event.threadId !== threadId) return;
      const event = message.event;
      if (event.seq !== lastSeq + 1) gaps++;
      lastSeq = event.seq;
      if (event.type === 'TEXT_MESSAGE_CHUNK') {
        for (let i = 0; i + DELTA_LENGTH <= event.delta.length; i += DELTA_LENGTH)
          onChunk(deltaTime(event.delta.slice(i, i + DELTA_LENGTH)));
      } else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
        ws.off('message', onMessage);
        if (event.type === 'RUN_ERROR') return reject(new Error(`RUN_ERROR ${event.code}`));
        resolve({ lastSeq, gaps });
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ type: 'subscribe', threadId, afterSeq }));
  });
}

/** CPU seconds (user + system) of a process; NaN where /proc is missing. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** Pids of the processes whose command line holds `needle`, and of their children (PostgreSQL's backends). */
function pidsOf(needle) {
  const procs = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      procs.push({ pid: Number(name), ppid, cmd });
    } catch {
      // gone meanwhile
    }
  }
  const roots = new Set(procs.filter((p) => p.cmd.includes(needle)).map((p) => p.pid));
  return procs.filter((p) => roots.has(p.pid) || roots.has(p.ppid)).map((p) => p.pid);
}

/** Share of one core each group of processes used while `fn` ran (PostgreSQL's backends summed at the end). */
async function measureCpu(groups, fn) {
  const read = () => ({
    ...Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, pids().map(cpuSeconds)])),
    client: process.cpuUsage(),
    at: performance.now(),
  });
  const before = read();
  const result = await fn();
  const after = read();
  const wall = (after.at - before.at) / 1000;
  const cpu = {};
  for (const k of Object.keys(groups)) {
    // Processes started meanwhile (a new backend) count from zero.
    const b = before[k];
    cpu[k] = after[k].reduce((sum, v, i) => sum + (v - (i < b.length && b[i] <= v ? b[i] : 0)), 0) / wall;
  }
  const client = process.cpuUsage(before.client);
  cpu.client = (client.user + client.system) / 1e6 / wall;
  return { result, cpu };
}

/** Commits one row every 20 ms on its own connection until stopped; the latencies of those commits. */
async function commitProbe(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE TABLE IF NOT EXISTS bench_probe (id bigserial PRIMARY KEY, at bigint)');
  const samples = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      await client.query('INSERT INTO bench_probe (at) VALUES ($1)', [Date.now()]);
      samples.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    await client.end();
    return { p50: percentile([...samples], 50), p99: percentile([...samples], 99), n: samples.length };
  };
}

async function level(runs, rate, perRun, { startServer, here }) {
  const engines = await startEngines({ postgres: true, redis: true });
  if (engines.skipped) return { skipped: engines.skipped };
  const env = {
    BENCH_AGENT_SECRET: randomBytes(32).toString('hex'),
    BENCH_STORE: 'postgres',
    BENCH_PG_URL: engines.pg.url,
    BENCH_REDIS_URL: engines.redis.url,
  };
  const servers = [];
  try {
    const agent = await startServer(here('servers/threadline-agent.mjs'), [], env);
    servers.push(agent);
    const relay = (id) =>
      startServer(here('servers/threadline-relay.mjs'), ['http', String(runs), agent.info.url], {
        ...env,
        BENCH_INSTANCE_ID: id,
      });
    const a = await relay('bench-a');
    servers.push(a);
    const b = await relay('bench-b');
    servers.push(b);
    const onA = await Promise.all(Array.from({ length: runs }, () => connect(a.info.port)));
    const onB = await Promise.all(Array.from({ length: runs }, () => connect(b.info.port)));
    const thread = (i) => `bench_${i}`;
    // A first short run per thread, followed on B: once B has its RUN_FINISHED, B's Redis channel for the
    // thread is live, so the measured run reaches B through Redis, not through a replay from the store.
    const primed = await Promise.all(
      onA.map((ws, i) =>
        Promise.all([
          followRun(onB[i], { threadId: thread(i), afterSeq: 0, onChunk() {} }),
          streamRun(ws, { threadId: thread(i), text: 'stream 1', onChunk() {} }),
        ]),
      ),
    );
    const same = latencyRecorder(runs * perRun);
    const cross = latencyRecorder(runs * perRun);
    const seen = { same: 0, cross: 0 };
    let gaps = 0;
    let failed = 0;
    const stopProbe = await commitProbe(engines.pg.url);
    const loadBefore = loadavg()[0];
    const { cpu } = await measureCpu(
      {
        relayA: () => [a.child.pid],
        relayB: () => [b.child.pid],
        agent: () => [agent.child.pid],
        postgres: () => pidsOf(`-p ${engines.pg.port} `),
        redis: () => pidsOf(`:${engines.redis.port}`),
      },
      () =>
        Promise.all(
          onA.map((ws, i) => {
            const afterSeq = primed[i][1].lastSeq;
            return Promise.all([
              followRun(onB[i], {
                threadId: thread(i),
                afterSeq,
                onChunk: (sentAt) => (seen.cross++, cross.record(sentAt)),
              }),
              streamRun(ws, {
                threadId: thread(i),
                text: `stream ${perRun} ${rate}`,
                afterSeq,
                onChunk: (sentAt) => (seen.same++, same.record(sentAt)),
              }),
            ]).then(
              ([x, y]) => (gaps += x.gaps + y.gaps),
              () => failed++,
            );
          }),
        ),
    );
    const probe = await stopProbe();
    const load = [loadBefore, loadavg()[0]];
    for (const ws of [...onA, ...onB]) ws.terminate();
    const s = same.summary();
    const c = cross.summary();
    const lost = 2 * runs * perRun - seen.same - seen.cross;
    const target = 2 * s.p99 + 2;
    const met = c.p99 <= target && lost === 0 && gaps === 0 && failed === 0;
    return { runs, rate, perRun, same: s, cross: c, seen, lost, gaps, failed, target, met, probe, cpu, load };
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await engines.stop();
  }
}

export async function run(_n, ctx) {
  const smoke = process.argv.includes('--smoke');
  const runs = Number(process.env.BENCH_CLUSTER_RUNS ?? (smoke ? 5 : 100));
  // The issue's level, then one this machine carries (BENCH_CLUSTER_RATES, events/s per run, to explore others).
  const rates = (process.env.BENCH_CLUSTER_RATES ?? (smoke ? '50' : '50,5')).split(',').map(Number);
  const levels = [];
  for (const rate of rates) {
    const perRun = smoke ? 25 : Math.max(20, rate * 4); // about 4 s of streaming
    const result = await level(runs, rate, perRun, ctx);
    if (result.skipped) return result;
    levels.push(result);
  }
  const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
  const pct = (x) => (Number.isFinite(x) ? String(Math.round(x * 100)) : 'n/a');
  let markdown = `Two relay instances (A and B) on one PostgreSQL (fsync on) with Redis fan-out, one agent service. ${runs} runs stream through A at once (paced, about 4 s each); every thread has one WebSocket subscriber on A (the one that sent) and one on B, which gets the events through Redis. Added latency of the same chunks on both sides, at two offered rates. "Commit probe": one row committed to the same PostgreSQL every 20 ms meanwhile, alone on its connection (what any stored event waits for at least, on this machine at that moment).\n\n`;
  markdown += `| events/s per run (total) | subscriber | p50 ms | p99 ms | chunks received | commit probe p50 / p99 ms | CPU, % of a core: relay A / relay B / agent / PostgreSQL / Redis / client | load average |\n|---|---|---:|---:|---:|---:|---|---|\n`;
  for (const l of levels) {
    const cpu = `${pct(l.cpu.relayA)} / ${pct(l.cpu.relayB)} / ${pct(l.cpu.agent)} / ${pct(l.cpu.postgres)} / ${pct(l.cpu.redis)} / ${pct(l.cpu.client)}`;
    const total = l.runs * l.perRun;
    markdown += `| ${l.rate} (${l.rate * l.runs}) | owning instance (A) | ${f(l.same.p50)} | ${f(l.same.p99)} | ${l.seen.same} of ${total} | ${f(l.probe.p50)} / ${f(l.probe.p99)} | ${cpu} | ${l.load.map((x) => x.toFixed(1)).join(' → ')} |\n`;
    markdown += `| ${l.rate} (${l.rate * l.runs}) | other instance (B, through Redis) | ${f(l.cross.p50)} | ${f(l.cross.p99)} | ${l.seen.cross} of ${total} | | | |\n`;
  }
  markdown += '\n';
  for (const l of levels)
    markdown += `Target at ${l.rate} events/s per run: cross-instance p99 ≤ 2 × same-instance p99 + 2 ms = ${f(l.target)} ms: **${l.met ? 'met' : 'missed'}** (${f(l.cross.p99)} ms; lost ${l.lost}, seq gaps ${l.gaps}, failed runs ${l.failed}).\n`;
  const machine = (l) =>
    ['relayA', 'relayB', 'agent', 'postgres', 'redis', 'client'].reduce((n, k) => n + (l.cpu[k] || 0), 0);
  markdown += `\nThe six processes share the machine's two cores (200 % of one) with whatever else runs (the load average): they used ${levels.map((l) => `${pct(machine(l))} % at ${l.rate} events/s per run`).join(', ')}. Where the latency far exceeds the commit probe, events queue behind a machine that is full (every chunk costs CPU in all six processes); where the probe's own tail is long, the disk's flushes are.\n`;
  const first = levels[0];
  return { ...first, levels, markdown };
}
