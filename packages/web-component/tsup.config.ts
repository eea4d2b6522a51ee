import { defineConfig } from 'tsup';

// The npm build: ESM only, lit stays an external dependency. The single-file script-tag bundle is built by
// scripts/bundle.mjs.
export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm'],
  dts: true,
  target: 'es2022',
  platform: 'browser',
  clean: true,
  sourcemap: true,
});
