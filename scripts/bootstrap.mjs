// Installs and builds whatever is missing so that `npm start` and `npm test` work straight after a clone.
// Cheap when everything is in place: it only looks at a few paths.
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`Threadline needs Node.js 22.18 or newer; this is ${process.version}.`);
  process.exit(1);
}

const run = (cmd) => execSync(cmd, { stdio: 'inherit' });

if (!existsSync('node_modules/.package-lock.json')) {
  console.log('bootstrap: installing dependencies (npm ci)…');
  run('npm ci --no-audit --no-fund');
}

// Rebuild when a package has no dist or a source file is newer than its dist.
const newest = (dir) => {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
};
const roots = ['packages', 'examples'].flatMap((d) => readdirSync(d).map((n) => join(d, n)));
const stale = roots.filter((p) => {
  if (!existsSync(join(p, 'src'))) return false;
  if (!existsSync(join(p, 'dist'))) return true;
  return newest(join(p, 'src')) > newest(join(p, 'dist'));
});
if (stale.length > 0) {
  console.log(`bootstrap: building ${stale.join(', ')}…`);
  run('npm run build');
}
