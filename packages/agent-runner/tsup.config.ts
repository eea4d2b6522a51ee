import { defineConfig } from 'tsup';
import { nodePackage } from '../../scripts/tsup-package';

export default defineConfig(
  nodePackage({ index: 'src/index.ts', testing: 'src/testing.ts', cli: 'src/cli.ts' }),
);
