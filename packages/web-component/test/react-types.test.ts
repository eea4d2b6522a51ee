import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// A TSX file as a user writes it, checked by the real TypeScript compiler against the published typings
// (`@threadline/web-component/react`, which refers to dist/: run `npm run build` first).
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const app = fileURLToPath(new URL('fixtures/react-app/', import.meta.url));
const typecheck = (project: string) =>
  spawnSync(process.execPath, [tsc, '-p', `${app}${project}`], { encoding: 'utf8' });

describe('React typings', () => {
  it('a TSX file that imports @threadline/web-component/react type-checks, with props and events typed', () => {
    const r = typecheck('tsconfig.json');
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 180_000);

  it('without that import, React does not know <agent-chat> (why the entry exists)', () => {
    const r = typecheck('tsconfig.without-react-entry.json');
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/Property 'agent-chat' does not exist on type 'JSX.IntrinsicElements'/);
  }, 180_000);

  it("the README's React example is the one checked here", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```tsx\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const fixture = readFileSync(`${app}chat.tsx`, 'utf8');
    const chat = /export function Chat[\s\S]*?\n}\n/.exec(fixture)?.[0] ?? 'missing';
    expect(example).toContain("import '@threadline/web-component/react';");
    expect(example).toContain(chat);
  });
});
