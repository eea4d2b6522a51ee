// The store load of run leases: 1,000 runs stream at once through one relay instance on PostgreSQL (a
// throwaway server on loopback) with the relay's default lease settings, at two event rates. Every store call
// is counted at the store port: lease renewals (one statement renews every run of the instance) and the
// sweep for runs whose owner is gone, against the event writes. The lease load must not grow with the event
// rate. Skipped when PostgreSQL is not installed.
import {
  createRelay,
  DEFAULT_RELAY_LIMITS,
  DEFAULT_RELAY_TUNING,
  InProcessPubSub,
  inProcessAgentTransport,
} from '@threadline/relay';
import { openPostgresStore } from '@threadline/relay/postgres';
import { startEngines } from '../lib.mjs';
import { syntheticRunner } from '../servers/synthetic-runner.mjs';

/** Wraps the store's methods to count calls (and rows for renewals) per name. */
function counted(store) {
  const counts = {};
  const bump = (name, rows) => {
    const c = (counts[name] ??= { calls: 0, rows: 0 });
    c.calls++;
    c.rows += rows;
  };
  const proxy = new Proxy(store, {
    get(target, name) {
      const value = Reflect.get(target, name, target);
      if (typeof value !== 'function') return value;
      return (...args) => {
        const rows =
          name === 'renewLeases'
            ? args[1].length
            : name === 'appendMany'
              ? args[0].reduce((n, b) => n + b.events.length, 0)
              : name === 'append'
                ? args[1].length
                : 0;
        bump(String(name), rows);
        return value.apply(target, args);
      };
    },
  });
  return { store: proxy, counts };
}

export async function run(_n) {
  const smoke = process.argv.includes('--smoke');
  const runs = smoke ? 20 : 1_000;
  const windowMs = smoke ? 2_000 : 12_000;
  // Smoke: short leases so the window sees renewals; the full run uses the relay's defaults.
  const leaseLimits = smoke
    ? { leaseTtlMs: 2_000, leaseRenewMs: 500, leaseSweepMs: 500 }
    : {
        leaseTtlMs: DEFAULT_RELAY_LIMITS.leaseTtlMs,
        leaseRenewMs: DEFAULT_RELAY_TUNING.leaseRenewMs,
        leaseSweepMs: DEFAULT_RELAY_TUNING.leaseSweepMs,
      };
  const rates = smoke ? [1, 10] : [1, 10];
  const engines = await startEngines({ postgres: true });
  if (engines.skipped) return { skipped: engines.skipped };
  const rows = [];
  try {
    for (const rate of rates) {
      const base = await openPostgresStore({
        connectionString: engines.pg.url,
        tablePrefix: `lease${rate}_`,
      });
      const { store, counts } = counted(base);
      const relay = createRelay({
        store,
        cluster: { pubsub: new InProcessPubSub(), instanceId: `bench-lease-${rate}` }, // a cluster instance: leases on
        agent: inProcessAgentTransport(syntheticRunner),
        tokens: { issue: async () => 'bench-token' },
        toolsBaseUrl: 'http://127.0.0.1:1',
        tools: [],
        limits: {
          maxActiveRuns: 5_000,
          maxRunsPerUser: 5_000,
          maxRunStartsPerUser: 1_000_000,
          leaseTtlMs: leaseLimits.leaseTtlMs,
        },
        tuning: { leaseRenewMs: leaseLimits.leaseRenewMs, leaseSweepMs: leaseLimits.leaseSweepMs },
        logger: { warn: console.error, error: console.error },
      });
      try {
        const user = { id: 'bench_user' };
        for (let i = 0; i < runs; i++) await base.createThread({ threadId: `l_${i}`, ownerId: user.id });
        // Each run streams for longer than the window, so all of them are running throughout.
        const chunks = Math.ceil((rate * (windowMs + 30_000)) / 1000);
        await Promise.all(
          Array.from({ length: runs }, (_, i) =>
            relay.send({
              user,
              threadId: `l_${i}`,
              text: `stream ${chunks} ${rate}`,
              clientMessageId: `c_${i}`,
            }),
          ),
        );
        // Let every run get going, then count over the window.
        await new Promise((r) => setTimeout(r, 1_000));
        for (const k of Object.keys(counts)) delete counts[k];
        const started = performance.now();
        await new Promise((r) => setTimeout(r, windowMs));
        const seconds = (performance.now() - started) / 1000;
        const snap = structuredClone(counts);
        const running = (await base.listRunningRuns()).length;
        const per = (name, key = 'calls') => (snap[name]?.[key] ?? 0) / seconds;
        rows.push({
          rate,
          runs,
          running,
          seconds,
          eventsPerSec: per('appendMany', 'rows') + per('append', 'rows'),
          eventWritesPerSec: per('appendMany') + per('append'),
          renewCallsPerSec: per('renewLeases'),
          renewedRowsPerSec: per('renewLeases', 'rows'),
          sweepCallsPerSec: per('claimRuns'),
        });
      } finally {
        await relay.close();
        await base.close();
      }
    }
  } finally {
    await engines.stop();
  }
  const f = (x, d = 1) => x.toFixed(d);
  const [low, high] = rows;
  const grows =
    high.renewCallsPerSec + high.sweepCallsPerSec >
    1.25 * (low.renewCallsPerSec + low.sweepCallsPerSec) + 0.2;
  let markdown = `${runs} runs streaming at once through one relay instance on PostgreSQL, lease settings ${leaseLimits.leaseTtlMs} ms TTL, renewed every ${leaseLimits.leaseRenewMs} ms, swept every ${leaseLimits.leaseSweepMs} ms (${smoke ? 'shortened for the smoke run' : 'the relay defaults'}). Store calls counted at the store port over ${windowMs / 1000} s, at two event rates per run:\n\n`;
  markdown += `| events/s per run | runs running | stored events/s | event write statements/s | lease renewal statements/s | runs renewed/s | sweep statements/s |\n|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (const r of rows)
    markdown += `| ${r.rate} | ${r.running} | ${Math.round(r.eventsPerSec).toLocaleString('en')} | ${f(r.eventWritesPerSec)} | ${f(r.renewCallsPerSec, 2)} | ${f(r.renewedRowsPerSec)} | ${f(r.sweepCallsPerSec, 2)} |\n`;
  markdown += `\nLease writes ${grows ? '**grow**' : 'do not grow'} with the event rate: one renewal statement per ${leaseLimits.leaseRenewMs} ms renews every run of the instance (${runs} rows), one sweep statement per ${leaseLimits.leaseSweepMs} ms, whatever the events do. (Stored events are what the relay wrote after coalescing chunks of one message; the agent's chunks/s are the runs × the rate.)\n`;
  return { rows, grows, leaseLimits, markdown };
}
