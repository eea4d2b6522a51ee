import { defineConfig } from 'tsup';

// Two programs: the API (main) and the agent service it starts as a separate process (agent).
export default defineConfig({
  entry: { main: 'src/main.ts', agent: 'src/agent.ts' },
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  clean: true,
  sourcemap: true,
  // Keep `node:` specifiers: `node:sqlite` exists only under that prefix (esbuild would emit a bare 'sqlite').
  removeNodeProtocol: false,
});
