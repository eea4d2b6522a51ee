import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// What `npm publish` would put in each tarball, asked of npm itself (`npm pack --dry-run`).
const PACKAGES = ['contracts', 'tools-kit', 'relay', 'agent-runner', 'web-component'];
const root = new URL('../../', import.meta.url);
const license = readFileSync(new URL('LICENSE', root), 'utf8');

function packedFiles(dir: string): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: new URL(`packages/${dir}/`, root),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [pack] = JSON.parse(out) as { files: { path: string }[] }[];
  return pack!.files.map((f) => f.path);
}

describe('published files', () => {
  it.each(PACKAGES)('@threadline/%s ships the MIT LICENSE, the same text as the repository', (dir) => {
    expect(packedFiles(dir)).toContain('LICENSE');
    expect(readFileSync(new URL(`packages/${dir}/LICENSE`, root), 'utf8')).toBe(license);
    const manifest = JSON.parse(readFileSync(new URL(`packages/${dir}/package.json`, root), 'utf8'));
    expect(manifest.license).toBe('MIT');
  });
});
