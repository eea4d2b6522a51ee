// Web component: gzipped size of the single-file bundle next to peers' browser bundles for a comparable chat,
// and the time to render a 10,000-chunk stream in headless Chromium (the package's own bench).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const peers = {
  'AI SDK useChat + react-dom': `
    import { createElement as h } from 'react';
    import { createRoot } from 'react-dom/client';
    import { useChat } from '@ai-sdk/react';
    function Chat() {
      const { messages, sendMessage, stop, status } = useChat();
      return h('div', null,
        messages.map((m) => h('p', { key: m.id }, m.parts.map((p) => (p.type === 'text' ? p.text : '')).join(''))),
        h('form', { onSubmit: (e) => { e.preventDefault(); sendMessage({ text: e.target.q.value }); } }, h('input', { name: 'q' })),
        status === 'streaming' ? h('button', { onClick: stop }, 'Stop') : null);
    }
    createRoot(document.getElementById('root')).render(h(Chat));`,
  'CopilotKit CopilotChat': `
    import { createElement as h } from 'react';
    import { createRoot } from 'react-dom/client';
    import { CopilotKit } from '@copilotkit/react-core';
    import { CopilotChat } from '@copilotkit/react-ui';
    createRoot(document.getElementById('root')).render(h(CopilotKit, { runtimeUrl: '/api/copilotkit' }, h(CopilotChat)));`,
};

async function bundleSize(source) {
  const dir = mkdtempSync(join(process.cwd(), 'bench/.tmp-'));
  try {
    writeFileSync(join(dir, 'entry.jsx'), source);
    const out = await build({
      entryPoints: [join(dir, 'entry.jsx')],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      write: false,
      outdir: dir,
      splitting: false,
      logLevel: 'silent',
      loader: { '.css': 'empty', '.woff': 'empty', '.woff2': 'empty', '.svg': 'dataurl', '.png': 'dataurl' },
      define: { 'process.env.NODE_ENV': '"production"' },
    });
    const js = Buffer.concat(
      out.outputFiles.filter((f) => f.path.endsWith('.js')).map((f) => Buffer.from(f.contents)),
    );
    return { raw: js.length, gzip: gzipSync(js, { level: 9 }).length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run() {
  const smoke = process.argv.includes('--smoke');
  const ours = readFileSync('packages/web-component/dist/agent-chat.js');
  const sizes = [
    {
      name: '<agent-chat> (Threadline, lit included)',
      raw: ours.length,
      gzip: gzipSync(ours, { level: 9 }).length,
    },
  ];
  if (!smoke) {
    for (const [name, source] of Object.entries(peers)) {
      try {
        sizes.push({ name, ...(await bundleSize(source)) });
      } catch (err) {
        sizes.push({ name, error: String(err.message ?? err).split('\n')[0] });
      }
    }
  }
  const bench = spawnSync(process.execPath, ['packages/web-component/scripts/bench.mjs'], {
    encoding: 'utf8',
    env: { ...process.env, BENCH_CHUNKS: smoke ? '500' : '10000', BENCH_RUNS: smoke ? '1' : '3' },
    timeout: 180_000,
  });
  const renderLines = (bench.stdout ?? '').split('\n').filter((l) => l.startsWith('render'));
  let markdown = '| bundle | minified | gzipped |\n|---|---:|---:|\n';
  for (const s of sizes)
    markdown += s.error
      ? `| ${s.name} | error: ${s.error} | |\n`
      : `| ${s.name} | ${(s.raw / 1024).toFixed(1)} KiB | ${(s.gzip / 1024).toFixed(1)} KiB |\n`;
  markdown += `\nBudget for <agent-chat>: 20 KiB gzipped.\n\n${renderLines.map((l) => `- ${l}`).join('\n') || `- render: no figures (exit ${bench.status}) ${bench.stderr?.slice(0, 200) ?? ''}`}\n`;
  return { sizes, render: renderLines, markdown };
}
