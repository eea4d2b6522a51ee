// Builds dist/agent-chat.js: one minified ES module with lit included, for <script type="module" src>.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
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

// The element's html`` templates keep their source indentation in the bundle (esbuild leaves template text as
// is): about 200 bytes gzipped. Every run of indentation after a line break in the template modules goes;
// outside templates that is only code layout, and inside them the line break stays, so text still has its
// whitespace where it had some (no template puts a line break inside a pre or pre-wrap element, and attribute
// values there are one line).
const TEMPLATE_MODULES = /[\\/]src[\\/](view|messages|approvals|composer)\.ts$/;
const compactTemplates = {
  name: 'compact-templates',
  setup(b) {
    b.onLoad({ filter: TEMPLATE_MODULES }, async (args) => ({
      contents: (await readFile(args.path, 'utf8')).replace(/\n[ \t]+/g, '\n'),
      loader: 'ts',
    }));
  },
};

// `node scripts/bundle.mjs [outfile]`: the tests build the same bundle into a folder of their own.
await build({
  absWorkingDir: fileURLToPath(new URL('..', import.meta.url)),
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  conditions: ['@threadline/source'],
  outfile: process.argv[2] ?? 'dist/agent-chat.js',
  legalComments: 'none',
  // The element's members shared between its own modules are named `__x` (lit's convention for members that are
  // not API) and shortened here, as lit's own build does with terser. Lit's cross-package members start `_$`.
  mangleProps: /^__/,
  plugins: [compactCss, compactTemplates],
});
