import { defineConfig } from 'tsup';
import { nodePackage } from '../../scripts/tsup-package';

export default defineConfig(
  nodePackage(
    {
      index: 'src/index.ts',
      memory: 'src/stores/memory.ts',
      sqlite: 'src/stores/sqlite.ts',
      mongodb: 'src/stores/mongodb.ts',
      postgres: 'src/stores/postgres.ts',
      redis: 'src/cluster/redis.ts',
      testing: 'src/testing.ts',
      'ag-ui': 'src/browser/ag-ui.ts',
      ws: 'src/browser/ws-server.ts',
    },
    {
      // Shared chunks, so every entry point uses the same StoreError class (`instanceof` works across subpaths).
      splitting: true,
      // Keep `node:` specifiers: `node:sqlite` exists only under that prefix (esbuild would emit a bare 'sqlite').
      removeNodeProtocol: false,
    },
  ),
);
