// Builds dist/agent-chat.js: one minified ES module with lit included, for <script type="module" src>.
import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';

// The stylesheet is one css`` template: its indentation is dead weight in the bundle (about 270 bytes gzipped
// of the 20 KiB budget). Leading whitespace of each line goes; every line break stays, so no CSS token merges.
const compactCss = {
  name: 'compact-css',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]styles\.ts$/ }, async (args) => ({
      contents: (await readFile(args.path, 'utf8')).replace(/\n[ \t]+/g, '\n'),
      loader: 'ts',
    }));
  },
};

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
  plugins: [compactCss],
});
