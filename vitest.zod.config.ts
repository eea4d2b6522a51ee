import { mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

// The contract tests with another zod (scripts/test-zod-oldest.mjs): every `zod` import, from the sources
// and the tests alike, resolves to the copy in THREADLINE_ZOD_DIR.
const dir = process.env.THREADLINE_ZOD_DIR;
if (!dir) throw new Error('THREADLINE_ZOD_DIR must name the zod package folder to test with');

export default mergeConfig(base, {
  resolve: { alias: [{ find: /^zod(\/.*)?$/, replacement: `${dir}$1` }] },
});
