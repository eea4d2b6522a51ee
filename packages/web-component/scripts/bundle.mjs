// Builds dist/agent-chat.js: one minified ES module with lit included, for <script type="module" src>.
import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';

// The stylesheet is one css`` template without interpolations: its layout is dead weight in the bundle (about
// 350 bytes gzipped of the 20 KiB budget). Inside the template only, leading whitespace goes, and so do line
// breaks next to `{`, `}`, `;` and `,` (CSS delimiters, so no two tokens merge), the space after a declaration's
// colon and after a comma (the sheet has no strings with either); other line breaks stay.
const compactCss = {
  name: 'compact-css',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]styles\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const start = source.indexOf('css`') + 4;
      const end = source.indexOf('`', start);
      const sheet = source
        .slice(start, end)
        .replace(/\n[ \t]+/g, '\n')
        .replace(/ ?([{;,])\n/g, '$1')
        .replace(/\n}/g, '}')
        .replace(/([{;])(-?-?[a-z_][a-z0-9_-]*): /g, '$1$2:')
        .replace(/, /g, ',');
      return { contents: source.slice(0, start) + sheet + source.slice(end), loader: 'ts' };
    });
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
