// Builds dist/agent-chat.js: one minified ES module with lit included, for <script type="module" src>.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  conditions: ['@threadline/source'],
  outfile: 'dist/agent-chat.js',
  legalComments: 'none',
});
