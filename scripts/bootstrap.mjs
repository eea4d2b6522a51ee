// Makes `npm start`, `npm test` and `npm run bench` work straight after a clone, then runs the command after `--`:
//   node scripts/bootstrap.mjs -- node scripts/test.mjs [args]
// On a Node older than the `engines` field allows, it brings the pinned Node (.node-version) from the npm
// registry into a cache folder and re-runs itself on it. Then it installs dependencies when node_modules is
// missing, builds packages whose sources are newer than their dist, and links workspace bins the install could
// not link (their targets are build output). Cheap when everything is in place: it only looks at a few paths.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OLDEST, PINNED, ROOT, atLeast, ensureNode, nodeBinDir, nodeCacheDir } from './toolchain.mjs';

process.chdir(ROOT);
const args = process.argv.slice(2);
const sep = args.indexOf('--');
const command = sep >= 0 ? args.slice(sep + 1) : [];

if (!atLeast(process.version, OLDEST)) {
  const cached = existsSync(join(nodeBinDir(PINNED), 'node'));
  let bin;
  try {
    bin = ensureNode(PINNED);
  } catch (err) {
    console.error(
      `bootstrap: Threadline needs Node.js ${OLDEST} or newer; this is ${process.version}. ${err.message}`,
    );
    process.exit(1);
  }
  console.log(
    `bootstrap: Node ${process.version} is older than ${OLDEST}: running on Node ${PINNED}, ` +
      `${cached ? 'cached' : 'fetched from the npm registry'} in ${nodeCacheDir(PINNED)}`,
  );
  const res = spawnSync(join(bin, 'node'), [fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit',
    env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
  });
  process.exit(res.status ?? 1);
}

// Everything below, and every command it starts, runs on this Node.
process.env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
const npmCli =
  process.env.npm_execpath && /npm-cli\.[cm]?js$/.test(process.env.npm_execpath)
    ? process.env.npm_execpath
    : undefined;
const resolve = ([cmd, ...rest]) => {
  if (cmd === 'node') return [process.execPath, rest];
  if (cmd === 'npm' && npmCli) return [process.execPath, [npmCli, ...rest]];
  return [cmd, rest];
};
const run = (...cmd) => {
  const [file, rest] = resolve(cmd);
  const res = spawnSync(file, rest, { stdio: 'inherit' });
  if (res.status !== 0) {
    console.error(`bootstrap: \`${cmd.join(' ')}\` failed`);
    process.exit(res.status ?? 1);
  }
};

if (!existsSync('node_modules/.package-lock.json')) {
  console.log('bootstrap: installing dependencies (npm ci)…');
  run('npm', 'ci', '--no-audit', '--no-fund');
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
  run('npm', 'run', 'build');
}

// `npm ci` links a workspace's bin only if its target exists, and the targets are build output.
for (const dir of roots) {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) continue;
  const pkg = JSON.parse(readFileSync(file, 'utf8'));
  const bins = typeof pkg.bin === 'string' ? [pkg.name.split('/').pop()] : Object.keys(pkg.bin ?? {});
  if (bins.some((b) => !existsSync(join('node_modules', '.bin', b)))) {
    run('npm', 'rebuild', pkg.name, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error');
  }
}

if (command.length > 0) {
  const [file, rest] = resolve(command);
  const child = spawn(file, rest, { stdio: 'inherit' });
  // A terminal's Ctrl-C reaches the child too; a signal sent to this process only is passed on.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  child.on('error', (err) => {
    console.error(`bootstrap: could not run \`${command.join(' ')}\`: ${err.message}`);
    process.exit(1);
  });
}
