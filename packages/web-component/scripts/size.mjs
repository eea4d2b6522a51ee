// Prints the gzipped size of the single-file bundle and fails when it is over budget.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET = 20 * 1024;
const raw = readFileSync(new URL('../dist/agent-chat.js', import.meta.url));
const gz = gzipSync(raw, { level: 9 }).length;
console.log(`agent-chat.js: ${raw.length} bytes, ${gz} bytes gzipped (budget ${BUDGET})`);
if (gz > BUDGET) {
  console.error(`agent-chat.js is over its size budget by ${gz - BUDGET} bytes`);
  process.exit(1);
}
