// The system benchmark: every streaming path at several message sizes, each side in its own process, plus the
// Threadline-specific figures (concurrency, memory, resume, web component). Writes bench/results/latest.json and
// latest.md. `--smoke` runs a tiny version (CI) so the suite cannot rot.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';

const smoke = process.argv.includes('--smoke');
const sizes = smoke ? [2_000] : [5_000, 20_000, 200_000];
const timeoutSeconds = smoke ? 20 : 90;
const threadline = existsSync('bench/threadline')
  ? readdirSync('bench/threadline').filter((f) => f.endsWith('.mjs'))
  : [];
const streamScenarios = [
  'bare-ws-frame',
  'bare-ws-corked',
  ...threadline.filter((f) => f.startsWith('stream-')).map((f) => f.replace(/\.mjs$/, '')),
  'ag-ui',
  'ai-sdk',
];
const extraScenarios = threadline.filter((f) => !f.startsWith('stream-')).map((f) => f.replace(/\.mjs$/, ''));

function runScenario(name, n) {
  const res = spawnSync(
    process.execPath,
    ['bench/scenario.mjs', name, String(n), String(timeoutSeconds), ...(smoke ? ['--smoke'] : [])],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: (timeoutSeconds + 60) * 1000,
      env: { ...process.env, NODE_ENV: 'production' },
    },
  );
  const line = (res.stdout ?? '')
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  try {
    return JSON.parse(line);
  } catch {
    return { name, requested: n, error: `no result (exit ${res.status}, signal ${res.signal})` };
  }
}

const started = Date.now();
const results = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  smoke,
  stream: [],
  extra: [],
};
for (const n of sizes) {
  for (const name of streamScenarios) {
    const r = runScenario(name, n);
    results.stream.push(r);
    console.log(
      r.error
        ? `${name} @${n}: ERROR ${r.error.split('\n')[0]}`
        : `${name} @${n}: ${Math.round(r.eventsPerSec).toLocaleString('en')} events/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms${r.complete ? '' : ` (INCOMPLETE: ${r.events} events in the time limit)`}`,
    );
  }
}
for (const name of extraScenarios) {
  const r = runScenario(name, smoke ? 1 : 0);
  results.extra.push(r);
  console.log(`${name}: ${JSON.stringify(r)}`);
}
results.seconds = (Date.now() - started) / 1000;

// Ratios to the corked bare-ws limit at each size.
const fmt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en') : 'n/a');
let md = `# Threadline benchmark\n\n${results.date} · Node ${results.node} · ${results.cpus} × ${results.cpuModel}${smoke ? ' · SMOKE RUN (tiny sizes, figures not meaningful)' : ''}\n\n`;
md += '## Streaming throughput and latency (one assistant message of N events, ~150-byte events)\n\n';
md +=
  '| path | events | events/s | × corked ws | p50 ms | p99 ms | complete |\n|---|---:|---:|---:|---:|---:|---|\n';
for (const n of sizes) {
  const limit = results.stream.find((r) => r.name === 'bare-ws-corked' && r.requested === n)?.eventsPerSec;
  for (const r of results.stream.filter((x) => x.requested === n)) {
    if (r.error) md += `| ${r.name} | ${n} | error | | | | ${r.error.split('\n')[0]} |\n`;
    else
      md += `| ${r.name} | ${n} | ${fmt(r.eventsPerSec)} | ${(r.eventsPerSec / limit).toFixed(2)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.complete ? 'yes' : `no: ${r.events} in ${timeoutSeconds} s`} |\n`;
  }
}
if (results.extra.length) {
  md += '\n## Other figures\n\n';
  for (const r of results.extra)
    md += `### ${r.name}\n\n${r.error ? `error: ${r.error}` : (r.markdown ?? '```\n' + JSON.stringify(r, null, 2) + '\n```')}\n\n`;
}
md += `\nTotal bench time: ${results.seconds.toFixed(0)} s.\n`;
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/latest.json', JSON.stringify(results, null, 2) + '\n');
writeFileSync('bench/results/latest.md', md);
console.log(
  `\nwrote bench/results/latest.json and bench/results/latest.md (${results.seconds.toFixed(0)} s)`,
);
const errors = [...results.stream, ...results.extra].filter((r) => r.error);
if (errors.length) {
  console.error(`${errors.length} scenario(s) failed`);
  process.exit(1);
}
