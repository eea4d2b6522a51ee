import { defineConfig } from 'tsup';
import { nodePackage } from '../../scripts/tsup-package';

export default defineConfig(nodePackage({ index: 'src/index.ts', core: 'src/core.ts' }));
