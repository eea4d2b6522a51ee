// The Node toolchain in one place: the pinned version (.node-version), the oldest one the `engines` field allows,
// and how to bring either from the npm registry (the `node-<platform>-<arch>` packages ship the binary) into a
// cache folder. Plain ESM that runs on old Node releases too, since it is what gets a new one.
//
// CLI: `node scripts/toolchain.mjs bin pinned|oldest` prints the bin folder of that Node, installing it first.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The exact Node version CI and the bootstrap install, e.g. "24.22.3". */
export const PINNED = readFileSync(join(ROOT, '.node-version'), 'utf8').trim();

/** The oldest Node the root `engines` field allows (">=22.18" gives "22.18.0"). */
export const OLDEST = (() => {
  const range = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).engines.node;
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (!m) throw new Error(`engines.node must be a plain ">=X.Y" range, not "${range}"`);
  return `${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}`;
})();

const parts = (v) => v.replace(/^v/, '').split('.').map(Number);

/** True when version `v` is at least `min` (both "X.Y.Z", a leading "v" allowed). */
export function atLeast(v, min) {
  const [a, b] = [parts(v), parts(min)];
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

const cacheRoot = () => join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'threadline-node');

/** The cache folder Node `version` is installed into. */
export const nodeCacheDir = (version) => join(cacheRoot(), version);

/** Where Node `version` lives once installed (its bin folder holds `node`). */
export function nodeBinDir(version) {
  const pkg = `node-${process.platform}-${process.arch}`;
  return join(nodeCacheDir(version), 'node_modules', pkg, 'bin');
}

/**
 * Installs Node `version` from the npm registry into the cache unless it is there, and returns its bin folder.
 * `npm` is the npm CLI to run (a path to npm-cli.js run with this Node, or the `npm` on PATH).
 */
export function ensureNode(version, { log = () => {} } = {}) {
  const bin = nodeBinDir(version);
  if (existsSync(join(bin, 'node'))) return bin;
  const pkg = `node-${process.platform}-${process.arch}@${version}`;
  log(`installing Node ${version} from the npm registry (${pkg}) into ${nodeCacheDir(version)}`);
  const npmCli = process.env.npm_execpath;
  const [cmd, pre] = npmCli && /npm-cli\.js$/.test(npmCli) ? [process.execPath, [npmCli]] : ['npm', []];
  const res = spawnSync(
    cmd,
    [
      ...pre,
      'install',
      '--prefix',
      nodeCacheDir(version),
      '--no-save',
      '--no-package-lock',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      pkg,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' },
  );
  if (res.status !== 0 || !existsSync(join(bin, 'node'))) {
    throw new Error(
      `could not install ${pkg} from the npm registry:\n${res.stderr || res.stdout || res.error?.message}`,
    );
  }
  return bin;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [verb, which] = process.argv.slice(2);
  const version = which === 'oldest' ? OLDEST : which === 'pinned' ? PINNED : undefined;
  if (verb !== 'bin' || !version) {
    console.error('usage: node scripts/toolchain.mjs bin pinned|oldest');
    process.exit(2);
  }
  try {
    process.stdout.write(`${ensureNode(version, { log: (m) => console.error(`toolchain: ${m}`) })}\n`);
  } catch (err) {
    console.error(`toolchain: ${err.message}`);
    process.exit(1);
  }
}
