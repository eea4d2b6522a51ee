import { defineConfig } from 'tsup';

// The npm build: ESM only, lit stays an external dependency. The single-file script-tag bundle is built by
// scripts/bundle.mjs.
export default defineConfig({
  entry: { index: 'src/index.ts', element: 'src/element.ts' },
  format: ['esm'],
  // Members marked @internal are shared between the element's own modules (view, composer, …), not API.
  dts: { compilerOptions: { stripInternal: true } },
  target: 'es2022',
  platform: 'browser',
  clean: true,
  sourcemap: true,
});
