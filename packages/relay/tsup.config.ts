import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    memory: 'src/memory.ts',
    sqlite: 'src/sqlite.ts',
    mongodb: 'src/mongodb.ts',
    testing: 'src/testing.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  target: 'node22',
  clean: true,
  sourcemap: true,
  splitting: false,
});
