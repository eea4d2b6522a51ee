import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    memory: 'src/memory.ts',
    sqlite: 'src/sqlite.ts',
    mongodb: 'src/mongodb.ts',
    postgres: 'src/postgres.ts',
    redis: 'src/redis.ts',
    testing: 'src/testing.ts',
    'ag-ui': 'src/ag-ui.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  target: 'node22',
  clean: true,
  sourcemap: true,
  // Shared chunks, so every entry point uses the same StoreError class (`instanceof` works across subpaths).
  splitting: true,
  // Keep `node:` specifiers: `node:sqlite` exists only under that prefix (esbuild would emit a bare 'sqlite').
  removeNodeProtocol: false,
});
