// Runs the contract tests against the oldest zod the packages accept (the lower bound of
// @threadline/contracts' zod peer range), so a consumer on that zod gets what the tests prove.
// Usage: npm run test:zod-oldest [-- extra vitest args]
// zod is installed once into a cache folder outside the repo; the repo's node_modules is not touched.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const pkg = JSON.parse(readFileSync('packages/contracts/package.json', 'utf8'));
const range = pkg.peerDependencies?.zod ?? '';
const oldest = /^[\^~>=]*\s*(\d+\.\d+\.\d+)\b/.exec(range)?.[1];
if (!oldest) {
  console.error(`cannot read the oldest zod from the peer range "${range}"`);
  process.exit(1);
}

const dir = join(process.env.THREADLINE_ZOD_CACHE ?? tmpdir(), `threadline-zod-${oldest}`);
const installed = join(dir, 'node_modules', 'zod', 'package.json');
const have = existsSync(installed) ? JSON.parse(readFileSync(installed, 'utf8')).version : undefined;
if (have !== oldest) {
  console.log(`installing zod@${oldest} into ${dir}`);
  const npm = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      dir,
      '--no-save',
      '--no-package-lock',
      '--no-audit',
      '--no-fund',
      `zod@${oldest}`,
    ],
    { stdio: 'inherit' },
  );
  if (npm.status !== 0) process.exit(npm.status ?? 1);
}

console.log(`contract tests with zod ${oldest} (peer range ${range})`);
const res = spawnSync(
  'npx',
  ['vitest', 'run', '--config', 'vitest.zod.config.ts', 'packages/contracts/test', ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: {
      ...process.env,
      THREADLINE_ZOD_DIR: join(dir, 'node_modules', 'zod'),
      THREADLINE_ZOD_VERSION: oldest,
    },
  },
);
process.exit(res.status ?? 1);
