import { defineConfig } from 'tsup';
import { nodePackage } from '../../scripts/tsup-package';

export default defineConfig(
  nodePackage({
    index: 'src/index.ts',
    express: 'src/express.ts',
    agents: 'src/agents.ts',
    testing: 'src/testing.ts',
  }),
);
