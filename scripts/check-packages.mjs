// publint --strict and attw --pack for every published package; run after `npm run build`.
import { execSync } from 'node:child_process';

const packages = ['contracts', 'tools-kit', 'relay', 'agent-runner', 'web-component'];
let failed = 0;
for (const p of packages) {
  const dir = `packages/${p}`;
  for (const cmd of [
    `npx publint --strict ${dir}`,
    // The web component is ESM-only on purpose (STYLE.md), so CJS resolution modes are not expected to work.
    p === 'web-component'
      ? `npx attw --pack ${dir} --profile esm-only`
      : `npx attw --pack ${dir} --profile node16`,
  ]) {
    try {
      execSync(cmd, { stdio: 'inherit' });
    } catch {
      console.error(`FAILED: ${cmd}`);
      failed++;
    }
  }
}
if (failed) process.exit(1);
console.log('package checks passed');
